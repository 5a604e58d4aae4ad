// The operations page: who is online, workshops and their members, open requests by phase, any request found by
// id, customer, mechanic or time, the KPIs with the A/B split, and charts drawn by the server as SVG.
import { api, el, forgetToken, showError, storedToken, storeToken } from "../common.js";

const KEY = "favdispatch.admin";
const $ = (id) => document.getElementById(id);
const errors = $("errors");
let token = storedToken(KEY);
let refreshTimer = null;

// Errors stay until the operator's next action: the 5 s refresh never wipes one it did not cause.
async function act(action) {
  showError(errors, null);
  try {
    return await action();
  } catch (error) {
    showError(errors, error);
    return undefined;
  }
}

// Minutes as people read them: "4.9 s", "2 min 10 s", "1 h 5 min".
function duration(minutes) {
  if (minutes === null || minutes === undefined) return "—";
  const seconds = minutes * 60;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)} min${whole % 60 ? ` ${whole % 60} s` : ""}`;
  const mins = Math.round(whole / 60);
  return `${Math.floor(mins / 60)} h${mins % 60 ? ` ${mins % 60} min` : ""}`;
}

// A session starts when a mechanic accepts: the median time from booking, favorite-first and broadcast apart.
const sessionStart = (times) => ["priority_broadcast", "broadcast"]
  .filter((kind) => times[kind])
  .map((kind) => `${kind === "broadcast" ? "broadcast" : "favorite first"} ${duration(times[kind].p50)}`)
  .join(" · ") || "—";

// The browser a push went through, from its push service's host.
const PUSH_SERVICES = [["fcm.googleapis.com", "Chrome or Android"], ["mozilla.com", "Firefox"],
  ["push.apple.com", "Safari or iPhone"], ["notify.windows.com", "Edge on Windows"]];

function pushText(detail) {
  const text = detail || "";
  const host = (text.match(/(?:to|by) ([\w.-]+)/) || [])[1] || "";
  const found = PUSH_SERVICES.find(([suffix]) => host.endsWith(suffix));
  const device = found ? `${found[1]} (${host})` : host || "a device";
  if (text.startsWith("sent")) return `Notification sent to ${device}`;
  if (text.startsWith("subscription removed")) return `Notification not delivered: ${device} no longer has this subscription (removed)`;
  return `Notification to ${device} failed: ${text}`;
}

// What each event of a request's log means to support ("Why didn't my favorite respond?").
const EVENT_TEXT = {
  created: () => "Booked",
  offered: () => "Offered to the favorite",
  acked: () => "The favorite's app received the offer",
  resent: (e) => `Offer sent again (${e.detail}): the app had not confirmed it`,
  pushed: (e) => pushText(e.detail),
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
  $("timeline").replaceChildren();
  const found = await act(() => api(token, "GET",
    `/api/admin/session-requests/${encodeURIComponent(requestId.trim())}/events`));
  if (!found) return;
  $("timeline").replaceChildren(...found.events.map((e) => el("li", {},
    el("time", { datetime: e.at }, new Date(e.at).toLocaleTimeString()), " ",
    (EVENT_TEXT[e.kind] || (() => e.kind))(e),
    e.mechanic_name ? ` · ${e.mechanic_name}` : "", e.attempt ? ` · attempt ${e.attempt}` : "")));
  $("timeline-title").scrollIntoView?.({ block: "start" });
}

// A table row whose cells carry their column's name, so that narrow screens can stack them.
function row(headers, ...cells) {
  return el("tr", {}, ...cells.map((cell, i) => el("td", { "data-label": headers[i] }, cell)));
}

const REQUEST_COLUMNS = ["Request", "Phase", "Routing", "Customer sees", "Created"];

function requestRow(r) {
  return row(REQUEST_COLUMNS,
    el("button", { type: "button", class: "link", "aria-label": `Timeline of request ${r.id}`,
      onclick: () => showTimeline(r.id) }, r.id.slice(0, 8)),
    r.phase || r.status, r.routing_type, r.message, new Date(r.created_at).toLocaleString());
}

async function search() {
  const params = new URLSearchParams({ status: "any" });
  for (const [name, id] of [["id", "find-id"], ["customer", "find-customer"], ["mechanic", "find-mechanic"]]) {
    if ($(id).value.trim()) params.set(name, $(id).value.trim());
  }
  for (const [name, id] of [["since", "find-since"], ["until", "find-until"]]) {
    if ($(id).value) params.set(name, new Date($(id).value).toISOString()); // the operator's local time
  }
  const found = await act(() => api(token, "GET", `/api/admin/session-requests?${params}`));
  if (!found) return;
  $("found").replaceChildren(...found.requests.map(requestRow));
  $("found-count").textContent = found.requests.length === 0 ? "No request matches."
    : `${found.requests.length} request${found.requests.length === 1 ? "" : "s"}, newest first.`;
}

// Workshops are drawn when the page opens and after each change, not on every refresh, so a half-typed name stays.
async function loadWorkshops() {
  const { workshops } = await api(token, "GET", "/api/admin/workshops");
  $("workshops").replaceChildren(...workshops.map(workshopCard));
}

// Members are picked by name: the list under the field offers the mechanics whose names match what is typed.
let picks = new Map(); // the option's text -> mechanic id

async function suggest(input, list) {
  const { mechanics } = await api(token, "GET", `/api/admin/mechanics?name=${encodeURIComponent(input.value.trim())}`);
  const named = new Map();
  for (const m of mechanics) named.set(m.name, (named.get(m.name) || 0) + 1);
  picks = new Map(mechanics.map((m) => [named.get(m.name) > 1 ? `${m.name} (${m.id.slice(0, 8)})` : m.name, m.id]));
  list.replaceChildren(...[...picks.keys()].map((text) => el("option", { value: text })));
}

function workshopCard(workshop) {
  const inputId = `add-${workshop.id}`;
  const listId = `names-${workshop.id}`;
  const change = (method, mechanicId) => act(async () => {
    await api(token, method, `/api/admin/workshops/${workshop.id}/members/${encodeURIComponent(mechanicId)}`);
    await loadWorkshops();
  });
  const members = workshop.members.map((m) => el("li", {},
    el("span", {}, el("span", { class: m.is_online ? "status-online" : "status-offline" },
      m.is_online ? "● Online " : "○ Offline "), m.name),
    el("button", { type: "button", "aria-label": `Remove ${m.name} from ${workshop.name}`,
      onclick: () => change("DELETE", m.mechanic_id) }, "Remove")));
  const input = el("input", { id: inputId, list: listId, autocomplete: "off", spellcheck: "false",
    placeholder: "Start typing a name" });
  const list = el("datalist", { id: listId });
  let typing = null;
  input.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => suggest(input, list).catch((error) => showError(errors, error)), 150);
  });
  input.addEventListener("focus", () => suggest(input, list).catch(() => {}));
  const add = async () => {
    const typed = input.value.trim();
    if (!picks.has(typed)) await suggest(input, list).catch(() => {});
    const mechanicId = picks.get(typed);
    if (!mechanicId) {
      showError(errors, new Error(`No mechanic is called "${typed}": pick one from the list under the field.`));
      return;
    }
    await change("PUT", mechanicId);
  };
  return el("li", { class: "stack" },
    el("div", {}, el("strong", {}, workshop.name), " ",
      el("span", { class: "muted" }, `${workshop.members.length} member${workshop.members.length === 1 ? "" : "s"}`),
      el("ul", { class: "cards" }, ...members)),
    el("form", { class: "actions", onsubmit: (event) => { event.preventDefault(); add(); } },
      el("label", { for: inputId, class: "visually-hidden" }, `Mechanic to add to ${workshop.name}`),
      input, list,
      el("button", { type: "submit" }, "Add member"),
      el("button", { type: "button", "aria-label": `Delete workshop ${workshop.name}`, onclick: () => {
        if (!window.confirm(`Delete ${workshop.name}? Its favorites and open priority requests move on.`)) return;
        act(async () => {
          await api(token, "DELETE", `/api/admin/workshops/${workshop.id}`);
          await loadWorkshops();
        });
      } }, "Delete workshop")));
}

const percent = (rate) => (rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)}%`);
const KPI_COLUMNS = ["KPI", "All", "Priority arm", "Control arm", "Target"];

