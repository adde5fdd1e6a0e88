"""The web app: upload an image, get its emotion probabilities (with ``uncertain``) and a DnCShap
explanation drawn over the whole image.

``create_app(...)`` builds the FastAPI app (importable by tests); ``emoadapt serve`` only starts
uvicorn with it. Endpoints (see docs/web.md): ``GET /`` (one self-contained HTML page),
``POST /api/predict``, ``POST /api/explain``, ``POST /api/explain/layers`` (the layer-wise grid as a
background job, polled at ``GET /api/jobs/{id}``), ``GET /healthz`` and the API reference at
``/docs`` (rendered from ``/openapi.json`` by the page itself: no CDN, works offline).

Modules: :mod:`.app` (routes), :mod:`.limits` (the predict and explain lanes, 503/504, deadlines),
:mod:`.jobs` (background jobs), :mod:`.handlers` (uploads, options, the cost guard, the model
jobs), :mod:`.server` (uvicorn with read timeouts, a bounded shutdown, JSON 400/408), :mod:`.page` (HTML).

Every upload is read into memory under a byte cap, decoded from bytes by
:func:`emoadapt.data.decode.decode_image` and dropped after the answer; figures are rendered into a
temporary directory that is deleted before the answer is sent. Model work runs in two lanes of
worker threads — ``predict_slots`` for predictions, ``max_concurrency`` for explanations and
layer-wise grids — each gated by an ``asyncio.Semaphore`` and bounded by ``timeout_s``
(background jobs: ``job_timeout_s``): every model call checks the job's deadline, so a job that
runs past its timeout stops at its next model call and frees its slot. A request whose DnCShap cost
(:func:`emoadapt.attribution.settings.explanation_evaluations`, the explainers' own count) exceeds
``max_request_evals`` is refused with 422 before it runs. Every error answer, 500 included, is
JSON ``{"detail": ...}``, and so are the 400/408 answers of :mod:`.server`.
"""

from .app import create_app
from .limits import MAX_DEPTH, MAX_EVALS, MAX_REQUEST_EVALS, JobCancelled, make_cancellable

__all__ = ["create_app", "make_cancellable", "JobCancelled", "MAX_DEPTH", "MAX_EVALS", "MAX_REQUEST_EVALS"]
