// The live page of a streamer daemon: plain JavaScript, no build step, no framework.
// Everything goes through the server's own API (server.py), with its rules: the token, when the
// server has one, is asked for once and sent as `Authorization: Bearer`; changes are POST/DELETE
// from this page's own origin, bodies as JSON.
"use strict";

const STATUS_EVERY_MS = 1000;
const PREVIEW_EVERY_MS = 400;
const CHART_SECONDS = 300;  // the most the charts show; less while the history is shorter
const CHART_MIN_SECONDS = 60;
const MAX_EVENTS = 100;
const COLORS = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#f06292"];
const previewUrl = (id) => {  // a JPEG of its latest frame
  const source = encodeURIComponent(id);
  return `/sources/${source}/preview.jpg`;
};
const WHERE = { lavfi: "graph", rtsp: "url", hls: "url", file: "path", webcam: "device" };
const PLACEHOLDER = {
  lavfi: "testsrc2=size=640x360:rate=15", rtsp: "rtsp://camera/stream", hls: "https://host/live.m3u8",
  file: "/videos/clip.mp4", webcam: "/dev/video0",
};

let token = sessionStorage.getItem("streamer-token");
let reconnectNow = () => {};  // ends the event stream's wait before it tries again
const tiles = new Map();     // source id -> {root, img, fields, busy, url}
const samples = [];          // {t, sources: {id: {fps, p50_ms, p99_ms}}}, oldest first
const colorOf = new Map();

const $ = (id) => document.getElementById(id);

function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(path, Object.assign({}, options, { headers, cache: "no-store" })).then((response) => {
    if (response.status === 401) askForToken();
    return response;
  });
}

function askForToken() {
  $("login").hidden = false;
  setConnection("token needed");
}

