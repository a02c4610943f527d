// The operator's console: reads /api/status and the bounded console endpoints every REFRESH_MS (never the
// whole journal: decisions are read incrementally, after the last row seen), and sends halt, resume and
// cancel-all. A token is taken from the address's fragment (#token=...) or the token field, and kept in
// sessionStorage for the tab.
"use strict";

const REFRESH_MS = 5000;
const RECENT_ROWS = 20;
const CHART_POINTS = 2000;  // decisions kept per asset (the chart's window)
const CLIP_BANDS = 3;          // deltas within this many (median) bands of the target are always on the axis,
const OUTLIER_QUANTILE = 0.9;  // and those up to this quantile of their distance from the target

const tokenField = document.getElementById("token");
const fromAddress = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromAddress) {
  sessionStorage.setItem("dk_token", fromAddress);
  history.replaceState(null, "", location.pathname + location.search);
}
tokenField.value = sessionStorage.getItem("dk_token") || "";
tokenField.addEventListener("change", () => sessionStorage.setItem("dk_token", tokenField.value.trim()));

function headers(extra) {
  const token = sessionStorage.getItem("dk_token");
  return Object.assign(token ? {Authorization: `Bearer ${token}`} : {}, extra || {});
}

async function api(path) {
  const response = await fetch(new URL(path, location.href), {headers: headers()});
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// -- formatting ---------------------------------------------------------------------------------
const num = v => (v === null || v === undefined || v === "") ? null : Number(v);
function fmt(v, digits) {
  const n = num(v);
  if (n === null || Number.isNaN(n)) return "–";
  return n.toLocaleString("en-US", {minimumFractionDigits: digits ?? 0, maximumFractionDigits: digits ?? 8});
}
const usd = v => num(v) === null ? "–" : `${num(v) < 0 ? "−" : ""}$${fmt(Math.abs(num(v)), 2)}`;
// An amount of `currency`: USD and stablecoins (the status's `stablecoins`) to the cent, coins to 8 places.
const amount = (v, currency, status) =>
  fmt(v, (status.stablecoins || []).includes(currency.toUpperCase()) ? 2 : undefined);
const pct = v => num(v) === null ? "–" : `${(num(v) * 100).toFixed(1)}%`;
const time = ts => ts ? ts.replace("T", " ").slice(0, 19) : "–";
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function fillBody(table, rows) {
  const body = table.tBodies[0] || table.createTBody();
  body.replaceChildren(...rows.map(cells => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
}
const empty = (table, columns, text) => fillBody(table, [[Object.assign(cell(text, "muted text"),
                                                                        {colSpan: columns})]]);

// -- panels -------------------------------------------------------------------------------------
const STATE_TEXT = {active: "TRADING", reduce_only: "REDUCE-ONLY", halted: "HALTED"};

function renderState(status) {
  const state = status.trading ? status.trading.state : status.trading_state;
  const banner = document.getElementById("state-banner");
  banner.className = `state ${state in STATE_TEXT ? state : "unknown"}`;
  banner.dataset.state = state;
  document.getElementById("state-text").textContent = STATE_TEXT[state] || String(state).toUpperCase();
  let cause = status.trading ? status.trading.cause : "";
  if (status.control && status.control.halted && status.control.by) cause += ` (by ${status.control.by})`;
  document.getElementById("state-cause").textContent = cause;
  document.body.classList.toggle("halted", state === "halted");
  document.title = `${STATE_TEXT[state] || state} · deltakeeper`;
  document.getElementById("exchange").textContent = status.exchange ? `${status.exchange},` : "";
}

function renderAssets(status) {
  const table = document.getElementById("assets");
  const assets = Object.entries(status.assets || {});
  if (!assets.length) return empty(table, 9, "no asset hedged");
  fillBody(table, assets.map(([asset, a]) => {
    const dev = num(a.deviation);
    const devClass = dev === null ? "" : Math.abs(dev) > 1 ? "bad" : Math.abs(dev) > 0.8 ? "warn" : "good";
    const last = a.last_decision ? `${a.last_decision.reason} ${time(a.last_decision.ts)}` : "–";
    return [cell(asset), cell(fmt(a.delta_coin)), cell(fmt(a.target_coin)), cell(fmt(a.band_coin)),
            cell(dev === null ? "–" : dev.toFixed(2), devClass), cell(usd(a.delta_usd)),
            cell(a.hedge_symbol), cell(fmt(a.position_contracts)), cell(last, "text")];
  }));
}

function renderPnl(status, summary) {
  document.getElementById("pnl-since").textContent = summary ? `today since ${time(summary.since)} UTC` : "";
  const rows = [["hedge unrealised PnL", usd(status.hedge_unrealised_pnl_usd), "hedge-pnl"]];
  if (summary) {
    const parts = by => Object.entries(by).map(([cur, v]) => `${fmt(v.amount)} ${cur}`).join(" + ") || "none";
    rows.push(["traded", `${usd(summary.traded_usd)} in ${summary.fills} fills`, "traded"]);
    rows.push(["fees paid", `${usd(summary.fees_usd)}  (${parts(summary.fees)})`, "fees"]);
    rows.push(["funding (received +)", `${usd(summary.funding_usd)}  (${parts(summary.funding)})`, "funding"]);
    const net = [summary.funding_usd, summary.fees_usd].some(v => v === null) ? null
              : num(summary.funding_usd) - num(summary.fees_usd);
    rows.push(["funding − fees", usd(net), "net"]);
    if (summary.unpriced.length) rows.push(["no price for", summary.unpriced.join(", "), "unpriced"]);
  }
  fillBody(document.getElementById("pnl"), rows.map(([name, value, key]) => {
    const td = cell(value);
    td.dataset.key = key;
    return [cell(name), td];
  }));
}

function renderMargin(status) {
  const table = document.getElementById("margin");
  const margin = status.margin;
  if (!margin) return empty(table, 2, "no margin watch");
  const level = h => h === null ? "" : h < margin.critical_headroom ? "bad" : h < margin.warn_headroom ? "warn"
                                                                                                       : "good";
  const rows = [[cell("account headroom"), cell(pct(margin.headroom), level(margin.headroom))],
                [cell("warn / critical"), cell(`${pct(margin.warn_headroom)} / ${pct(margin.critical_headroom)}`)],
                [cell("move to liquidation"), cell(pct(margin.liquidation_move))]];
  const venue = margin.venue;  // the exchange's own figure, beside the estimate above
  if (venue) {
    const theirs = venue.maintenance_ratio === null ? null : 1 - num(venue.maintenance_ratio);
    rows.splice(1, 0, [cell(`exchange's headroom (${venue.mode} account)`),
                       cell(theirs === null ? "unknown" : pct(theirs), level(theirs))]);
  }
  for (const [settle, s] of Object.entries(margin.by_settle || {})) {
    rows.push([cell(`${settle}: equity ${amount(s.equity, settle, status)}`),
               cell(pct(s.headroom), level(s.headroom))]);
  }
  fillBody(table, rows);
}

function renderStreams(status) {
  document.getElementById("stale-limit").textContent = `stale after ${status.stale_limit_secs ?? "?"} s`;
  const streams = Object.entries(status.streams || {});
  const stale = streams.filter(([, s]) => s.stale).length;
  if (!streams.length) return empty(document.getElementById("streams"), 2, "no stream");
  fillBody(document.getElementById("streams"), streams.map(([symbol, s]) => [
    cell(symbol), cell(s.age_secs === null ? "no quote yet" : `${fmt(s.age_secs, 1)} s`, s.stale ? "bad" : "good"),
  ]));
  document.getElementById("streams-panel").dataset.stale = stale;
}

function renderPositions(status) {
  const table = document.getElementById("positions");
  if (!status.positions || !status.positions.length) return empty(table, 7, "no position");
  fillBody(table, status.positions.map(p => [
    cell(p.symbol), cell(fmt(p.contracts)), cell(fmt(p.entry_price)), cell(fmt(p.mark_price)),
    cell(fmt(p.liquidation_price)), cell(`${fmt(p.unrealised_pnl)} ${p.settle}`), cell(usd(p.unrealised_pnl_usd)),
  ]));
}

function renderFills(rows) {
  const table = document.getElementById("fills");
  if (!rows.length) return empty(table, 6, "no fill yet");
  fillBody(table, rows.slice().reverse().map(f => [
    cell(time(f.ts)), cell(f.symbol), cell(f.side, f.side === "buy" ? "good" : "bad"),
    cell(fmt(f.amount_contracts)), cell(fmt(f.price)), cell(`${fmt(f.fee)} ${f.fee_currency}`),
  ]));
}

function renderOrders(rows) {
  const table = document.getElementById("orders");
  if (!rows.length) return empty(table, 7, "no order yet");
  fillBody(table, rows.slice().reverse().map(o => [
    cell(time(o.created_ts)), cell(o.symbol), cell(o.side, o.side === "buy" ? "good" : "bad"), cell(o.order_type),
    cell(fmt(o.amount_contracts)), cell(fmt(o.filled_contracts)),
    cell(o.status, o.status === "rejected" ? "bad" : ""),
  ]));
}

function renderAlerts(alerts) {
  const list = document.getElementById("alerts");
  if (!alerts.length) {
    list.replaceChildren(Object.assign(document.createElement("li"), {className: "muted",
                                                                      textContent: "no alert since the start"}));
    return;
  }
  list.replaceChildren(...alerts.map(a => {
    const li = document.createElement("li");
    const level = Object.assign(document.createElement("span"), {textContent: a.level,
      className: `level ${a.level === "error" || a.level === "critical" ? "bad" : a.level === "warning" ? "warn" : ""}`});
    li.append(level, `${time(a.ts)}  ${a.event}${a.subject ? ` (${a.subject})` : ""}: ${a.message}`);
    return li;
  }));
}

// -- the delta-vs-band chart ----------------------------------------------------------------------
const decisions = {};  // asset -> rows, oldest first, at most CHART_POINTS
let lastDecisionId = null;
window.dkCharts = {};

function addDecisions(rows) {
  for (const d of rows) {
    (decisions[d.asset] ||= []).push(d);
    lastDecisionId = Math.max(lastDecisionId ?? 0, d.id);
  }
  for (const rows of Object.values(decisions)) rows.splice(0, Math.max(0, rows.length - CHART_POINTS));
}

// The y axis spans the band (target ± band) and the deltas within OUTLIER_QUANTILE of their distance from
// the target (or within CLIP_BANDS bands of it), so that one outlier (a 1,000-coin first point) does not flatten
// the band to a line; points beyond the axis are marked at its edge (the "beyond the axis" series) and
// counted above the chart.
function lowerQuantile(values, q) {
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(q * (sorted.length - 1))] : 0;
}

function chartData(rows) {
  const xs = rows.map(d => Date.parse(d.ts) / 1000);
  const target = rows.map(d => num(d.target_coin)), band = rows.map(d => Math.abs(num(d.band_coin)));
  const delta = rows.map(d => num(d.delta_coin));
  const distance = delta.map((v, i) => Math.abs(v - target[i]));
  const cutoff = Math.max(CLIP_BANDS * lowerQuantile(band, 0.5), lowerQuantile(distance, OUTLIER_QUANTILE));
  let lo = Infinity, hi = -Infinity;
  rows.forEach((_, i) => {
    const kept = distance[i] <= cutoff ? [delta[i]] : [];
    lo = Math.min(lo, target[i] - band[i], ...kept);
    hi = Math.max(hi, target[i] + band[i], ...kept);
  });
  if (!Number.isFinite(lo)) [lo, hi] = [-1, 1];
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.06;
  const range = [lo - pad, hi + pad];
  const beyond = delta.map(v => v > range[1] ? range[1] : v < range[0] ? range[0] : null);
  const trades = rows.map((d, i) => d.side ? delta[i] : null);
  const data = [xs, delta, target, target.map((t, i) => t + band[i]), target.map((t, i) => t - band[i]), trades,
                beyond];
  return {data, range, clipped: beyond.filter(v => v !== null).length};
}

function utcTicks(u, splits) {
  const days = (u.scales.x.max - u.scales.x.min) > 86400;
  return splits.map(s => new Date(s * 1000).toISOString().slice(days ? 5 : 11, 16).replace("T", " "));
}

function tooltipPlugin(asset, tooltip) {
  return {hooks: {setCursor: u => {
    const i = u.cursor.idx;
    if (i === null || i === undefined || u.cursor.left < 0) { tooltip.style.display = "none"; return; }
    const d = decisions[asset][i];
    const band = num(d.band_coin), dev = band ? (num(d.delta_coin) - num(d.target_coin)) / band : null;
    tooltip.textContent = `${time(d.ts)} UTC\ndelta ${fmt(d.delta_coin)} ${asset}\n` +
      `target ${fmt(d.target_coin)} ± ${fmt(d.band_coin)}\ndeviation ${dev === null ? "–" : dev.toFixed(2)} bands` +
      `\n${d.reason}${d.side ? `: ${d.side} ${fmt(d.amount_contracts)}` : ""}`;
    tooltip.style.display = "block";
    tooltip.style.left = `${Math.min(u.cursor.left + 60, u.over.clientWidth - 120)}px`;
    tooltip.style.top = `${u.cursor.top + 40}px`;
  }}};
}

function renderChart(asset) {
  const rows = decisions[asset];
  const holder = document.getElementById("charts");
  let entry = window.dkCharts[asset];
  if (!entry) {
    const box = Object.assign(document.createElement("div"), {className: "chart", id: `chart-${asset}`});
    const title = Object.assign(document.createElement("h3"), {textContent: `${asset}: delta against target ± band`});
    const note = Object.assign(document.createElement("span"), {className: "note"});
    const tooltip = Object.assign(document.createElement("div"), {className: "tooltip"});
    title.append(note);
    box.append(title, tooltip);
    holder.append(box);
    const width = Math.max(400, holder.clientWidth - 10);
    const opts = {
      width, height: 300,
      tzDate: ts => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      cursor: {drag: {x: true, y: false}},
      scales: {x: {time: true}, y: {range: () => window.dkCharts[asset].range}},
      axes: [
        {label: "time (UTC)", labelSize: 20, values: utcTicks},
        {label: `delta (${asset}, coins)`, labelSize: 24, size: 70},
      ],
      series: [
        {label: "time (UTC)"},
        {label: `delta (${asset})`, stroke: "#1d2126", width: 1.5},
        {label: "target", stroke: "#999", width: 1},
        {label: "target + band", stroke: "#2471a3", dash: [5, 4], width: 1},
        {label: "target − band", stroke: "#2471a3", dash: [5, 4], width: 1},
        {label: "order sent", stroke: "#1e8449", paths: () => null, points: {show: true, size: 7, fill: "#1e8449"}},
        {label: "beyond the axis (at its edge)", stroke: "#c0392b", paths: () => null,
         points: {show: true, size: 9, fill: "#c0392b"}},
      ],
      plugins: [tooltipPlugin(asset, tooltip)],
    };
    const chart = chartData(rows);
    entry = window.dkCharts[asset] = {range: chart.range, note, axes: opts.axes};
    entry.plot = new uPlot(opts, chart.data, box);
    entry.clipped = chart.clipped;
  } else {
    const chart = chartData(rows);
    const zoomed = entry.plot.scales.x.min !== entry.plot.data[0][0]
                || entry.plot.scales.x.max !== entry.plot.data[0][entry.plot.data[0].length - 1];
    entry.range = chart.range;
    entry.clipped = chart.clipped;
    entry.plot.setData(chart.data, !zoomed);
  }
  entry.note.textContent = entry.clipped ? `${entry.clipped} point${entry.clipped === 1 ? "" : "s"} beyond the `
                                           + "axis, marked at its edge" : "";
  entry.plot.root.dataset.points = rows.length;
}

// The first read takes the newest CHART_POINTS decisions; later reads page on from the last row seen
// (oldest first), as long as a page comes back full, so that no row is skipped.
async function readNewDecisions() {
  for (;;) {
    const paging = lastDecisionId !== null;
    const after = paging ? `&after_id=${lastDecisionId}` : "";
    const rows = await api(`api/console/recent/decisions?limit=${CHART_POINTS}${after}`);
    addDecisions(rows);
    if (!paging || rows.length < CHART_POINTS) return;
  }
}

// -- refresh --------------------------------------------------------------------------------------
async function refresh() {
  try {
    const status = await api("api/status");
    renderState(status);
    renderAssets(status);
    renderMargin(status);
    renderStreams(status);
    renderPositions(status);
    let summary = null;
    if (status.trading) {  // a standby instance has no console endpoints
      const [sum, fills, orders] = await Promise.all([
        api("api/console/summary"),
        api(`api/console/recent/fills?limit=${RECENT_ROWS}`),
        api(`api/console/recent/orders?limit=${RECENT_ROWS}`),
      ]);
      summary = sum;
      renderFills(fills);
      renderOrders(orders);
      renderAlerts(summary.alerts);
      await readNewDecisions();
      for (const asset of Object.keys(decisions).sort()) renderChart(asset);
    }
    renderPnl(status, summary);
    document.getElementById("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
    document.body.dataset.loaded = "true";
  } catch (error) {
    const banner = document.getElementById("state-banner");
    banner.className = "state unknown error";
    banner.dataset.state = "error";
    document.getElementById("state-text").textContent = "NO DATA";
    document.getElementById("state-cause").textContent = error.message;
  }
}

async function control(action) {
  const ask = {
    "halt": "Halt trading? No order is sent until someone resumes. Reason:",
    "resume": "Resume trading? The bot will send orders again.",
    "cancel-all": "Cancel every open order of the bot?",
  }[action];
  let reason = "";
  if (action === "halt") {
    const answer = prompt(ask, "halted from the console");
    if (answer === null) return;
    reason = answer;
  } else if (!confirm(ask)) {
    return;
  }
  const result = document.getElementById("control-result");
  try {
    const response = await fetch(new URL(`api/${action}`, location.href), {
      method: "POST", headers: headers({"Content-Type": "application/json"}),
      body: JSON.stringify({reason, by: "console"}),
    });
    const body = await response.json().catch(() => ({}));
    result.textContent = response.ok ? `${action}: done` : `${action} refused: ${body.error || response.status}`;
    result.className = response.ok ? "good" : "bad";
  } catch (error) {
    result.textContent = `${action} failed: ${error.message}`;
    result.className = "bad";
  }
  refresh();
}

for (const action of ["halt", "resume", "cancel-all"]) {
  document.getElementById(action).addEventListener("click", () => control(action));
}
refresh();
setInterval(refresh, REFRESH_MS);
