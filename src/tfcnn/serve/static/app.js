// tfcnn serve: the drawing page. Draw on the canvas (mouse, pen or finger: pointer events)
// or upload an image; each change is sent to POST /predict as a PNG, and the answer shows
// the top label, a bar per class and the 28×28 image the model saw. At most one request is
// in flight: strokes made meanwhile are sent as one when it returns, so the prediction
// follows the pen without queueing a request per pointer event.
// The "why?" toggle sends the same PNG to POST /explain instead: its answer adds a Grad-CAM
// heatmap, laid over the 28×28 image the model saw, and each convolution's feature maps.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const PEN_WIDTH = 20; // canvas pixels of 280: MNIST strokes are 2-3 px of 28
const state = { info: null, busy: false, dirty: false, hasInk: false, drawing: false,
                base: null, points: [], bars: new Map(), why: false,
                notice: "" };

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  state.hasInk = false;
}

function showStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function buildBars(names) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const name of names) {
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = name;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "listitem");
    bar.setAttribute("aria-label", `class ${name}`);
    const fill = document.createElement("div");
    fill.className = "bar-fill";
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    bars.append(label, bar, value);
    state.bars.set(name, { label, bar, fill, value });
  }
}

function resetResult() {
  $("top-label").textContent = "–";
  $("top-label").dataset.state = "empty";
  $("top-prob").textContent = "";
  for (const { label, bar, fill, value } of state.bars.values()) {
    fill.style.width = "0";
    value.textContent = "";
    label.classList.remove("bar-row-top");
    bar.classList.remove("bar-row-top");
  }
  $("seen-figure").hidden = true;
  hideExplanation();
}

function hideExplanation() {
  $("heat").hidden = true;
  $("heat-caption").hidden = true;
  $("maps").hidden = true;
  $("maps").replaceChildren();
}

// One figure per convolution: its channels as a grid of grey tiles.
function showExplanation(explained) {
  $("heat").src = explained.overlay;
  $("heat").hidden = false;
  $("heat-caption").hidden = false;
  const maps = $("maps");
  maps.replaceChildren(...explained.feature_maps.map((layer) => {
    const figure = document.createElement("figure");
    figure.className = "layer";
    const image = document.createElement("img");
    image.src = layer.image;
    image.alt = `Feature maps of ${layer.layer}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${layer.layer}: ${layer.shape.join("×")}`;
    figure.append(image, caption);
    return figure;
  }));
  maps.hidden = explained.feature_maps.length === 0;
}

function showResult(result) {
  $("top-label").textContent = result.label;
  // "unknown": the model finds the drawing unlike its training images (its fitted rule);
  // the label is still its best guess, shown greyed with "not sure".
  $("top-label").dataset.state = result.unknown ? "unsure" : "shown";
  $("top-prob").textContent = `${(100 * result.probability).toFixed(1)}%` +
    (result.unknown ? " · not sure" : "");
  const probs = new Map(result.top_k.map((t) => [t.label, t.probability]));
  for (const [name, { label, bar, fill, value }] of state.bars) {
    const p = probs.get(name) ?? 0;
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    value.textContent = `${(100 * p).toFixed(1)}%`;
    const top = name === result.label;
    label.classList.toggle("bar-row-top", top);
    bar.classList.toggle("bar-row-top", top);
  }
  if (result.image) {
    $("seen").src = result.image;
    $("seen-figure").hidden = false;
  }
  if (result.explained) showExplanation(result.explained);
  else hideExplanation();
  showStatus(state.notice || ""); // a lasting remark (no /explain) outlives each answer
}

async function post(blob, filename) {
  const form = new FormData();
  form.append("file", blob, filename);
  const k = state.info ? state.info.class_names.length : 10;
  const why = state.why;
  const url = why ? `explain?top_k=${k}` : `predict?top_k=${k}&include_image=true`;
  const response = await fetch(url, { method: "POST", body: form });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (why && response.status === 404) { // a server without the route: predict instead
    setWhy(false);
    $("why").disabled = true;
    state.notice = "this server does not explain (no POST /explain)";
    return post(blob, filename);
  }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  if (!why) return body;
  return { ...body.prediction, image: body.image, explained: body };
}

// Send the canvas if it changed; called after every stroke segment.
function schedule() {
  state.dirty = true;
  if (!state.busy) sendPad();
}

