// LastWatt operator console: one page, hash routes, the service's own API, no CDN.
// Charts are uPlot and the map Leaflet, both vendored into the package at build time.
"use strict";

const POLL_MS = 2000; // status refresh; the stale banner shows after one failed refresh
const STALE_MS = 3 * POLL_MS;
const TIER_COLOURS = { priority: "#c0392b", household: "#2e86c1", business: "#e5a00d" };
const TIERS = ["priority", "household", "business"];

const state = {
  status: null, lastOk: 0, failing: false, me: null, view: null, timer: null, alarms: null,
  charts: [], map: null,
};

// --- small helpers ----------------------------------------------------------------------
const $ = (id) => document.getElementById(id);
const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
const coin = (minor) => (minor === null || minor === undefined ? "–" : (minor / 1e6).toFixed(3));
// "12.5" coin → 12500000 micro-coins, exactly (no float rounding); null if not a plain amount.
function toMinor(text) {
  const m = /^\s*(\d{1,10})(?:[.,](\d{1,6}))?\s*$/.exec(String(text));
  return m ? Number(m[1]) * 1e6 + Number((m[2] || "").padEnd(6, "0")) : null;
}
const tz = () => (state.status ? state.status.timezone : "UTC");
const localTime = (iso, opts) => new Date(iso).toLocaleString(document.documentElement.lang, {
  timeZone: tz(), hour12: false, ...(opts || {}) });
const ago = (ms) => (ms < 90e3 ? Math.round(ms / 1e3) + " s" : Math.round(ms / 6e4) + " min");

function authHeader() {
  const token = sessionStorage.getItem("lw_auth");
  return token ? { Authorization: "Basic " + token } : {};
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    cache: "no-store", ...options,
    headers: { ...authHeader(), ...(options.body ? { "Content-Type": "application/json" } : {}),
      ...(options.headers || {}) },
  });
  if (!response.ok) {
    let detail = response.statusText;
    try { const body = await response.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response.json();
}

const isOperator = () => state.me && state.me.role === "operator";
// An answer that arrives after the operator moved to another page must not be drawn into
// it (it would show, and let them save, another connection's customer): a view's loads
// check that the element they drew at start is still on the page.
const gone = (el) => !el || !el.isConnected;

// --- header: clock, mode, alarms, stale banner -----------------------------------------
function showHeader() {
  const s = state.status;
  if (s) {
    $("site").textContent = s.site;
    $("clock").textContent = localTime(s.time) + " (" + s.timezone + ")";
    const mode = s.mode || "unknown";
    const badge = $("mode");
    badge.className = "badge mode-" + mode;
    badge.textContent = t("mode_" + mode);
  }
  const stale = $("stale");
  const age = Date.now() - state.lastOk;
  if (state.failing || (state.lastOk && age > STALE_MS)) {
    stale.hidden = false;
    $("mode").className = "badge mode-unknown"; // never a green badge over old news
    $("mode").textContent = "?";
    stale.textContent = t(state.failing ? "stale_unreachable" : "stale_old", { age: ago(age) });
    document.body.classList.add("is-stale");
  } else {
    stale.hidden = true;
    document.body.classList.remove("is-stale");
  }
  // The header counts what needs the operator: warnings and critical alarms not yet seen.
  const open = (state.alarms && state.alarms.unacknowledged) || {};
  const count = (open.warning || 0) + (open.critical || 0);
  const alarmBadge = $("alarm-count");
  alarmBadge.hidden = !count;
  alarmBadge.textContent = "⚠ " + count;
  $("updated").textContent = state.lastOk ? new Date(state.lastOk).toLocaleTimeString() : "–";
}

async function poll() {
  try {
    state.status = await api("/api/status");
    state.lastOk = Date.now();
    state.failing = false;
    if (isOperator()) {
      try { state.alarms = await api("/api/alarms"); } catch (e) { state.alarms = null; }
    }
  } catch (error) {
    // A private noticeboard answers 401 to anonymous readers: that is a sign-in, not an outage.
    state.failing = !(error instanceof ApiError && error.status === 401);
    if (!state.failing && !state.me && !$("login-dialog").open) $("login").click();
  }
  showHeader();
  if (!state.failing && state.view && state.view.refresh) {
    try { await state.view.refresh(); } catch (error) { showError(error); }
  }
}

function showError(error) {
  const box = $("view-error");
  if (box) { box.hidden = false; box.textContent = t("error") + ": " + error.message; }
}

// --- session --------------------------------------------------------------------------
async function loadMe() {
  state.me = null;
  if (sessionStorage.getItem("lw_auth")) {
    try { state.me = await api("/api/me"); } catch (error) {
      if (error.status === 401) sessionStorage.removeItem("lw_auth");
    }
  }
  $("who").textContent = state.me ? state.me.name + " (" + state.me.role + ")" : "";
  $("login").hidden = !!state.me;
  $("logout").hidden = !state.me;
  for (const link of document.querySelectorAll("#nav a[data-role]")) {
    link.hidden = !state.me || state.me.role !== link.dataset.role;
  }
}

function setupSession() {
  const dialog = $("login-dialog");
  $("login").addEventListener("click", () => { $("login-error").hidden = true; dialog.showModal(); });
  $("login-cancel").addEventListener("click", () => dialog.close());
  $("logout").addEventListener("click", async () => {
    sessionStorage.removeItem("lw_auth");
    await loadMe();
    route();
  });
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = $("login-user").value.trim();
    const password = $("login-password").value;
    sessionStorage.setItem("lw_auth", btoa(unescape(encodeURIComponent(user + ":" + password))));
    await loadMe();
    if (!state.me) {
      $("login-error").hidden = false;
      $("login-error").textContent = t("wrong_login");
      return;
    }
    $("login-password").value = "";
    dialog.close();
    route();
  });
  $("lang").addEventListener("click", () => {
    const next = document.documentElement.lang === "fr" ? "en" : "fr";
    localStorage.setItem("lw_lang", next);
    applyLanguage(next);
    route();
  });
}

