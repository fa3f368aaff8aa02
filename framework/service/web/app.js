// Polls /stats and /tasks, keeps the last minutes of rates in memory and draws them.
"use strict";
const POLL_MS = 1000, KEEP = 300, TASKS_TOP = 15;
const RATES = [["consumed_total", "consumed", "#3b6fd4"], ["completed_total", "completed", "#2c8a4b"],
  ["stalled_total", "stalled", "#c0392b"], ["rerouted_total", "rerouted", "#d68910"]];
const TIMES = [["p50", "p50", "#3b6fd4"], ["p90", "p90", "#d68910"], ["p99", "p99", "#c0392b"]];
const history = [];
let last = null, token = sessionStorage.getItem("taskloop-token") || "", failingSince = null;

const $ = (id) => document.getElementById(id);
function cell(v, num) {
  const td = document.createElement("td");
  td.textContent = v === null || v === undefined ? "–" : String(v);
  if (num) td.className = "n";
  return td;
}
function fillRows(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    for (const [v, num, key] of r.cells) {
      const td = cell(v, num);
      if (key) td.id = key;
      tr.appendChild(td);
    }
    if (r.cls) tr.className = r.cls;
    if (r.data) for (const k in r.data) tr.dataset[k] = r.data[k];
    return tr;
  }));
}

async function get(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 3000);
  try {
    const r = await fetch(path, { headers, cache: "no-store", signal: ctl.signal });
    if (r.status === 401) throw Object.assign(new Error("unauthorized"), { auth: true });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return await r.json();
  } finally {
    clearTimeout(timer);
  }
}

// The q quantile of per-bucket counts, interpolated within its bucket (seconds).
function quantile(bounds, counts, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    if (!counts[i] || below + counts[i] < rank) { below += counts[i]; continue; }
    if (i >= bounds.length) return bounds[bounds.length - 1];
    const lo = i ? bounds[i - 1] : 0;
    return lo + (bounds[i] - lo) * (rank - below) / counts[i];
  }
  return bounds[bounds.length - 1];
}
function perBucket(h) {
  return h.buckets.map((b, i) => b.count - (i ? h.buckets[i - 1].count : 0));
}

function record(s) {
  const point = { t: s.clock_ms, rates: {}, times: {} };
  if (last) {
    const dt = (s.clock_ms - last.clock_ms) / 1000;
    for (const [k] of RATES) point.rates[k] = dt > 0 ? (s.counters[k] - last.counters[k]) / dt : 0;
    const bounds = s.handler_duration_seconds.buckets.filter((b) => b.le !== "+Inf").map((b) => b.le);
    const now = perBucket(s.handler_duration_seconds), was = perBucket(last.handler_duration_seconds);
    const delta = now.map((c, i) => c - was[i]);
    for (const [q] of TIMES) {
      const v = quantile(bounds, delta, Number(q.slice(1)) / 100);
      point.times[q] = v === null ? null : v * 1000;
    }
    history.push(point);
    if (history.length > KEEP) history.shift();
  }
  last = s;
}

function draw(canvasId, legendId, series, pick) {
  const c = $(canvasId), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  let max = 1;
  for (const p of history) for (const [k] of series) max = Math.max(max, pick(p, k) || 0);
  g.strokeStyle = "#ddd";
  g.fillStyle = "#778";
  g.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = c.height - 14 - (c.height - 24) * i / 4;
    g.beginPath(); g.moveTo(40, y); g.lineTo(c.width, y); g.stroke();
    g.fillText((max * i / 4).toPrecision(3), 0, y + 4);
  }
  // Spread what is kept over the width: the chart fills up rather than crawls in.
  const x = (i) => 40 + (c.width - 44) * i / Math.max(1, history.length - 1);
  for (const [k, , color] of series) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    let pen = false;
    history.forEach((p, i) => {
      const v = pick(p, k);
      if (v === null || v === undefined) { pen = false; return; }
      const y = c.height - 14 - (c.height - 24) * v / max;
      if (pen) g.lineTo(x(i), y); else g.moveTo(x(i), y);
      pen = true;
    });
    g.stroke();
  }
  $(legendId).innerHTML = series.map(([, label, color]) =>
    `<span><i style="background:${color}"></i>${label}</span>`).join("");
}

