// The operations page: who is online, open requests by phase, the KPIs with the A/B split, and charts drawn by
// the server as SVG.
import { api, el, showError, storedToken, storeToken } from "../common.js";

const KEY = "favdispatch.admin";
const $ = (id) => document.getElementById(id);
const errors = $("errors");
let token = storedToken(KEY);

// A session starts when a mechanic accepts: the median minutes from booking, favorite-first and broadcast apart.
const sessionStart = (times) => ["priority_broadcast", "broadcast"]
  .filter((kind) => times[kind])
  .map((kind) => `${kind === "broadcast" ? "broadcast" : "favorite first"} ${times[kind].p50 ?? "—"}`)
  .join(" · ") || "—";

// What each event of a request's log means to support ("Why didn't my favorite respond?").
const EVENT_TEXT = {
  created: () => "Booked",
  offered: (e) => "Offered to the favorite",
  acked: () => "The favorite's app received the offer",
  resent: (e) => `Offer sent again (${e.detail}): the app had not confirmed it`,
  declined: () => "Declined",
  fell_back: (e) => `Fell back to every mechanic: ${{ window: "the window expired", declined: "the favorite declined",
    missed_acks: "the favorite's app never confirmed the offer", mechanic_cancelled: "the mechanic gave it back",
    mechanic_deleted: "the mechanic's account was deleted" }[e.detail] || e.detail}`,
  broadcast: () => "Offered to every available mechanic",
  accepted: () => "Accepted",
  mechanic_cancelled: (e) => `Given back by the mechanic${e.detail ? `: ${e.detail}` : ""}`,
  cancelled: (e) => `Cancelled ${e.detail || ""}`,
  completed: () => "Session completed",
};

async function showTimeline(requestId) {
  $("timeline-id").value = requestId;
  try {
    const { events } = await api(token, "GET", `/api/admin/session-requests/${encodeURIComponent(requestId.trim())}/events`);
    showError(errors, null);
    $("timeline").replaceChildren(...events.map((e) => el("li", {},
      el("time", { datetime: e.at }, new Date(e.at).toLocaleTimeString()), " ",
      (EVENT_TEXT[e.kind] || (() => e.kind))(e),
      e.mechanic_name ? ` · ${e.mechanic_name}` : "", e.attempt ? ` · attempt ${e.attempt}` : "")));
    $("timeline").focus?.();
  } catch (error) {
    $("timeline").replaceChildren();
    showError(errors, error);
  }
}

const percent = (rate) => (rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)}%`);

async function refresh() {
  try {
    const [online, open, kpis] = await Promise.all([
      api(token, "GET", "/api/admin/mechanics/online"),
      api(token, "GET", "/api/admin/session-requests"),
      api(token, "GET", "/api/admin/kpis"),
    ]);
    showError(errors, null);
    $("signin").hidden = true;
    $("dashboard").hidden = false;
    $("online-count").textContent = `${online.mechanics.length}`;
    $("online").replaceChildren(...online.mechanics.map((m) => el("li", {}, el("span", {}, el("span", { class: "status-online" }, "● Online "), m.name))));
    $("open").replaceChildren(...open.requests.map((r) =>
      el("tr", {},
        el("td", {}, el("button", { type: "button", class: "link", "aria-label": `Timeline of request ${r.id}`,
          onclick: () => showTimeline(r.id) }, r.id.slice(0, 8))),
        el("td", {}, r.phase || r.status), el("td", {}, r.routing_type), el("td", {}, r.message),
        el("td", {}, new Date(r.created_at).toLocaleTimeString()))));
    const arms = kpis.arms || {};
    const row = (label, pick, target) => el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, pick(kpis)),
      el("td", {}, arms.priority ? pick(arms.priority) : "—"), el("td", {}, arms.control ? pick(arms.control) : "—"),
      el("td", {}, target));
    $("kpis").replaceChildren(
      row("Requests", (k) => `${k.requests}`, ""),
      row("Favorite acceptance rate", (k) => percent(k.favorite_acceptance.rate), "> 70%"),
      row("Fallback rate", (k) => percent(k.fallback.rate), "< 30%"),
      row("Rebook rate", (k) => percent(k.rebook.rate), "> 60%"),
      row("Time to session start, median (min)", (k) => sessionStart(k.time_to_accept_minutes), "—"));
    const ab = kpis.ab_test;
    $("ab").textContent = ab ? `Favorite acceptance, priority minus control: ${ab.favorite_acceptance.difference ?? "—"} ` +
      `(${ab.favorite_acceptance.significant ? "significant" : "not significant yet"}); time to accept: ` +
      `${ab.time_to_accept_minutes.difference ?? "—"} min (${ab.time_to_accept_minutes.significant ? "significant" : "not significant yet"}).` : "";
    for (const [id, metric] of [["chart-time", "time_to_accept"], ["chart-fallback", "fallback_rate"]]) {
      // The server draws the SVG; it is our own markup, inserted as is.
      $(id).innerHTML = await api(token, "GET", `/api/admin/kpis/chart.svg?metric=${metric}&buckets=12&bucket_minutes=60`);
    }
  } catch (error) {
    showError(errors, error);
  }
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  storeToken(KEY, token);
  refresh();
});
$("timeline-form").addEventListener("submit", (event) => {
  event.preventDefault();
  showTimeline($("timeline-id").value);
});
if (token) refresh();
setInterval(() => token && refresh(), 5000);
