// The live page: the microphone streamed to /ws (16 kHz int16 frames from capture.js), the
// detections shown large and in a history, the class scores as a scrolling plot; a recording
// posted to /api/label and drawn as a waveform with its detections.
// For tests and kiosks: /?listen=1 starts listening without a click, and every detection is
// kept in window.detections as {label, time_ms, score}, in order.
"use strict";

window.detections = [];
window.recording = null;
window.lastError = null;

const PLOT_SECONDS = 8;
const COLORS = ["#9e9e9e", "#795548", "#1565c0", "#c62828", "#2e7d32", "#f9a825", "#6a1b9a",
  "#00838f", "#ef6c00", "#ad1457", "#37474f", "#558b2f"];
const $ = (id) => document.getElementById(id);
let info = null;
let listener = null; // {ws, context, stream, node}
let hops = [];       // [time_ms, scores] of the current stream, for the plot
let wordTimer = null;

function showError(message) {
  window.lastError = message;
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.hidden = true; }, 10000);
}

function settingsFromPage() {
  const out = {};
  for (const name of ["detection_threshold", "average_window_ms", "suppression_ms"]) {
    out[name] = Number($(name).value);
  }
  return out;
}

function setUpSettings(settings) {
  for (const name of ["detection_threshold", "average_window_ms", "suppression_ms"]) {
    const input = $(name);
    const output = document.querySelector(`output[for=${name}]`);
    input.value = settings[name];
    output.textContent = input.value;
    input.addEventListener("input", () => { output.textContent = input.value; });
    input.addEventListener("change", () => {
      if (listener && listener.ws.readyState === WebSocket.OPEN) {
        listener.ws.send(JSON.stringify({ type: "settings", ...settingsFromPage() }));
      }
    });
  }
}

function setUpLegend(labels) {
  $("legend").innerHTML = "";
  labels.forEach((label, i) => {
    const span = document.createElement("span");
    span.textContent = label;
    span.style.setProperty("--c", COLORS[i % COLORS.length]);
    $("legend").appendChild(span);
  });
}

// ---- listening ---------------------------------------------------------------------------------

async function startListening() {
  if (listener) return;
  const button = $("listen");
  button.disabled = true;
  $("listen-status").textContent = "asking for the microphone…";
  let stream, context;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    context = new AudioContext();
    await context.audioWorklet.addModule("/static/capture.js");
  } catch (e) {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (context) context.close();
    button.disabled = false;
    $("listen-status").textContent = "stopped";
    showError(`no microphone: ${e.message || e}`);
    return;
  }
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "capture");
  const mute = context.createGain();
  mute.gain.value = 0;
  source.connect(node).connect(mute).connect(context.destination);
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  listener = { ws, context, stream, node };
  hops = [];
  node.port.onmessage = (event) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(event.data);
  };
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "settings", ...settingsFromPage() }));
  };
  ws.onmessage = (event) => handleMessage(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (listener && listener.ws === ws) {
      stopListening();
      showError(`connection closed${event.reason ? ": " + event.reason : ""} (code ${event.code})`);
    }
  };
  if (context.state === "suspended") await context.resume();
  button.textContent = "Stop";
  button.classList.add("on");
  button.disabled = false;
  $("listen-status").textContent = `listening (${context.sampleRate} Hz → 16 kHz)`;
}

function stopListening() {
  if (!listener) return;
  const { ws, context, stream, node } = listener;
  listener = null;
  node.port.onmessage = null;
  stream.getTracks().forEach((t) => t.stop());
  context.close();
  if (ws.readyState <= WebSocket.OPEN) ws.close(1000, "stopped");
  const button = $("listen");
  button.textContent = "Start listening";
  button.classList.remove("on");
  $("listen-status").textContent = "stopped";
}

function handleMessage(message) {
  if (message.type === "result") {
    for (const hop of message.hops) hops.push(hop);
    const oldest = (hops.length ? hops[hops.length - 1][0] : 0) - PLOT_SECONDS * 1000;
    while (hops.length && hops[0][0] < oldest) hops.shift();
    for (const d of message.detections) addDetection(d);
  } else if (message.type === "error") {
    showError(message.message);
  } else if (message.type === "settings") {
    const s = message.settings;
    $("listen-status").textContent = `listening: threshold ${s.detection_threshold}, ` +
      `smoothing ${s.average_window_ms} ms, suppression ${s.suppression_ms} ms`;
  }
}

function addDetection(d) {
  window.detections.push({ label: d.label, time_ms: d.time_ms, score: d.score });
  const word = $("word");
  word.textContent = d.label;
  word.className = "fresh";
  clearTimeout(wordTimer);
  wordTimer = setTimeout(() => { word.className = "stale"; }, 1500);
  const item = document.createElement("li");
  item.textContent = `${(d.time_ms / 1000).toFixed(2)} s  ${d.label}  ${d.score.toFixed(3)}`;
  item.dataset.label = d.label;
  $("history").prepend(item);
}

