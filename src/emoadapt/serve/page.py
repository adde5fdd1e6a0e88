"""The HTML the app serves: the single page at ``/`` and the offline API reference at ``/docs``
(both self-contained: inline style and script, no external asset; ``CSP`` forbids any)."""

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; connect-src 'self'; font-src 'none'")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>emoadapt: which emotion does an image evoke?</title>
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:960px;padding:1rem;color:#222}
#drop{display:block;border:2px dashed #888;border-radius:8px;padding:1.5rem;text-align:center;cursor:pointer}
#drop.over{background:#eef5ff;border-color:#36c}
.row{display:flex;gap:1.5rem;flex-wrap:wrap;margin-top:1rem}.row>div{flex:1 1 280px}
img{max-width:100%;image-rendering:auto}#preview{max-height:320px}
.bar{display:flex;align-items:center;gap:.5rem;margin:.25rem 0}.bar .name{width:6rem}
.bar .track{flex:1;background:#eee;height:1rem;border-radius:3px}.bar .fill{background:#36c;height:100%;border-radius:3px}
.bar.top .fill{background:#c33}#error{color:#b00;min-height:1.2rem}#status{color:#666}
#uncertain{background:#fff4d6;border:1px solid #e0b040;border-radius:6px;padding:.4rem .6rem;margin-top:.5rem}
.legend{font-size:.85rem;color:#444}.swatch{display:inline-block;width:.9rem;height:.9rem;vertical-align:middle;border-radius:2px}
progress{width:12rem}
</style></head><body>
<h1>emoadapt</h1>
<p>Which emotion does an image evoke, and which regions drive it (DnCShap)? The image is sent to this server only.</p>
<label id="drop">Choose an image or drop it here<br><input id="file" type="file" accept="image/*"></label>
<p><label>DnCShap depth <input id="depth" type="number" min="0" max="__MAXDEPTH__" value="__DEPTH__"></label>
<label><input id="layers-toggle" type="checkbox"> layer-wise grid</label></p>
<div id="error" role="alert"></div><div id="status"></div>
<div class="row"><div><h3>Image</h3><img id="preview" alt=""></div>
<div><h3>Probabilities</h3><div id="probs"></div><div id="uncertain" hidden></div></div></div>
<div class="row" id="affect-box" hidden><div><h3>Emotion distribution (7 emotions)</h3><div id="dist"></div></div>
<div><h3>Valence and arousal</h3>
<svg id="circumplex" width="220" height="220" viewBox="0 0 220 220" role="img" aria-label="valence-arousal circumplex">
<circle cx="110" cy="110" r="90" fill="none" stroke="#bbb"/>
<line x1="20" y1="110" x2="200" y2="110" stroke="#bbb"/><line x1="110" y1="20" x2="110" y2="200" stroke="#bbb"/>
<text x="202" y="106" font-size="10" text-anchor="end">pleasant</text><text x="18" y="106" font-size="10">unpleasant</text>
<text x="114" y="16" font-size="10">excited</text><text x="114" y="214" font-size="10">calm</text>
<circle id="va-point" cx="110" cy="110" r="6" fill="#c33"/></svg>
<div id="va-text"></div></div></div>
<div class="row"><div><h3>Explanation</h3><img id="overlay" alt="">
<p class="legend" id="legend">The whole image is analysed. Each region is coloured by its share of the predicted
class's probability: <span class="swatch" style="background:#b2182b"></span> red raises it,
<span class="swatch" style="background:#2166ac"></span> blue lowers it (scale in the colour bar); uncoloured
regions matter least (below the 70th percentile of |share|).</p></div>
<div id="layers-box" hidden><h3>Layer-wise</h3><p id="layers-progress" hidden><progress id="layers-bar" value="0" max="1"></progress>
<span id="layers-text"></span></p><img id="layers" alt=""></div></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let current = null, generation = 0;  // answers for an older image or older settings are dropped
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
function showUncertain(result) {
  const box = $("uncertain");
  box.hidden = !result.uncertain;
  box.textContent = result.uncertain ? "Uncertain: " + result.uncertain_reason : "";
  box.dataset.uncertain = String(result.uncertain);
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
function showProbs(result) { showBars($("probs"), result.emotion); }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function layerGrid(mine, target) {
  // the grid runs as a background job on the server; poll it and show its progress
  $("layers-box").hidden = false; $("layers").removeAttribute("src");
  $("layers-progress").hidden = false; $("layers-text").textContent = "starting…";
  const job = await post("/api/explain/layers", {depth: $("depth").value, target: target});
  for (;;) {
    await sleep(500);
    if (mine !== generation) return;
    const response = await fetch(job.status_url);
    const state = await response.json();
    if (!response.ok) throw new Error(response.status + ": " + state.detail);
    $("layers-bar").max = state.total; $("layers-bar").value = state.done;
    $("layers-text").textContent = `layer ${state.done} of ${state.total}` + (state.layer ? ` (${state.layer})` : "");
    if (state.status === "failed") throw new Error(state.code + ": " + state.error);
    if (state.status === "done") {
      $("layers").src = "data:image/png;base64," + state.result.layers_png;
      $("layers-progress").hidden = true;
      return;
    }
  }
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
async function explain() {
  if (!current) return;
  const layers = $("layers-toggle").checked, mine = ++generation;
  $("error").textContent = ""; $("status").textContent = "explaining…";
  $("layers-box").hidden = !layers;
  try {
    const result = await post("/api/explain", {depth: $("depth").value});
    if (mine !== generation) return;
    $("overlay").src = "data:image/png;base64," + result.overlay_png;
    const e = result.explanation;
    $("status").textContent = `explained ${e.target} (p=${e.probability.toFixed(2)}, depth ${e.depth}, ${e.evaluations} evaluations) in ${result.seconds.toFixed(2)} s with ${result.model}`;
    if (layers) await layerGrid(mine, e.target);
  } catch (err) { if (mine === generation) fail(err.message); }
}
async function analyse(file) {
  current = file; $("error").textContent = ""; $("probs").replaceChildren(); $("uncertain").hidden = true;
  $("overlay").removeAttribute("src"); $("layers").removeAttribute("src");
  $("preview").src = URL.createObjectURL(file);
  $("status").textContent = "predicting…";
  const mine = ++generation;
  try {
    const result = await post("/api/predict");
    if (mine !== generation) return;
    showProbs(result); showUncertain(result); showAffect(result);
  } catch (err) { if (mine === generation) fail(err.message); return; }
  await explain();
}
$("file").addEventListener("change", () => { if ($("file").files.length) analyse($("file").files[0]); });
$("layers-toggle").addEventListener("change", explain);
$("depth").addEventListener("change", explain);
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
