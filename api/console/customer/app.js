// The customer flow: favorites with live status, "Book Again" with the availability modal, the request's live
// status, and the "Add to Favorites" prompt after the session. A reload finds the request again from the server.
import { ago, api, ApiError, el, forgetToken, showError, storedToken, storeToken } from "../common.js";

const KEY = "favdispatch.customer";
const $ = (id) => document.getElementById(id);
const errors = $("errors");
let token = storedToken(KEY);
let currentRequest = null;
let openByFavorite = new Map(); // favorite's id -> their open request's id: "Book Again" waits for it
let choice = null; // { favorite, status } while the modal is open
let pollTimer = null;
let favoritesTimer = null;

class SignedOut extends Error {}

async function call(method, path, body, headers) {
  try {
    const result = await api(token, method, path, body, headers);
    showError(errors, null);
    return result;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut(`Please sign in again: ${error.message}`);
      throw new SignedOut(error.message);
    }
    if (!(error instanceof ApiError && error.status === 404 && path.endsWith("/status"))) showError(errors, error);
    throw error;
  }
}

function toast(text) {
  const node = $("toast");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 5000);
}

const isWorkshop = (favorite) => favorite.provider_type === "workshop";

// A workshop is online while any of its mechanics is: "3 mechanics available now" (the workshop issue's
// wording, as the mechanic's is the product document's).
function statusLine(status, workshop = false) {
  const seen = ago(status.last_seen_seconds);
  if (status.is_online) {
    const count = status.online_count;
    return el("span", { class: "status-online" },
      workshop ? `● ${count} mechanic${count === 1 ? "" : "s"} available now` : "● Available Now");
  }
  return el("span", { class: "status-offline" },
    workshop ? `○ Currently offline · last seen ${seen}` : `○ Currently Offline · Last seen ${seen}`);
}

async function loadOpenRequests() {
  const { requests } = await call("GET", "/api/customer/session-requests?status=open");
  openByFavorite = new Map(requests
    .filter((r) => r.preferred_mechanic_id || r.preferred_workshop_id)
    .map((r) => [r.preferred_mechanic_id || r.preferred_workshop_id, r.id]));
  return requests;
}

async function loadFavorites() {
  const { favorites } = await call("GET", "/api/customer/favorites");
  await loadOpenRequests();
  $("favorites-empty").hidden = favorites.length > 0;
  $("favorites-list").replaceChildren(...favorites.map(favoriteCard));
}

function favoriteCard(favorite) {
  const open = openByFavorite.get(favorite.provider_id);
  const book = open
    ? el("button", { type: "button", class: "primary", disabled: true, "aria-describedby": `open-${favorite.provider_id}` },
        "Book Again")
    : el("button", { class: "primary", type: "button", "aria-label": `Book Again with ${favorite.name}`,
        onclick: () => openAvailability(favorite) }, "Book Again");
  return el("li", {},
    el("div", {}, el("strong", {}, favorite.name), isWorkshop(favorite) ? el("span", { class: "muted" }, " · workshop") : "",
      el("br"), statusLine(favorite, isWorkshop(favorite)),
      el("span", { class: "muted" }, ` · booked ${favorite.booking_count}×`),
      open ? el("p", { class: "muted", id: `open-${favorite.provider_id}` }, "You have an open request with them: ",
        el("a", { href: "#request", onclick: () => watch(open) }, "see your request")) : ""),
    el("div", { class: "actions" }, book,
      el("button", { type: "button", "aria-label": `Remove ${favorite.name} from favorites`,
        onclick: () => removeFavorite(favorite) }, "Remove")));
}

async function removeFavorite(favorite) {
  if (!window.confirm(`Remove ${favorite.name} from your favorites?`)) return;
  await call("DELETE", `/api/customer/favorites/${favorite.provider_id}`);
  toast(`${favorite.name} was removed from your favorites.`);
  await loadFavorites();
}

