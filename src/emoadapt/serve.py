"""The web app: upload an image, get its emotion probabilities and a DnCShap explanation.

``create_app(...)`` builds the FastAPI app (importable by tests); ``emoadapt serve`` only starts
uvicorn with it. Endpoints (see docs/web.md): ``GET /`` (one self-contained HTML page),
``POST /api/predict``, ``POST /api/explain``, ``GET /healthz`` and the OpenAPI docs at ``/docs``.

Every upload is read into memory under a byte cap, decoded from bytes by
:func:`emoadapt.data.decode.decode_image` and dropped after the answer; figures are rendered into a
temporary directory that is deleted before the answer is sent. Model work runs in a worker thread
pool of ``max_concurrency`` threads, gated by an ``asyncio.Semaphore`` and bounded by ``timeout_s``:
every model call checks the job's deadline (a forward pre-hook on each module of the torch model, a
wrapper around the onnxruntime session), so a job that runs past the timeout stops at its next
model call and frees its slot. A request whose DnCShap cost (model evaluations: the explanation,
plus one full tree per layer with ``layers=true``) exceeds ``max_request_evals`` is refused with 422
before it runs. Every error answer, 500 included, is JSON ``{"detail": ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from .data.decode import decode_image
from .errors import CheckpointError, EmoadaptError, ImageDecodeError, ModelOutputError
from .explain import settings

MAX_DEPTH = settings.MAX_DEPTH  #: largest DnCShap depth a client may ask for
MAX_EVALS = settings.MAX_EVALS_LIMIT  #: largest DnCShap budget a client may ask for
MAX_REQUEST_EVALS = 4096  #: default cap on the model evaluations of one request (depth × layers × budget)
_INTEGER = re.compile(r"-?[0-9]{1,6}")  #: ASCII digits only: int() accepts "٣" as a digit string
_FORM_OVERHEAD = 64 * 1024  #: bytes allowed beyond the file for multipart framing and small fields
_ANY_TYPE = ("", "application/octet-stream")  #: part types that still get decoded (curl, some browsers)
_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; connect-src 'self'; font-src 'none'")
_UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "image file (PNG, JPEG, WebP, GIF…)"},
        "depth": {"type": "integer", "minimum": 0, "maximum": MAX_DEPTH, "description": "explain only"},
        "max_evals": {"type": "string", "description": f"explain only: DnCShap budget of model evaluations, "
                      f"2..{MAX_EVALS}, or 'full' (the whole tree)"},
        "target": {"type": "string", "description": "class name to explain (explain only)"},
        "layers": {"type": "boolean", "description": "also return the layer-wise grid (explain only)"}}}}}}}


class JobCancelled(Exception):
    """Raised inside a model call of a job that ran past its deadline (the request got 504)."""


_job = threading.local()  #: the running job's deadline (time.monotonic()), per worker thread


def _check_deadline(*_args: Any) -> None:
    deadline = getattr(_job, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise JobCancelled("the request timed out")


class _CancellableSession:
    """An onnxruntime session whose ``run`` first checks the job's deadline (all else delegated)."""

    def __init__(self, session):
        self._session = session

    def run(self, *args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        return self._session.run(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def make_cancellable(predictor) -> None:
    """Make every model call of ``predictor`` check the calling job's deadline: a forward pre-hook
    on each torch module (outside a job it does nothing) and a wrapped onnxruntime session."""
    if getattr(predictor, "_emoadapt_cancellable", False):
        return
    model = getattr(predictor, "model", None)
    for module in (model.modules() if hasattr(model, "modules") else ()):
        module.register_forward_pre_hook(_check_deadline)
    if getattr(predictor, "session", None) is not None:
        predictor.session = _CancellableSession(predictor.session)
    predictor._emoadapt_cancellable = True


class _Service:
    """The predictor (loaded lazily, once) and the limits shared by all requests."""

    def __init__(self, predictor, model, max_upload_bytes, max_pixels, timeout_s, max_concurrency, depth,
                 max_evals, queue_timeout_s, max_request_evals=MAX_REQUEST_EVALS):
        if predictor is not None:
            make_cancellable(predictor)
        self._predictor, self.model = predictor, model
        self.max_request_evals = max_request_evals
        self._lock = threading.Lock()
        self.max_upload_bytes, self.max_pixels, self.timeout_s = max_upload_bytes, max_pixels, timeout_s
        self.max_concurrency, self.depth, self.queue_timeout_s = max_concurrency, depth, queue_timeout_s
        self.max_evals = max_evals
        self.executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="emoadapt-serve")
        self.semaphore: asyncio.Semaphore | None = None  # created on first use, inside the event loop

    @property
    def predictor(self):
        with self._lock:
            if self._predictor is None:
                from .api import Predictor

                predictor = Predictor(self.model)
                make_cancellable(predictor)
                self._predictor = predictor
            return self._predictor

    @property
    def model_name(self) -> str:
        from .models.registry import DEFAULT_MODEL

        if self._predictor is not None and self._predictor.meta.get("name"):
            return str(self._predictor.meta["name"])
        if self.model is None:
            return DEFAULT_MODEL if self._predictor is None else "custom"
        return Path(str(self.model)).stem

    async def run(self, job: Callable[[], Any]) -> Any:
        """Run ``job`` in a worker thread: 503 if no slot frees within ``queue_timeout_s`` seconds,
        504 after ``timeout_s`` seconds. A timed-out job stops at its next model call (it checks its
        deadline) and then frees its slot, so at most ``max_concurrency`` jobs ever run at once and
        none holds a slot much beyond the timeout."""
        if self.semaphore is None:
            self.semaphore = asyncio.Semaphore(self.max_concurrency)
        try:
            await asyncio.wait_for(self.semaphore.acquire(), self.queue_timeout_s)
        except TimeoutError:
            raise HTTPException(503, f"busy: {self.max_concurrency} requests are already running; retry shortly",
                                headers={"Retry-After": "2"}) from None
        deadline = time.monotonic() + self.timeout_s

        def timed_job() -> Any:
            _job.deadline = deadline
            try:
                return job()
            finally:
                _job.deadline = None

        future = asyncio.get_running_loop().run_in_executor(self.executor, timed_job)
        future.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except (TimeoutError, JobCancelled):
            raise HTTPException(504, f"inference took longer than the {self.timeout_s:g} s limit") from None
        except ImageDecodeError as exc:
            status = 413 if exc.reason in ("too-many-pixels", "too-large") else 422
            raise HTTPException(status, str(exc)) from None  # names the reason
        except CheckpointError as exc:  # the server's model, not the client's request
            raise HTTPException(500, f"the model could not be loaded: {exc}") from None
        except ModelOutputError as exc:  # the server's model again
            raise HTTPException(500, f"the model returned an invalid result: {exc}") from None
        except EmoadaptError as exc:  # e.g. an unknown target class
            raise HTTPException(422, str(exc)) from None

    def _finished(self, future: asyncio.Future) -> None:
        self.semaphore.release()
        if not future.cancelled():
            future.exception()  # retrieved, so a job that failed after its 504 logs no warning

    def decode(self, data: bytes, name: str) -> Image.Image:
        return decode_image(data, mode="RGB", max_pixels=self.max_pixels, name=name)


async def _read_upload(request: Request, service: _Service) -> tuple[bytes, str, dict[str, str]]:
    """The ``file`` part's bytes and name, and the other form fields, reading at most the byte cap."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(415, "send multipart/form-data with the image in a field named 'file'")
    cap = service.max_upload_bytes + _FORM_OVERHEAD
    too_big = f"upload larger than the limit of {service.max_upload_bytes:,} bytes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise HTTPException(413, too_big)
    chunks, total = [], 0
    async for chunk in request.stream():  # Content-Length may lie or be absent (chunked)
        total += len(chunk)
        if total > cap:
            raise HTTPException(413, too_big)
        chunks.append(chunk)
    body = b"".join(chunks)
    del chunks

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=8, max_part_size=4096)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "no file: send the image in a multipart field named 'file'")
        part_type = (upload.content_type or "").split(";")[0].strip().lower()
        if not (part_type.startswith("image/") or part_type in _ANY_TYPE):
            raise HTTPException(415, f"unsupported content type {part_type!r}: upload an image (image/*)")
        data = await upload.read(service.max_upload_bytes + 1)
        if len(data) > service.max_upload_bytes:
            raise HTTPException(413, too_big)
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        return data, upload.filename or "upload", fields
    finally:
        await form.close()  # drops the spooled copy (an anonymous temp file above 1 MiB)


def _option(request: Request, fields: dict[str, str], name: str) -> str | None:
    """A form field, else a query parameter, else ``None``."""
    value = fields.get(name, request.query_params.get(name))
    return value.strip() if value is not None and value.strip() != "" else None


def _max_evals(raw: str | None, default: int | None) -> int | None:
    """The request's ``max_evals`` field: absent → ``default``; ``full`` → ``None``; else 2..MAX_EVALS."""
    if raw is None:
        return default
    if raw != "full" and not _INTEGER.fullmatch(raw):
        raise HTTPException(422, f"max_evals must be an integer in 2..{MAX_EVALS} or 'full', got {raw!r}")
    try:
        return settings.check_max_evals(raw, MAX_EVALS)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _png_base64(render: Callable[[Path], Any]) -> str:
    """Render a PNG with ``render(path)`` inside a temporary directory; return it base64-encoded."""
    with tempfile.TemporaryDirectory(prefix="emoadapt-serve-") as folder:
        path = Path(folder) / "figure.png"
        render(path)
        return base64.b64encode(path.read_bytes()).decode("ascii")


def _request_cost(predictor, depth: int, max_evals: int | None, with_layers: bool) -> int:
    """Model evaluations of an explain request: 1 prediction, the DnCShap tree (or its budget) and,
    with layers, a full tree per spatial layer (layer-wise explanations take no budget)."""
    from .explain.layerwise import layer_taps

    tree = 2 ** (depth + 1)
    cost = 1 + (tree if max_evals is None else min(tree, max_evals))
    if with_layers:
        cost += tree * len(layer_taps(predictor.model))
    return cost


def _summary(explanation) -> dict[str, Any]:
    return {"target": explanation.target_name if explanation.target_name is not None else explanation.target,
            "target_index": explanation.target, "probability": explanation.probability,
            "evaluations": explanation.evaluations, "seconds": round(explanation.seconds, 4),
            "depth": explanation.depth, "requested_depth": explanation.requested_depth,
            "max_evals": explanation.max_evals}


def create_app(predictor=None, *, model: str | None = None, max_upload_bytes: int = 10 * 2**20,
               max_pixels: int = 40_000_000, timeout_s: float = 30, max_concurrency: int = 2,
               depth: int = settings.DEPTH, max_evals: int | None = settings.MAX_EVALS,
               queue_timeout_s: float = 2.0, max_request_evals: int = MAX_REQUEST_EVALS) -> FastAPI:
    """The FastAPI app.

    Args:
        predictor: a loaded :class:`emoadapt.api.Predictor`; ``None`` loads ``model`` on first use.
        model: a ``.safetensors`` path or shipped model name (``None``: the shipped default).
        max_upload_bytes: largest accepted image file, in bytes (413 above).
        max_pixels: largest accepted width × height, in pixels (413 above).
        timeout_s: seconds a request may spend in the model (504 above).
        max_concurrency: model jobs running at once; further requests wait up to
            ``queue_timeout_s`` seconds for a slot, then get 503 with ``Retry-After``.
        depth: default DnCShap depth (clients may ask for 0..10).
        max_evals: default DnCShap budget of model evaluations (``None``: the full tree; clients
            may ask for 2..MAX_EVALS or ``full``).
        max_request_evals: most model evaluations one request may ask for (the explanation's
            budget, plus 2**(depth+1) per layer with ``layers=true``); 422 above.
    """
    depth = settings.check_depth(depth, MAX_DEPTH)
    max_evals = settings.check_max_evals(max_evals, MAX_EVALS)
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    service = _Service(predictor, model, max_upload_bytes, max_pixels, timeout_s, max_concurrency, depth,
                       max_evals, queue_timeout_s, max_request_evals)
    app = FastAPI(title="emoadapt", summary="Which emotion does an image evoke, and why (DnCShap).")
    app.state.service = service

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        """Any unexpected failure: a JSON 500 (never a plain-text traceback page)."""
        return JSONResponse({"detail": f"internal server error ({type(exc).__name__}); see the server log"},
                            status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(_PAGE.replace("__DEPTH__", str(depth)).replace("__MAXDEPTH__", str(MAX_DEPTH)),
                            headers={"Content-Security-Policy": _CSP})

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: ``model_loaded`` says whether the model was already loaded."""
        return {"status": "ok", "model": service.model_name, "model_loaded": service._predictor is not None}

    @app.post("/api/predict", openapi_extra=_UPLOAD_DOC)
    async def predict(request: Request) -> dict[str, Any]:
        """Emotion probabilities (0–1) of the uploaded image (decoded as RGB)."""
        start = time.perf_counter()
        data, name, _ = await _read_upload(request, service)

        def job() -> dict[str, Any]:
            return service.predictor.analyze(service.decode(data, name))

        result = await service.run(job)
        return dict(result, model=service.model_name, seconds=round(time.perf_counter() - start, 4))

    @app.post("/api/explain", openapi_extra=_UPLOAD_DOC)
    async def explain(request: Request) -> dict[str, Any]:
        """The prediction plus a DnCShap explanation: ``overlay_png`` (base64 PNG) and, with
        ``layers=true``, ``layers_png`` (the layer-wise grid) and per-layer summaries."""
        start = time.perf_counter()
        data, name, fields = await _read_upload(request, service)
        raw_depth = _option(request, fields, "depth")
        if raw_depth is not None and not _INTEGER.fullmatch(raw_depth):
            raise HTTPException(422, f"depth must be an integer in 0..{MAX_DEPTH}, got {raw_depth!r}")
        try:
            use_depth = depth if raw_depth is None else settings.check_depth(raw_depth, MAX_DEPTH)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        use_max_evals = _max_evals(_option(request, fields, "max_evals"), max_evals)
        target = _option(request, fields, "target")
        layers = (_option(request, fields, "layers") or "false").lower()
        if layers not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
            raise HTTPException(422, f"layers must be true or false, got {layers!r}")
        with_layers = layers in ("true", "1", "on", "yes")

        def job() -> dict[str, Any]:
            from .explain import save_layer_grid, save_overlay

            predictor = service.predictor
            cost = _request_cost(predictor, use_depth, use_max_evals, with_layers)
            if cost > service.max_request_evals:
                raise EmoadaptError(f"this explanation would take {cost:,} model evaluations, more than the limit of "
                                    f"{service.max_request_evals:,}: lower depth, set max_evals or drop layers")
            target_index = settings.check_target(target, predictor.classes)  # before decoding: a cheap 422
            image = service.decode(data, name)
            out = predictor.analyze(image)
            tensor = predictor.preprocess(image)
            explanation = predictor.explain(tensor, depth=use_depth, target=target_index, max_evals=use_max_evals)
            out["explanation"] = _summary(explanation)
            out["overlay_png"] = _png_base64(lambda path: save_overlay(tensor, explanation, path))
            if with_layers:
                by_tap = predictor.explain_layers(image, depth=use_depth, target=target_index)
                out["layers"] = {tap: _summary(e) for tap, e in by_tap.items()}
                out["layers_png"] = _png_base64(lambda path: save_layer_grid(tensor, by_tap, path))
            return out

        result = await service.run(job)
        return dict(result, model=service.model_name, seconds=round(time.perf_counter() - start, 4))

    return app


_PAGE = """<!doctype html>
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
</style></head><body>
<h1>emoadapt</h1>
<p>Which emotion does an image evoke, and which regions drive it (DnCShap)? The image is sent to this server only.</p>
<label id="drop">Choose an image or drop it here<br><input id="file" type="file" accept="image/*"></label>
<p><label>DnCShap depth <input id="depth" type="number" min="0" max="__MAXDEPTH__" value="__DEPTH__"></label>
<label><input id="layers-toggle" type="checkbox"> layer-wise grid</label></p>
<div id="error" role="alert"></div><div id="status"></div>
<div class="row"><div><h3>Image</h3><img id="preview" alt=""></div>
<div><h3>Probabilities</h3><div id="probs"></div></div></div>
<div class="row" id="affect-box" hidden><div><h3>Emotion distribution (7 emotions)</h3><div id="dist"></div></div>
<div><h3>Valence and arousal</h3>
<svg id="circumplex" width="220" height="220" viewBox="0 0 220 220" role="img" aria-label="valence-arousal circumplex">
<circle cx="110" cy="110" r="90" fill="none" stroke="#bbb"/>
<line x1="20" y1="110" x2="200" y2="110" stroke="#bbb"/><line x1="110" y1="20" x2="110" y2="200" stroke="#bbb"/>
<text x="202" y="106" font-size="10" text-anchor="end">pleasant</text><text x="18" y="106" font-size="10">unpleasant</text>
<text x="114" y="16" font-size="10">excited</text><text x="114" y="214" font-size="10">calm</text>
<circle id="va-point" cx="110" cy="110" r="6" fill="#c33"/></svg>
<div id="va-text"></div></div></div>
<div class="row"><div><h3>Explanation</h3><img id="overlay" alt=""></div>
<div id="layers-box" hidden><h3>Layer-wise</h3><img id="layers" alt=""></div></div>
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
function showProbs(result) {
  const box = $("probs"); box.replaceChildren();
  for (const [name, p] of Object.entries(result.emotion).sort((a, b) => b[1] - a[1])) {
    const row = document.createElement("div");
    row.className = "bar" + (name === result.dominant_emotion ? " top" : "");
    row.dataset.label = name;
    row.innerHTML = '<span class="name"></span><span class="track"><span class="fill" style="display:block"></span></span><span class="pct"></span>';
    row.querySelector(".name").textContent = name;
    row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
    row.querySelector(".pct").textContent = (100 * p).toFixed(1) + "%";
    box.appendChild(row);
  }
}
function showAffect(result) {
  // valence/arousal (1–9) as a point on the circumplex, the 7-way distribution as bars; hidden
  // for a model without affect heads (its answers have no "valence")
  const box = $("affect-box");
  box.hidden = result.valence === undefined;
  if (box.hidden) return;
  const dist = $("dist"); dist.replaceChildren();
  const top = Object.entries(result.distribution).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of top) {
    const row = document.createElement("div");
    row.className = "bar" + (name === top[0][0] ? " top" : "");
    row.dataset.label = name;
    row.innerHTML = '<span class="name"></span><span class="track"><span class="fill" style="display:block"></span></span><span class="pct"></span>';
    row.querySelector(".name").textContent = name;
    row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
    row.querySelector(".pct").textContent = (100 * p).toFixed(1) + "%";
    dist.appendChild(row);
  }
  const clamp = (v) => Math.min(9, Math.max(1, v));
  $("va-point").setAttribute("cx", (20 + (clamp(result.valence) - 1) / 8 * 180).toFixed(1));
  $("va-point").setAttribute("cy", (200 - (clamp(result.arousal) - 1) / 8 * 180).toFixed(1));
  $("va-text").textContent = `valence ${result.valence.toFixed(2)}, arousal ${result.arousal.toFixed(2)} (scale 1–9)`;
}
async function explain() {
  if (!current) return;
  const layers = $("layers-toggle").checked, mine = ++generation;
  $("error").textContent = ""; $("status").textContent = "explaining…";
  try {
    const result = await post("/api/explain", {depth: $("depth").value, layers: layers});
    if (mine !== generation) return;
    $("overlay").src = "data:image/png;base64," + result.overlay_png;
    $("layers-box").hidden = !layers;
    if (layers) $("layers").src = "data:image/png;base64," + result.layers_png;
    const e = result.explanation;
    $("status").textContent = `explained ${e.target} (p=${e.probability.toFixed(2)}, depth ${e.depth}, ${e.evaluations} evaluations) in ${result.seconds.toFixed(2)} s`;
  } catch (err) { if (mine === generation) fail(err.message); }
}
async function analyse(file) {
  current = file; $("error").textContent = ""; $("probs").replaceChildren();
  $("overlay").removeAttribute("src"); $("layers").removeAttribute("src");
  $("preview").src = URL.createObjectURL(file);
  $("status").textContent = "predicting…";
  const mine = ++generation;
  try {
    const result = await post("/api/predict");
    if (mine !== generation) return;
    showProbs(result);
    showAffect(result);
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
