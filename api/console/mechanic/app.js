// The mechanic's app: keeps the socket open (heartbeats, reconnect with backoff), lists offers with a countdown,
// and answers them: Accept, Decline, Give back, Complete. With notifications on, a service worker (sw.js) shows
// priority requests that arrive by Web Push while the page is closed.
import { api, ApiError, el, forgetToken, showError, storedToken, storeToken } from "../common.js";

const KEY = "favdispatch.mechanic";
const FINAL_CLOSES = { 4401: "Your token is missing, invalid or expired.", 4403: "This token is not a mechanic's.",
  4404: "This mechanic account no longer exists." };
const $ = (id) => document.getElementById(id);
const errors = $("errors");
const opened = new URLSearchParams(location.search).get("offer"); // a notification was tapped: show that offer
const offers = new Map(); // request id -> offer
const sessions = new Map(); // request id -> offer that was accepted
const lapsed = new Set(); // requests whose priority window for this mechanic passed: now open to everyone
let token = storedToken(KEY);
let socket = null;
let heartbeat = null;
let backoff = 1000;
let reconnecting = null; // the timer of the next reconnect

function setConnection(online, text) {
  $("connection").textContent = online ? "● Online" : `○ ${text || "Offline"}`;
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function connect() {
  $("signout").hidden = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The token rides as a subprotocol, never in the URL (which access logs print).
  socket = new WebSocket(`${scheme}://${location.host}/ws/mechanic`, [`bearer.${token}`]);
  socket.onmessage = (event) => handle(JSON.parse(event.data));
  const current = socket;
  socket.onclose = (event) => {
    if (socket !== current) return; // signed out: this socket was closed on purpose
    clearInterval(heartbeat);
    if (FINAL_CLOSES[event.code]) {
      // Nothing shown here can be acted on any more: a deleted account's offers and sessions are gone.
      offers.clear();
      sessions.clear();
      render();
      setConnection(false, "Offline");
      showError(errors, new Error(FINAL_CLOSES[event.code]));
      $("signin").hidden = false;
      return;
    }
    setConnection(false, `Reconnecting in ${Math.round(backoff / 1000)} s`);
    reconnecting = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 30000);
  };
}

function handle(message) {
  switch (message.type) {
    case "welcome":
      // The server tells a connecting device its whole state (assigned sessions, open offers): start afresh.
      offers.clear();
      sessions.clear();
      backoff = 1000;
      setConnection(true);
      showError(errors, null);
      $("signin").hidden = true;
      heartbeat = setInterval(() => send({ type: "heartbeat" }), message.heartbeat_interval_s * 1000);
      showPushState().catch((error) => showError(errors, error));
      break;
    case "offer":
      send({ type: "ack", offer_id: message.offer_id });
      offers.set(message.request_id, message);
      break;
    case "offer_revoked":
      // A priority offer that expired comes back open to everyone: say so on its card when it does.
      if (message.reason === "expired" && offers.get(message.request_id)?.kind === "priority") lapsed.add(message.request_id);
      offers.delete(message.request_id);
      sessions.delete(message.request_id);
      break;
    case "declined":
    case "given_back":
      offers.delete(message.request_id);
      sessions.delete(message.request_id);
      break;
    case "assigned":
      sessions.set(message.request_id, message);
      break;
    case "accepted":
      sessions.set(message.request_id, offers.get(message.request_id) || { request_id: message.request_id });
      offers.delete(message.request_id);
      break;
    case "error":
      showError(errors, new Error(message.message));
      if (message.request_id && message.code === "offer_unavailable") offers.delete(message.request_id);
      break;
  }
  render();
}

function countdown(offer) {
  if (!offer.expires_at) return "Open to every available mechanic";
  const ends = new Date(offer.expires_at);
  const seconds = Math.max(0, Math.round((ends - Date.now()) / 1000));
  const clock = ends.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return `Only you for ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")} (until ${clock})`;
}

function title(offer) {
  if (offer.kind !== "priority") return "Request";
  return offer.workshop_name ? `★ Priority request for ${offer.workshop_name}` : "★ Priority request from your favorite customer";
}

function render() {
  $("offers-empty").hidden = offers.size > 0;
  $("offers").replaceChildren(...[...offers.values()].map((offer) =>
    el("li", offer.request_id === opened ? { class: "opened", "aria-current": "true" } : {},
      el("div", {},
        el("strong", {}, title(offer)),
        offer.kind === "broadcast" && lapsed.has(offer.request_id)
          ? el("p", { class: "tip" }, "Your priority window passed: now open to every mechanic") : "",
        el("br"), `${offer.customer_name} · ${offer.session_type}`, el("br"),
        el("span", { class: "muted countdown", "data-request": offer.request_id }, countdown(offer))),
      el("div", { class: "actions" },
        el("button", { class: "primary", type: "button", onclick: () => send({ type: "accept", request_id: offer.request_id, attempt: offer.attempt }) }, "Accept"),
        el("button", { type: "button", onclick: () => send({ type: "decline", request_id: offer.request_id }) }, "Decline")))));
  $("sessions").replaceChildren(...[...sessions.values()].map((session) =>
    el("li", {},
      el("div", {}, el("strong", {}, session.customer_name || "Customer"), el("br"),
        el("span", { class: "muted" }, session.session_type || "")),
      el("div", { class: "actions" },
        el("button", { class: "primary", type: "button", onclick: () => complete(session.request_id) }, "Complete session"),
        el("button", { type: "button", onclick: () => send({ type: "cancel", request_id: session.request_id, reason: "Given back from the console" }) }, "Give back")))));
}

