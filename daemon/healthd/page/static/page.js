// healthd status page: live updates from the event stream (SSE) and filtering without reloads.
// The server renders the whole state; this only keeps it current. No framework, no inline code.
// Text from events goes in with textContent only, never as HTML.

const ICONS = { up: "✓", down: "✕", degraded: "!", unknown: "?" };
const STATUS_CLASSES = ["st-up", "st-down", "st-degraded", "st-unknown"];
const content = document.getElementById("content");
const live = document.getElementById("live");

function setLive(state, text) {
  if (!live) return;
  live.dataset.state = state;
  live.textContent = text;
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function latency(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 1) return `${ms.toFixed(1)} ms`;
  return `${(ms * 1000).toFixed(0)} µs`;
}

function setStatus(element, status) {
  element.classList.remove(...STATUS_CLASSES);
  element.classList.add(`st-${status}`);
  element.dataset.status = status;
}

function setPill(pill, status) {
  if (!pill) return;
  setStatus(pill, status);
  pill.querySelector(".icon").textContent = ICONS[status] || "?";
  pill.querySelector(".st-text").textContent = status;
}

function bump(name, delta) {
  const counter = document.querySelector(`[data-count="${name}"]`);
  if (counter) counter.textContent = String(Math.max(0, Number(counter.textContent) + delta));
}

// One check or service changed state: its old state's counter goes down, the new one's up.
function moveCount(kind, data) {
  if (!data.previous || data.previous === data.status) return false;
  bump(`${kind}-${data.previous}`, -1);
  bump(`${kind}-${data.status}`, 1);
  return true;
}

function count(name) {
  const counter = document.querySelector(`[data-count="${name}"]`);
  return counter ? Number(counter.textContent) : 0;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function updateBanner() {
  const banner = document.getElementById("banner");
  if (!banner) return;
  const services = ["down", "degraded", "unknown", "up"].map((s) => count(`services-${s}`));
  const [down, degraded, , up] = services;
  const total = services.reduce((a, b) => a + b, 0);
  let overall = "unknown";
  let text = total ? "Waiting for first results" : "No services";
  if (down) [overall, text] = ["down", `${plural(down, "service")} down`];
  else if (degraded) [overall, text] = ["degraded", `${plural(degraded, "service")} degraded`];
  else if (total && up === total) [overall, text] = ["up", "All services up"];
  setStatus(banner, overall);
  banner.dataset.overall = overall;
  banner.querySelector(".icon").textContent = ICONS[overall];
  banner.querySelector(".headline").textContent = text;
  document.title = `${text} · healthd`;
}

function rowFor(id) {
  for (const row of document.querySelectorAll(".check[data-id]")) {
    if (row.dataset.id === id) return row;
  }
  return null;
}

function onCheck(event) {
  const data = JSON.parse(event.data);
  moveCount("checks", data);
  const row = rowFor(`${data.service}/${data.check}`);
  if (!row) return;
  setStatus(row, data.status);
  setPill(row.querySelector(".pill"), data.status);
  const lat = row.querySelector(".c-lat");
  if (lat) lat.textContent = latency(data.latency_ms);
  const error = row.querySelector(".c-error");
  if (error) {
    error.hidden = !data.error;
    error.querySelector(".kind").textContent = data.error ? data.error.kind : "";
    error.querySelector(".msg").textContent = data.error ? data.error.message : "";
  }
  const since = row.querySelector("time[data-since]");
  if (since) {
    since.dateTime = data.time;
    since.title = data.time;
    since.textContent = "0s";
  }
}

function onService(event) {
  const data = JSON.parse(event.data);
  if (moveCount("services", data)) updateBanner();
  for (const group of document.querySelectorAll("details.service[data-service]")) {
    if (group.dataset.service !== data.service) continue;
    setStatus(group, data.status);
    setPill(group.querySelector("summary .pill"), data.status);
    if (data.status !== "up") group.open = true;
  }
}

// Re-render from the server: after a reload, a restart, or a new filter. The filter form stays,
// so typing is not interrupted.
let refreshing = null;
async function refresh() {
  if (refreshing) refreshing.abort();
  refreshing = new AbortController();
  try {
    const answer = await fetch(location.href, { headers: { Accept: "text/html" }, signal: refreshing.signal });
    if (!answer.ok) return;
    const fresh = new DOMParser().parseFromString(await answer.text(), "text/html").getElementById("content");
    if (!fresh) return;
    const form = document.getElementById("filters");
    const keep = form && form.contains(document.activeElement) ? form : null;
    const nodes = [...fresh.childNodes].map((node) =>
      keep && node.nodeType === 1 && node.id === "filters" ? keep : document.adoptNode(node),
    );
    content.replaceChildren(...nodes);
    wireFilters();
  } catch (error) {
    if (error.name !== "AbortError") setLive("static", "update failed");
  }
}

let typing = null;
function onFilterInput(event) {
  const form = event.currentTarget;
  clearTimeout(typing);
  typing = setTimeout(() => {
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (value) params.append(key, value);
    const query = params.toString();
    history.replaceState(null, "", query ? `?${query}` : location.pathname);
    refresh();
  }, 250);
}

function wireFilters() {
  const form = document.getElementById("filters");
  if (!form || form.dataset.wired) return;
  form.dataset.wired = "1";
  form.addEventListener("input", onFilterInput);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onFilterInput({ currentTarget: form });
  });
}

