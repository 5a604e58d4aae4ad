// The customer flow: favorites with live status, "Book Again" with the availability modal, the request's live
// status, and the "Add to Favorites" prompt after the session.
import { ago, api, ApiError, el, showError, storedToken, storeToken } from "../common.js";

const KEY = "favdispatch.customer";
const $ = (id) => document.getElementById(id);
const errors = $("errors");
let token = storedToken(KEY);
let currentRequest = null;
let choice = null; // { mechanic, status } while the modal is open
let pollTimer = null;

async function call(method, path, body) {
  try {
    const result = await api(token, method, path, body);
    showError(errors, null);
    return result;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404 && path.endsWith("/status"))) showError(errors, error);
    throw error;
  }
}

function statusLine(status) {
  return status.is_online
    ? el("span", { class: "status-online" }, "● Available Now")
    : el("span", { class: "status-offline" }, `○ Currently Offline · Last seen ${ago(status.last_seen_seconds)}`);
}

async function loadFavorites() {
  const { favorites } = await call("GET", "/api/customer/favorites");
  $("favorites-empty").hidden = favorites.length > 0;
  $("favorites-list").replaceChildren(
    ...favorites.map((favorite) =>
      el("li", {},
        el("div", {}, el("strong", {}, favorite.name), el("br"), statusLine(favorite),
          el("span", { class: "muted" }, ` · booked ${favorite.booking_count}×`)),
        el("button", { class: "primary", type: "button", "aria-label": `Book Again with ${favorite.name}`,
          onclick: () => openAvailability(favorite.provider_id, favorite.name) }, "Book Again"))));
}

async function openAvailability(mechanicId, name) {
  const dialog = $("availability");
  let status = null;
  try {
    status = await call("GET", `/api/mechanics/${mechanicId}/status`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) return;
  }
  choice = { mechanicId, name, status };
  $("availability-title").textContent = status ? `Book with ${status.name}` : `Book with ${name}`;
  const favoriteButton = $("choose-favorite");
  if (!status) {
    $("availability-status").textContent = "This mechanic is no longer available. Find another mechanic?";
    favoriteButton.hidden = true;
    $("availability-tip").hidden = true;
  } else {
    $("availability-status").replaceChildren(statusLine(status));
    const priority = status.priority_booking !== false;
    favoriteButton.hidden = !priority;
    $("availability-tip").hidden = !priority;
    favoriteButton.textContent = status.is_online ? `Continue with ${status.name}` : `Notify & Wait for ${status.name}`;
  }
  dialog.showModal();
  (favoriteButton.hidden ? $("choose-anyone") : favoriteButton).focus();
}

async function book(routing, preferredMechanicId) {
  const body = { session_type: $("session-type").value, plan_code: $("plan").value, routing };
  if (preferredMechanicId) body.preferred_mechanic_id = preferredMechanicId;
  try {
    const created = await call("POST", "/api/session-requests", body);
    watch(created.id);
  } catch (error) {
    if (error instanceof ApiError && error.status === 402) {
      const checkout = await call("POST", "/api/checkout", body);
      window.location.assign(checkout.url); // payments are on: Stripe Checkout, then the webhook books
    }
  }
}

function watch(requestId) {
  currentRequest = requestId;
  $("request").hidden = false;
  clearInterval(pollTimer);
  pollTimer = setInterval(refreshRequest, 1000);
  refreshRequest();
}

async function refreshRequest() {
  if (!currentRequest) return;
  const request = await call("GET", `/api/session-requests/${currentRequest}`);
  $("request-message").textContent = request.message;
  $("request-detail").textContent = `Status: ${request.status}` +
    (request.phase ? ` · ${request.phase === "priority" ? "your favorite first" : "offered to every available mechanic"}` : "") +
    (request.mechanic_name ? ` · mechanic: ${request.mechanic_name}` : "");
  $("cancel-request").hidden = !["pending", "accepted"].includes(request.status);
  const prompt = request.favorite_prompt;
  $("prompt").hidden = !prompt;
  if (prompt) {
    $("prompt-title").textContent = `Great Session with ${prompt.name}!`;
    $("prompt-add").onclick = async () => {
      await call("POST", "/api/customer/favorites", { provider_id: prompt.mechanic_id, provider_type: "independent" });
      await refreshRequest();
      await loadFavorites();
    };
  }
  if (["cancelled", "completed"].includes(request.status) && !prompt) clearInterval(pollTimer);
}

function signedIn() {
  $("signin").hidden = true;
  $("favorites").hidden = false;
  loadFavorites();
  setInterval(() => loadFavorites().catch(() => {}), 5000);
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  storeToken(KEY, token);
  signedIn();
});
$("choose-favorite").addEventListener("click", () => {
  $("availability").close();
  book(choice.status.is_online ? "priority" : "notify_and_wait", choice.mechanicId);
});
$("choose-anyone").addEventListener("click", () => {
  $("availability").close();
  book("broadcast", null);
});
$("choose-cancel").addEventListener("click", () => $("availability").close());
$("book-anyone").addEventListener("click", () => book("broadcast", null));
$("cancel-request").addEventListener("click", async () => {
  await call("POST", `/api/session-requests/${currentRequest}/cancel`);
  await refreshRequest();
});
$("prompt-dismiss").addEventListener("click", async () => {
  await call("POST", `/api/session-requests/${currentRequest}/favorite-prompt/dismiss`);
  await refreshRequest();
});
if (token) signedIn();