function applyLanguage(lang) {
  document.documentElement.lang = lang;
  $("lang").textContent = lang === "fr" ? "EN" : "FR";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  showHeader();
}

// --- charts ----------------------------------------------------------------------------
function destroyCharts() {
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
  if (state.map) { state.map.remove(); state.map = null; }
}

function nowLine(nowSeconds) {
  return {
    hooks: {
      draw: [(u) => {
        if (nowSeconds === null) return;
        const x = u.valToPos(nowSeconds, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#111";
        ctx.setLineDash([4, 4]);
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.restore();
      }],
    },
  };
}

function chart(el, series, data, opts = {}) {
  const width = Math.max(280, el.clientWidth || 600);
  const options = {
    width, height: opts.height || 240, data,
    series: [{}, ...series.map((s) => ({ points: { show: false }, ...s }))],
    scales: { x: { time: true }, ...(opts.scales || {}) },
    axes: opts.axes || [{}, { label: opts.yLabel || "kW" }],
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), tz()),
    plugins: opts.nowSeconds !== undefined ? [nowLine(opts.nowSeconds)] : [],
    legend: { live: true },
  };
  const instance = new uPlot(options, data, el);
  state.charts.push(instance);
  return instance;
}

const seconds = (iso) => Date.parse(iso) / 1e3;

// --- overview --------------------------------------------------------------------------
function overviewView() {
  $("view").innerHTML = `
    <p id="view-error" class="error" hidden></p>
    <section class="cards">
      <div class="card"><h2>${t("pv_now")}</h2><div class="big"><span id="pv-now">–</span> kW</div>
        <div class="muted">${t("forecast")} P50 <span id="pv-p50">–</span> kW (P10 <span id="pv-p10">–</span>)</div></div>
      <div class="card"><h2>${t("battery")}</h2><div class="big"><span id="soc">–</span> %</div>
        <div class="muted"><span id="soc-kwh">–</span> kWh · <span id="battery-kw">–</span> kW · ${t("reserve")} <span id="reserve">–</span></div></div>
      <div class="card"><h2>${t("load")}</h2><table class="tiers"><tbody>
        ${TIERS.map((tier) => `<tr><th><i class="dot c-${tier}"></i>${t(tier)}</th><td id="load-${tier}">–</td><td>kW</td></tr>`).join("")}
      </tbody></table></div>
      <div class="card"><h2>${t("plan")}</h2><div class="big" id="plan-status">–</div>
        <div class="muted">${t("issued")} <span id="plan-issued">–</span></div>
        <div id="violations" class="muted"></div></div>
    </section>
    <section class="card"><h2>${t("dark_why")}</h2><div id="dark"></div></section>
    <section class="card"><h2>${t("plan_chart")}</h2><div id="plan-chart" class="chart"></div></section>
    <section class="two">
      <div class="card"><h2>${t("connections")} <span id="conn-summary" class="muted"></span></h2>
        <div class="scroll"><table id="connections"><thead><tr><th>id</th><th>${t("kind")}</th><th>${t("relay")}</th><th>${t("credit")}</th><th>${t("balance")}</th></tr></thead><tbody></tbody></table></div></div>
      <div class="card"><h2>${t("stakes")} <span id="round" class="muted"></span></h2>
        <div class="scroll"><table id="stakes"><thead><tr><th>${t("business")}</th><th>${t("this_round")}</th><th>${t("next_round")}</th></tr></thead><tbody></tbody></table></div></div>
    </section>`;
  let planIssued = null;
  return {
    async refresh() {
      const s = state.status;
      if (s) {
        $("pv-now").textContent = num(s.pv_kw, 2);
        $("pv-p50").textContent = s.pv_forecast_kw ? num(s.pv_forecast_kw.p50, 2) : "–";
        $("pv-p10").textContent = s.pv_forecast_kw ? num(s.pv_forecast_kw.p10, 2) : "–";
        $("soc").textContent = s.soc_fraction === null ? "–" : num(100 * s.soc_fraction, 0);
        $("soc-kwh").textContent = num(s.soc_kwh, 1);
        $("battery-kw").textContent = num(s.battery_kw, 2);
        $("reserve").textContent = s.reserve_enabled ? t("on") : t("off");
        for (const tier of TIERS) $("load-" + tier).textContent = num((s.load_kw || {})[tier], 2);
        $("round").textContent = "#" + s.staking_round;
      }
      const card = $("plan-status");
      const [schedule, connections, stakes] = await Promise.all([
        api("/api/schedule?periods=1").catch(() => null),
        api("/api/connections").catch(() => null),
        api("/api/stakes").catch(() => null),
      ]);
      if (gone(card)) return;
      if (schedule) {
        $("plan-status").textContent = schedule.status;
        $("plan-status").className = "big status-" + schedule.status;
        $("plan-issued").textContent = localTime(schedule.issued_at);
        const v = (schedule.summary && schedule.summary.violations_kwh) || {};
        const shown = Object.entries(v).filter(([, kwh]) => kwh > 0.0005);
        $("violations").innerHTML = t("violations") + ": " + (shown.length
          ? shown.map(([k, kwh]) => `<b class="off">${esc(k)} ${num(kwh, 2)} kWh</b>`).join(", ") : t("none"));
        showDark(schedule, connections);
        if (schedule.issued_at !== planIssued) {
          planIssued = schedule.issued_at;
          drawPlan();
        }
      }
      if (connections) showConnections(connections);
      if (stakes) showStakes(stakes);
    },
  };
}

function darkConnections(connections) {
  return connections.connections.filter((c) => c.relay_closed === false || c.group_closed === false || c.meter_open);
}

