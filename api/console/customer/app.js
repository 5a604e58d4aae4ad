// The customer flow: favorites with live status, "Book Again" with the availability modal, every open request's
// live status (a card each), and the "Add to Favorites" prompt after a session. A reload finds the requests again
// from the server.
import { ago, api, ApiError, el, forgetToken, showError, storedToken, storeToken } from "../common.js";

const KEY = "favdispatch.customer";
const $ = (id) => document.getElementById(id);
const errors = $("errors");
let token = storedToken(KEY);
const watched = new Map(); // request id -> { card, status, done }: the cards of the requests followed
let openByFavorite = new Map(); // favorite's id -> their open request's id: "Book Again" waits for it
let choice = null; // { favorite, status } while the modal is open
let pollTimer = null;
let favoritesTimer = null;
let favorites = []; // as the stream (or, when it cannot be opened, the poll) last told them
let live = null; // { source, lastEventId, failures } while the favorites stream is wanted

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
    if (error instanceof ApiError && error.code === "forbidden") {
      signOut("This token is not a customer's: sign in with the customer token that make run printed.");
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
  // From `last_seen` rather than `last_seen_seconds`: a streamed or revalidated (304) status is as old as its event.
  const seen = ago(status.last_seen ? Math.max(0, (Date.now() - Date.parse(status.last_seen)) / 1000) : null);
  if (status.is_online) {
    const count = status.online_count;
    const who = status.online_members?.length ? `: ${status.online_members.join(", ")}` : "";
    return el("span", { class: "status-online" },
      workshop ? `● ${count} mechanic${count === 1 ? "" : "s"} available now${who}` : "● Available Now");
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

// Favorites live: the stream's events update the cards as mechanics come and go. An `EventSource` cannot send the
// token, so each (re)connection asks for a one-minute ticket and names the last event it saw. Where the stream
// cannot be opened (a proxy that buffers it, an old browser), the cards are polled every 5 s instead.
function openFavoritesStream() {
  if (!window.EventSource) return pollFavorites();
  live = { source: null, lastEventId: "", failures: 0 };
  connectFavoritesStream().catch(fallBackToPolling);
}

function fallBackToPolling(error) {
  if (!(error instanceof SignedOut) && token) pollFavorites(); // signed out: the sign-in form says why
}

async function connectFavoritesStream() {
  const current = live;
  if (!current) return;
  const { ticket } = await call("POST", "/api/customer/stream-tickets");
  if (live !== current) return; // signed out meanwhile
  const query = new URLSearchParams({ ticket });
  if (current.lastEventId) query.set("last_event_id", current.lastEventId);
  const source = current.source = new EventSource(`/api/customer/favorites/stream?${query}`);
  const update = (handler) => (event) => {
    current.lastEventId = event.lastEventId;
    current.failures = 0;
    handler(JSON.parse(event.data));
    showFavorites();
  };
  source.addEventListener("snapshot", update((body) => { favorites = body.favorites; }));
  source.addEventListener("favorite", update((favorite) => {
    const at = favorites.findIndex((f) => f.provider_id === favorite.provider_id);
    if (at < 0) favorites.push(favorite);
    else favorites[at] = favorite;
  }));
  source.addEventListener("removed", update(({ provider_id, reason }) => {
    const gone = favorites.find((f) => f.provider_id === provider_id);
    if (gone && reason === "deleted") toast(`${gone.name} is no longer available and left your favorites.`);
    favorites = favorites.filter((f) => f.provider_id !== provider_id);
  }));
  // A stream that never delivers its first event (a buffering proxy) is as good as none.
  setTimeout(() => { if (live === current && !current.lastEventId) pollFavorites(); }, 10000);
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED || live !== current) return; // EventSource reconnects by itself
    // Refused (an expired ticket after a long absence) or cut off for good: a new ticket, from where it left off.
    current.lastEventId = source.lastEventId || current.lastEventId;
    current.failures += 1;
    if (current.failures > 3) return pollFavorites();
    setTimeout(() => connectFavoritesStream().catch(fallBackToPolling), 500 * current.failures);
  });
}

function pollFavorites() {
  closeFavoritesStream();
  loadFavorites().catch(() => {});
  clearInterval(favoritesTimer);
  favoritesTimer = setInterval(() => loadFavorites().catch(() => {}), 5000);
}

function closeFavoritesStream() {
  live?.source?.close();
  live = null;
}

async function loadFavorites() {
  if (!live) ({ favorites } = await call("GET", "/api/customer/favorites"));
  await loadOpenRequests();
  showFavorites();
}

function showFavorites() {
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
      el("span", { class: "muted" }, favorite.booking_count ? ` · booked ${favorite.booking_count}×` : " · not booked yet"),
      open ? el("p", { class: "muted", id: `open-${favorite.provider_id}` }, "You have an open request with them: ",
        el("a", { href: `#requests`, onclick: () => watch(open) }, "see your request")) : ""),
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

const isOpen = (status) => ["pending", "accepted"].includes(status);
const openRequests = () => [...watched.values()].filter((w) => isOpen(w.status)).length;

async function book(routing, favorite) {
  const open = openRequests();
  if (open > 0 && !window.confirm(`You already have ${open === 1 ? "an open request" : `${open} open requests`}. ` +
      "Start another one as well?")) return;
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

// One card per request followed: its sentence, its state, Cancel while open, the prompt after the session.
function requestCard(requestId) {
  const card = el("li", { class: "request", "data-request": requestId, "aria-label": "Request" },
    el("div", {},
      el("p", { class: "request-message", "aria-live": "polite" }),
      el("p", { class: "request-detail muted" }),
      el("div", { class: "prompt", hidden: true })),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "cancel-request", onclick: () => cancelRequest(requestId) }, "Cancel request"),
      el("button", { type: "button", class: "close-request", hidden: true,
        onclick: () => { watched.delete(requestId); card.remove(); showRequests(); } }, "Close")));
  return card;
}

