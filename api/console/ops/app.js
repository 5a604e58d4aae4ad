// The operations page: who is online, open requests by phase, the KPIs with the A/B split, and charts drawn by
// the server as SVG.
import { api, el, showError, storedToken, storeToken } from "../common.js";

const KEY = "favdispatch.admin";
const $ = (id) => document.getElementById(id);
const errors = $("errors");
let token = storedToken(KEY);

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
      el("tr", {}, el("td", {}, r.phase || r.status), el("td", {}, r.routing_type), el("td", {}, r.message),
        el("td", {}, new Date(r.created_at).toLocaleTimeString()))));
    const arms = kpis.arms || {};
    const row = (label, pick, target) => el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, pick(kpis)),
      el("td", {}, arms.priority ? pick(arms.priority) : "—"), el("td", {}, arms.control ? pick(arms.control) : "—"),
      el("td", {}, target));
    $("kpis").replaceChildren(
      row("Requests", (k) => `${k.requests}`, ""),
      row("Favorite acceptance rate", (k) => percent(k.favorite_acceptance.rate), "> 70%"),
      row("Fallback rate", (k) => percent(k.fallback.rate), "< 30%"),
      row("Rebook rate", (k) => percent(k.rebook.rate), "> 60%"));
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
if (token) refresh();
setInterval(() => token && refresh(), 5000);