function showDark(schedule, connections) {
  if (!connections) return;
  const dark = darkConnections(connections);
  if (!dark.length) { $("dark").innerHTML = `<p class="on">${t("dark_none")}</p>`; return; }
  const reasonOf = {};
  for (const r of schedule.reasons || []) reasonOf[r.unit] = r.reason;
  const counts = {};
  for (const c of dark) {
    let why = "unknown";
    if (c.hold) why = "operator_hold";
    else if (c.credit === "disconnected") why = "no_credit";
    else if (c.meter_open) why = c.meter_open; // tripped on its limit, or its budget used up
    else why = reasonOf[c.relay_group] || reasonOf[c.id] || why;
    (counts[why] = counts[why] || []).push(c.id);
  }
  $("dark").innerHTML = "<ul class='reasons'>" + Object.entries(counts)
    .sort((a, b) => b[1].length - a[1].length)
    .map(([why, ids]) => `<li><b>${ids.length}</b> ${esc(reasonText(why))} <span class="muted">${ids.slice(0, 8).map(esc).join(", ")}${ids.length > 8 ? "…" : ""}</span></li>`)
    .join("") + "</ul>";
}

async function drawPlan() {
  const plan = await api("/api/plan").catch(() => null);
  const el = $("plan-chart");
  if (!plan || !el) return;
  for (const old of state.charts.splice(0)) old.destroy();
  el.innerHTML = "";
  const rows = plan.periods.slice(0, 96);
  const xs = rows.map((r) => seconds(r.time));
  let running = rows.map(() => 0);
  const stacks = TIERS.map((tier) => {
    running = running.map((v, i) => v + (rows[i]["served_" + tier + "_kw"] || 0));
    return running.slice();
  });
  const series = [
    // Cumulative sums drawn largest first with opaque fills read as a stack.
    ...TIERS.map((tier) => ({ label: t(tier), stroke: TIER_COLOURS[tier], fill: TIER_COLOURS[tier], scale: "kW" })).reverse(),
    { label: t("pv_forecast"), stroke: "#1d7a3a", width: 2, scale: "kW" },
    { label: t("soc") + " kWh", stroke: "#6c3483", dash: [6, 3], scale: "kWh" },
    { label: t("reserve") + " kWh", stroke: "#999", dash: [2, 2], scale: "kWh" },
  ];
  const data = [xs, ...stacks.slice().reverse(), rows.map((r) => r.pv_forecast_kw),
    rows.map((r) => r.soc_kwh), rows.map((r) => (r.reserve_kwh === undefined ? null : r.reserve_kwh))];
  chart(el, series, data, {
    nowSeconds: state.status ? seconds(state.status.time) : null,
    scales: { kW: {}, kWh: {} },
    axes: [{}, { scale: "kW", label: "kW" }, { scale: "kWh", label: "kWh", side: 1, grid: { show: false } }],
  });
}

function showConnections(data) {
  const rows = data.connections;
  const off = darkConnections(data).length;
  const noCredit = rows.filter((c) => c.credit === "disconnected").length;
  $("conn-summary").textContent = `${rows.length} · ${off} ${t("off")} · ${noCredit} ${t("credit")} 0`;
  const link = (id) => (isOperator() ? `<a href="#/c/${encodeURIComponent(id)}">${esc(id)}</a>` : esc(id));
  document.querySelector("#connections tbody").innerHTML = rows.map((c) => {
    const on = c.relay_closed !== false && c.group_closed !== false;
    return `<tr><td>${link(c.id)}</td><td>${t(c.kind)}</td><td class="${on ? "on" : "off"}">${on ? t("on") : t("off")}</td>` +
      `<td>${esc(c.credit || "–")}</td><td class="num">${c.balance_minor === undefined ? "–" : coin(c.balance_minor)}</td></tr>`;
  }).join("");
}

function showStakes(data) {
  const ids = Object.keys(data.current || {}).sort();
  document.querySelector("#stakes tbody").innerHTML = ids.map((b) =>
    `<tr><td>${esc(b)}</td><td class="num">${data.current[b]}</td><td class="num">${data.next[b]}</td></tr>`).join("");
}

// --- alarms ----------------------------------------------------------------------------
function needLogin() {
  $("view").innerHTML = `<p class="card">${t("need_login")}</p>`;
  return { refresh() {} };
}

function alarmsView() {
  if (!isOperator()) return needLogin();
  $("view").innerHTML = `<p id="view-error" class="error" hidden></p><section class="card"><h2>${t("alarms")}</h2>
    <div class="scroll"><table id="alarms"><thead><tr><th>${t("severity")}</th><th>${t("subject")}</th><th>${t("message")}</th>
    <th>${t("first_seen")}</th><th>${t("last_seen")}</th><th>${t("count")}</th><th></th></tr></thead><tbody></tbody></table></div></section>`;
  $("alarms").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-ack]");
    if (!button) return;
    button.disabled = true;
    try { await api(`/api/alarms/${button.dataset.ack}/ack`, { method: "POST" }); await poll(); } catch (error) { showError(error); }
  });
  return {
    async refresh() {
      const data = state.alarms || await api("/api/alarms");
      const rows = data.alarms || [];
      document.querySelector("#alarms tbody").innerHTML = rows.length ? rows.map((a) =>
        `<tr class="sev-${esc(a.severity)}"><td>${esc(a.severity)}</td><td>${esc(a.subject)}</td><td>${esc(a.message)}</td>` +
        `<td>${localTime(a.first_seen)}</td><td>${localTime(a.last_seen)}</td><td class="num">${a.count}</td>` +
        `<td>${a.acked_by ? t("acked") + " " + esc(a.acked_by) : `<button type="button" data-ack="${a.id}">${t("ack")}</button>`}</td></tr>`).join("")
        : `<tr><td colspan="7">${t("no_alarms")}</td></tr>`;
    },
  };
}

