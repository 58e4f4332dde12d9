// LastWatt dashboard: polls the service's read-only API and draws the plan as an SVG.
"use strict";

const POLL_MS = 2000;
const TIERS = [["priority", "#c0392b"], ["household", "#2e86c1"], ["business", "#e5a00d"]];

function text(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value;
}

function num(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) return null; // e.g. no schedule yet: show what we have
  return response.json();
}

function localTime(iso, tz) {
  return new Date(iso).toLocaleString("en-GB", { timeZone: tz, hour12: false });
}

function showStatus(s) {
  text("site", s.site);
  text("clock", localTime(s.time, s.timezone) + " (" + s.timezone + ")");
  text("mode", s.mode || "starting");
  text("pv-now", num(s.pv_kw, 2));
  text("pv-p50", s.pv_forecast_kw ? num(s.pv_forecast_kw.p50, 2) : "–");
  text("pv-p10", s.pv_forecast_kw ? num(s.pv_forecast_kw.p10, 2) : "–");
  text("soc", s.soc_fraction === null ? "–" : num(100 * s.soc_fraction, 0));
  text("soc-kwh", num(s.soc_kwh, 1));
  text("battery-kw", num(s.battery_kw, 2));
  for (const [tier] of TIERS) text("load-" + tier, num((s.load_kw || {})[tier], 2));
  text("reserve", s.reserve_enabled ? "on" : "off");
  text("round", "round " + s.staking_round);
}

function drawPlan(plan, tz) {
  const svg = document.getElementById("plan-chart");
  const rows = plan.periods.slice(0, 96);
  if (!rows.length) return;
  const width = 960, height = 240, pad = 24;
  const stacked = rows.map((r) => TIERS.reduce((sum, [t]) => sum + (r["served_" + t + "_kw"] || 0), 0));
  const peak = Math.max(1, ...stacked, ...rows.map((r) => r.pv_forecast_kw || 0));
  const x = (i) => pad + (i * (width - 2 * pad)) / rows.length;
  const y = (v) => height - pad - (v * (height - 2 * pad)) / peak;
  const barW = (width - 2 * pad) / rows.length;
  const parts = [];
  rows.forEach((r, i) => {
    let base = 0;
    for (const [tier, colour] of TIERS) {
      const v = r["served_" + tier + "_kw"] || 0;
      if (v > 0) {
        parts.push(`<rect x="${x(i).toFixed(1)}" y="${y(base + v).toFixed(1)}" width="${(barW * 0.9).toFixed(1)}" height="${(y(base) - y(base + v)).toFixed(1)}" fill="${colour}"></rect>`);
      }
      base += v;
    }
  });
  const line = rows.map((r, i) => `${(x(i) + barW / 2).toFixed(1)},${y(r.pv_forecast_kw || 0).toFixed(1)}`).join(" ");
  parts.push(`<polyline points="${line}" fill="none" stroke="#1d7a3a" stroke-width="2"></polyline>`);
  parts.push(`<text x="${pad}" y="14" font-size="11">${num(peak, 1)} kW</text>`);
  for (let i = 0; i < rows.length; i += 16) {
    const label = new Date(rows[i].time).toLocaleTimeString("en-GB", { timeZone: tz, hour: "2-digit", minute: "2-digit" });
    parts.push(`<text x="${x(i).toFixed(1)}" y="${height - 6}" font-size="11">${label}</text>`);
  }
  svg.innerHTML = parts.join("");
}

function showConnections(data) {
  const rows = data.connections;
  const off = rows.filter((c) => c.relay_closed === false || c.group_closed === false).length;
  const noCredit = rows.filter((c) => c.credit === "disconnected").length;
  text("conn-summary", `${rows.length} connections, ${off} off, ${noCredit} without credit`);
  const body = document.querySelector("#connections tbody");
  body.innerHTML = rows.map((c) => {
    // Relay, credit and balance are personal: null unless the viewer may see them.
    const known = c.relay_closed !== null || c.group_closed !== null;
    const on = c.relay_closed !== false && c.group_closed !== false;
    const relay = known ? (on ? "on" : "off") : "–";
    const balance = c.balance_minor === null ? "–" : (c.balance_minor / 1e6).toFixed(3);
    return `<tr><td>${c.id}</td><td>${c.kind}</td><td class="${known ? (on ? "on" : "off") : ""}">${relay}</td>` +
      `<td>${c.credit || "–"}</td><td>${balance}</td></tr>`;
  }).join("");
}

function showStakes(data) {
  const body = document.querySelector("#stakes tbody");
  const ids = Object.keys(data.current).sort();
  body.innerHTML = ids.map((b) => `<tr><td>${b}</td><td>${data.current[b]}</td><td>${data.next[b]}</td></tr>`).join("");
}

async function refresh() {
  try {
    const status = await getJson("/api/status");
    if (status) showStatus(status);
    const tz = status ? status.timezone : "UTC";
    const schedule = await getJson("/api/schedule?periods=1");
    if (schedule) {
      text("plan-status", schedule.status);
      text("plan-issued", localTime(schedule.issued_at, tz));
    }
    const plan = await getJson("/api/plan");
    if (plan) drawPlan(plan, tz);
    const connections = await getJson("/api/connections");
    if (connections) showConnections(connections);
    const stakes = await getJson("/api/stakes");
    if (stakes) showStakes(stakes);
    text("updated", new Date().toLocaleTimeString("en-GB"));
  } catch (error) {
    text("updated", "service unreachable");
  }
}

refresh();
setInterval(refresh, POLL_MS);