async function openAvailability(favorite) {
  const dialog = $("availability");
  const workshop = isWorkshop(favorite);
  let status = null;
  try {
    status = await call("GET", `/api/${workshop ? "workshops" : "mechanics"}/${favorite.provider_id}/status`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) return;
  }
  choice = { favorite, status };
  $("availability-title").textContent = `Book with ${status ? status.name : favorite.name}`;
  const favoriteButton = $("choose-favorite");
  if (!status) {
    $("availability-status").textContent =
      `This ${workshop ? "workshop" : "mechanic"} is no longer available. Find another mechanic?`;
    favoriteButton.hidden = true;
    $("availability-tip").hidden = true;
  } else {
    $("availability-status").replaceChildren(statusLine(status, workshop));
    const priority = status.priority_booking !== false;
    favoriteButton.hidden = !priority;
    $("availability-tip").hidden = !priority;
    $("availability-tip").textContent = workshop
      ? "Priority Booking: your favorite workshop's mechanics get notified first, with automatic fallback if they're busy."
      : "Priority Booking: your favorite mechanic gets notified first, with automatic fallback if they're busy.";
    favoriteButton.textContent = status.is_online ? `Continue with ${status.name}` : `Notify & Wait for ${status.name}`;
  }
  dialog.showModal();
  (favoriteButton.hidden ? $("choose-anyone") : favoriteButton).focus();
}

async function book(routing, favorite) {
  const body = { session_type: $("session-type").value, plan_code: $("plan").value, routing };
  if (favorite) body[isWorkshop(favorite) ? "preferred_workshop_id" : "preferred_mechanic_id"] = favorite.provider_id;
  // One key per booking: a retried or doubled click is answered with the same request, never a second one.
  const once = { "Idempotency-Key": crypto.randomUUID() };
  try {
    const created = await call("POST", "/api/session-requests", body, once);
    watch(created.id);
  } catch (error) {
    if (error instanceof ApiError && error.code === "request_already_open" && error.requestId) {
      watch(error.requestId);
    } else if (error instanceof ApiError && error.status === 402) {
      const checkout = await call("POST", "/api/checkout", body, once);
      window.location.assign(checkout.url); // payments are on: Stripe Checkout, then the webhook books
    }
  }
  loadFavorites().catch(() => {});
}

function watch(requestId) {
  currentRequest = requestId;
  $("request").hidden = false;
  clearInterval(pollTimer);
  pollTimer = setInterval(() => refreshRequest().catch(() => {}), 1000);
  refreshRequest().catch(() => {});
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
      toast(`${prompt.name} was added to your favorites.`);
      await refreshRequest();
      await loadFavorites();
    };
  }
  if (["cancelled", "completed"].includes(request.status) && !prompt) clearInterval(pollTimer);
}

async function restoreRequest() {
  // After a reload: the open request, else a finished one still asking "Add to Favorites?".
  const { requests } = await call("GET", "/api/customer/session-requests?status=recent");
  const found = requests.find((r) => ["pending", "accepted"].includes(r.status)) || requests.find((r) => r.favorite_prompt);
  if (found) watch(found.id);
}

function signedIn() {
  $("signin").hidden = true;
  $("favorites").hidden = false;
  $("signout").hidden = false;
  loadFavorites().catch(() => {});
  restoreRequest().catch(() => {});
  clearInterval(favoritesTimer);
  favoritesTimer = setInterval(() => loadFavorites().catch(() => {}), 5000);
}

function signOut(reason) {
  clearInterval(pollTimer);
  clearInterval(favoritesTimer);
  token = "";
  currentRequest = null;
  forgetToken(KEY);
  for (const id of ["favorites", "request", "signout"]) $(id).hidden = true;
  $("signin").hidden = false;
  $("signin-reason").textContent = reason || "";
  $("token").focus();
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  storeToken(KEY, token);
  $("signin-reason").textContent = "";
  signedIn();
});
$("signout").addEventListener("click", () => signOut("You are signed out."));
$("choose-favorite").addEventListener("click", () => {
  $("availability").close();
  book(choice.status.is_online ? "priority" : "notify_and_wait", choice.favorite);
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
  await loadFavorites();
});
$("prompt-dismiss").addEventListener("click", async () => {
  await call("POST", `/api/session-requests/${currentRequest}/favorite-prompt/dismiss`);
  await refreshRequest();
});
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof SignedOut) event.preventDefault(); // already shown as the sign-in form's reason
});
if (token) signedIn();
