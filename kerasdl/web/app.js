"use strict";
// The drawing page of `python -m kerasdl.serve`: plain JavaScript, talking only to the server
// that served it (/v1/digits:classify, /v1/digits:read, /v1/digits/latent, /v1/models/decoder:predict).

const CLASSIFIERS = ["linear", "mlp", "cnn"];
// One colour per digit: Okabe and Ito's eight colour-blind-safe colours plus two of Paul Tol's.
// The plane also writes each digit's glyph at its cluster, so colour is never the only cue.
const PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2",
                 "#D55E00", "#CC79A7", "#000000", "#999999", "#882255"];
const STROKE_WIDTH = 18;  // on the 280x280 pad: about MNIST's pen once scaled into the 20x20 box

const $ = (id) => document.getElementById(id);
const pad = $("pad"), padCtx = pad.getContext("2d");
const plane = $("plane"), planeCtx = plane.getContext("2d");
const state = {
  strokes: [], current: null, inflight: false, dirty: false,
  image: null, code: null, mode: "autoencoder", latent: null, view: null,
  decodeBusy: false, decodeNext: null, numberMode: false,
};

function showError(message) {
  const el = $("status");
  el.textContent = message;
  el.hidden = !message;
}

async function getJSON(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error("the server cannot be reached (is python -m kerasdl.serve still running?)");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { /* not JSON: reported below */ }
  if (!response.ok) {
    throw new Error((body && body.error) || `the server answered ${response.status} ${response.statusText}`);
  }
  return body;
}

// ---- drawing ----------------------------------------------------------------------------

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

function drawStroke(stroke) {
  // A tap repeats one point: canvas strokes nothing for a zero-length line, so draw a dot.
  const points = stroke.filter((p, i) => i === 0 || p[0] !== stroke[i - 1][0] || p[1] !== stroke[i - 1][1]);
  padCtx.lineWidth = STROKE_WIDTH;
  padCtx.lineCap = "round";
  padCtx.lineJoin = "round";
  padCtx.strokeStyle = padCtx.fillStyle = "#000";
  if (points.length === 1) {
    padCtx.beginPath();
    padCtx.arc(points[0][0], points[0][1], STROKE_WIDTH / 2, 0, 2 * Math.PI);
    padCtx.fill();
    return;
  }
  padCtx.beginPath();
  padCtx.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) padCtx.lineTo(x, y);
  padCtx.stroke();
}