// --- history ---------------------------------------------------------------------------
function historyView() {
  let hours = 24;
  $("view").innerHTML = `<p id="view-error" class="error" hidden></p>
    <div class="row"><h2>${t("history")}</h2>
      <button type="button" data-hours="24" class="pill">${t("day")}</button>
      <button type="button" data-hours="168" class="pill">${t("week")}</button></div>
    <section class="card"><h2>${t("pv_actual")} / ${t("pv_fc")}</h2><div id="h-pv" class="chart"></div></section>
    <section class="card"><h2>${t("load_tiers")}</h2><div id="h-load" class="chart"></div></section>
    <section class="card"><h2>${t("soc_reserve")}</h2><div id="h-soc" class="chart"></div></section>
    <section class="card"><h2>${t("plan_vs")}</h2><div id="h-plan" class="chart"></div></section>`;
  let last = 0;
  let drawing = null;
  function draw() { // one drawing at a time: a poll may ask while the last one awaits data
    drawing = drawing || drawHistory().finally(() => { drawing = null; });
    return drawing;
  }
  async function drawHistory() {
    const box = $("h-pv");
    const [telemetry, plan] = await Promise.all([
      api(`/api/telemetry?hours=${hours}`), api("/api/plan").catch(() => null)]);
    if (gone(box)) return;
    destroyCharts();
    const samples = telemetry.samples || [];
    const xs = samples.map((s) => seconds(s.time));
    const planRows = plan ? plan.periods : [];
    const planAt = (x) => {
      let found = null;
      for (const r of planRows) { if (seconds(r.time) <= x) found = r; else break; }
      return found;
    };
    const now = state.status ? seconds(state.status.time) : null;
    chart($("h-pv"), [
      { label: t("pv_actual"), stroke: "#1d7a3a", width: 2 },
      { label: t("pv_fc"), stroke: "#7dcea0", dash: [5, 3] },
    ], [xs, samples.map((s) => s.pv_kw), xs.map((x) => { const r = planAt(x); return r ? r.pv_forecast_kw : null; })], { nowSeconds: now });
    chart($("h-load"), TIERS.map((tier) => ({ label: t(tier), stroke: TIER_COLOURS[tier], width: 2 })),
      [xs, ...TIERS.map((tier) => samples.map((s) => (s.load_kw || {})[tier] ?? null))], { nowSeconds: now });
    chart($("h-soc"), [
      { label: t("soc") + " kWh", stroke: "#6c3483", width: 2 },
      { label: t("reserve") + " kWh", stroke: "#999", dash: [2, 2] },
    ], [xs, samples.map((s) => s.soc_kwh), xs.map((x) => { const r = planAt(x); return r && r.reserve_kwh !== undefined ? r.reserve_kwh : null; })], { yLabel: "kWh", nowSeconds: now });
    chart($("h-plan"), TIERS.flatMap((tier) => [
      { label: t(tier) + " " + t("planned"), stroke: TIER_COLOURS[tier], dash: [5, 3] },
      { label: t(tier) + " " + t("delivered"), stroke: TIER_COLOURS[tier], width: 2 },
    ]), [xs, ...TIERS.flatMap((tier) => [
      xs.map((x) => { const r = planAt(x); return r ? r["served_" + tier + "_kw"] : null; }),
      samples.map((s) => (s.load_kw || {})[tier] ?? null)])], { nowSeconds: now });
    last = Date.now();
  }
  $("view").addEventListener("click", (event) => {
    const b = event.target.closest("button[data-hours]");
    if (b) { hours = Number(b.dataset.hours); draw().catch(showError); }
  });
  return { async refresh() { if (Date.now() - last > 30e3) await draw(); } };
}

// --- customers and a connection's page --------------------------------------------------
function customersView() {
  if (!isOperator()) return needLogin();
  let sort = "id", desc = false, query = "";
  $("view").innerHTML = `<p id="view-error" class="error" hidden></p><section class="card"><h2>${t("customers")} <span id="c-total" class="muted"></span></h2>
    <input id="c-search" type="search" placeholder="${t("search")}" aria-label="${t("search")}">
    <div class="scroll"><table id="customers"><thead><tr>
      ${["id", "name", "phone", "connections", "plan"].map((k) => `<th><button type="button" class="link" data-sort="${k}">${k === "plan" ? t("plan_name") : k === "connections" ? t("connections") : t(k === "id" ? "id" : k)}</button></th>`).join("")}
      <th>${t("wallet")}</th></tr></thead><tbody></tbody></table></div></section>`;
  async function load() {
    const params = new URLSearchParams({ q: query, sort, desc, limit: 500 });
    const table = $("customers");
    const page = await api("/api/customers?" + params);
    if (gone(table)) return;
    $("c-total").textContent = page.total;
    document.querySelector("#customers tbody").innerHTML = page.customers.map((c) =>
      `<tr><td>${esc(c.id)}</td><td>${esc(c.name)}</td><td>${esc(c.phone || "")}</td>` +
      `<td>${c.connections.map((id) => `<a href="#/c/${encodeURIComponent(id)}">${esc(id)}</a>`).join(" ")}</td>` +
      `<td>${esc(c.plan || "")}</td><td>${esc(c.wallet || "")}</td></tr>`).join("");
  }
  let pending = null;
  $("c-search").addEventListener("input", (event) => {
    query = event.target.value;
    clearTimeout(pending);
    pending = setTimeout(() => load().catch(showError), 250);
  });
  document.querySelector("#customers thead").addEventListener("click", (event) => {
    const b = event.target.closest("button[data-sort]");
    if (!b) return;
    desc = sort === b.dataset.sort ? !desc : false;
    sort = b.dataset.sort;
    load().catch(showError);
  });
  load().catch(showError);
  return { refresh() {} };
}

