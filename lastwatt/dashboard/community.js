// Community panel of the console: the household vote (options, turnout, result, the
// option in force) and energy access (households per World Bank MTF tier, today).
// Loaded after app.js and uses its helpers (api, t, esc, num, state); shown on the
// overview only, refreshed on its own timer so that app.js's views are left alone.
"use strict";

const COMMUNITY_MS = 10000; // the vote and the MTF change slowly; 10 s is plenty

function communityVisible() {
  const hash = location.hash.replace(/^#\/?/, "");
  return hash === "" || hash === "community";
}

function voteHtml(vote) {
  if (!vote.options.length) return `<p class="muted">${esc(t("vote_none"))}</p>`;
  const own = vote.own_vote;
  const canVote = state.me && state.me.household;
  const rows = vote.options.map((o) => {
    const share = vote.voters ? (100 * o.votes / vote.voters).toFixed(0) + " %" : "–";
    const mark = o.name === vote.leading ? " ★" : "";
    const button = canVote
      ? `<button type="button" class="link vote-cast" data-option="${esc(o.name)}"${o.name === own ? " disabled" : ""}>${esc(o.name === own ? t("vote_yours") : t("vote_for"))}</button>`
      : "";
    const policy = Object.entries(o.policy).map(([k, v]) => `${esc(k)} = ${esc(v)}`).join(", ");
    return `<tr data-option="${esc(o.name)}"><td>${esc(o.label)}${mark}<br><small class="muted">${policy}</small></td>` +
      `<td class="num vote-count">${o.votes}</td><td class="num">${share}</td><td>${button}</td></tr>`;
  }).join("");
  return `<table id="vote-table"><thead><tr><th>${esc(t("vote_option"))}</th><th class="num">${esc(t("vote_votes"))}</th><th class="num">%</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
}

function mtfHtml(mtf) {
  if (!mtf) return `<p class="muted">${esc(t("need_login_mtf"))}</p>`;
  const cells = [0, 1, 2, 3, 4, 5].map((k) => `<td class="num" data-tier="${k}">${mtf.tier_counts[String(k)] || 0}</td>`).join("");
  return `<table id="mtf-table"><thead><tr><th>${esc(t("mtf_tier"))}</th>${[0, 1, 2, 3, 4, 5].map((k) => `<th class="num">${k}</th>`).join("")}</tr></thead>` +
    `<tbody><tr><td>${esc(t("mtf_households"))}</td>${cells}</tr></tbody></table>`;
}

async function refreshCommunity() {
  const panel = document.getElementById("community");
  if (!panel) return;
  panel.hidden = !communityVisible();
  if (panel.hidden) return;
  let vote = null;
  let mtf = null;
  try { vote = await api("/api/community/vote"); } catch (error) { vote = null; }
  if (state.me) {
    try { mtf = await api("/api/community/mtf"); } catch (error) { mtf = null; }
  }
  const applied = vote && vote.applied ? esc(vote.applied.label) : esc(t("vote_no_applied"));
  document.getElementById("community-vote").innerHTML = vote
    ? `<p>${esc(t("vote_round"))} ${vote.round} · ${esc(t("vote_turnout"))} <b id="vote-turnout">${(100 * vote.turnout).toFixed(1)} %</b> (${vote.voters}/${vote.households}) · ${esc(t("vote_applied"))}: <b id="vote-applied">${applied}</b></p>` + voteHtml(vote)
    : `<p class="muted">${esc(t("need_login"))}</p>`;
  document.getElementById("community-mtf").innerHTML = mtfHtml(mtf) +
    (mtf ? `<p class="muted"><small>${esc(t("mtf_note"))} ${esc(mtf.day)}</small></p>` : "");
  for (const button of document.querySelectorAll("#community .vote-cast")) {
    button.addEventListener("click", async () => {
      try {
        await api("/api/community/vote/" + encodeURIComponent(state.me.household), {
          method: "PUT", body: JSON.stringify({ option: button.dataset.option }) });
        await refreshCommunity();
      } catch (error) { showError(error); }
    });
  }
}

window.addEventListener("hashchange", () => { refreshCommunity().catch(() => {}); });
setTimeout(() => { refreshCommunity().catch(() => {}); }, 300);
setInterval(() => { refreshCommunity().catch(() => {}); }, COMMUNITY_MS);