function showStats(s) {
  $("service").textContent = s.service + " " + s.version;
  const h = s.health, ok = h.live && h.healthy;
  $("health").textContent = !h.live ? "not live" : !h.healthy ? "unhealthy" : h.ready ? "ready" : "not ready";
  $("health").className = "pill " + (ok ? "ok" : "bad");
  const counters = Object.entries(s.counters).concat(Object.entries(s.gauges));
  fillRows("counters", counters.map(([k, v]) => ({ cells: [[k], [v, true, "c-" + k]] })));
  fillRows("healthtab", Object.entries(h).map(([k, v]) => ({ cells: [[k], [v, true, "h-" + k]] })));
  const hd = s.handler_duration_seconds;
  fillRows("quantiles", [["count", hd.count], ["p50 ms", hd.p50 * 1000], ["p90 ms", hd.p90 * 1000],
    ["p99 ms", hd.p99 * 1000]].map(([k, v]) => ({ cells: [[k], [k === "count" ? v : v.toFixed(2), true, "q-" + k.split(" ")[0]]] })));
  fillRows("routes", s.routes.map((r) => {
    const l = r.live || {};
    return { cells: [[r.route], [r.source], [r.handler], [l.in_flight, true, "r" + r.route + "-in_flight"],
      [l.running, true], [l.stalled, true, "r" + r.route + "-stalled"], [l.stuck, true], [l.rerouting, true],
      [l.emitting, true, "r" + r.route + "-emitting"], [l.waiting_due, true, "r" + r.route + "-waiting_due"],
      [r.stalled_total, true, "r" + r.route + "-stalled_total"], [r.rerouted_total, true, "r" + r.route + "-rerouted_total"],
      [r.late_completions_total, true, "r" + r.route + "-late"], [r.on_stall], [r.on_error],
      [r.rate_throttled == null ? "none" : r.rate_throttled ? "throttled" : "on pace", false, "r" + r.route + "-rate"],
      [r.rate_limited_total, true], [r.breaker || "none", false, "r" + r.route + "-breaker"]],
      cls: r.breaker === "open" ? "stalled" : "" };
  }));
  fillRows("targets", s.targets.map((t) => ({ cells: [[t.target], [t.rerouted_total, true], [t.reroute_errors_total, true]],
    data: { target: t.target } })));
  const p = s.partitions;
  $("parts-note").textContent = `top ${p.items.length} of ${p.total} by lag`;
  fillRows("partitions", p.items.map((i) => ({ cells: [[i.source], [i.topic], [i.partition, true],
    [i.committed_offset, true], [i.consumer_lag, true]], data: { partition: i.partition } })));
}

function showTasks(t) {
  const msgs = t.tasks.filter((x) => x.message).sort((a, b) => b.age_ms - a.age_ms);
  $("tasks-note").textContent = `${Math.min(msgs.length, TASKS_TOP)} of ${t.total} pending tasks`;
  fillRows("tasks", msgs.slice(0, TASKS_TOP).map((x) => {
    const m = x.message;
    return { cells: [[(x.age_ms / 1000).toFixed(1) + " s", true], [x.state], [m.handler], [m.origin],
      [m.partition, true], [m.offset, true], [m.key], [m.attempt, true], [m.stalled ? "yes" : "no"],
      [m.process ? m.process.pid : null, true]],
      cls: m.stalled ? "stalled" : "", data: { offset: m.offset, partition: m.partition } };
  }));
}

async function poll() {
  try {
    const [s, t] = await Promise.all([get("/stats"), get("/tasks")]);
    record(s);
    showStats(s);
    showTasks(t);
    draw("rates", "rates-legend", RATES, (p, k) => p.rates[k]);
    draw("times", "times-legend", TIMES, (p, k) => p.times[k]);
    failingSince = null;
    $("banner").hidden = true;
    $("login").hidden = true;
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e.auth) {
      $("login").hidden = false;
      $("banner").textContent = token ? "The token was refused." : "This endpoint needs its admin token.";
    } else {
      failingSince = failingSince || new Date();
      $("banner").textContent = "The service is not answering (since " +
        failingSince.toLocaleTimeString() + "): " + e.message;
      $("health").textContent = "no answer";
      $("health").className = "pill bad";
    }
    $("banner").hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("taskloop-token", token);
});
poll();