function connectionView(id) {
  if (!state.me) return needLogin();
  $("view").innerHTML = `<p id="view-error" class="error" hidden></p><h2 id="cp-title">${esc(id)}</h2>
    <section class="cards"><div class="card" id="cp-facts"></div><div class="card" id="cp-customer"></div><div class="card" id="cp-service-plan" hidden></div></section>
    <section id="cp-contracts" class="card" hidden><h2>${t("contracts")}</h2><div class="scroll"><table id="cp-contract-table">${standingHead()}<tbody></tbody></table></div></section>
    <section class="card"><h2>${t("readings")}</h2><p id="cp-readings-none" class="muted" hidden>${t("no_readings")}</p><div id="cp-readings" class="chart"></div></section>
    <section class="two"><div class="card"><h2>${t("transactions")}</h2><div class="scroll"><table id="cp-tx"><thead><tr><th>${t("time")}</th><th>${t("amount")}</th><th>${t("code")}</th><th></th></tr></thead><tbody></tbody></table></div>
      ${isOperator() ? refundForm() : ""}</div>
    <div class="card"><h2>${t("plan_reasons")}</h2><div class="scroll"><table id="cp-plan"><thead><tr><th>${t("time")}</th><th>${t("closed")}</th><th>${t("allotment")}</th><th>${t("reason")}</th></tr></thead><tbody></tbody></table></div></div></section>
    <section class="card"><h2>${t("decisions")}</h2><div class="scroll"><table id="cp-decisions"><thead><tr><th>${t("time")}</th><th>kWh</th><th>${t("amount")}</th><th>${t("balance")}</th><th>${t("relay")}</th><th>${t("credit")}</th></tr></thead><tbody></tbody></table></div></section>`;
  const HOURS = 48; // the page's window of readings (the API's default)
  const title = $("cp-title");
  async function load(first) {
    const page = await api(`/api/connections/${encodeURIComponent(id)}/page?hours=${HOURS}`);
    if (gone(title)) return;
    const c = page.connection;
    $("cp-facts").innerHTML = `<h2>${esc(c.id)}</h2><div>${t(c.kind)} · ${esc(c.tariff)}${c.relay_group ? " · " + esc(c.relay_group) : ""}</div>
      <div class="big">${coin(page.balance_minor)} <small>coin</small></div><div>${t("credit")}: ${esc(page.credit || "–")}</div>
      ${page.hold ? `<div class="off">${t("reason")}: ${esc(page.hold.reason)}</div>` : ""}`;
    const cust = page.customer;
    // The customer card is drawn once: a refresh must not wipe what the operator is typing.
    if (first && isOperator()) {
      const v = cust || { name: "", phone: "", plan: "", wallet: "", language: "fr", connections: [id] };
      $("cp-customer").innerHTML = `<form id="cust-form" class="form">
        <label>${t("name")} <input name="name" value="${esc(v.name)}" required maxlength="120"></label>
        <label>${t("phone")} <input name="phone" value="${esc(v.phone || "")}" maxlength="20"></label>
        <label>${t("plan_name")} <input name="plan" value="${esc(v.plan || "")}" maxlength="120"></label>
        <label>${t("wallet")} <input name="wallet" value="${esc(v.wallet || "")}" maxlength="64"></label>
        <label>FR/EN <select name="language"><option value="fr"${v.language === "fr" ? " selected" : ""}>fr</option><option value="en"${v.language === "en" ? " selected" : ""}>en</option></select></label>
        <button type="submit">${t("save")}</button> <span id="cust-msg" class="muted"></span></form>`;
      $("cust-form").addEventListener("submit", async (event) => {
        event.preventDefault();
        const f = new FormData(event.target);
        const body = { name: f.get("name"), phone: f.get("phone") || null, plan: f.get("plan") || null,
          wallet: f.get("wallet") || null, language: f.get("language"), connections: v.connections };
        try {
          await api(`/api/customers/${encodeURIComponent(cust ? cust.id : id)}`, { method: "PUT", body: JSON.stringify(body) });
          $("cust-msg").textContent = t("saved");
        } catch (error) { $("cust-msg").textContent = error.message; }
      });
    } else if (first) {
      $("cp-customer").innerHTML = cust ? `<h2>${esc(cust.name)}</h2><div>${esc(cust.phone || "")}</div>` : "";
    }
    destroyCharts();
    const r = page.readings;
    const xs = [], wh = [];
    for (let i = 1; i < r.length; i++) {
      xs.push(seconds(r[i].time));
      wh.push(Math.max(0, r[i].import_wh - r[i - 1].import_wh) - Math.max(0, r[i].export_wh - r[i - 1].export_wh));
    }
    // A fixed window: with one reading or none, uPlot would otherwise span years.
    const end = seconds(state.status ? state.status.time : new Date().toISOString());
    $("cp-readings-none").hidden = xs.length > 0;
    chart($("cp-readings"), [{ label: t("energy_wh"), stroke: "#2e86c1", fill: "#2e86c133" }], [xs, wh],
      { yLabel: "Wh", scales: { x: { time: true, range: () => [end - HOURS * 3600, end] } }, nowSeconds: end });
    document.querySelector("#cp-tx tbody").innerHTML = page.transactions.map((x) =>
      `<tr data-batch="${esc(x.batch)}"><td>${localTime(x.time)}</td><td class="num ${x.amount_minor < 0 ? "off" : "on"}">${coin(x.amount_minor)}</td>` +
      `<td>${esc(x.code)}${x.note ? `<div class="note">${t("refund_reason")}: ${esc(x.note)}</div>` : ""}</td><td class="muted">${esc(x.other)}</td></tr>`).join("");
    $("cp-contracts").hidden = !page.contracts.length;
    document.querySelector("#cp-contract-table tbody").innerHTML = page.contracts.map(standingRow).join("");
    if (isOperator()) showRefundPayments(page);
    const decided = await api(`/api/meters/${encodeURIComponent(id)}/decisions?limit=48`).catch(() => ({ decisions: [] }));
    if (gone(title)) return;
    document.querySelector("#cp-decisions tbody").innerHTML = decided.decisions.map((d) =>
      `<tr><td>${localTime(d.hour, { hour: "2-digit", minute: "2-digit", day: "2-digit" })}</td><td class="num">${num((d.import_wh - d.export_wh) / 1000, 3)}</td>` +
      `<td class="num">${coin(d.payout_minor - d.charge_minor)}</td><td class="num">${coin(d.balance_minor)}</td>` +
      `<td class="${d.connected ? "on" : "off"}">${d.connected ? t("on") : t("off")}</td><td>${esc(d.state)}</td></tr>`).join("");
    document.querySelector("#cp-plan tbody").innerHTML = page.plan.map((p) =>
      `<tr><td>${localTime(p.time, { hour: "2-digit", minute: "2-digit", day: "2-digit" })}</td><td class="${p.closed === false ? "off" : "on"}">${p.closed === false ? t("off") : t("on")}</td>` +
      `<td class="num">${num(p.allotment_kw, 2)}</td><td>${p.reason ? esc(reasonText(p.reason)) : ""}</td></tr>`).join("");
  }
  if (isOperator()) {
    setupRefund(id, () => load(false).catch(showError));
    setupServicePlan(id, title).catch(showError);
  }
  load(true).catch(showError);
  let last = Date.now();
  return {
    async refresh() { // live numbers; every 10 s is enough for a meter read every few minutes
      if (Date.now() - last > 10e3) { last = Date.now(); await load(false); }
    },
  };
}

