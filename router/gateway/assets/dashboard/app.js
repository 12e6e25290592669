// Switchyard's dashboard: draws the live feed of `GET /ai/stream` (one snapshot a second, and
// events as they happen). No framework, no polling.
//
// IMPORTANT: every string from the feed is hostile (model names, reasons and alert messages come
// from config and from upstreams): it reaches the page through textContent and dataset only,
// never as markup. The key a user pastes is sent once (POST /dashboard/session) and dropped.

/* global uPlot */

const POINTS = 900; // 15 minutes of one-second snapshots, per chart series
const MAX_DECISIONS = 100;
const MAX_ALERTS = 100;
const STALE_MS = 5000; // no message for this long on an open socket: say so
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
// The admin API answers this GET only to an operator (a cheap, read-only probe).
const ADMIN_PROBE = "/admin/keys";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// Formatting (null: no data yet)

const none = (v) => v === null || v === undefined || Number.isNaN(v);
const fmt = {
  rate: (v) => (none(v) ? "—" : v >= 100 ? v.toFixed(0) : v.toFixed(2)),
  pct: (v) => (none(v) ? "—" : `${(v * 100).toFixed(1)}%`),
  ms: (v) => (none(v) ? "—" : v >= 100 ? v.toFixed(0) : v.toFixed(1)),
  usd: (v) => (none(v) ? "—" : v >= 1 ? `$${v.toFixed(2)}` : `$${v.toFixed(v >= 0.01 ? 4 : 6)}`),
  // Axis ticks: two significant digits ($0.0021), so the labels fit their gutter.
  usdTick: (v) => (none(v) ? "—" : v === 0 ? "$0" : v >= 1 ? `$${v.toFixed(2)}` : `$${v.toPrecision(2)}`),
  int: (v) => (none(v) ? "—" : String(Math.round(v))),
  time: (ms) => new Date(ms).toLocaleTimeString([], { hour12: false }),
  uptime: (s) => {
    if (none(s)) return "—";
    const t = Math.floor(s);
    const h = Math.floor(t / 3600);
    const m = Math.floor((t % 3600) / 60);
    const sec = t % 60;
    return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${sec}s` : `${sec}s`;
  },
};

/** An element with text: the only way this file makes content. */
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function setText(id, text) {
  const e = $(id);
  if (e.textContent !== text) e.textContent = text;
}

// ---------------------------------------------------------------------------
// The feed banner

const feed = {
  set(state, text, retry) {
    const box = $("feed");
    box.dataset.state = state;
    setText("feed-text", text);
    $("feed-retry").hidden = !retry;
  },
};

// ---------------------------------------------------------------------------
// Models table

const rows = new Map(); // model name → { tr, cells, drain, forceOpen, forceClosed, clear }
let operator = false;

function modelRow(name) {
  let row = rows.get(name);
  if (row) return row;
  const tr = document.createElement("tr");
  tr.dataset.model = name;
  const head = el("th");
  head.scope = "row";
  const title = el("span", name, "model-name");
  const provider = el("span", "", "provider");
  head.append(title, provider);
  tr.append(head);
  const cells = { provider };
  for (const key of ["rps", "success", "latency", "ttft", "tps", "cost", "share"]) {
    cells[key] = el("td", "—", "num");
    cells[key].dataset.field = key;
    tr.append(cells[key]);
  }
  const breakerCell = el("td");
  cells.breaker = el("span", "—", "breaker");
  cells.tags = el("span");
  breakerCell.append(cells.breaker, cells.tags);
  tr.append(breakerCell);
  const ops = el("td", null, "ops-col");
  ops.hidden = !operator;
  const box = el("div", null, "ops-cell");
  row = { tr, cells, ops, model: null };
  row.drain = button("Drain", () => drain(name, row));
  row.forceOpen = button("Open", () => force(name, "open"));
  row.forceClosed = button("Close", () => force(name, "closed"));
  row.clear = button("Clear", () => force(name, null));
  row.forceOpen.setAttribute("aria-label", `Force the breaker of ${name} open`);
  row.forceClosed.setAttribute("aria-label", `Force the breaker of ${name} closed`);
  row.clear.setAttribute("aria-label", `Clear the forced breaker state of ${name}`);
  box.append(row.drain, row.forceOpen, row.forceClosed, row.clear);
  ops.append(box);
  tr.append(ops);
  rows.set(name, row);
  insertSorted($("models-body"), tr, name);
  return row;
}

function insertSorted(body, tr, name) {
  for (const other of body.children) {
    if (other.dataset.model > name) {
      body.insertBefore(tr, other);
      return;
    }
  }
  body.append(tr);
}

function button(text, onClick) {
  const b = el("button", text);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function setBreaker(row, state, forced, drained) {
  const c = row.cells;
  c.breaker.dataset.breaker = state || "unknown";
  c.breaker.textContent = state ? state.replace("_", " ") : "—";
  row.tr.dataset.breaker = state || "unknown";
  c.tags.replaceChildren();
  if (forced) c.tags.append(el("span", `forced ${forced}`, "tag"));
  if (drained) c.tags.append(el("span", "drained", "tag"));
  row.drain.textContent = drained ? "Undrain" : "Drain";
  row.drain.setAttribute("aria-label", `${drained ? "Undrain" : "Drain"} ${row.tr.dataset.model}`);
  row.drain.setAttribute("aria-pressed", drained ? "true" : "false");
}

function drawModels(models) {
  const seen = new Set();
  for (const m of models) {
    if (typeof m.model !== "string") continue;
    seen.add(m.model);
    const row = modelRow(m.model);
    row.model = m;
    const c = row.cells;
    c.provider.textContent = m.provider || "";
    c.rps.textContent = fmt.rate(m.requests_per_s);
    c.success.textContent = fmt.pct(m.success_rate);
    c.latency.textContent = `${fmt.ms(m.latency_p50_ms)} / ${fmt.ms(m.latency_p99_ms)}`;
    c.ttft.textContent = `${fmt.ms(m.ttft_p50_ms)} / ${fmt.ms(m.ttft_p99_ms)}`;
    c.tps.textContent = fmt.rate(m.tokens_per_s);
    c.cost.textContent = fmt.usd(m.cost_per_min_usd);
    c.share.textContent = fmt.pct(m.share);
    setBreaker(row, m.breaker, m.forced, m.drained);
    row.tr.dataset.idle = m.requests_per_s > 0 || (m.in_flight || 0) > 0 ? "false" : "true";
  }
  for (const [name, row] of rows) {
    if (!seen.has(name)) {
      row.tr.remove();
      rows.delete(name);
    }
  }
  $("models-empty").hidden = rows.size > 0;
}

// ---------------------------------------------------------------------------
// Totals, keys, cache

function drawTotals(s) {
  const t = s.totals || {};
  setText("t-rps", fmt.rate(t.requests_per_s));
  setText("t-eps", fmt.rate(t.errors_per_s));
  setText("t-cost", fmt.usd(t.cost_per_min_usd));
  setText("t-inflight", fmt.int(t.in_flight));
  setText("t-alerts", fmt.int(t.alerts_active));
  setText("t-uptime", fmt.uptime(s.uptime_s));
  setText("t-updated", none(s.ts_ms) ? "" : `at ${fmt.time(s.ts_ms)}`);
  const c = s.cache || {};
  setText("t-cache", fmt.pct(c.hit_rate));
  setText("t-cache-detail", none(c.hits) ? "" : `${c.hits} hits · ${c.misses} misses`);
}

function drawKeys(keys) {
  const body = $("keys-body");
  const list = Array.isArray(keys) ? keys : [];
  const trs = list.map((k) => {
    const tr = document.createElement("tr");
    tr.dataset.key = String(k.id ?? "");
    const name = el("th", k.name || k.id || "—");
    name.scope = "row";
    const budget = none(k.budget_usd) ? "none" : `${fmt.usd(k.budget_usd)}${k.period ? ` / ${k.period}` : ""}`;
    const used = el("td");
    if (!none(k.used)) {
      const bar = el("span", null, "bar");
      const fill = el("span");
      fill.style.width = `${Math.min(100, Math.max(0, k.used * 100)).toFixed(1)}%`;
      bar.dataset.level = k.used >= 1 ? "bad" : k.used >= 0.8 ? "warn" : "ok";
      bar.append(fill);
      used.append(bar, el("span", fmt.pct(k.used), "bar-text"));
    } else {
      used.textContent = "—";
    }
    tr.append(name, el("td", fmt.usd(k.spend_usd), "num"), el("td", budget, "num"), used);
    return tr;
  });
  body.replaceChildren(...trs);
  $("keys-empty").hidden = trs.length > 0;
}

// ---------------------------------------------------------------------------
// Charts: uPlot over a client-side ring of the last POINTS snapshots

const ring = { t: [], models: [], perModel: new Map(), cost: [] };
const FIELDS = { rps: "requests_per_s", p99: "latency_p99_ms", cost: "cost_per_min_usd" };
const PALETTE = ["#1f6feb", "#d73a49", "#2da44e", "#bf8700", "#8250df", "#e16f24", "#0598bc", "#bf3989", "#57606a", "#116329"];
const charts = {};

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function record(s) {
  const t = (none(s.ts_ms) ? Date.now() : s.ts_ms) / 1000;
  ring.t.push(t);
  const byName = new Map();
  for (const m of s.models || []) if (typeof m.model === "string") byName.set(m.model, m);
  let changed = false;
  // A model joins the charts with its first traffic (an unused one would only crowd them).
  for (const [name, m] of byName) {
    if (!ring.perModel.has(name) && m.requests_per_s > 0) {
      const blank = () => new Array(ring.t.length - 1).fill(null);
      ring.perModel.set(name, { rps: blank(), p99: blank(), cost: blank() });
      changed = true;
    }
  }
  for (const [name, series] of ring.perModel) {
    const m = byName.get(name);
    for (const k of Object.keys(FIELDS)) {
      const v = m ? m[FIELDS[k]] : null;
      series[k].push(none(v) ? null : v);
    }
  }
  const total = s.totals ? s.totals.cost_per_min_usd : null;
  ring.cost.push(none(total) ? null : total);
  if (ring.t.length > POINTS) {
    ring.t.shift();
    ring.cost.shift();
    for (const series of ring.perModel.values()) for (const k of Object.keys(FIELDS)) series[k].shift();
  }
  if (changed || !charts.rps) {
    ring.models = [...ring.perModel.keys()].sort();
    rebuildCharts();
  }
  drawCharts();
}

function chartOptions(width, names, unit) {
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid") }, ticks: { stroke: cssVar("--grid") } };
  return {
    width,
    height: 200,
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [axis, { ...axis, size: 64, values: (u, vals) => vals.map((v) => unit(v)) }],
    series: [
      {},
      ...names.map((name, i) => ({
        label: name,
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        points: { show: false },
        spanGaps: false,
        value: (u, v) => (v === null || v === undefined ? "—" : unit(v)),
      })),
    ],
  };
}

function rebuildCharts() {
  const specs = [
    ["rps", "chart-rps", (v) => fmt.rate(v)],
    ["p99", "chart-p99", (v) => fmt.ms(v)],
    ["cost", "chart-cost", (v) => fmt.usdTick(v)],
  ];
  for (const [key, id, unit] of specs) {
    const box = $(id);
    if (charts[key]) charts[key].destroy();
    const names = key === "cost" ? ["total", ...ring.models] : ring.models;
    charts[key] = new uPlot(chartOptions(box.clientWidth || 360, names, unit), chartData(key), box);
  }
}

function chartData(key) {
  const series = ring.models.map((name) => ring.perModel.get(name)[key]);
  return key === "cost" ? [ring.t, ring.cost, ...series] : [ring.t, ...series];
}

function drawCharts() {
  for (const key of Object.keys(charts)) charts[key].setData(chartData(key));
}

const resize = new ResizeObserver(() => {
  for (const [key, id] of [["rps", "chart-rps"], ["p99", "chart-p99"], ["cost", "chart-cost"]]) {
    const c = charts[key];
    const w = $(id).clientWidth;
    if (c && w > 0 && Math.abs(c.width - w) > 1) c.setSize({ width: w, height: 200 });
  }
});
for (const id of ["chart-rps", "chart-p99", "chart-cost"]) resize.observe($(id));

// ---------------------------------------------------------------------------
// Decisions

let decisionsSeen = 0;

function drawDecision(d) {
  decisionsSeen += 1;
  const li = el("li");
  li.dataset.model = String(d.model ?? "");
  li.dataset.cache = String(d.cache ?? "");
  const failed = typeof d.status === "number" && d.status >= 400;
  li.dataset.failed = failed ? "true" : "false";
  const line = el("div");
  line.append(el("span", fmt.time(d.ts_ms || Date.now()), "when"));
  line.append(el("span", `${d.route || "?"} → `));
  line.append(el("strong", d.model || "(none)", "chosen"));
  if (d.runner_up) line.append(el("span", ` · runner-up ${d.runner_up}`));
  const facts = [
    `${d.status ?? "?"}`,
    `${fmt.ms(d.latency_ms)} ms`,
    `${d.attempts ?? 0} attempt${d.attempts === 1 ? "" : "s"}`,
  ];
  if (d.fallbacks) facts.push(`${d.fallbacks} fallback${d.fallbacks === 1 ? "" : "s"}`);
  if (d.cache) facts.push(`cache ${d.cache}`);
  if (!none(d.cost_usd)) facts.push(fmt.usd(d.cost_usd));
  if (Array.isArray(d.policies) && d.policies.length) facts.push(`policies: ${d.policies.join(", ")}`);
  line.append(el("span", ` · ${facts.join(" · ")}`, "detail"));
  li.append(line, el("span", d.reason || "", "why"));
  const list = $("decisions");
  list.prepend(li);
  while (list.children.length > MAX_DECISIONS) list.lastElementChild.remove();
  $("decisions-empty").hidden = true;
  setText("decisions-count", `(${decisionsSeen} seen)`);
}

// ---------------------------------------------------------------------------
// Alerts: from `alert` events and, on load, GET /ai/alerts

const alerts = new Map(); // id → li

function drawAlert(a) {
  if (!a || typeof a !== "object") return;
  const id = String(a.id ?? `${a.kind}:${a.subject}`);
  let li = alerts.get(id);
  if (!li) {
    li = el("li");
    li.dataset.alertId = id;
    alerts.set(id, li);
  }
  li.dataset.kind = String(a.kind ?? "");
  li.dataset.subject = String(a.subject ?? "");
  li.dataset.state = String(a.state ?? "firing");
  li.dataset.severity = String(a.severity ?? "warning");
  const when = a.state === "resolved" && a.resolved_ms ? a.resolved_ms : a.started_ms;
  const head = el("div");
  head.append(
    el("span", fmt.time(when || Date.now()), "when"),
    el("span", `${a.severity || "warning"} · ${a.kind || "alert"} · ${a.subject || ""}`, "alert-title"),
  );
  if (a.state === "resolved") head.append(el("span", "resolved", "tag"));
  li.replaceChildren(head, el("div", a.message || ""));
  const list = $("alerts");
  // Firing alerts first, newest first; resolved ones below.
  if (a.state === "resolved") {
    const firstResolved = [...list.children].find((x) => x !== li && x.dataset.state === "resolved");
    list.insertBefore(li, firstResolved || null);
  } else {
    list.prepend(li);
  }
  while (list.children.length > MAX_ALERTS) {
    const last = list.lastElementChild;
    alerts.delete(last.dataset.alertId);
    last.remove();
  }
  $("alerts-empty").hidden = list.children.length > 0;
}

/** The alerts of GET /ai/alerts in the order to draw them: `recent` (newest first) replayed
 * oldest first, so an alert's last transition wins, then `active` (what fires now). */
function alertsOf(body) {
  if (Array.isArray(body)) return body;
  if (!body || typeof body !== "object") return [];
  const recent = Array.isArray(body.recent) ? [...body.recent].reverse() : [];
  const active = Array.isArray(body.active) ? body.active : [];
  return [...recent, ...active];
}

async function loadAlerts() {
  try {
    const r = await fetch("/ai/alerts", { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) return; // 404 until the endpoint exists, 401 before sign-in: the feed still brings them
    for (const a of alertsOf(await r.json())) drawAlert(a);
  } catch {
    // the feed's banner already says when the gateway is away
  }
}

// ---------------------------------------------------------------------------
// Operator controls (shown only when the admin API answers this browser)

async function probeOperator() {
  try {
    const r = await fetch(ADMIN_PROBE, { credentials: "same-origin", cache: "no-store" });
    setOperator(r.ok);
  } catch {
    setOperator(false);
  }
}

function setOperator(on) {
  operator = on;
  $("ops-global").hidden = !on;
  for (const th of document.querySelectorAll("#models .ops-col")) th.hidden = !on;
  for (const row of rows.values()) row.ops.hidden = !on;
}

async function admin(method, path, body, what) {
  const out = $("ops-result");
  try {
    const init = { method, credentials: "same-origin", cache: "no-store", headers: {} };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let detail = "";
    if (!r.ok) {
      try {
        const e = await r.json();
        detail = e && e.error && e.error.message ? `: ${e.error.message}` : "";
      } catch {
        detail = "";
      }
    }
    out.dataset.ok = r.ok ? "true" : "false";
    out.textContent = r.ok ? `${what}: done.` : `${what}: refused (HTTP ${r.status})${detail}`;
  } catch {
    out.dataset.ok = "false";
    out.textContent = `${what}: the gateway did not answer.`;
  }
}

function modelPath(name) {
  return `/admin/models/${encodeURIComponent(name)}`;
}

function drain(name, row) {
  const drained = row.model && row.model.drained;
  const method = drained ? "DELETE" : "POST";
  admin(method, `${modelPath(name)}/drain`, undefined, `${drained ? "Undrain" : "Drain"} ${name}`);
}

function force(name, state) {
  const what = state ? `Force ${name}'s breaker ${state}` : `Clear ${name}'s forced breaker`;
  admin("POST", `${modelPath(name)}/breaker`, { force: state }, what);
}

$("reset-breakers").addEventListener("click", () =>
  admin("POST", "/admin/breakers/reset", undefined, "Reset every breaker"),
);

// ---------------------------------------------------------------------------
// Messages from the feed

function onMessage(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    return;
  }
  if (!m || typeof m !== "object") return;
  switch (m.type) {
    case "snapshot":
      drawTotals(m);
      drawModels(Array.isArray(m.models) ? m.models : []);
      drawKeys(m.keys);
      record(m);
      break;
    case "decision":
      drawDecision(m);
      break;
    case "breaker": {
      const row = typeof m.model === "string" ? rows.get(m.model) : undefined;
      if (row) {
        const forced = m.cause === "forced" ? m.to : row.model && row.model.forced;
        setBreaker(row, m.to, forced, row.model && row.model.drained);
      }
      break;
    }
    case "policy_reload":
      if (m.ok === false) setText("ops-result", `Policy reload failed: ${m.detail || ""}`);
      break;
    case "alert":
      drawAlert(m);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------
// The connection: reconnects with backoff; a refused handshake asks for a key

const conn = { ws: null, attempt: 0, timer: null, last: 0, opened: false, everOpened: false };

function streamUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ai/stream`;
}

function connect() {
  clearTimeout(conn.timer);
  if (conn.ws) {
    conn.ws.onclose = null;
    conn.ws.close();
  }
  conn.opened = false;
  if (conn.attempt === 0) feed.set("connecting", "Connecting to the live feed…", false);
  else feed.set("disconnected", "Disconnected from the live feed: reconnecting…", true);
  let ws;
  try {
    ws = new WebSocket(streamUrl());
  } catch {
    scheduleReconnect("The live feed could not be opened");
    return;
  }
  conn.ws = ws;
  ws.onopen = () => {
    conn.opened = true;
    conn.attempt = 0;
    conn.last = Date.now();
    $("signin").hidden = true;
    feed.set("live", "Live", false);
    if (!conn.everOpened) {
      conn.everOpened = true;
      loadAlerts();
      probeOperator();
    }
  };
  ws.onmessage = (ev) => {
    conn.last = Date.now();
    if ($("feed").dataset.state !== "live") feed.set("live", "Live", false);
    if (typeof ev.data === "string") onMessage(ev.data);
  };
  ws.onclose = (ev) => onClose(ev, ws);
}

async function onClose(ev, ws) {
  if (conn.ws !== ws) return;
  conn.ws = null;
  const wasOpen = conn.opened;
  conn.opened = false;
  // Closed by the server for who we are (policy violation that is not "too slow", or an
  // application code 4401/4403): ask for a key.
  const authClose = ev.code === 4401 || ev.code === 4403 || (ev.code === 1008 && !/slow/i.test(ev.reason || ""));
  if (authClose) return refused();
  if (!wasOpen && (await refusedHandshake())) return refused();
  const why = wasOpen ? "Disconnected from the live feed" : "The gateway is not reachable";
  scheduleReconnect(why);
}

/** After a handshake that failed: is the gateway up and refusing us (rather than away)? A
 * plain GET of the feed says 401/403 when it is about the caller; when it says something
 * else (not an upgrade) yet handshakes keep failing, the refusal is taken as the reason too. */
async function refusedHandshake() {
  try {
    const r = await fetch("/ai/stream", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401 || r.status === 403) return true;
    return conn.attempt >= 1 && r.status !== 404 && r.status < 500;
  } catch {
    return false;
  }
}

function refused() {
  clearTimeout(conn.timer);
  feed.set("refused", "Disconnected: the live feed needs a key", true);
  $("signin").hidden = false;
  $("signin-key").focus();
}

function scheduleReconnect(why) {
  const delay = BACKOFF_MS[Math.min(conn.attempt, BACKOFF_MS.length - 1)];
  const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
  conn.attempt += 1;
  feed.set("disconnected", `${why}: reconnecting in ${Math.ceil(jittered / 1000)} s`, true);
  clearTimeout(conn.timer);
  conn.timer = setTimeout(connect, jittered);
}

// A socket can stay open while nothing arrives (a proxy that holds it): say so.
setInterval(() => {
  if (conn.opened && Date.now() - conn.last > STALE_MS) {
    feed.set("stalled", `No update for ${Math.round((Date.now() - conn.last) / 1000)} s`, true);
  }
}, 1000);

$("feed-retry").addEventListener("click", () => {
  conn.attempt = 0;
  connect();
});

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("signin-key");
  const key = input.value.trim();
  input.value = "";
  const error = $("signin-error");
  error.textContent = "";
  if (!key) return;
  try {
    const r = await fetch("/dashboard/session", {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { authorization: `Bearer ${key}` },
    });
    if (!r.ok) {
      error.textContent =
        r.status === 401 || r.status === 403
          ? "That key was refused (it needs the admin key or the dashboard scope)."
          : `Sign-in failed (HTTP ${r.status}).`;
      input.focus();
      return;
    }
  } catch {
    error.textContent = "The gateway did not answer.";
    return;
  }
  $("signin").hidden = true;
  conn.attempt = 0;
  conn.everOpened = false; // load alerts and probe the admin API again as the new caller
  connect();
});

connect();