async function refresh() {
  try {
    const [online, open, kpis, presence, whatIf] = await Promise.all([
      api(token, "GET", "/api/admin/mechanics/online"),
      api(token, "GET", "/api/admin/session-requests"),
      api(token, "GET", "/api/admin/kpis"),
      api(token, "GET", "/api/admin/presence-accuracy"),
      api(token, "GET", "/api/admin/kpis/what-if"),
    ]);
    showPresence(presence);
    showWhatIf(whatIf);
    $("signin").hidden = true;
    $("dashboard").hidden = false;
    $("signout").hidden = false;
    $("online-count").textContent = `${online.mechanics.length}`;
    $("online").replaceChildren(...online.mechanics.map((m) => el("li", {}, el("span", {}, el("span", { class: "status-online" }, "● Online "), m.name))));
    $("open").replaceChildren(...open.requests.map(requestRow));
    const arms = kpis.arms || {};
    const kpi = (label, pick, target) => el("tr", {}, el("th", { scope: "row" }, label),
      ...[pick(kpis), arms.priority ? pick(arms.priority) : "—", arms.control ? pick(arms.control) : "—", target]
        .map((cell, i) => el("td", { "data-label": KPI_COLUMNS[i + 1] }, cell)));
    $("kpis").replaceChildren(
      kpi("Requests", (k) => `${k.requests}`, ""),
      kpi("Favorite acceptance rate", (k) => percent(k.favorite_acceptance.rate), "> 70%"),
      kpi("… favorite mechanics", (k) => percent(k.favorite_acceptance.by_provider_type?.independent?.rate), "> 70%"),
      kpi("… favorite workshops", (k) => percent(k.favorite_acceptance.by_provider_type?.workshop?.rate), "> 70%"),
      kpi("Fallback rate", (k) => percent(k.fallback.rate), "< 30%"),
      kpi("Rebook rate", (k) => percent(k.rebook.rate), "> 60%"),
      kpi("Time to session start, median", (k) => sessionStart(k.time_to_accept_minutes), "—"));
    const ab = kpis.ab_test;
    const minutes = ab?.time_to_accept_minutes.difference;
    $("ab").textContent = ab ? `Favorite acceptance, priority minus control: ${ab.favorite_acceptance.difference ?? "—"} ` +
      `(${ab.favorite_acceptance.significant ? "significant" : "not significant yet"}); time to accept: ` +
      `${minutes === null || minutes === undefined ? "—" : `${minutes < 0 ? "−" : "+"}${duration(Math.abs(minutes))}`} ` +
      `(${ab.time_to_accept_minutes.significant ? "significant" : "not significant yet"}).` : "";
    for (const [id, metric] of [["chart-time", "time_to_accept"], ["chart-fallback", "fallback_rate"]]) {
      // Drawn by the server at the width it is shown at, so its text keeps its size; our own markup, as is.
      const width = Math.max(280, Math.min(1600, Math.round($(id).clientWidth || 640)));
      $(id).innerHTML = await api(token, "GET",
        `/api/admin/kpis/chart.svg?metric=${metric}&buckets=12&bucket_minutes=60&width=${width}`);
    }
  } catch (error) {
    showError(errors, error);
  }
}