function redrawPad() {
  padCtx.clearRect(0, 0, pad.width, pad.height);  // transparent: the server reads alpha as ink
  state.strokes.forEach((stroke) => drawStroke(stroke));
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  state.current = [padPoint(event)];
  drawStroke(state.current);
});
pad.addEventListener("pointermove", (event) => {
  if (!state.current) return;
  state.current.push(padPoint(event));
  drawStroke(state.current.slice(-2));
});
function endStroke() {
  if (!state.current) return;
  state.strokes.push(state.current);
  state.current = null;
  redrawPad();
  requestRead();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("clear").addEventListener("click", () => {
  state.strokes = [];
  redrawPad();
  resetReading();
});
$("undo").addEventListener("click", () => {
  state.strokes.pop();
  redrawPad();
  if (state.strokes.length) requestRead(); else resetReading();
});

// ---- reading the drawing ----------------------------------------------------------------

function requestRead() {
  state.dirty = true;
  if (!state.inflight) read();
}

async function read() {
  state.inflight = true;
  document.body.dataset.busy = "true";
  while (state.dirty) {
    state.dirty = false;
    const strokes = state.strokes.length;
    if (!strokes) break;
    const started = performance.now();
    try {
      const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
      const result = await getJSON(state.numberMode ? "/v1/digits:read" : "/v1/digits:classify", {
        method: "POST", body: blob, headers: {"Content-Type": "image/png"},
      });
      showError("");
      if (state.numberMode) showNumber(result); else showReading(result);
      const ms = Math.round(performance.now() - started);
      $("latency").textContent = `Read in ${ms} ms from the end of the stroke (server: ${result.milliseconds} ms).`;
      document.body.dataset.latencyMs = String(ms);
    } catch (err) {
      showError(`Could not read the drawing: ${err.message}`);
    }
    document.body.dataset.readStrokes = String(strokes);
  }
  state.inflight = false;
  document.body.dataset.busy = "false";
}

function resetReading() {
  state.image = state.code = null;
  drawImage($("normalised"), null);
  for (const name of CLASSIFIERS) {
    const panel = document.querySelector(`.model[data-model="${name}"]`);
    if (panel.dataset.missing !== "true") {
      panel.querySelector(".body").innerHTML = '<p class="missing">Waiting for a drawing.</p>';
      delete panel.dataset.digit;
    }
  }
  $("latency").textContent = "Draw a digit to start.";
  document.body.dataset.readStrokes = "0";
  drawPlane();
}

function drawImage(canvas, pixels) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = pixels ? Math.round(255 * Math.min(1, Math.max(0, pixels[i]))) : 0;
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function showMissing(name, command) {
  const panel = document.querySelector(`.model[data-model="${name}"]`);
  panel.dataset.missing = "true";
  delete panel.dataset.digit;
  panel.querySelector(".body").innerHTML =
    `<p class="missing">Not exported yet. Train and export it with <code>${command}</code>: the running server loads it within seconds, no restart; then draw again.</p>`;
}

function barColumns(probabilities, winner) {
  return probabilities.map((p, d) => {
    const pct = (100 * p).toFixed(1);
    const win = d === winner ? " win" : "";
    return `<div class="col${win}" role="img" aria-label="${d}: ${pct}%" title="${d}: ${pct}%">` +
           `<div class="bar"><span style="height:${pct}%"></span></div><span class="digit">${d}</span></div>`;
  }).join("");
}

// A written number (POST /v1/digits:read): each classifier's number, and the best model's
// reading digit by digit, left to right, each with its ten bars.
function showNumber(result) {
  const names = CLASSIFIERS.filter((name) => result.classifiers[name]);
  if (!names.length) { showError("No classifier is exported yet: train one (python -m kerasdl.mnist cnn); the running server picks it up within seconds, no restart."); return; }
  const best = result.classifiers[names[names.length - 1]];
  $("number-reading").innerHTML =
    `<p class="answer">${names.map((n) => `${n} reads <strong>${result.classifiers[n].number}</strong>`).join(", ")}</p>` +
    `<div class="number-digits">${best.digits.map((d) =>
      `<div class="number-digit"><p><strong>${d.digit}</strong> ${(100 * d.probability).toFixed(1)}%</p>` +
      `<div class="bars">${barColumns(d.probabilities, d.digit)}</div></div>`).join("")}</div>`;
  document.body.dataset.number = best.number;
}

function setNumberMode(on) {
  state.numberMode = on;
  $("number-mode").setAttribute("aria-pressed", String(on));
  pad.width = on ? 840 : 280;  // resizing clears the canvas
  pad.classList.toggle("wide", on);
  $("number-reading").hidden = !on;
  $("number-reading").innerHTML = "";
  delete document.body.dataset.number;
  state.strokes = [];
  redrawPad();
  resetReading();
}
$("number-mode").addEventListener("click", () => setNumberMode(!state.numberMode));

function showReading(result) {
  state.image = result.image.flat();
  drawImage($("normalised"), state.image);
  for (const name of CLASSIFIERS) {
    if (result.missing[name]) { showMissing(name, result.missing[name]); continue; }
    const answer = result.classifiers[name];
    const panel = document.querySelector(`.model[data-model="${name}"]`);
    panel.dataset.missing = "false";
    panel.dataset.digit = String(answer.digit);
    panel.querySelector(".body").innerHTML =
      `<p class="answer">reads <strong>${answer.digit}</strong> ` +
      `(${(100 * answer.probabilities[answer.digit]).toFixed(1)}%, version ${answer.version})</p>` +
      `<div class="bars">${barColumns(answer.probabilities, answer.digit)}</div>`;
  }
  state.code = {autoencoder: result.latent.encoder, pca: pcaEncode(state.image)};
  drawPlane();
}

// ---- the latent plane -------------------------------------------------------------------

function pcaEncode(pixels) {
  const pca = state.latent && state.latent.pca;
  if (!pca || !pixels) return null;
  return pca.components.map((c) => c.reduce((sum, w, i) => sum + w * (pixels[i] - pca.mean[i]), 0));
}

function planeCodes() {
  if (!state.latent) return null;
  const source = state.mode === "pca" ? state.latent.pca : state.latent.autoencoder;
  return source ? source.codes : null;
}

function computeView(codes) {
  const pad2 = (lo, hi) => { const m = 0.06 * (hi - lo || 1); return [lo - m, hi + m]; };
  const xs = codes.map((c) => c[0]).sort((a, b) => a - b), ys = codes.map((c) => c[1]).sort((a, b) => a - b);
  const q = (arr, f) => arr[Math.floor(f * (arr.length - 1))];
  const [x0, x1] = pad2(q(xs, 0.005), q(xs, 0.995)), [y0, y1] = pad2(q(ys, 0.005), q(ys, 0.995));
  return {x0, x1, y0, y1};
}

const toCanvas = (v, c) => [(c[0] - v.x0) / (v.x1 - v.x0) * plane.width, (1 - (c[1] - v.y0) / (v.y1 - v.y0)) * plane.height];
const toCode = (v, px, py) => [v.x0 + px / plane.width * (v.x1 - v.x0), v.y0 + (1 - py / plane.height) * (v.y1 - v.y0)];

function planeMessage(text) {
  planeCtx.clearRect(0, 0, plane.width, plane.height);
  planeCtx.fillStyle = "#555";
  planeCtx.font = "14px system-ui, sans-serif";
  const words = text.split(" ");
  let line = "", y = 30;
  for (const word of words) {
    if (planeCtx.measureText(line + word).width > plane.width - 30) { planeCtx.fillText(line, 15, y); line = ""; y += 20; }
    line += word + " ";
  }
  planeCtx.fillText(line, 15, y);
}

function drawPlane() {
  const codes = planeCodes();
  if (!codes) {
    if (state.latent && state.mode === "autoencoder") {
      const cmd = state.latent.missing.encoder || "python -m kerasdl.autoencoder";
      planeMessage(`The autoencoder is not exported yet. Train and export it with ${cmd}: the running server loads it within seconds, no restart; then reload this page. PCA(2)'s plane is shown with the other button.`);
      $("latent-note").textContent = `Autoencoder not exported: run ${cmd}.`;
    }
    return;
  }
  const view = state.view = computeView(codes);
  const labels = state.latent.labels;
  planeCtx.clearRect(0, 0, plane.width, plane.height);
  planeCtx.globalAlpha = 0.55;
  codes.forEach((c, i) => {
    const [x, y] = toCanvas(view, c);
    planeCtx.fillStyle = PALETTE[labels[i]];
    planeCtx.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  planeCtx.globalAlpha = 1;
  planeCtx.font = "bold 16px system-ui, sans-serif";
  planeCtx.textAlign = "center";
  planeCtx.textBaseline = "middle";
  for (let d = 0; d < 10; d++) {  // each digit's glyph at its cluster's median
    const mine = codes.filter((_, i) => labels[i] === d);
    if (!mine.length) continue;
    const med = (k) => mine.map((c) => c[k]).sort((a, b) => a - b)[Math.floor(mine.length / 2)];
    const [x, y] = toCanvas(view, [med(0), med(1)]);
    planeCtx.lineWidth = 4;
    planeCtx.strokeStyle = "#fff";
    planeCtx.strokeText(String(d), x, y);
    planeCtx.fillStyle = PALETTE[d] === "#F0E442" ? "#8a7d00" : PALETTE[d];
    planeCtx.fillText(String(d), x, y);
  }
  const mine = state.code && state.code[state.mode];
  if (mine) {  // the digit just drawn: a ringed cross
    const [x, y] = toCanvas(view, mine);
    planeCtx.lineWidth = 5; planeCtx.strokeStyle = "#fff";
    planeCtx.beginPath(); planeCtx.arc(x, y, 10, 0, 2 * Math.PI); planeCtx.stroke();
    planeCtx.lineWidth = 2.5; planeCtx.strokeStyle = "#000";
    planeCtx.beginPath(); planeCtx.arc(x, y, 10, 0, 2 * Math.PI);
    planeCtx.moveTo(x - 15, y); planeCtx.lineTo(x + 15, y); planeCtx.moveTo(x, y - 15); planeCtx.lineTo(x, y + 15);
    planeCtx.stroke();
    plane.dataset.drawn = `${mine[0].toFixed(3)},${mine[1].toFixed(3)}`;
  }
  const name = state.mode === "pca" ? "PCA(2)" : "the deep autoencoder";
  $("latent-note").textContent = `${codes.length} MNIST test digits encoded by ${name}` +
    (mine ? "; the ringed cross is your drawing." : ".");
}

async function decodeAt(code) {
  const where = `(${code[0].toFixed(2)}, ${code[1].toFixed(2)})`;
  if (state.mode === "pca") {
    const pca = state.latent.pca;
    const pixels = pca.mean.map((m, i) => m + code[0] * pca.components[0][i] + code[1] * pca.components[1][i]);
    drawImage($("decoded"), pixels);
    $("decoded-at").textContent = `PCA(2) at ${where}`;
    $("decoded").dataset.point = where;
    return;
  }
  if (state.latent.missing.decoder) {
    $("decoded-at").textContent = `No decoder exported: run ${state.latent.missing.decoder}.`;
    return;
  }
  if (state.decodeBusy) { state.decodeNext = code; return; }
  state.decodeBusy = true;
  try {
    const answer = await getJSON("/v1/models/decoder:predict", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({instances: [code]}),
    });
    drawImage($("decoded"), answer.predictions[0]);
    $("decoded-at").textContent = `decoded at ${where}`;
    $("decoded").dataset.point = where;
  } catch (err) {
    showError(`Could not decode the point: ${err.message}`);
  }
  state.decodeBusy = false;
  if (state.decodeNext) { const next = state.decodeNext; state.decodeNext = null; decodeAt(next); }
}

function probe(px, py) {
  if (!state.view || !planeCodes()) return;
  state.probe = [px, py];
  decodeAt(toCode(state.view, px, py));
}

plane.addEventListener("pointermove", (event) => {
  const box = plane.getBoundingClientRect();
  probe((event.clientX - box.left) * plane.width / box.width, (event.clientY - box.top) * plane.height / box.height);
});
plane.tabIndex = 0;  // keyboard: arrow keys move the probe
plane.addEventListener("keydown", (event) => {
  const steps = {ArrowLeft: [-10, 0], ArrowRight: [10, 0], ArrowUp: [0, -10], ArrowDown: [0, 10]}[event.key];
  if (!steps) return;
  event.preventDefault();
  const [x, y] = state.probe || [plane.width / 2, plane.height / 2];
  probe(Math.min(plane.width, Math.max(0, x + steps[0])), Math.min(plane.height, Math.max(0, y + steps[1])));
});

function setMode(mode) {
  state.mode = mode;
  $("show-ae").setAttribute("aria-pressed", String(mode === "autoencoder"));
  $("show-pca").setAttribute("aria-pressed", String(mode === "pca"));
  drawPlane();
}
$("show-ae").addEventListener("click", () => setMode("autoencoder"));
$("show-pca").addEventListener("click", () => setMode("pca"));

// ---- start ------------------------------------------------------------------------------

function buildLegend() {
  $("legend").innerHTML = PALETTE.map((c, d) => `<li><span style="background:${c}"></span>${d}</li>`).join("");
}

async function start() {
  buildLegend();
  document.body.dataset.readStrokes = "0";
  try {
    const models = await getJSON("/v1/digits/models");
    for (const name of CLASSIFIERS) {
      if (models.missing[name]) showMissing(name, models.missing[name]);
    }
    resetReading();
  } catch (err) {
    showError(`The server did not say which models it has: ${err.message}`);
  }
  planeMessage("Encoding the MNIST test digits...");
  try {
    state.latent = await getJSON("/v1/digits/latent");
    if (!state.latent.autoencoder) setMode("pca");
    drawPlane();
    if (state.latent.missing.encoder) $("latent-note").textContent =
      `Autoencoder not exported: run ${state.latent.missing.encoder}. PCA(2)'s plane is shown instead.`;
    document.body.dataset.latent = "ready";
  } catch (err) {
    planeMessage(`No latent plane: ${err.message}`);
    document.body.dataset.latent = "error";
  }
}
start();