function setConnection(state) {
  const badge = $("connection");
  badge.textContent = state;
  badge.dataset.state = state;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function color(id) {
  if (!colorOf.has(id)) colorOf.set(id, COLORS[colorOf.size % COLORS.length]);
  return colorOf.get(id);
}

// ---- tiles -------------------------------------------------------------------------------------

function tileFor(source) {
  let tile = tiles.get(source.id);
  if (tile) return tile;
  const img = element("img", { class: "preview", alt: `latest frame of ${source.id}` });
  const fields = {
    state: element("span", { class: "badge state" }),
    fps: element("span", { class: "fps" }),
    dropped: element("span", { class: "dropped" }),
    latency: element("span", { class: "latency" }),
    error: element("p", { class: "error" }),
    where: element("p", { class: "muted where" }),
  };
  const pause = element("button", { type: "button", class: "pause", textContent: "Pause" });
  const resume = element("button", { type: "button", class: "resume", textContent: "Resume" });
  const remove = element("button", { type: "button", class: "remove", textContent: "Remove" });
  pause.addEventListener("click", () => act(source.id, "pause"));
  resume.addEventListener("click", () => act(source.id, "resume"));
  remove.addEventListener("click", () => confirmRemove(source.id, remove));
  const swatch = element("span", { class: "swatch" });
  swatch.style.background = color(source.id);
  const root = element("article", { class: "tile", "data-source": source.id },
    element("div", { class: "frame" }, img),
    element("h3", {}, swatch, source.id, " ", fields.state),
    fields.where,
    element("p", { class: "numbers" }, fields.fps, fields.latency, fields.dropped),
    fields.error,
    element("div", { class: "buttons" }, pause, resume, remove));
  tile = { root, img, fields, busy: false, url: null };
  tiles.set(source.id, tile);
  $("tiles").append(root);
  return tile;
}

function showSource(source) {
  const tile = tileFor(source);
  const f = tile.fields;
  f.state.textContent = source.state;
  f.state.dataset.state = source.state;
  tile.root.dataset.state = source.state;
  f.where.textContent = `${source.type} ${source.url || source.path || source.graph || source.device || ""}`;
  f.where.title = f.where.textContent;
  f.fps.textContent = `${source.fps.toFixed(1)} fps`;
  const latency = source.latency_ms;
  f.latency.textContent = latency ? `p50 ${latency.p50} ms · p99 ${latency.p99} ms` : "";
  const drops = source.dropped + source.stale + source.paused_frames + source.over_max_fps;
  f.dropped.textContent = `dropped ${drops}`;
  f.dropped.title = `queue full ${source.dropped}, stale ${source.stale}, paused ${source.paused_frames}, over max_fps ${source.over_max_fps}`;
  f.error.textContent = source.last_error || source.error || "";
}

async function refreshStatus() {
  try {
    const response = await api("/status");
    if (!response.ok) return;
    const status = await response.json();
    $("model").textContent = `${status.model.id} · ${status.model.backend || ""}`;
    $("totals").textContent = `${status.frames} frames · ${status.detections} detections · ${status.events} events`;
    const active = new Set();
    for (const source of status.sources) {
      if (!source.active) continue;
      active.add(source.id);
      showSource(source);
    }
    for (const [id, tile] of tiles) {
      if (!active.has(id)) {
        tile.root.remove();
        if (tile.url) URL.revokeObjectURL(tile.url);
        tiles.delete(id);
      }
    }
  } catch (error) {
    setConnection("offline");
  }
}

async function refreshPreview(id, tile) {
  if (tile.busy || document.hidden) return;
  tile.busy = true;
  try {
    const response = await api(previewUrl(id));
    if (response.ok && response.headers.get("Content-Type").startsWith("image/jpeg")) {
      const url = URL.createObjectURL(await response.blob());
      const old = tile.url;
      tile.url = url;
      tile.img.src = url;
      if (old) URL.revokeObjectURL(old);
    }
  } catch (error) {
    // the next round tries again
  } finally {
    tile.busy = false;
  }
}

function refreshPreviews() {
  for (const [id, tile] of tiles) refreshPreview(id, tile);
}

async function act(id, action) {
  const response = await api(`/sources/${encodeURIComponent(id)}/${action}`, { method: "POST" });
  if (!response.ok) showError(id, await response.json());
  refreshStatus();
}

function confirmRemove(id, button) {
  if (button.dataset.armed) {
    api(`/sources/${encodeURIComponent(id)}`, { method: "DELETE" }).then(refreshStatus);
    return;
  }
  button.dataset.armed = "1";
  button.textContent = "Remove? click again";
  setTimeout(() => { delete button.dataset.armed; button.textContent = "Remove"; }, 3000);
}

function showError(id, body) {
  const tile = tiles.get(id);
  if (tile) tile.fields.error.textContent = body.error || `HTTP ${body.status}`;
}

// ---- events and samples (server-sent events, read with fetch so the token can go along) ------

function handle(kind, data) {
  if (kind === "history") {
    samples.length = 0;
    samples.push(...data.samples);
    drawCharts();
  } else if (kind === "sample") {
    samples.push(data);
    while (samples.length && samples[0].t < data.t - CHART_SECONDS) samples.shift();
    drawCharts();
  } else if (kind === "event") {
    showEvent(data);
  }
}

function showEvent(event) {
  const list = $("events");
  const when = new Date(event.wall_time * 1000).toLocaleTimeString();
  const what = event.zone || event.line || "";
  const who = [event.class_name, event.tracker_id !== undefined ? `#${event.tracker_id}` : "", event.direction || ""]
    .filter(Boolean).join(" ");
  const item = element("li", { class: "event", "data-kind": event.event, "data-source": event.source },
    element("time", {}, when), " ",
    element("strong", {}, event.event), " ",
    element("span", { class: "muted" }, event.source), " ",
    `${what} ${who}`.trim());
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function parse(block) {
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (data.length) handle(kind, JSON.parse(data.join("\n")));
}

async function listen() {
  for (;;) {
    try {
      const response = await api("/events");
      if (response.ok) {
        setConnection("live");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            parse(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      }
    } catch (error) {
      // reconnect below
    }
    if ($("connection").dataset.state === "live") setConnection("reconnecting");
    await new Promise((resolve) => { reconnectNow = resolve; setTimeout(resolve, 2000); });
  }
}

// ---- charts (plain canvas) ----------------------------------------------------------------------

function drawCharts() {
  drawChart($("fps-chart"), [["fps", []]]);
  drawChart($("latency-chart"), [["p50_ms", []], ["p99_ms", [2, 3]]]);
  const ids = new Set(samples.flatMap((sample) => Object.keys(sample.sources)));
  $("legend").replaceChildren(...[...ids].map((id) => {
    const swatch = element("span", { class: "swatch" });
    swatch.style.background = color(id);
    return element("span", { class: "legend-item" }, swatch, id);
  }), element("span", { class: "muted" }, `up to the last ${CHART_SECONDS / 60} minutes`));
}

function drawChart(canvas, series) {
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  const pad = { left: 44, right: 8, top: 8, bottom: 18 };
  context.clearRect(0, 0, width, height);
  const now = samples.length ? samples[samples.length - 1].t : Date.now() / 1000;
  const span = Math.min(CHART_SECONDS, Math.max(CHART_MIN_SECONDS, samples.length ? now - samples[0].t : 0));
  let top = 1;
  for (const sample of samples) {
    for (const values of Object.values(sample.sources)) {
      for (const [key] of series) top = Math.max(top, values[key] || 0);
    }
  }
  top = niceCeiling(top);
  const x = (t) => pad.left + (width - pad.left - pad.right) * (1 - (now - t) / span);
  const y = (v) => height - pad.bottom - (height - pad.top - pad.bottom) * (v / top);
  context.strokeStyle = "#3a4450";
  context.fillStyle = "#8a96a3";
  context.font = "11px sans-serif";
  context.lineWidth = 1;
  for (const fraction of [0, 0.5, 1]) {
    const v = top * fraction;
    context.beginPath();
    context.moveTo(pad.left, y(v));
    context.lineTo(width - pad.right, y(v));
    context.stroke();
    context.fillText(String(Math.round(v * 10) / 10), 4, y(v) + 4);
  }
  context.fillText(span >= 120 ? `-${Math.round(span / 60)} min` : `-${Math.round(span)} s`, pad.left, height - 4);
  context.fillText("now", width - pad.right - 22, height - 4);
  const ids = new Set(samples.flatMap((sample) => Object.keys(sample.sources)));
  for (const id of ids) {
    for (const [key, dash] of series) {
      context.strokeStyle = color(id);
      context.setLineDash(dash);
      context.lineWidth = 1.5;
      context.beginPath();
      let drawing = false;
      let last = null;
      for (const sample of samples) {
        const values = sample.sources[id];
        const gap = last !== null && sample.t - last > 3;  // no line across seconds with no frames
        if (!values || gap) drawing = false;
        if (values) {
          if (drawing) context.lineTo(x(sample.t), y(values[key]));
          else context.moveTo(x(sample.t), y(values[key]));
          drawing = true;
          last = sample.t;
        }
      }
      context.stroke();
    }
  }
  context.setLineDash([]);
}

function niceCeiling(value) {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

// ---- the forms ------------------------------------------------------------------------------------

function describeWhere() {
  const type = $("add-type").value;
  $("add-where-label").firstChild.textContent = `${WHERE[type]} `;
  $("add-where").placeholder = PLACEHOLDER[type];
}

async function addSource(submitted) {
  submitted.preventDefault();
  const type = $("add-type").value;
  const table = { type, [WHERE[type]]: $("add-where").value.trim() };
  const id = $("add-id").value.trim();
  if (id) table.id = id;
  const response = await api("/sources", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(table),
  });
  const body = await response.json();
  const output = $("add-result");
  output.dataset.status = response.status;
  output.textContent = response.ok ? `added ${body.id} (${body.state})` : `${body.error}${body.path ? ` (${body.path})` : ""}`;
  if (response.ok) refreshStatus();
}

function useToken(submitted) {
  submitted.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("streamer-token", token);
  $("login").hidden = true;
  setConnection("connecting");
  refreshStatus();
  reconnectNow();
}

function start() {
  $("add").addEventListener("submit", addSource);
  $("add-type").addEventListener("change", describeWhere);
  $("login").addEventListener("submit", useToken);
  describeWhere();
  drawCharts();
  refreshStatus();
  setInterval(refreshStatus, STATUS_EVERY_MS);
  setInterval(refreshPreviews, PREVIEW_EVERY_MS);
  listen();
}

start();