// --- service plan (operator, on a household's or business's page) --------------------------
async function setupServicePlan(id, title) {
  const view = await api("/api/service-plans");
  const page = await api(`/api/connections/${encodeURIComponent(id)}/page?hours=1`);
  if (gone(title) || page.connection.kind === "priority") return; // never limited
  const kind = page.connection.kind;
  const chosen = Object.hasOwn(view.assignments, id) ? view.assignments[id] : null;
  const fallback = view.defaults[kind] || null;
  const option = (name, p) => `<option value="${esc(name)}"${name === chosen ? " selected" : ""}>` +
    `${esc(name)} · ${p.power_limit_w} W · ${p.daily_energy_wh} Wh/${t("day")}` +
    `${p.evening_start_hour === null ? "" : ` · ${p.evening_start_hour}–${p.evening_end_hour} h`}</option>`;
  const card = $("cp-service-plan");
  card.innerHTML = `<form id="plan-form" class="form"><h2>${t("service_plan")}</h2>
    <label>${t("service_plan")} <select name="plan"><option value=""${chosen === null ? " selected" : ""}>` +
    `${t("plan_default")}${fallback ? ` (${esc(fallback)})` : ""}</option>` +
    Object.entries(view.plans).map(([name, p]) => option(name, p)).join("") + `</select></label>
    <button type="submit">${t("save")}</button><p class="msg muted">${t("plan_next")}</p></form>`;
  card.hidden = false;
  $("plan-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const msg = event.target.querySelector(".msg");
    const plan = new FormData(event.target).get("plan") || null;
    try {
      await api(`/api/connections/${encodeURIComponent(id)}/service-plan`, { method: "PUT", body: JSON.stringify({ plan }) });
      msg.textContent = t("saved");
      msg.className = "msg on";
    } catch (error) { msg.textContent = error.message; msg.className = "msg off"; }
  });
}

// --- refunds (operator, on a connection's page) -----------------------------------------
function refundForm() {
  return `<form id="refund-form" class="form refund" data-action="refund"><h2>${t("refund")}</h2>
    <label>${t("refund_kind")} <select name="kind"><option value="topup">${t("refund_topup")}</option><option value="overcharge">${t("refund_overcharge")}</option></select></label>
    <label class="payment">${t("refund_payment")} <select name="payment_id"></select></label>
    <label>${t("amount_coin")} <input name="amount" inputmode="decimal" required maxlength="17" pattern="\\d{1,10}([.,]\\d{1,6})?"></label>
    <label>${t("why")} <input name="reason" required minlength="3" maxlength="200"></label>
    <label>${t("key")} <input name="key" required maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}"></label>
    <button type="submit">${t("refund_do")}</button><p class="msg muted"></p></form>`;
}

function showRefundPayments(page) {
  // Top-ups credited to this meter: their batch is fiat:payment:<payment id>.
  const select = document.querySelector("#refund-form select[name=payment_id]");
  const chosen = select.value;
  const topups = page.transactions.filter((x) => x.code === "fiat.topup" && x.batch.startsWith("fiat:payment:"));
  select.innerHTML = topups.map((x) => {
    const pid = x.batch.slice("fiat:payment:".length);
    return `<option value="${esc(pid)}"${pid === chosen ? " selected" : ""}>${esc(pid)} · ${coin(x.amount_minor)} · ${localTime(x.time, { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" })}</option>`;
  }).join("");
}

function setupRefund(id, reload) {
  const form = $("refund-form");
  const key = form.querySelector("input[name=key]");
  const fresh = () => { key.value = `${id}-${Date.now().toString(36)}`; }; // one key per refund
  fresh();
  const kind = form.querySelector("select[name=kind]");
  const togglePayment = () => { form.querySelector(".payment").hidden = kind.value !== "topup"; };
  kind.addEventListener("change", togglePayment);
  togglePayment();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = new FormData(form);
    const msg = form.querySelector(".msg");
    const amount = toMinor(f.get("amount"));
    if (amount === null || amount <= 0) {
      msg.textContent = t("bad_amount");
      msg.className = "msg off";
      return;
    }
    const body = { account: "meter:" + id, kind: f.get("kind"), amount_minor: amount,
      reason: f.get("reason"), key: f.get("key") };
    if (body.kind === "topup") body.payment_id = f.get("payment_id") || null;
    try {
      const r = await api("/api/refunds", { method: "POST", body: JSON.stringify(body) });
      msg.textContent = t(r.replayed ? "refund_replayed" : "refund_done", { amount: coin(r.amount_minor), balance: coin(r.balance_minor) });
      msg.className = "msg on";
      // A new reference, and no amount or reason left to send twice by a second click.
      form.querySelector("input[name=amount]").value = "";
      form.querySelector("input[name=reason]").value = "";
      fresh();
      reload();
    } catch (error) { msg.textContent = error.message; msg.className = "msg off"; }
  });
}

