"""``create_app``: the routes of the web app (see the package docstring and docs/web.md)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from ..errors import CheckpointError, EmoadaptError
from ..attribution import settings
from . import handlers
from .jobs import Jobs
from .limits import EXPLAIN_BATCH_SIZE, EXPLAIN_NICE, MAX_DEPTH, MAX_EVALS, MAX_REQUEST_EVALS, Service, log
from .server import READ_TIMEOUT_S, UPLOAD_TIMEOUT_S
from .page import CSP, DOCS_PAGE, PAGE

_UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "image file (PNG, JPEG, WebP, GIF…)"},
        "depth": {"type": "integer", "minimum": 0, "maximum": MAX_DEPTH, "description": "explain only"},
        "max_evals": {"type": "string", "description": f"explain only: DnCShap budget of model evaluations, "
                      f"2..{MAX_EVALS}, or 'full' (the whole tree)"},
        "target": {"type": "string", "description": "class name to explain (explain only)"},
        "layers": {"type": "boolean", "description": "also return the layer-wise grid (explain only; "
                   "for a normal photo use /api/explain/layers, a background job)"},
        "faces": {"type": "boolean", "description": "also locate and read every face (boxes, detection "
                  "scores, classes and 7 expressions per face); explain: outlined on the overlay"},
        "min_face": {"type": "integer", "minimum": 20, "description": "with faces: smallest face "
                     "read, box side in px (default 24; smaller ones are counted)"},
        "max_faces": {"type": "integer", "minimum": 1, "maximum": 50, "description": "with faces: "
                      "most faces read, the largest (default 20; the others are counted)"}}}}}}}
_LAYERS_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        key: value for key, value in _UPLOAD_DOC["requestBody"]["content"]["multipart/form-data"]["schema"][
            "properties"].items() if key in ("file", "depth", "target")}}}}}}


def create_app(predictor=None, *, model: str | None = None, max_upload_bytes: int = 10 * 2**20,
               max_pixels: int = 40_000_000, timeout_s: float = 30, max_concurrency: int = 2,
               predict_slots: int = 2, depth: int = settings.DEPTH, max_evals: int | None = settings.MAX_EVALS,
               queue_timeout_s: float = 2.0, max_request_evals: int = MAX_REQUEST_EVALS,
               job_timeout_s: float = 300.0, explain_batch_size: int = EXPLAIN_BATCH_SIZE,
               read_timeout_s: float = READ_TIMEOUT_S, upload_timeout_s: float = UPLOAD_TIMEOUT_S,
               stop_wait_s: float = 2.0, explain_nice: int = EXPLAIN_NICE) -> FastAPI:
    """The FastAPI app.

    Args:
        predictor: a loaded :class:`emoadapt.api.Predictor`; ``None`` loads ``model`` on first use.
        model: a ``.safetensors`` path or shipped model name (``None``: the shipped default).
        max_upload_bytes: largest accepted image file, in bytes (413 above).
        max_pixels: largest accepted width × height, in pixels (413 above).
        timeout_s: seconds a request may spend in the model (504 above).
        max_concurrency: slots of the explain lane: explanations (``/api/explain``) and layer-wise
            grid jobs running at once; further explain requests wait up to ``queue_timeout_s``
            seconds for a slot, then get 503 with ``Retry-After`` (jobs wait up to ``job_timeout_s``).
        predict_slots: slots of the predict lane (``/api/predict``), separate from the explain
            lane's, so predictions are answered while explanations run or queue.
        depth: default DnCShap depth (clients may ask for 0..10).
        max_evals: default DnCShap budget of model evaluations (``None``: the full tree; clients
            may ask for 2..MAX_EVALS or ``full``).
        max_request_evals: most model evaluations one request may ask for (the count of
            :func:`emoadapt.attribution.settings.explanation_evaluations`, plus
            :func:`~emoadapt.attribution.settings.layer_evaluations` per layer with layers); 422 above.
        job_timeout_s: seconds a background job (the layer-wise grid) may run, waiting for a
            slot included.
        explain_batch_size: images per model call of an explanation (bounds its memory: the
            activations of one batch).
        read_timeout_s: most seconds without a byte of the request body (408 after).
        upload_timeout_s: most seconds to receive a whole request body (408 after).
        stop_wait_s: seconds a stopping server waits for cancelled jobs to reach their next model call.
        explain_nice: CPU priority steps the explain lane's threads run below the rest (Linux),
            so that a prediction gets a core at once while explanations run; 0 to switch off.
    """
    depth = settings.check_depth(depth, MAX_DEPTH)
    max_evals = settings.check_max_evals(max_evals, MAX_EVALS)
    for name, value in (("max_concurrency", max_concurrency), ("predict_slots", predict_slots)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    service = Service(predictor, model, max_upload_bytes, max_pixels, timeout_s, max_concurrency, depth,
                      max_evals, queue_timeout_s, max_request_evals, job_timeout_s, predict_slots=predict_slots,
                      explain_batch_size=explain_batch_size, read_timeout_s=read_timeout_s,
                      upload_timeout_s=upload_timeout_s, explain_nice=explain_nice)
    jobs = Jobs()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await stop(service, jobs, stop_wait_s)

    app = FastAPI(title="emoadapt", summary="Which emotion does an image evoke, and why (DnCShap).",
                  docs_url=None, redoc_url=None, lifespan=lifespan)  # /docs below: a page that ships with the package
    app.state.service, app.state.jobs = service, jobs

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        """Any unexpected failure: a JSON 500 (never a plain-text traceback page)."""
        return JSONResponse({"detail": f"internal server error ({type(exc).__name__}); see the server log"},
                            status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(PAGE.replace("__DEPTH__", str(depth)).replace("__MAXDEPTH__", str(MAX_DEPTH)),
                            headers={"Content-Security-Policy": CSP})

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        """The API reference, rendered in the browser from /openapi.json (no CDN: works offline)."""
        return HTMLResponse(DOCS_PAGE, headers={"Content-Security-Policy": CSP})

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: the model's name and whether it was already loaded."""
        return {"status": "ok", "model": service.model_name, "model_loaded": service.loaded}

    @app.post("/api/predict", openapi_extra=_UPLOAD_DOC)
    async def predict(request: Request) -> dict[str, Any]:
        """Emotion probabilities (0–1) of the uploaded image (decoded as RGB, the whole image), with
        ``uncertain`` (true/false), ``uncertain_reason`` and ``ood_score``. With ``faces=true`` also
        ``faces``: every face located and read (``faces``: box x, y, w, h in px of the image, detection
        score, the classes and 7 expressions each; ``note`` "no faces found" when none), faces under
        ``min_face`` px (default 24) or beyond ``max_faces`` (default 20, at most 50) skipped and counted."""
        start = time.perf_counter()
        data, name, fields = await handlers.read_upload(request, service)
        faces = handlers.face_options(request, fields)

        def job() -> dict[str, Any]:
            image = service.decode(data, name)
            if not faces.faces:  # the plain call: stand-in predictors need not know faces
                return service.predictor.analyze(image)
            return service.predictor.analyze(image, faces=True, min_face=faces.min_face, max_faces=faces.max_faces)

        result = await service.run(job, "predict")
        return dict(result, model=service.model_name, seconds=round(time.perf_counter() - start, 4))

    @app.post("/api/explain", openapi_extra=_UPLOAD_DOC)
    async def explain(request: Request) -> dict[str, Any]:
        """The prediction plus a DnCShap explanation over the whole image: ``overlay_png`` (base64
        PNG with a colour bar) and, with ``layers=true``, ``layers_png`` and per-layer summaries; with
        ``faces=true`` also ``faces`` (as ``/api/predict``), each face outlined on the overlay."""
        start = time.perf_counter()
        data, name, fields = await handlers.read_upload(request, service)
        options = handlers.explain_options(request, fields, service)
        faces = handlers.face_options(request, fields)
        result = await service.run(lambda: handlers.explain_job(service, data, name, options, faces), "explain")
        return dict(result, model=service.model_name, seconds=round(time.perf_counter() - start, 4))

    @app.post("/api/explain/layers", status_code=202, openapi_extra=_LAYERS_DOC)
    async def explain_layers(request: Request) -> dict[str, Any]:
        """Start the layer-wise grid as a background job: answers at once with the job's ``id`` and
        ``status_url``; poll ``GET /api/jobs/{id}`` for progress (``done`` of ``total`` layers) and,
        when ``status`` is ``done``, ``result`` (``layers_png``, ``layers``)."""
        data, name, fields = await handlers.read_upload(request, service)
        options = handlers.explain_options(request, fields, service)
        try:
            predictor = service.predictor
            target_index = settings.check_target(options.target, predictor.classes)
            if getattr(predictor, "model", None) is None:
                raise EmoadaptError("layer-wise explanations need the torch model (this server runs an .onnx file)")
        except CheckpointError as exc:
            raise HTTPException(500, f"the model could not be loaded: {exc}") from None
        except EmoadaptError as exc:
            raise HTTPException(422, str(exc)) from None
        cost = await asyncio.to_thread(handlers.request_cost, service, options.depth, None, False, True)
        if cost > service.max_request_evals:
            raise HTTPException(422, f"this grid would take {cost:,} model evaluations, more than the limit of "
                                     f"{service.max_request_evals:,}: lower depth")
        from ..attribution.layerwise import layer_taps

        job_id = jobs.create("layers", len(layer_taps(predictor.model)))

        def job() -> dict[str, Any]:
            jobs.update(job_id, status="running")
            image = service.decode(data, name)
            return handlers.layers_job(service, image, options.depth, target_index,
                                       on_tap=lambda tap, done, total: jobs.update(job_id, done=done, layer=tap))

        async def run() -> None:
            try:
                result = await service.run(job, "explain", timeout_s=job_timeout_s, queue_timeout_s=job_timeout_s)
                jobs.update(job_id, status="done", result=result)
            except HTTPException as exc:
                jobs.update(job_id, status="failed", error=exc.detail, code=exc.status_code)
            except Exception as exc:  # noqa: BLE001 - reported to the poller, never lost
                jobs.update(job_id, status="failed", error=f"internal error ({type(exc).__name__})", code=500)

        task = asyncio.get_running_loop().create_task(run())
        jobs.tasks.add(task)
        task.add_done_callback(jobs.tasks.discard)
        return {"id": job_id, "status": "queued", "status_url": f"/api/jobs/{job_id}", "model": service.model_name}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        """A background job's state: ``status`` (queued, running, done, failed), ``done``/``total``,
        ``result`` when done, ``error`` and ``code`` when failed; 404 for an unknown id."""
        state = jobs.get(job_id)
        if state is None:
            raise HTTPException(404, f"no job {job_id!r} (unknown, or finished long ago)")
        return state

    return app


async def stop(service: Service, jobs: Jobs, wait_s: float) -> None:
    """On shutdown: every queued or running background job becomes ``cancelled`` (one log line each)
    and stops at its next model call; waits up to ``wait_s`` seconds for the worker threads."""
    for state in jobs.cancel_unfinished("cancelled: the server stopped before the job finished"):
        log.warning("job %s (%s) cancelled at shutdown after %s of %s", state["id"], state["kind"],
                    state.get("done", 0), state.get("total", "?"))
    await service.stop(wait_s)
