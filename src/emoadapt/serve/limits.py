"""The limits every model job runs under.

Two lanes of worker threads, so that cheap work is never stuck behind expensive work: the
``predict`` lane (``/api/predict``: one forward pass) and the ``explain`` lane (``/api/explain``
and the layer-wise grid jobs: hundreds of forward passes). Each lane has its own threads and its
own ``asyncio.Semaphore``; a request waits up to a queue timeout for a slot of its lane (503
after), and runs under a deadline (504 after) that every model call checks (a forward pre-hook on
each module of the torch model, a wrapper around the onnxruntime session), so a job past its
deadline stops at its next model call and frees its slot. When the server stops, every job still
running stops at its next model call the same way (:meth:`Service.stop`).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from fastapi import HTTPException
from PIL import Image

from ..data.decode import decode_image
from ..errors import CheckpointError, EmoadaptError, ImageDecodeError, ModelOutputError
from ..attribution import settings

MAX_DEPTH = settings.MAX_DEPTH  #: largest DnCShap depth a client may ask for
MAX_EVALS = settings.MAX_EVALS_LIMIT  #: largest DnCShap budget a client may ask for
MAX_REQUEST_EVALS = 4096  #: default cap on the model evaluations of one request (depth × layers × budget)
EXPLAIN_BATCH_SIZE = settings.BATCH_SIZE  #: images per model call of the server's explanations: the one default
LANES = ("predict", "explain")  #: the kinds of work that get their own worker threads
EXPLAIN_NICE = 10  #: niceness added to the explain lane's threads (Linux), so predictions get the CPU first

log = logging.getLogger("emoadapt.serve")


class JobCancelled(Exception):
    """Raised inside a model call of a job that ran past its deadline (the request got 504) or
    whose server is stopping."""


_job = threading.local()  #: the running job's deadline (time.monotonic()) and stop event, per worker thread


def check_deadline(*_args: Any) -> None:
    """Raise :class:`JobCancelled` in a job past its deadline or whose server is stopping."""
    deadline = getattr(_job, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise JobCancelled("the request timed out")
    stopping = getattr(_job, "stopping", None)
    if stopping is not None and stopping.is_set():
        raise JobCancelled("the server is shutting down")


class CancellableSession:
    """An onnxruntime session whose ``run`` first checks the job's deadline (all else delegated).

    Runs of the explain lane go to a second session of the same model (``explain_session()`` makes
    it), created in an explain-lane thread so that its intra-op threads inherit that thread's lower
    CPU priority: a prediction's run neither waits behind an explanation's batch in a shared thread
    pool nor competes with it at the same priority. Each explain-lane run also shrinks that
    session's CPU memory arena when it ends (run option ``memory.enable_memory_arena_shrinkage``):
    the arena otherwise keeps the peak memory of the largest batch it ever ran, for good."""

    def __init__(self, session, explain_session: Callable[[], Any] | None = None):
        self._session = session
        self._make_explain_session, self._explain_session = explain_session, None
        self._lock = threading.Lock()
        self._shrink = None

    def run(self, output_names, input_feed, run_options=None) -> Any:
        check_deadline()
        session = self._session
        if getattr(_job, "lane", None) == "explain":
            session = self._explain()
            if run_options is None:
                run_options = self._shrinking_options()
        return session.run(output_names, input_feed, run_options)

    def _explain(self):
        """The explain lane's session (made on first use, in the calling explain-lane thread)."""
        with self._lock:
            if self._explain_session is None:
                make = self._make_explain_session
                self._explain_session = make() if make is not None else self._session
            return self._explain_session

    def _shrinking_options(self):
        if self._shrink is None:
            import onnxruntime as ort

            options = ort.RunOptions()
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            self._shrink = options
        return self._shrink

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def make_cancellable(predictor) -> None:
    """Make every model call of ``predictor`` check the calling job's deadline: a forward pre-hook
    on each torch module (outside a job it does nothing) and a wrapped onnxruntime session (with a
    second session for the explain lane when the torch model is there to make it from)."""
    if getattr(predictor, "_emoadapt_cancellable", False):
        return
    model = getattr(predictor, "model", None)
    for module in (model.modules() if hasattr(model, "modules") else ()):
        module.register_forward_pre_hook(check_deadline)
    session = getattr(predictor, "session", None)
    if session is not None:
        def explain_session():
            from ..models.onnx import onnx_session

            return onnx_session(model, taps=tuple(output.name for output in session.get_outputs()))

        predictor.session = CancellableSession(session, explain_session if hasattr(model, "config") else None)
    predictor._emoadapt_cancellable = True