// Tooltips of the list page's bars: the server draws runs of colour; the numbers of each period
// come from the uptime series, fetched once per check when a pointer or the keyboard asks.
const series = new Map();
const tip = document.createElement("div");
tip.className = "tip";
tip.hidden = true;
tip.setAttribute("role", "tooltip");
document.body.append(tip);

function percent(ratio) {
  if (ratio === null || ratio === undefined) return "–";
  if (ratio >= 1) return "100%";
  const value = Math.floor(ratio * 10000) / 100;
  return value >= 99 ? `${value.toFixed(2)}%` : `${value.toFixed(1)}%`;
}

function bucketText(bucket, days) {
  const when = bucket.start.replace("T", " ").slice(0, days ? 10 : 16) + (days ? "" : " UTC");
  if (!bucket.probes) return `${when}: no data`;
  const down = bucket.down_seconds >= 1 ? `, down ${duration(bucket.down_seconds)}` : "";
  const mean = bucket.latency_ms && bucket.latency_ms.mean != null ? `, ${latency(bucket.latency_ms.mean)}` : "";
  return `${when}: ${percent(bucket.ratio)} up, ${bucket.probes} probes${down}${mean}`;
}

function buckets(svg) {
  const url = svg.dataset.series;
  if (!series.has(url)) {
    series.set(url, fetch(url).then((r) => (r.ok ? r.json() : { buckets: [] })).then((b) => b.buckets || [])
      .catch(() => []));
  }
  return series.get(url);
}

async function showTip(svg, index) {
  const count = svg.viewBox.baseVal.width;
  index = Math.max(0, Math.min(count - 1, index));
  svg.dataset.index = String(index);
  const list = await buckets(svg);
  if (svg.dataset.index !== String(index)) return; // the pointer moved on meanwhile
  const bucket = list[index];
  tip.textContent = bucket ? bucketText(bucket, svg.dataset.series.includes("step=1d")) : "no data";
  const box = svg.getBoundingClientRect();
  tip.style.left = `${box.left + window.scrollX + ((index + 0.5) / count) * box.width}px`;
  tip.style.top = `${box.top + window.scrollY}px`;
  tip.hidden = false;
}

function barAt(event) {
  const svg = event.target.closest && event.target.closest("svg.bars[data-series]");
  return svg && content.contains(svg) ? svg : null;
}

document.addEventListener("pointermove", (event) => {
  const svg = barAt(event);
  if (!svg) { tip.hidden = true; return; }
  const box = svg.getBoundingClientRect();
  showTip(svg, Math.floor(((event.clientX - box.left) / box.width) * svg.viewBox.baseVal.width));
});
document.addEventListener("focusin", (event) => {
  const svg = barAt(event);
  if (svg) showTip(svg, svg.viewBox.baseVal.width - 1);
  else tip.hidden = true;
});
document.addEventListener("focusout", () => { tip.hidden = true; });
document.addEventListener("keydown", (event) => {
  const svg = barAt(event);
  if (!svg || !["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) return;
  event.preventDefault();
  const count = svg.viewBox.baseVal.width;
  const now = Number(svg.dataset.index || count - 1);
  const next = { ArrowLeft: now - 1, ArrowRight: now + 1, Home: 0, End: count - 1 }[event.key];
  showTip(svg, next);
});

function tickSince() {
  const now = Date.now();
  for (const time of document.querySelectorAll("time[data-since]")) {
    const start = Date.parse(time.dateTime);
    if (!Number.isNaN(start)) time.textContent = duration((now - start) / 1000);
  }
}

function connect() {
  if (!window.EventSource) return;
  const stream = new EventSource("/api/v1/events");
  stream.addEventListener("open", () => setLive("live", "live"));
  stream.addEventListener("check", onCheck);
  stream.addEventListener("service", onService);
  for (const type of ["reload", "start"]) stream.addEventListener(type, refresh);
  stream.addEventListener("error", () => {
    if (stream.readyState === EventSource.CLOSED) {
      // no event stream here (an older daemon, or the token expired): fall back to polling
      setLive("static", "updates every 30 s");
      setInterval(refresh, 30000);
    } else {
      setLive("static", "reconnecting…");
    }
  });
}

wireFilters();
setInterval(tickSince, 10000);
connect();
