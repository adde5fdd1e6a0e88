"""The limits every model job runs under: a worker pool of ``max_concurrency`` threads gated by an
``asyncio.Semaphore``, a queue timeout (503) and a run timeout (504) whose deadline every model call
checks (a forward pre-hook on each module of the torch model, a wrapper around the onnxruntime
session), so a job past its deadline stops at its next model call and frees its slot."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from fastapi import HTTPException
from PIL import Image

from ..data.decode import decode_image
from ..errors import CheckpointError, EmoadaptError, ImageDecodeError, ModelOutputError
from ..explain import settings

MAX_DEPTH = settings.MAX_DEPTH  #: largest DnCShap depth a client may ask for
MAX_EVALS = settings.MAX_EVALS_LIMIT  #: largest DnCShap budget a client may ask for
MAX_REQUEST_EVALS = 4096  #: default cap on the model evaluations of one request (depth × layers × budget)


class JobCancelled(Exception):
    """Raised inside a model call of a job that ran past its deadline (the request got 504)."""


_job = threading.local()  #: the running job's deadline (time.monotonic()), per worker thread


def check_deadline(*_args: Any) -> None:
    deadline = getattr(_job, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise JobCancelled("the request timed out")


class CancellableSession:
    """An onnxruntime session whose ``run`` first checks the job's deadline (all else delegated)."""

    def __init__(self, session):
        self._session = session

    def run(self, *args: Any, **kwargs: Any) -> Any:
        check_deadline()
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
        module.register_forward_pre_hook(check_deadline)
    if getattr(predictor, "session", None) is not None:
        predictor.session = CancellableSession(predictor.session)
    predictor._emoadapt_cancellable = True


class Service:
    """The predictor (loaded lazily, once) and the limits shared by all requests."""

    def __init__(self, predictor, model, max_upload_bytes, max_pixels, timeout_s, max_concurrency, depth,
                 max_evals, queue_timeout_s, max_request_evals=MAX_REQUEST_EVALS, job_timeout_s=300.0):
        if predictor is not None:
            make_cancellable(predictor)
        self._predictor, self.model = predictor, model
        self.max_request_evals = max_request_evals
        self._lock = threading.Lock()
        self.max_upload_bytes, self.max_pixels, self.timeout_s = max_upload_bytes, max_pixels, timeout_s
        self.max_concurrency, self.depth, self.queue_timeout_s = max_concurrency, depth, queue_timeout_s
        self.max_evals, self.job_timeout_s = max_evals, job_timeout_s
        self.executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="emoadapt-serve")
        self.semaphore: asyncio.Semaphore | None = None  # created on first use, inside the event loop

    @property
    def loaded(self) -> bool:
        return self._predictor is not None

    @property
    def predictor(self):
        with self._lock:
            if self._predictor is None:
                from ..predictor import Predictor

                predictor = Predictor(self.model)
                make_cancellable(predictor)
                self._predictor = predictor
            return self._predictor

    @property
    def model_name(self) -> str:
        """The model's own name: the preset's (e.g. ``emoadapt-ier``) or the weights file's stem."""
        from ..models.registry import DEFAULT_MODEL

        meta = getattr(self._predictor, "meta", None) or {}
        if meta.get("name"):
            return str(meta["name"])
        if self.model is None:
            return DEFAULT_MODEL if self._predictor is None else "custom"
        return Path(str(self.model)).stem

    async def run(self, job: Callable[[], Any], timeout_s: float | None = None,
                  queue_timeout_s: float | None = None) -> Any:
        """Run ``job`` in a worker thread: 503 if no slot frees within the queue timeout (default
        ``queue_timeout_s``), 504 after ``timeout_s`` seconds (default the request timeout). A
        timed-out job stops at its next model call (it checks its deadline) and then frees its
        slot, so at most ``max_concurrency`` jobs ever run at once."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self.semaphore is None:
            self.semaphore = asyncio.Semaphore(self.max_concurrency)
        try:
            await asyncio.wait_for(self.semaphore.acquire(), queue_timeout_s or self.queue_timeout_s)
        except TimeoutError:
            raise HTTPException(503, f"busy: {self.max_concurrency} requests are already running; retry shortly",
                                headers={"Retry-After": "2"}) from None
        deadline = time.monotonic() + timeout_s

        def timed_job() -> Any:
            _job.deadline = deadline
            try:
                return job()
            finally:
                _job.deadline = None

        future = asyncio.get_running_loop().run_in_executor(self.executor, timed_job)
        future.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except (TimeoutError, JobCancelled):
            raise HTTPException(504, f"inference took longer than the {timeout_s:g} s limit") from None
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