def _lower_priority(nice: int) -> None:
    """Run the calling worker thread ``nice`` steps lower in CPU priority (Linux: per-thread niceness)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)
    except (AttributeError, OSError):  # not Linux, or not allowed: same priority as the rest
        pass


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if os.name == "posix" else None


def release_memory() -> None:
    """Give the heap memory freed by a job back to the OS (glibc's ``malloc_trim``; else nothing).
    Without it, glibc keeps the freed activations of an explanation's batches in its arenas."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


class Lane:
    """``slots`` worker threads for one kind of work (``nice`` steps lower in CPU priority), and the
    semaphore that admits jobs to them."""

    def __init__(self, name: str, slots: int, nice: int = 0):
        if slots < 1:
            raise ValueError(f"{name} slots must be at least 1, got {slots}")
        self.name, self.slots = name, slots
        self.executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"emoadapt-{name}",
                                           initializer=_lower_priority if nice else None,
                                           initargs=(nice,) if nice else ())
        self.semaphore: asyncio.Semaphore | None = None  # created on first use, inside the event loop
        self.running = 0  #: jobs holding a slot now

    async def acquire(self, queue_timeout_s: float) -> None:
        """Take a slot, waiting up to ``queue_timeout_s`` seconds; 503 with ``Retry-After`` after."""
        if self.semaphore is None:
            self.semaphore = asyncio.Semaphore(self.slots)
        try:
            await asyncio.wait_for(self.semaphore.acquire(), queue_timeout_s)
        except TimeoutError:
            raise HTTPException(503, f"busy: {self.slots} {self.name} requests are already running; retry shortly",
                                headers={"Retry-After": "2"}) from None
        self.running += 1

    def release(self, future: asyncio.Future) -> None:
        self.running -= 1
        self.semaphore.release()
        if not future.cancelled():
            future.exception()  # retrieved, so a job that failed after its 504 logs no warning


class Service:
    """The predictor (loaded lazily, once), its two lanes and the limits shared by all requests."""

    def __init__(self, predictor, model, max_upload_bytes, max_pixels, timeout_s, max_concurrency, depth,
                 max_evals, queue_timeout_s, max_request_evals=MAX_REQUEST_EVALS, job_timeout_s=300.0,
                 predict_slots=2, explain_batch_size=EXPLAIN_BATCH_SIZE, read_timeout_s=10.0, upload_timeout_s=60.0,
                 explain_nice=EXPLAIN_NICE):
        if predictor is not None:
            make_cancellable(predictor)
        self._predictor, self.model = predictor, model
        self.max_request_evals = max_request_evals
        self._lock = threading.Lock()
        self.max_upload_bytes, self.max_pixels, self.timeout_s = max_upload_bytes, max_pixels, timeout_s
        self.max_concurrency, self.depth, self.queue_timeout_s = max_concurrency, depth, queue_timeout_s
        self.max_evals, self.job_timeout_s = max_evals, job_timeout_s
        self.predict_slots = predict_slots
        self.explain_batch_size = settings.check_batch_size(explain_batch_size, "explain_batch_size")
        self.read_timeout_s, self.upload_timeout_s = read_timeout_s, upload_timeout_s
        self.lanes = {"predict": Lane("predict", predict_slots),
                      "explain": Lane("explain", max_concurrency, nice=explain_nice)}
        self.stopping = threading.Event()  #: set by :meth:`stop`: running jobs end at their next model call
        self.tap_shapes: list[tuple[int, int]] | None = None  #: (h, w) per spatial layer, for the cost guard

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

    async def run(self, job: Callable[[], Any], lane: str = "predict", timeout_s: float | None = None,
                  queue_timeout_s: float | None = None) -> Any:
        """Run ``job`` in a worker thread of ``lane``: 503 if no slot of that lane frees within the
        queue timeout (default ``queue_timeout_s`` seconds), 504 after ``timeout_s`` seconds
        (default the request timeout). A timed-out job stops at its next model call (it checks its
        deadline) and then frees its slot, so at most ``slots`` jobs of a lane ever run at once."""
        if self.stopping.is_set():
            raise HTTPException(503, "the server is shutting down; retry shortly", headers={"Retry-After": "2"})
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        worker = self.lanes[lane]
        await worker.acquire(self.queue_timeout_s if queue_timeout_s is None else queue_timeout_s)
        deadline = time.monotonic() + timeout_s

        def timed_job() -> Any:
            _job.deadline, _job.stopping, _job.lane = deadline, self.stopping, lane
            try:
                return job()
            finally:
                _job.deadline = _job.stopping = _job.lane = None
                if lane == "explain":
                    release_memory()

        future = asyncio.get_running_loop().run_in_executor(worker.executor, timed_job)
        future.add_done_callback(worker.release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except asyncio.CancelledError:  # uvicorn's shutdown timeout is over: answer instead of a traceback
            log.info("a %s request was still running when the shutdown timeout ran out; answered 503", lane)
            raise HTTPException(503, "cancelled: the server is shutting down", headers={"Retry-After": "2"}) from None
        except (TimeoutError, JobCancelled):
            if self.stopping.is_set():
                raise HTTPException(503, "cancelled: the server is shutting down", headers={"Retry-After": "2"}) from None
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

    async def stop(self, wait_s: float) -> None:
        """Stop: running jobs end at their next model call; waits up to ``wait_s`` seconds for them."""
        self.stopping.set()
        deadline = time.monotonic() + wait_s
        for worker in self.lanes.values():
            worker.executor.shutdown(wait=False, cancel_futures=True)
        while any(worker.running for worker in self.lanes.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def decode(self, data: bytes, name: str) -> Image.Image:
        return decode_image(data, mode="RGB", max_pixels=self.max_pixels, name=name)
