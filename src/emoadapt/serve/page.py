"""The HTML the app serves: the single page at ``/`` and the offline API reference at ``/docs``
(both self-contained: inline style and script, no external asset; ``CSP`` forbids any).

Page states (each checked in tests/test_browser.py): the start page shows only the file chooser;
a good image shows the image, the four-class answer with its confidence in plain words, the
affect outputs (with a sentence on how they relate to the four classes), the heat map (with a
caveat when the prediction is uncertain) and, on demand, the layer view; a file that cannot be
read clears everything of the previous image and shows only the error. With "faces" ticked, the
prediction asks for every face (``faces=true``): each box is drawn over the image with its number
and class, and listed with its class, expression and detection score; "No faces found" is said
when there is none (and why, when faces were too small). The layer view draws one
layer at a time on a canvas from the job's ``shares`` (no new request when another layer or the
shared colour scale is chosen, nor when the layer box is ticked again)."""

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; connect-src 'self'; font-src 'none'")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>emoadapt: which emotion does an image evoke?</title>
<style>
[hidden]{display:none !important}
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:960px;padding:1rem;color:#222}
#drop{display:block;border:2px dashed #888;border-radius:8px;padding:1.5rem;text-align:center;cursor:pointer}
#drop.over{background:#eef5ff;border-color:#36c}
.row{display:flex;gap:1.5rem;flex-wrap:wrap;margin-top:1rem}.row>div{flex:1 1 280px}
img{max-width:100%;image-rendering:auto}#preview{max-height:320px}
.bar{display:flex;align-items:center;gap:.5rem;margin:.25rem 0}.bar .name{width:6rem}
.bar .track{flex:1;background:#eee;height:1rem;border-radius:3px}.bar .fill{background:#36c;height:100%;border-radius:3px}
.bar.top .fill{background:#c33}#error{color:#b00;min-height:1.2rem}#status{color:#666}
.answer{font-size:1.3rem;margin:.2rem 0 .5rem}
.confidence{border-radius:6px;padding:.4rem .6rem;margin-top:.5rem}
.confidence.sure{background:#eef6ee;border:1px solid #9c9}
.confidence.guess,.caveat{background:#fff4d6;border:1px solid #e0b040;border-radius:6px;padding:.4rem .6rem;margin:.5rem 0}
.note,.legend{font-size:.85rem;color:#444}.swatch{display:inline-block;width:.9rem;height:.9rem;vertical-align:middle;border-radius:2px}
details{font-size:.8rem;color:#555;margin-top:.3rem}
progress{width:12rem}
#layer-tabs button{margin:0 .25rem .25rem 0;padding:.2rem .5rem;border:1px solid #999;border-radius:4px;background:#f7f7f7;cursor:pointer}
#layer-tabs button[aria-selected="true"]{background:#36c;color:#fff;border-color:#36c}
#layer-canvas,#faces-canvas{max-width:100%;display:block;margin-top:.5rem}
#faces-list li{margin:.2rem 0}.face-key{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;vertical-align:middle;margin-right:.3rem}
.colorbar{display:flex;align-items:center;gap:.5rem;font-size:.8rem;max-width:520px;margin-top:.3rem}
.colorbar .grad{flex:1;height:.8rem;border:1px solid #999;background:linear-gradient(to right,#053061,#2166ac,#4393c3,#92c5de,#d1e5f0,#f7f7f7,#fddbc7,#f4a582,#d6604d,#b2182b,#67001f)}
</style></head><body>
<h1>emoadapt</h1>
<p>Which emotion does an image evoke, and which regions drive it (DnCShap)? The image is sent to this server only.</p>
<label id="drop">Choose an image or drop it here<br><input id="file" type="file" accept="image/*"></label>
<p><label>DnCShap depth <input id="depth" type="number" min="0" max="__MAXDEPTH__" value="__DEPTH__"></label>
<label><input id="layers-toggle" type="checkbox"> layer by layer</label>
<label><input id="faces-toggle" type="checkbox"> faces: find and read each face</label></p>
<div id="error" role="alert"></div><div id="status"></div>
<section id="result" hidden>
<div class="row"><div><h3>Image</h3><img id="preview" alt="the uploaded image"></div>
<div><h3>Emotion (one of 4 classes)</h3><p class="answer" id="answer"></p><div id="probs"></div>
<div id="confidence" class="confidence"></div></div></div>
<div id="affect-box" hidden>
<p class="note" id="relation">The answer above is one of four classes (happy, sad, hate, anger). The seven bars below are a
second output of the same model: how a crowd of viewers would likely split its votes over seven emotions. Four of them
correspond to the classes (joy: happy, sadness: sad, disgust: hate, anger: anger); fear, surprise and neutral have no class.
The two are predicted separately, so the most voted emotion need not match the class.</p>
<div class="row"><div><h3>Emotion distribution (7 emotions)</h3><div id="dist"></div></div>
<div><h3>Valence and arousal</h3>
<svg id="circumplex" width="220" height="220" viewBox="0 0 220 220" role="img" aria-label="valence-arousal circumplex">
<circle cx="110" cy="110" r="90" fill="none" stroke="#bbb"/>
<line x1="20" y1="110" x2="200" y2="110" stroke="#bbb"/><line x1="110" y1="20" x2="110" y2="200" stroke="#bbb"/>
<text x="202" y="106" font-size="10" text-anchor="end">pleasant</text><text x="18" y="106" font-size="10">unpleasant</text>
<text x="114" y="16" font-size="10">excited</text><text x="114" y="214" font-size="10">calm</text>
<circle id="va-point" cx="110" cy="110" r="6" fill="#c33"/></svg>
<div id="va-text"></div></div></div></div>
<div id="faces-box" hidden><h3>Faces</h3>
<p class="note" id="faces-note"></p>
<canvas id="faces-canvas" width="1" height="1" aria-label="the image with a box around each face found"></canvas>
<ol id="faces-list"></ol>
<p class="note">Each face is found by OpenCV's frontal-face detector and read on its own by the face branch of the model
(trained on facial expressions): its class and its most likely of 7 expressions. The emotion above is the whole image's.
Nothing identifies a person: no recognition, nothing kept.</p></div>
<div id="explanation-box" hidden><h3>Explanation</h3>
<div id="overlay-caveat" class="caveat" hidden></div>
<img id="overlay" alt="the explanation drawn over the image">
<p class="legend" id="legend">The part of the image the model reads is drawn over it (with the default model its centre
square; the rest stays uncoloured). Each region is coloured by its share of the predicted
class's probability: <span class="swatch" style="background:#b2182b"></span> red raises it,
<span class="swatch" style="background:#2166ac"></span> blue lowers it (scale in the colour bar); uncoloured
regions matter least (below the 70th percentile of |share|).</p></div>
<div id="layers-box" hidden><h3>Layer by layer</h3>
<div id="layers-caveat" class="caveat" hidden></div>
<p id="layers-progress" hidden><progress id="layers-bar" value="0" max="1"></progress> <span id="layers-text"></span></p>
<div id="layers" hidden>
<p class="note" id="layers-help"></p>
<div id="layer-tabs" role="tablist" aria-label="layers"></div>
<label class="note"><input id="shared-scale" type="checkbox"> same colour scale for every layer</label>
<h4 id="layer-title"></h4>
<canvas id="layer-canvas" width="1" height="1" aria-label="the chosen layer's explanation over the image"></canvas>
<div class="colorbar"><span id="cb-min"></span><span class="grad"></span><span id="cb-max"></span></div>
<p class="note">Colour: each region's share of p(class), as in the explanation above; uncoloured regions matter least.
<a id="layers-download" download="layers.png" href="#">All layers in one PNG</a>.</p>
</div></div>
</section>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
// generation: answers for an older image or older settings are dropped; layerRun: the same for
// the layer view, which can be switched off and on without a new explanation
let current = null, generation = 0, layerRun = 0;
let explained = null;   // {mine, target, uncertain} once the explanation of the current image is shown
let layerData = null;   // {mine, taps: [...], shares, summaries, png} once the layer job is done
let shownTap = null, pictureImage = null;
const GUESS = "The model has not seen images like this: treat the label as a guess.";

function resetResult() {
  // everything shown for a previous image goes; nothing is left to be read as this file's result
  $("result").hidden = true; $("affect-box").hidden = true; $("explanation-box").hidden = true;
  $("layers-box").hidden = true; $("layers").hidden = true; $("layers-progress").hidden = true; $("faces-box").hidden = true;
  for (const id of ["probs", "dist", "layer-tabs", "faces-list"]) $(id).replaceChildren();
  for (const id of ["answer", "confidence", "va-text", "layer-title", "overlay-caveat", "layers-caveat", "faces-note"]) $(id).textContent = "";
  $("overlay").removeAttribute("src"); $("preview").removeAttribute("src");
  $("confidence").className = "confidence"; delete $("confidence").dataset.uncertain;
  explained = null; layerData = null; shownTap = null; pictureImage = null;
}
function fail(message) { $("error").textContent = message; $("status").textContent = ""; }
async function post(path, extra) {
  const form = new FormData();
  form.append("file", current);
  for (const [key, value] of Object.entries(extra || {})) form.append(key, value);
  const response = await fetch(path, {method: "POST", body: form});
  const body = await response.json().catch(() => ({detail: response.statusText}));
  if (!response.ok) throw new Error(response.status + ": " + (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)));
  return body;
}
function plainReason(reason) {
  // the server's reasons (separated by "; ") in plain words, with what to do
  const parts = [];
  for (const part of (reason || "").split("; ")) {
    if (part.startsWith("unlike")) parts.push(GUESS);
    else if (part.startsWith("a blank")) parts.push("The image is blank or almost one flat colour: there is nothing for the model to read: treat the label as a guess.");
    else if (part.startsWith("low confidence")) parts.push("No class clearly leads (the top probability is low): treat the label as a guess.");
  }
  if (!parts.length) parts.push("The model is unsure about this image: treat the label as a guess.");
  return [...new Set(parts)].join(" ");
}
function showConfidence(result) {
  // the confidence in plain words, the server's technical reason under "details"
  const box = $("confidence");
  box.dataset.uncertain = String(result.uncertain);
  box.className = "confidence " + (result.uncertain ? "guess" : "sure");
  box.replaceChildren();
  const head = document.createElement("strong"), text = document.createElement("span");
  if (result.uncertain) {
    head.textContent = "Uncertain. ";
    text.textContent = plainReason(result.uncertain_reason) +
      " A photo of a scene or a face, like the photos the model learnt from, gives a more reliable answer.";
  } else {
    head.textContent = "Not flagged as uncertain. ";
    text.textContent = "The image looks like the photos the model was trained on and one class leads." +
      " Even so, expect roughly 2 in 3 to 7 in 10 answers to be right on such photos.";
  }
  box.append(head, text);
  if (result.uncertain_reason) {
    const details = document.createElement("details"), summary = document.createElement("summary");
    summary.textContent = "technical reason"; details.append(summary, result.uncertain_reason);
    box.append(details);
  }
}
function showBars(box, shares) {
  // one bar per {name: probability}, largest first; the largest is marked "top"
  box.replaceChildren();
  const sorted = Object.entries(shares).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of sorted) {
    const row = document.createElement("div");
    row.className = "bar" + (name === sorted[0][0] ? " top" : "");
    row.dataset.label = name;
    row.innerHTML = '<span class="name"></span><span class="track"><span class="fill" style="display:block"></span></span><span class="pct"></span>';
    row.querySelector(".name").textContent = name;
    row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
    row.querySelector(".pct").textContent = (100 * p).toFixed(1) + "%";
    box.appendChild(row);
  }
}
function showPrediction(result) {
  $("result").hidden = false;
  const p = result.emotion[result.dominant_emotion];
  $("answer").textContent = `${result.dominant_emotion} (${(100 * p).toFixed(1)} %)` + (result.uncertain ? ": a guess" : "");
  showBars($("probs"), result.emotion); showConfidence(result); showAffect(result);
}
function showAffect(result) {
  // valence/arousal (1–9) as a point on the circumplex, the 7-way distribution as bars; hidden
  // for a model without affect heads (its answers have no "valence")
  const box = $("affect-box");
  box.hidden = result.valence === undefined;
  if (box.hidden) return;
  showBars($("dist"), result.distribution);
  const clamp = (v) => Math.min(9, Math.max(1, v));
  $("va-point").setAttribute("cx", (20 + (clamp(result.valence) - 1) / 8 * 180).toFixed(1));
  $("va-point").setAttribute("cy", (200 - (clamp(result.arousal) - 1) / 8 * 180).toFixed(1));
  $("va-text").textContent = `valence ${result.valence.toFixed(2)}, arousal ${result.arousal.toFixed(2)} (scale 1–9)`;
}
function caveat(id, uncertain, what) {
  $(id).hidden = !uncertain;
  $(id).textContent = uncertain ? `This prediction is uncertain. ${what} explains a label that is itself a guess:` +
    " the coloured regions say what moved the model, not what the image shows." : "";
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
function describeTap(tap, taps) {
  // branch names spelled out: f1…f5 the face branch's stages, s1…s5 the scene branch's (or the
  // one network's stages when there is no face branch), b1…b5/merged the paper's blocks
  const m = /^([fsb])(\\d+)$/.exec(tap), last = (prefix) => taps.filter((t) => t.startsWith(prefix)).length;
  if (m && m[1] === "f") return `face branch, stage ${m[2]} of ${last("f")}`;
  if (m && m[1] === "s") return (taps.some((t) => /^f\\d/.test(t)) ? "scene branch, " : "") + `stage ${m[2]} of ${last("s")}`;
  if (m && m[1] === "b") return `block B${m[2]}`;
  if (tap === "merged") return "blocks and residual branches merged";
  return tap;
}
function layersHelp(taps) {
  const parts = ["Each layer's own explanation of the same class: which parts of that layer's view of the image moved the answer."];
  if (taps.some((t) => /^f\\d/.test(t))) parts.push("f1–f5 are the five stages of the face branch (a network trained on facial" +
    " expressions), s1–s5 those of the scene branch (a network trained on general photos); stage 1 reads fine" +
    " detail, stage 5 large parts. Each panel changes one branch and holds the other fixed.");
  else parts.push("Stage 1 reads fine detail, the last stage large parts.");
  return parts.join(" ");
}
async function layerGrid(mine, run, target) {
  // the layer explanations run as a background job on the server; poll it and show its progress
  $("layers-progress").hidden = false; $("layers-text").textContent = "starting…"; $("layers").hidden = true;
  const job = await post("/api/explain/layers", {depth: $("depth").value, target: target});
  for (;;) {
    await sleep(500);
    if (mine !== generation || run !== layerRun) return;
    const response = await fetch(job.status_url);
    const state = await response.json();
    if (!response.ok) throw new Error(response.status + ": " + state.detail);
    $("layers-bar").max = state.total; $("layers-bar").value = state.done;
    $("layers-text").textContent = `layer ${state.done} of ${state.total}` + (state.layer ? ` (${state.layer})` : "");
    if (state.status === "failed" || state.status === "cancelled") throw new Error(state.code + ": " + state.error);
    if (state.status === "done") {
      const r = state.result;
      layerData = {mine, taps: Object.keys(r.layers), summaries: r.layers, shares: r.shares, png: r.layers_png};
      $("layers-progress").hidden = true;
      await showLayers();
      return;
    }
  }
}
async function showLayers() {
  // tabs, one per layer; the first is shown
  const taps = layerData.taps, tabs = $("layer-tabs");
  $("layers-help").textContent = layersHelp(taps);
  $("layers-download").href = "data:image/png;base64," + layerData.png;
  tabs.replaceChildren();
  for (const tap of taps) {
    const button = document.createElement("button");
    button.type = "button"; button.textContent = tap; button.dataset.tap = tap; button.title = describeTap(tap, taps);
    button.setAttribute("role", "tab");
    button.addEventListener("click", () => drawLayer(tap));
    tabs.append(button);
  }
  await pictureLoaded();
  $("layers").hidden = false;
  drawLayer(shownTap && taps.includes(shownTap) ? shownTap : taps[0]);
}
const RDBU = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"];
function colour(t) {
  // t in [0, 1] → RdBu_r (matplotlib's diverging map: blue 0, white 0.5, red 1)
  const x = Math.min(1, Math.max(0, t)) * (RDBU.length - 1), i = Math.min(RDBU.length - 2, Math.floor(x)), f = x - i;
  const rgb = (hex) => [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));
  const [a, b] = [rgb(RDBU[i]), rgb(RDBU[i + 1])];
  return `rgb(${a.map((v, k) => Math.round(v + f * (b[k] - v))).join(",")})`;
}
function finiteAbs(grid) { return grid.flat().filter((v) => v !== null && Number.isFinite(v)).map(Math.abs); }
function percentile(values, q) {
  // numpy's default (linear) percentile
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b), x = q / 100 * (sorted.length - 1), i = Math.floor(x);
  return i + 1 < sorted.length ? sorted[i] + (x - i) * (sorted[i + 1] - sorted[i]) : sorted[i];
}
function layerScale(tap) {
  const grids = $("shared-scale").checked ? layerData.taps.map((t) => layerData.shares[t]) : [layerData.shares[tap]];
  return Math.max(...grids.map((g) => Math.max(0, ...finiteAbs(g)))) || 1;
}
function drawLayer(tap) {
  shownTap = tap;
  for (const button of $("layer-tabs").children) button.setAttribute("aria-selected", String(button.dataset.tap === tap));
  const grid = layerData.shares[tap], summary = layerData.summaries[tap], scale = layerScale(tap);
  const cells = summary.grid ? ` (${summary.grid[0]}×${summary.grid[1]} cells)` : "";
  $("layer-title").textContent = `${tap}: ${describeTap(tap, layerData.taps)}${cells}, depth ${summary.depth}`;
  const canvas = $("layer-canvas"), image = pictureImage;
  const width = Math.min(720, image && image.naturalWidth ? image.naturalWidth : 720);
  const height = image && image.naturalWidth ? Math.round(width * image.naturalHeight / image.naturalWidth) : width;
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  if (image && image.naturalWidth) ctx.drawImage(image, 0, 0, width, height);
  const rows = grid.length, cols = grid[0].length, threshold = percentile(finiteAbs(grid), 70);
  ctx.globalAlpha = 0.5;
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const v = grid[r][c];
    if (v === null || !Number.isFinite(v) || v === 0 || Math.abs(v) < threshold) continue;
    ctx.fillStyle = colour((v / scale + 1) / 2);
    const x0 = Math.round(c * width / cols), y0 = Math.round(r * height / rows);
    ctx.fillRect(x0, y0, Math.round((c + 1) * width / cols) - x0, Math.round((r + 1) * height / rows) - y0);
  }
  ctx.globalAlpha = 1;
  const label = (v) => (v > 0 ? "+" : "") + Number(v.toPrecision(2));
  $("cb-min").textContent = label(-scale); $("cb-max").textContent = label(scale);
  canvas.dataset.tap = tap; canvas.dataset.scale = String(scale);
}
async function startLayers() {
  // the layer view of the explained image: shown again at once when it was already computed
  const run = ++layerRun;
  $("layers-box").hidden = false;
  caveat("layers-caveat", explained.uncertain, "Each layer's map");
  if (layerData && layerData.mine === explained.mine) { $("layers-progress").hidden = true; await showLayers(); return; }
  try { await layerGrid(explained.mine, run, explained.target); }
  catch (err) { if (explained && run === layerRun) fail(err.message); }
}
function toggleLayers() {
  if (!$("layers-toggle").checked) { layerRun++; $("layers-box").hidden = true; return; }
  if (explained && explained.mine === generation) startLayers();  // else the running explanation starts it
}
async function explain() {
  if (!current) return;
  const mine = ++generation;
  explained = null; layerData = null; layerRun++;
  $("error").textContent = ""; $("status").textContent = "explaining…";
  $("layers-box").hidden = true;
  try {
    const result = await post("/api/explain", Object.assign({depth: $("depth").value}, $("faces-toggle").checked ? {faces: "true"} : {}));
    if (mine !== generation) return;
    $("overlay").src = "data:image/png;base64," + result.overlay_png;
    caveat("overlay-caveat", result.uncertain, "This map");
    $("explanation-box").hidden = false;
    const e = result.explanation;
    explained = {mine, target: e.target, uncertain: result.uncertain};
    $("status").textContent = `explained ${e.target} (p=${e.probability.toFixed(2)}${result.uncertain ? ", uncertain" : ""}, depth ${e.depth}, ${e.evaluations} evaluations) in ${result.seconds.toFixed(2)} s with ${result.model}`;
    if ($("layers-toggle").checked) await startLayers();
  } catch (err) { if (mine === generation) fail(err.message); }
}
const FACE_COLOURS = {happy: "#e0a800", sad: "#2f6fd0", hate: "#4a9a2a", anger: "#d03030"};
async function pictureLoaded() {
  // the uploaded picture as an Image (shared by the layer view and the faces canvas)
  if (!pictureImage) {
    pictureImage = new Image(); pictureImage.src = $("preview").src;
    await pictureImage.decode().catch(() => {});
  }
  return pictureImage;
}
async function showFaces(faces) {
  // each face's box, number and class over the image, and a list; "No faces found" said plainly
  const box = $("faces-box"), list = $("faces-list");
  box.hidden = false; list.replaceChildren();
  const skipped = [];
  if (faces.skipped_small) skipped.push(`${faces.skipped_small} too small to read (under the minimum size) skipped`);
  if (faces.skipped_over_limit) skipped.push(`${faces.skipped_over_limit} more beyond the limit of faces per image not read`);
  $("faces-note").textContent = (faces.count ? `${faces.count} face${faces.count > 1 ? "s" : ""} found` :
    "No faces found (the detector finds frontal faces).") + (skipped.length ? " " + skipped.join("; ") + "." : "");
  box.dataset.count = String(faces.count);
  const image = await pictureLoaded(), canvas = $("faces-canvas");
  const width = Math.min(720, image.naturalWidth || 720), scale = image.naturalWidth ? width / image.naturalWidth : 1;
  canvas.width = width; canvas.height = image.naturalWidth ? Math.round(image.naturalHeight * scale) : width;
  const ctx = canvas.getContext("2d");
  if (image.naturalWidth) ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  ctx.font = "bold 13px system-ui,sans-serif"; ctx.lineWidth = 3;
  faces.faces.forEach((face, i) => {
    const [x, y, w, h] = face.box.map((v) => v * scale), colour = FACE_COLOURS[face.dominant_emotion] || "#c33";
    const label = `${i + 1} ${face.dominant_emotion}`;
    ctx.strokeStyle = colour; ctx.strokeRect(x, y, w, h);
    const tw = ctx.measureText(label).width + 6, ty = y >= 17 ? y - 17 : y + h;
    ctx.fillStyle = colour; ctx.fillRect(x - 1.5, ty, tw, 17);
    ctx.fillStyle = "#fff"; ctx.fillText(label, x + 1.5, ty + 13);
    const item = document.createElement("li"), key = document.createElement("span");
    key.className = "face-key"; key.style.background = colour;
    const p = face.emotion[face.dominant_emotion];
    const expression = face.dominant_expression ?
      `, looks ${face.dominant_expression} (${(100 * face.expressions[face.dominant_expression]).toFixed(0)} % of 7 expressions)` : "";
    item.append(key, `${face.dominant_emotion} ${(100 * p).toFixed(0)} %${expression}; box ${face.box[2]}×${face.box[3]} px at (${face.box[0]}, ${face.box[1]}), detection score ${face.score.toFixed(1)}`);
    item.dataset.emotion = face.dominant_emotion;
    list.append(item);
  });
}
async function readFaces() {
  // the faces checkbox ticked after the image was read: ask for the faces only
  if (!$("faces-toggle").checked) { $("faces-box").hidden = true; return; }
  if (!current) return;
  const mine = generation;
  try {
    const result = await post("/api/predict", {faces: "true"});
    if (mine === generation && $("faces-toggle").checked) await showFaces(result.faces);
  } catch (err) { if (mine === generation) fail(err.message); }
}
async function analyse(file) {
  current = file; $("error").textContent = ""; resetResult();
  $("status").textContent = "predicting…";
  const mine = ++generation;
  try {
    const result = await post("/api/predict", $("faces-toggle").checked ? {faces: "true"} : {});
    if (mine !== generation) return;
    $("preview").src = URL.createObjectURL(file);
    showPrediction(result);
    if (result.faces) await showFaces(result.faces);
  } catch (err) {
    if (mine === generation) { current = null; fail(err.message.includes(file.name) ? err.message : `${file.name}: ${err.message}`); }
    return;
  }
  await explain();
}
$("file").addEventListener("change", () => { if ($("file").files.length) analyse($("file").files[0]); });
$("layers-toggle").addEventListener("change", toggleLayers);
$("faces-toggle").addEventListener("change", readFaces);
$("shared-scale").addEventListener("change", () => { if (layerData && shownTap) drawLayer(shownTap); });
$("depth").addEventListener("change", () => explain());
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault(); drop.classList.remove("over");
  if (ev.dataTransfer.files.length) analyse(ev.dataTransfer.files[0]);
});
</script></body></html>
"""


#: ``/docs``: the API reference rendered from ``/openapi.json`` by a few lines of inline script,
#: so it works offline (FastAPI's default Swagger UI loads its script and styles from a CDN).
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>emoadapt API</title>
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:960px;padding:1rem;color:#222}
.op{border:1px solid #ccc;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.method{font-weight:bold;text-transform:uppercase;display:inline-block;width:4rem}.get{color:#1a7f37}.post{color:#0b5cad}
code,pre{background:#f5f5f5;border-radius:3px;padding:0 .2rem}pre{padding:.5rem;overflow:auto}
table{border-collapse:collapse}td,th{border-bottom:1px solid #eee;padding:.2rem .6rem;text-align:left;vertical-align:top}
</style></head><body>
<h1 id="title">emoadapt API</h1>
<p id="summary"></p>
<p>Machine-readable schema: <a href="/openapi.json">/openapi.json</a>. The web page: <a href="/">/</a>.
Example: <code>curl -F file=@photo.jpg SERVER/api/predict</code> (SERVER: this page's address)</p>
<div id="ops">loading /openapi.json…</div>
<script>
"use strict";
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text) e.textContent = text; if (cls) e.className = cls; return e; };
function fields(op) {
  const rows = [];
  for (const p of op.parameters || []) rows.push([p.name, p.in, (p.schema && p.schema.type) || "", p.description || ""]);
  const body = op.requestBody && op.requestBody.content;
  for (const [type, content] of Object.entries(body || {})) {
    const props = (content.schema && content.schema.properties) || {};
    for (const [name, s] of Object.entries(props)) rows.push([name, type, s.type || "", s.description || ""]);
  }
  return rows;
}
fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  document.getElementById("title").textContent = spec.info.title + " API " + (spec.info.version || "");
  document.getElementById("summary").textContent = spec.info.summary || "";
  const box = document.getElementById("ops"); box.replaceChildren();
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const div = el("div", "", "op"), head = el("h3");
      head.append(el("span", method, "method " + method), el("code", path));
      div.append(head, el("p", op.summary || ""));
      if (op.description) div.append(el("pre", op.description));
      const rows = fields(op);
      if (rows.length) {
        const table = el("table"), tr = el("tr");
        for (const h of ["field", "in", "type", "description"]) tr.append(el("th", h));
        table.append(tr);
        for (const row of rows) { const r = el("tr"); for (const c of row) r.append(el("td", String(c))); table.append(r); }
        div.append(table);
      }
      div.append(el("p", "responses: " + Object.keys(op.responses || {}).join(", ")));
      box.append(div);
    }
  }
}).catch((err) => { document.getElementById("ops").textContent = "could not load /openapi.json: " + err; });
</script></body></html>
"""