function showRequests() {
  $("requests-section").hidden = watched.size === 0;
}

function watch(requestId) {
  if (!watched.has(requestId)) {
    const card = requestCard(requestId);
    watched.set(requestId, { card, status: "pending", done: false });
    $("requests").prepend(card);
  }
  watched.get(requestId).done = false;
  showRequests();
  clearInterval(pollTimer);
  pollTimer = setInterval(() => refreshRequests().catch(() => {}), 1000);
  refreshRequest(requestId).catch(() => {});
  watched.get(requestId).card.scrollIntoView?.({ block: "nearest" });
}

async function refreshRequests() {
  await Promise.all([...watched].filter(([, w]) => !w.done).map(([id]) => refreshRequest(id)));
}

async function refreshRequest(requestId) {
  const request = await call("GET", `/api/session-requests/${requestId}`);
  const followed = watched.get(requestId);
  if (!followed) return;
  const { card } = followed;
  const changed = followed.status !== request.status;
  followed.status = request.status;
  if (changed) loadFavorites().catch(() => {}); // "Book Again" waits while a request with them is open
  card.querySelector(".request-message").textContent = request.message;
  card.querySelector(".request-detail").textContent = `Status: ${request.status}` +
    (request.phase ? ` · ${request.phase === "priority" ? "your favorite first" : "offered to every available mechanic"}` : "") +
    (request.mechanic_name ? ` · mechanic: ${request.mechanic_name}` : "");
  card.querySelector(".cancel-request").hidden = !isOpen(request.status);
  showPrompt(card, requestId, request.favorite_prompt);
  const finished = ["cancelled", "completed"].includes(request.status);
  card.querySelector(".close-request").hidden = !finished || Boolean(request.favorite_prompt);
  followed.done = finished && !request.favorite_prompt;
}

// After a session: add the mechanic, or the workshop they work for, or both ("Add Sam" / "Add Patel Motors").
function showPrompt(card, requestId, prompt) {
  const region = card.querySelector(".prompt");
  region.hidden = !prompt;
  const shown = prompt ? prompt.choices.map((c) => c.provider_id).join() : "";
  if (region.dataset.shown === shown) return; // redrawn only when it changes, so focus stays on its buttons
  region.dataset.shown = shown;
  if (!prompt) return region.replaceChildren();
  const add = (choice, label) => el("button", { class: "primary", type: "button", onclick: async () => {
    await call("POST", "/api/customer/favorites", { provider_id: choice.provider_id, provider_type: choice.provider_type });
    toast(`${choice.name} was added to your favorites.`);
    await refreshRequest(requestId);
    await loadFavorites();
  } }, label);
  const only = prompt.choices.length === 1 ? prompt.choices[0] : null;
  const tip = only && isWorkshop(only)
    ? `Add ${only.name}, where ${prompt.name} works, to your favorites: next time its mechanics are asked first.`
    : prompt.choices.length > 1
      ? `Add ${prompt.name}, or ${prompt.choices[1].name} where they work, to your favorites for quick rebooking next time.`
      : "Had a great experience? Add this mechanic to your favorites for quick rebooking next time.";
  region.replaceChildren(
    el("h3", {}, `Great Session with ${prompt.name}!`),
    el("p", { class: "tip" }, tip),
    el("div", { class: "actions" },
      ...(only && !isWorkshop(only) ? [add(only, "Add to Favorites")] : prompt.choices.map((c) => add(c, `Add ${c.name}`))),
      el("button", { type: "button", onclick: async () => {
        await call("POST", `/api/session-requests/${requestId}/favorite-prompt/dismiss`);
        await refreshRequest(requestId);
      } }, "Not Now")));
}

async function cancelRequest(requestId) {
  await call("POST", `/api/session-requests/${requestId}/cancel`);
  await refreshRequest(requestId);
  await loadFavorites();
}

async function restoreRequests() {
  // After a reload: every open request, and the finished ones still asking "Add to Favorites?", oldest first so
  // the newest ends on top.
  const { requests } = await call("GET", "/api/customer/session-requests?status=recent");
  const followed = requests.filter((r) => isOpen(r.status) || r.favorite_prompt);
  for (const request of followed.reverse()) watch(request.id);
}

function signedIn() {
  $("signin").hidden = true;
  $("favorites").hidden = false;
  $("signout").hidden = false;
  loadOpenRequests().then(showFavorites).catch(() => {}); // the snapshot may have drawn the cards already
  restoreRequests().catch(() => {});
  openFavoritesStream();
  clearInterval(favoritesTimer);
  // Streaming, this only redraws "last seen 3 minutes ago" and which favorites have an open request.
  favoritesTimer = setInterval(() => loadFavorites().catch(() => {}), live ? 30000 : 5000);
}

function signOut(reason) {
  clearInterval(pollTimer);
  clearInterval(favoritesTimer);
  closeFavoritesStream();
  favorites = [];
  token = "";
  watched.clear();
  $("requests").replaceChildren();
  forgetToken(KEY);
  for (const id of ["favorites", "requests-section", "signout"]) $(id).hidden = true;
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
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof SignedOut) event.preventDefault(); // already shown as the sign-in form's reason
});
if (token) signedIn();
