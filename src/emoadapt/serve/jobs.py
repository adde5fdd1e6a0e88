"""Background jobs of the web app (the layer-wise grid): started by a POST that answers at once
(202 with the job's id), then polled with ``GET /api/jobs/{id}`` until ``done`` or ``failed``.

A job's state is a dict: ``id``, ``kind``, ``status`` (``queued`` → ``running`` → ``done``,
``failed`` or ``cancelled``), ``done`` and ``total`` (progress, e.g. layers explained), ``result``
(when done) and ``error`` + ``code`` (when failed or cancelled). A job still queued or running when
the server stops is ``cancelled`` (code 503) and logged as such, never silently dropped. At most
``keep`` jobs are kept; the oldest finished ones go first.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Any

FINISHED = ("done", "failed", "cancelled")  #: the states a job ends in


class Jobs:
    """Thread-safe store of job states (workers update progress from their threads)."""

    def __init__(self, keep: int = 32):
        self.keep = keep
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.tasks: set = set()  # the asyncio tasks running the jobs (kept referenced until they end)

    def create(self, kind: str, total: int) -> str:
        """A new queued job; returns its id (random, 16 hex digits)."""
        job_id = secrets.token_hex(8)
        with self._lock:
            self._items[job_id] = {"id": job_id, "kind": kind, "status": "queued", "done": 0, "total": total}
            self._trim()
        return job_id

    def update(self, job_id: str, **fields: Any) -> None:
        """Change a job's state; a job that has ended (done, failed, cancelled) stays as it is."""
        with self._lock:
            state = self._items.get(job_id)
            if state is not None and state["status"] not in FINISHED:
                state.update(fields)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A copy of the job's state, or ``None`` for an unknown (or forgotten) id."""
        with self._lock:
            state = self._items.get(job_id)
            return None if state is None else dict(state)

    def cancel_unfinished(self, reason: str) -> list[dict[str, Any]]:
        """Mark every queued or running job ``cancelled`` (code 503, ``error`` = ``reason``); returns
        copies of their states."""
        with self._lock:
            unfinished = [state for state in self._items.values() if state["status"] not in FINISHED]
            for state in unfinished:
                state.update(status="cancelled", error=reason, code=503)
            return [dict(state) for state in unfinished]

    def _trim(self) -> None:
        finished = [k for k, v in self._items.items() if v["status"] in FINISHED]
        while len(self._items) > self.keep and finished:
            del self._items[finished.pop(0)]