function drawScores() {
  const canvas = $("scores");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  if (info) {
    const y = h - Number($("detection_threshold").value) * h;
    g.strokeStyle = "#999";
    g.setLineDash([4, 4]);
    g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke();
    g.setLineDash([]);
  }
  if (hops.length > 1 && info) {
    const end = hops[hops.length - 1][0];
    const x = (t) => w - ((end - t) / (PLOT_SECONDS * 1000)) * w;
    info.labels.forEach((label, i) => {
      g.strokeStyle = COLORS[i % COLORS.length];
      g.lineWidth = label.startsWith("_") ? 1 : 2;
      g.beginPath();
      hops.forEach(([t, scores], j) => {
        const px = x(t), py = h - scores[i] * h;
        if (j === 0) g.moveTo(px, py); else g.lineTo(px, py);
      });
      g.stroke();
    });
  }
  requestAnimationFrame(drawScores);
}

// ---- a recording -------------------------------------------------------------------------------

// The previous recording's result goes as soon as another is chosen: a failed upload must not
// leave it on the page looking like the new file's.
function clearRecording(status) {
  window.recording = null;
  const canvas = $("waveform");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  $("timeline").hidden = true;
  $("timeline").querySelector("tbody").innerHTML = "";
  const link = $("csv");
  if (link.href) URL.revokeObjectURL(link.href);
  link.removeAttribute("href");
  link.hidden = true;
  $("recording-status").textContent = status;
}

function recordingFailed(file, reason) {
  clearRecording(`${file.name}: not labelled: ${reason}`);
  $("recording-status").classList.add("failed");
  showError(`${file.name}: ${reason}`);
}

async function labelRecording(file) {
  $("recording-status").classList.remove("failed");
  clearRecording(`labelling ${file.name} (${(file.size / 1e6).toFixed(1)} MB)…`);
  if (info && file.size > info.max_upload_bytes) {
    recordingFailed(file, `over the server's ${(info.max_upload_bytes / 2 ** 20).toFixed(0)} MB upload limit`);
    return;
  }
  const query = new URLSearchParams(settingsFromPage());
  let result;
  try {
    const response = await fetch(`/api/label?${query}`, { method: "POST", body: file });
    result = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
    if (!response.ok) throw new Error(result.error || response.statusText);
  } catch (e) {
    recordingFailed(file, e.message || String(e));
    return;
  }
  window.recording = { name: file.name, ...result };
  $("recording-status").textContent =
    `${file.name}: ${(result.duration_ms / 1000).toFixed(1)} s, ${result.detections.length} detections`;
  drawWaveform(result);
  const body = $("timeline").querySelector("tbody");
  body.innerHTML = "";
  for (const d of result.detections) {
    const row = body.insertRow();
    row.dataset.label = d.label;
    for (const cell of [(d.time_ms / 1000).toFixed(2), d.label, d.score.toFixed(3)]) {
      row.insertCell().textContent = cell;
    }
  }
  $("timeline").hidden = false;
  const link = $("csv");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([result.csv], { type: "text/csv" }));
  link.download = file.name.replace(/\.[^.]*$/, "") + ".detections.csv";
  link.hidden = false;
}

function drawWaveform(result) {
  const canvas = $("waveform");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, mid = h / 2;
  g.clearRect(0, 0, w, h);
  const { min, max } = result.envelope;
  const n = min.length;
  g.fillStyle = "#90a4ae";
  for (let px = 0; px < w; px++) {
    const a = Math.floor((px / w) * n), b = Math.max(Math.floor(((px + 1) / w) * n), a + 1);
    let lo = 0, hi = 0;
    for (let i = a; i < Math.min(b, n); i++) { lo = Math.min(lo, min[i]); hi = Math.max(hi, max[i]); }
    g.fillRect(px, mid - hi * mid, 1, Math.max((hi - lo) * mid, 1));
  }
  g.font = "12px system-ui";
  g.textAlign = "center";
  const duration = Math.max(result.duration_ms, 1);
  for (const d of result.detections) {
    const i = info ? info.labels.indexOf(d.label) : 2;
    const x = (d.time_ms / duration) * w;
    g.strokeStyle = g.fillStyle = COLORS[i % COLORS.length];
    g.beginPath(); g.moveTo(x, 14); g.lineTo(x, h); g.stroke();
    g.fillText(d.label, x, 12);
  }
}

function setUpRecording() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) labelRecording(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (e) => {
    if (e.target.files.length) labelRecording(e.target.files[0]);
  });
}

// ---- start -------------------------------------------------------------------------------------

async function main() {
  try {
    info = await (await fetch("/api/info")).json();
  } catch (e) {
    showError(`cannot reach the server: ${e.message || e}`);
    return;
  }
  $("model").textContent = `${info.model}: ${info.labels.filter((l) => !l.startsWith("_")).join(" ")}`;
  setUpSettings(info.settings);
  setUpLegend(info.labels);
  setUpRecording();
  $("listen").addEventListener("click", () => (listener ? stopListening() : startListening()));
  requestAnimationFrame(drawScores);
  if (new URLSearchParams(location.search).get("listen") === "1") startListening();
}

main();