// --- band contracts' standing (seed 004) ------------------------------------------------
function standingHead() {
  return `<thead><tr><th>${t("contract")}</th><th>${t("connection")}</th><th>${t("interval_now")}</th><th>${t("band_wh")}</th>` +
    `<th>${t("metered_wh")}</th><th>${t("bonus_left")}</th><th>${t("penalties")}</th><th>${t("owed")}</th><th>${t("gate_next")}</th></tr></thead>`;
}

function standingRow(c) {
  const short = { hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit" };
  const position = c.position ? `<span class="pos-${esc(c.position)}">${t("pos_" + c.position)}</span>` : "";
  const band = c.band_wh ? `${c.band_wh[0]}–${c.band_wh[1]} ±${c.tolerance_wh}` : "–";
  const hhmm = { hour: "2-digit", minute: "2-digit" };
  const until = c.current_start ? new Date(Date.parse(c.current_start) + c.interval_s * 1e3).toISOString() : null;
  const status = c.closed ? t("contract_closed") : c.current_start
    ? localTime(c.current_start, short) + "–" + localTime(until, hhmm) : t("contract_outside");
  // A meter first read inside the interval: say from when its figure counts.
  const late = c.metered_since && Date.parse(c.metered_since) > Date.parse(c.current_start);
  const since = late ? `<div class="muted">${t("since")} ${localTime(c.metered_since, hhmm)}</div>` : "";
  return `<tr class="standing" data-contract="${esc(c.contract_id)}"><td>${esc(c.contract_id)}<div class="muted">${c.intervals_charged}/${c.intervals}</div></td>` +
    `<td><a href="#/c/${encodeURIComponent(c.meter_id)}">${esc(c.meter_id)}</a></td><td>${status}</td><td class="num">${band}</td>` +
    `<td class="num">${c.metered_wh ?? "–"} ${position}${since}</td><td class="num">${coin(c.bonus_left)} / ${coin(c.bonus)}</td>` +
    `<td class="num ${c.penalties ? "off" : ""}">${coin(c.penalties)}</td><td class="num">${coin(c.receivable)}</td>` +
    `<td>${c.next_gate_closure ? localTime(c.next_gate_closure, short) + ` <span class="muted">(${t("for_interval")} ${localTime(c.next_gate_interval, hhmm)})</span>` : "–"}</td></tr>`;
}

function contractsView() {
  if (!isOperator()) return needLogin();
  $("view").innerHTML = `<p id="view-error" class="error" hidden></p><section class="card"><h2>${t("contracts")} <span id="k-time" class="muted"></span></h2>
    <div class="scroll"><table id="contracts">${standingHead()}<tbody></tbody></table></div></section>`;
  return {
    async refresh() {
      const table = $("contracts");
      const data = await api("/api/console/contracts");
      if (gone(table)) return;
      $("k-time").textContent = localTime(data.time);
      document.querySelector("#contracts tbody").innerHTML = data.contracts.length
        ? data.contracts.map(standingRow).join("") : `<tr><td colspan="9">${t("no_contracts")}</td></tr>`;
    },
  };
}

// --- the village map (seed 002) ---------------------------------------------------------
function mapView() {
  if (!isOperator()) return needLogin();
  $("view").innerHTML = `<p id="view-error" class="error" hidden></p><div class="row"><h2>${t("map")}</h2>
    <button type="button" id="advance" hidden>${t("advance")}</button><span id="advance-msg" class="muted"></span></div>
    <div id="village" class="map"></div>
    <p class="legend"><i class="dot c-priority"></i>${t("priority")} <i class="dot c-household"></i>${t("household")}
    <i class="dot c-business"></i>${t("business")} <i class="dot c-producer"></i>${t("producer")} <i class="dot c-off"></i>${t("off")}</p>`;
  const map = L.map("village", { crs: L.CRS.Simple, minZoom: -4, maxZoom: 3, attributionControl: false });
  state.map = map;
  const layer = L.layerGroup().addTo(map);
  let fitted = false;
  const village = $("village");
  async function load() {
    const data = await api("/api/map");
    if (gone(village)) return;
    $("advance").hidden = !data.simulated;
    layer.clearLayers();
    const points = [];
    L.circleMarker([0, 0], { radius: 10, color: "#1d3b2a", fillColor: "#1d7a3a", fillOpacity: 1 })
      .bindTooltip("container " + data.container.pv_kwp + " kWp").addTo(layer);
    for (const c of data.connections) {
      if (c.east_m === null) continue;
      const colour = c.producer ? "#1d7a3a" : TIER_COLOURS[c.kind];
      const marker = L.circleMarker([c.north_m, c.east_m], {
        radius: c.kind === "household" ? 4 : 6, color: c.on ? colour : "#555",
        fillColor: c.on ? colour : "#fff", fillOpacity: 0.9, weight: 2,
      });
      marker.bindPopup(`<b>${esc(c.id)}</b> ${c.producer ? t("producer") : t("consumer")}<br>` +
        `import ${c.import_wh ?? "–"} Wh<br>export ${c.export_wh ?? "–"} Wh<br><a href="#/c/${encodeURIComponent(c.id)}">→</a>`);
      marker.addTo(layer);
      points.push([c.north_m, c.east_m]);
    }
    if (!fitted) {
      map.fitBounds(points.length ? L.latLngBounds(points).pad(0.1) : L.latLngBounds([[-100, -100], [100, 100]]));
      fitted = true;
    }
  }
  $("advance").addEventListener("click", async () => {
    try {
      const r = await api("/api/sim/advance", { method: "POST", body: JSON.stringify({ hours: 1 }) });
      $("advance-msg").textContent = t("advance_done", { time: localTime(r.time) });
      await poll();
      await load();
    } catch (error) { showError(error); }
  });
  load().catch(showError);
  let last = Date.now();
  return {
    async refresh() { // redrawing closes popups: every 10 s is enough for a map
      if (Date.now() - last > 10e3) { last = Date.now(); await load(); }
    },
  };
}

// --- operator actions ------------------------------------------------------------------
function actionsView() {
  if (!isOperator()) return needLogin();
  $("view").innerHTML = `<p id="view-error" class="error" hidden></p><h2>${t("actions")}</h2><section class="cards">
    <form class="card form" data-action="relay"><h2>${t("force_relay")}</h2>
      <label>${t("connection")} <input name="id" required maxlength="64"></label>
      <label><select name="closed"><option value="true">${t("closed_on")}</option><option value="false">${t("open_off")}</option></select></label>
      <label>${t("why")} <input name="reason" required maxlength="200"></label>
      <button type="submit">${t("apply")}</button> <button type="button" class="link" data-release="relays">${t("release")}</button><p class="msg muted"></p></form>
    <form class="card form" data-action="hold"><h2>${t("hold_business")}</h2>
      <label>${t("business")} <input name="id" required maxlength="64"></label>
      <label>${t("why")} <input name="reason" required maxlength="200"></label>
      <button type="submit">${t("apply")}</button> <button type="button" class="link" data-release="businesses">${t("release")}</button><p class="msg muted"></p></form>
    <form class="card form" data-action="reserve"><h2>${t("reserve_setting")}</h2>
      <label><select name="enabled"><option value="true">${t("on")}</option><option value="false">${t("off")}</option></select></label>
      <button type="submit">${t("apply")}</button><p class="msg muted"></p></form>
    <form class="card form" data-action="replan"><h2>${t("replan")}</h2><button type="submit">${t("apply")}</button><p class="msg muted"></p></form>
    <form class="card form" data-action="topup"><h2>${t("topup")}</h2>
      <label>${t("connection")} <input name="id" required maxlength="64"></label>
      <label>${t("amount_coin")} <input name="amount" type="number" min="0.000001" step="0.000001" required></label>
      <label>${t("key")} <input name="key" required maxlength="64"></label>
      <button type="submit">${t("apply")}</button><p class="msg muted"></p></form>
  </section>`;
  const calls = {
    relay: (f) => [`/api/operator/relays/${encodeURIComponent(f.get("id"))}`, "POST", { closed: f.get("closed") === "true", reason: f.get("reason") }],
    hold: (f) => [`/api/operator/businesses/${encodeURIComponent(f.get("id"))}/hold`, "POST", { reason: f.get("reason") }],
    reserve: (f) => ["/api/operator/reserve", "PUT", { enabled: f.get("enabled") === "true" }],
    replan: () => ["/api/operator/dispatch", "POST", null],
    topup: (f) => [`/api/meters/${encodeURIComponent(f.get("id"))}/fund`, "POST", { amount_minor: toMinor(f.get("amount")), key: f.get("key") }],
  };
  for (const form of document.querySelectorAll("form[data-action]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const [path, method, body] = calls[form.dataset.action](new FormData(form));
      const msg = form.querySelector(".msg");
      try {
        await api(path, { method, ...(body ? { body: JSON.stringify(body) } : {}) });
        msg.textContent = t("done");
        msg.className = "msg on";
      } catch (error) { msg.textContent = error.message; msg.className = "msg off"; }
    });
    const release = form.querySelector("button[data-release]");
    if (release) {
      release.addEventListener("click", async () => {
        const id = new FormData(form).get("id");
        const path = release.dataset.release === "relays"
          ? `/api/operator/relays/${encodeURIComponent(id)}` : `/api/operator/businesses/${encodeURIComponent(id)}/hold`;
        const msg = form.querySelector(".msg");
        try { await api(path, { method: "DELETE" }); msg.textContent = t("done"); } catch (error) { msg.textContent = error.message; }
      });
    }
  }
  return { refresh() {} };
}