function sendPad() {
  if (!state.hasInk) { state.dirty = false; resetResult(); return; }
  state.busy = true;
  state.dirty = false;
  pad.toBlob(async (blob) => {
    try {
      const result = await post(blob, "drawing.png");
      if (state.hasInk) showResult(result); // not cleared meanwhile
    } catch (err) {
      showStatus(`Prediction failed: ${err.message}`, true);
    } finally {
      state.busy = false;
      if (state.dirty) sendPad();
    }
  }, "image/png");
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * (pad.width / box.width),
           y: (event.clientY - box.top) * (pad.height / box.height) };
}

// The stroke so far is redrawn as one path over the pad as it was when the stroke began:
// segments stroked one by one would darken where their round ends overlap.
function redrawStroke() {
  ctx.putImageData(state.base, 0, 0);
  const [first, ...rest] = state.points;
  ctx.beginPath();
  ctx.moveTo(first.x, first.y);
  if (!rest.length) ctx.lineTo(first.x + 0.01, first.y); // a dot for a tap
  for (const p of rest) ctx.lineTo(p.x, p.y);
  ctx.stroke();
}

function onDown(event) {
  if (event.button !== undefined && event.button > 0) return; // left button, pen, touch
  event.preventDefault();
  try {
    pad.setPointerCapture(event.pointerId); // keep the stroke when the pen leaves the pad
  } catch (err) {
    // A pointer the browser no longer tracks (or a synthetic event): draw without capture.
  }
  $("preview").hidden = true;
  state.drawing = true;
  state.base = ctx.getImageData(0, 0, pad.width, pad.height);
  state.points = [point(event)];
  redrawStroke();
  state.hasInk = true;
  schedule();
}

function onMove(event) {
  if (!state.drawing) return;
  event.preventDefault();
  // Coalesced events: the pen's full path, not just one point per frame.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  state.points.push(...(events.length ? events : [event]).map(point));
  redrawStroke();
  schedule();
}

function onUp() {
  if (!state.drawing) return;
  state.drawing = false;
  schedule();
}

async function onUpload() {
  const file = $("upload").files[0];
  if (!file) return;
  showStatus(`Predicting ${file.name}…`);
  const url = URL.createObjectURL(file);
  if (state.info.preprocessing === "mnist") {
    // Show the upload on the pad, fitted: drawing on it afterwards predicts both.
    const image = new Image();
    image.onload = () => {
      clearPad();
      const scale = Math.min(pad.width / image.width, pad.height / image.height);
      const w = image.width * scale, h = image.height * scale;
      ctx.drawImage(image, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
      state.hasInk = true;
      URL.revokeObjectURL(url);
    };
    image.src = url;
  } else {
    $("preview").src = url;
    $("preview").hidden = false;
  }
  try {
    showResult(await post(file, file.name));
  } catch (err) {
    resetResult();
    showStatus(`${err.message}`, true);
  } finally {
    $("upload").value = "";
  }
}

function setWhy(on) {
  state.why = on;
  $("why").checked = on;
  if (!on) hideExplanation();
}

async function init() {
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = PEN_WIDTH;
  ctx.strokeStyle = "#111";
  clearPad();
  try {
    const response = await fetch("info");
    state.info = await response.json();
  } catch (err) {
    showStatus(`Cannot reach the server: ${err.message}`, true);
    return;
  }
  const info = state.info;
  const [h, w, c] = info.image_shape;
  $("model-line").textContent = `Model ${info.name} · ${info.dataset || "images"} · ` +
    `${info.class_names.length} classes · ${h}×${w}${c === 3 ? " RGB" : ""} input`;
  $("seen-size").textContent = `${h}×${w}`;
  buildBars(info.class_names);
  if (info.preprocessing === "mnist") {
    $("draw").hidden = false;
    $("clear").hidden = false;
  } else {
    showStatus("Upload an image to classify it.");
  }
  pad.addEventListener("pointerdown", onDown);
  pad.addEventListener("pointermove", onMove);
  pad.addEventListener("pointerup", onUp);
  pad.addEventListener("pointercancel", onUp);
  $("clear").addEventListener("click", () => {
    clearPad();
    resetResult();
    showStatus("");
  });
  $("upload").addEventListener("change", onUpload);
  $("why").addEventListener("change", () => {
    setWhy($("why").checked);
    if (state.hasInk) schedule(); // explain (or stop explaining) the current drawing
  });
  document.body.dataset.ready = "true"; // for tests: handlers are in place
}

init();