// Web Push: the server's key, this browser's subscription, and the state shown to the mechanic.
let pushKey = null;

function keyBytes(base64url) {
  const text = atob(base64url.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

async function pushRegistration() {
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) return null;
  return navigator.serviceWorker.register("sw.js");
}

function setPushState(text, { on = false, off = false } = {}) {
  $("notifications").hidden = false;
  $("push-state").textContent = text;
  $("push-on").hidden = !on;
  $("push-off").hidden = !off;
}

async function showPushState() {
  const { enabled, public_key: publicKey } = await api(token, "GET", "/api/push/vapid-public-key");
  pushKey = publicKey;
  if (!enabled) return setPushState("Notifications are turned off on this server.");
  const registration = await pushRegistration();
  if (!registration) return setPushState("This browser cannot show notifications.");
  const subscription = await registration.pushManager.getSubscription();
  if (subscription) return setPushState("● Notifications are on for this device.", { off: true });
  if (Notification.permission === "denied") {
    return setPushState("Notifications are blocked for this site in your browser's settings.");
  }
  return setPushState("○ Notifications are off for this device.", { on: true });
}

// Why notifications could not be turned on, in one plain sentence with what to do, never the browser's own words.
function pushFailure(error) {
  if (error instanceof ApiError) {
    return `The server did not accept this device for notifications (${error.message}). Try again later.`;
  }
  switch (error && error.name) {
    case "NotAllowedError":
      return "Notifications are not allowed for this site. Allow them in your browser's site settings, then turn them on again.";
    case "AbortError":
      return "Your browser could not register this device with its notification service. Check that notifications " +
        "are allowed for this site and that you are online, then try again.";
    case "NotSupportedError":
      return "This browser cannot receive notifications on this page. Use a recent Chrome, Edge, Firefox or Safari.";
    case "InvalidStateError":
      return "The notification helper of this page is not ready. Reload the page, then turn notifications on again.";
    default:
      return "Notifications could not be turned on. Reload the page and try again.";
  }
}

async function turnPushOn() {
  try {
    if ((await Notification.requestPermission()) !== "granted") return showPushState();
    const registration = await pushRegistration();
    await navigator.serviceWorker.ready;
    const subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: keyBytes(pushKey) });
    await api(token, "POST", "/api/mechanic/push-subscriptions", subscription.toJSON());
    await showPushState();
  } catch (error) {
    showError(errors, new Error(pushFailure(error)));
  }
}

async function forgetPushSubscription() {
  const registration = await pushRegistration();
  const subscription = registration && await registration.pushManager.getSubscription();
  if (subscription) {
    await api(token, "DELETE", "/api/mechanic/push-subscriptions", { endpoint: subscription.endpoint });
    await subscription.unsubscribe();
  }
}

async function turnPushOff() {
  try {
    await forgetPushSubscription();
    await showPushState();
  } catch (error) {
    showError(errors, error);
  }
}

// Signing out goes offline on purpose (no reconnect), and stops this device's notifications for this mechanic.
async function signOut() {
  await forgetPushSubscription().catch(() => {});
  const closing = socket;
  socket = null;
  clearTimeout(reconnecting);
  clearInterval(heartbeat);
  closing?.close(1000, "signed out");
  token = "";
  forgetToken(KEY);
  offers.clear();
  sessions.clear();
  lapsed.clear();
  render();
  setConnection(false, "Signed out");
  showError(errors, null);
  $("notifications").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("token").value = "";
  $("token").focus();
}

$("push-on").addEventListener("click", turnPushOn);
$("push-off").addEventListener("click", turnPushOff);
$("signout").addEventListener("click", signOut);

async function complete(requestId) {
  try {
    await api(token, "POST", `/api/session-requests/${requestId}/complete`);
    sessions.delete(requestId);
    render();
  } catch (error) {
    showError(errors, error);
  }
}

setInterval(() => {
  for (const node of document.querySelectorAll(".countdown")) {
    const offer = offers.get(node.dataset.request);
    if (offer) node.textContent = countdown(offer);
  }
}, 1000);

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  storeToken(KEY, token);
  connect();
});
if (token) connect();
render();