const PRESENCE_COLUMNS = ["Measure", "Now", "Expected"];

// How right "online" is: the offline lag by how devices went, ghosts, flaps and offers that found nobody.
function showPresence(presence) {
  const [low, high] = presence.expected_offline_lag_s;
  const lag = (cause) => {
    const { count, p50_s: p50, p99_s: p99 } = presence.offline_lag[cause];
    return count ? `p50 ≤ ${p50} s · p99 ≤ ${p99} s (${count})` : "none yet";
  };
  const row = (label, now, expected) => el("tr", {}, el("th", { scope: "row" }, label),
    ...[now, expected].map((cell, i) => el("td", { "data-label": PRESENCE_COLUMNS[i + 1] }, cell)));
  $("presence").replaceChildren(
    row("Offline after a silent device's last frame", lag("silent"), `${low}–${high} s`),
    row("Offline after a crashed server's last heartbeat", lag("expired"), `${low}–${high} s and Redis's expiry`),
    row("Ghosts: shown online, not heard within the TTL", `${presence.ghosts}`, "0"),
    row("Flaps: back online within a minute", `${presence.flaps}`, "few"),
    row("Priority offers that found no device", `${presence.offers_to_offline}`, "0"));
}

const WHAT_IF_COLUMNS = ["Window", "Favorite acceptance", "Fallback rate", "Time to session start"];

// The current window and a few around it, replayed against the requests served, each figure with its 95% interval.
function showWhatIf(whatIf) {
  const within = (i, show) => (i.value === null ? "—" : `${show(i.value)} (${show(i.low)}–${show(i.high)})`);
  $("whatif").replaceChildren(...whatIf.windows.map((w) => {
    const current = w.priority_window_s === whatIf.current_priority_window_s;
    const label = `${duration(w.priority_window_s / 60)}${current ? " (now)" : ""}${w.beyond_the_log ? " *" : ""}`;
    return el("tr", current ? { class: "current" } : {}, el("th", { scope: "row" }, label),
      ...[within(w.favorite_acceptance, percent), within(w.fallback, percent),
        within(w.time_to_start_minutes, (m) => (m === null ? "—" : duration(m)))]
        .map((cell, i) => el("td", { "data-label": WHAT_IF_COLUMNS[i + 1] }, cell)));
  }));
  const served = whatIf.windows[0]?.requests ?? 0;
  $("whatif-note").textContent = `From ${served} priority request${served === 1 ? "" : "s"} served. ` +
    "* Longer than any window served: favorite acceptance is a lower bound. " + whatIf.cannot_know;
}

function signedIn() {
  refresh();
  loadWorkshops().catch((error) => showError(errors, error));
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => token && refresh(), 5000);
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  storeToken(KEY, token);
  showError(errors, null);
  signedIn();
});
$("signout").addEventListener("click", () => {
  clearInterval(refreshTimer);
  token = "";
  forgetToken(KEY);
  showError(errors, null);
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("token").value = "";
  $("token").focus();
});
$("workshop-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(async () => {
    await api(token, "POST", "/api/admin/workshops", { name: $("workshop-name").value });
    $("workshop-name").value = "";
    await loadWorkshops();
  });
});
$("timeline-form").addEventListener("submit", (event) => {
  event.preventDefault();
  showTimeline($("timeline-id").value);
});
$("find-form").addEventListener("submit", (event) => {
  event.preventDefault();
  search();
});
if (token) signedIn();