// --- a resident's own page --------------------------------------------------------------
function meView() {
  if (!state.me) return needLogin();
  $("view").innerHTML = `<p id="view-error" class="error" hidden></p><section class="cards">
    <div class="card"><h2>${t("my_wallet")}</h2><div class="big" id="me-wallet">–</div></div>
    <div class="card"><h2>${t("my_stake")}</h2><div id="me-stake">–</div></div></section>
    <section class="card"><h2>${t("my_meters")}</h2><table id="me-meters"><tbody></tbody></table></section>`;
  return {
    async refresh() {
      const wallet = $("me-wallet");
      const me = await api("/api/me");
      if (gone(wallet)) return;
      $("me-wallet").textContent = coin(me.wallet.balance_minor) + " coin";
      $("me-stake").textContent = me.stake ? `${(me.stake.tokens_minor / 1e6).toFixed(3)} · ${t("staked_on")} ${me.stake.next_round_choice || t("skip")}` : "–";
      document.querySelector("#me-meters tbody").innerHTML = me.connections.map((c) =>
        `<tr><td><a href="#/c/${encodeURIComponent(c.id)}">${esc(c.id)}</a></td><td class="num">${coin(c.balance_minor)}</td><td>${esc(c.credit || "–")}</td></tr>`).join("");
    },
  };
}

// --- routing ---------------------------------------------------------------------------
function route() {
  destroyCharts();
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, arg] = hash.split("/");
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === "#/" + (name || ""));
  }
  const views = {
    "": overviewView, alarms: alarmsView, history: historyView, customers: customersView,
    c: () => connectionView(decodeURIComponent(arg || "")), map: mapView, actions: actionsView, me: meView,
    contracts: contractsView,
  };
  state.view = (views[name] || overviewView)();
  if (state.view.refresh) Promise.resolve(state.view.refresh()).catch(showError);
}

async function start() {
  const saved = localStorage.getItem("lw_lang");
  applyLanguage(saved || ((navigator.language || "en").startsWith("fr") ? "fr" : "en"));
  setupSession();
  await loadMe();
  window.addEventListener("hashchange", route);
  await poll();
  route();
  state.timer = setInterval(poll, POLL_MS);
}

start();
