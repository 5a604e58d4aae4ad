// The operations page: who is online, workshops and their members, open requests by phase, the KPIs with the
// A/B split, and charts drawn by the server as SVG.
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
    mechanic_deleted: "the mechanic's account was deleted",
    workshop_gone: "the workshop was deleted or has no mechanics left" }[e.detail] || e.detail}`,
  broadcast: () => "Offered to every available mechanic",
  accepted: (e) => (e.detail === "by the favorite" ? "Accepted by the favorite" : "Accepted"),
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

// Workshops are drawn when the page opens and after each change, not on every refresh, so a half-typed id stays.
async function loadWorkshops() {
  const { workshops } = await api(token, "GET", "/api/admin/workshops");
  $("workshops").replaceChildren(...workshops.map(workshopCard));
}

function workshopCard(workshop) {
  const inputId = `add-${workshop.id}`;
  const change = (method, mechanicId) => async () => {
    try {
      await api(token, method, `/api/admin/workshops/${workshop.id}/members/${encodeURIComponent(mechanicId.trim())}`);
      showError(errors, null);
      await loadWorkshops();
    } catch (error) {
      showError(errors, error);
    }
  };
  const members = workshop.members.map((m) => el("li", {},
    el("span", {}, el("span", { class: m.is_online ? "status-online" : "status-offline" },
      m.is_online ? "● Online " : "○ Offline "), m.name),
    el("button", { type: "button", "aria-label": `Remove ${m.name} from ${workshop.name}`,
      onclick: change("DELETE", m.mechanic_id) }, "Remove")));
  return el("li", { class: "stack" },
    el("div", {}, el("strong", {}, workshop.name), " ",
      el("span", { class: "muted" }, `${workshop.members.length} member${workshop.members.length === 1 ? "" : "s"}`),
      el("ul", { class: "cards" }, ...members)),
    el("form", { class: "actions", onsubmit: (event) => { event.preventDefault(); change("PUT", $(inputId).value)(); } },
      el("label", { for: inputId, class: "visually-hidden" }, `Mechanic id to add to ${workshop.name}`),
      el("input", { id: inputId, autocomplete: "off", spellcheck: "false", placeholder: "Mechanic id" }),
      el("button", { type: "submit" }, "Add member"),
      el("button", { type: "button", "aria-label": `Delete workshop ${workshop.name}`, onclick: async () => {
        if (!window.confirm(`Delete ${workshop.name}? Its favorites and open priority requests move on.`)) return;
        try {
          await api(token, "DELETE", `/api/admin/workshops/${workshop.id}`);
          await loadWorkshops();
        } catch (error) {
          showError(errors, error);
        }
      } }, "Delete workshop")));
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
      row("… favorite mechanics", (k) => percent(k.favorite_acceptance.by_provider_type?.independent?.rate), "> 70%"),
      row("… favorite workshops", (k) => percent(k.favorite_acceptance.by_provider_type?.workshop?.rate), "> 70%"),
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
  loadWorkshops().catch((error) => showError(errors, error));
});
$("workshop-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api(token, "POST", "/api/admin/workshops", { name: $("workshop-name").value });
    $("workshop-name").value = "";
    showError(errors, null);
    await loadWorkshops();
  } catch (error) {
    showError(errors, error);
  }
});
$("timeline-form").addEventListener("submit", (event) => {
  event.preventDefault();
  showTimeline($("timeline-id").value);
});
if (token) {
  refresh();
  loadWorkshops().catch((error) => showError(errors, error));
}
setInterval(() => token && refresh(), 5000);
