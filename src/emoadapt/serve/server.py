"""Running the app with uvicorn: timeouts for slow or silent clients, a bounded graceful shutdown
and JSON answers for the errors uvicorn itself sends.

uvicorn times out an idle keep-alive connection (``timeout_keep_alive``) but not a client that
sends half a request head and goes silent, nor a fresh connection that sends nothing: such a
connection stayed open forever and blocked shutdown. :func:`protocol` is uvicorn's h11 protocol
with a read timeout for the request head (408 in JSON, then the connection is closed) and JSON 400s
for malformed requests. The request *body* has its own timeouts in the app
(:func:`emoadapt.serve.handlers.read_upload`), where a timeout can be answered like any other error.
"""

from __future__ import annotations

import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("emoadapt.serve")

READ_TIMEOUT_S = 10.0  #: default: most seconds without a byte from a client in the middle of a request
UPLOAD_TIMEOUT_S = 60.0  #: default: most seconds to receive one request body (the upload)
KEEP_ALIVE_S = 5  #: default: seconds an idle keep-alive connection stays open (uvicorn's ``timeout_keep_alive``)
SHUTDOWN_TIMEOUT_S = 5  #: default: seconds a stopping server waits for running requests (then cancels them)


def raw_json_response(status: int, reason: str, detail: str) -> bytes:
    """A complete HTTP/1.1 response with the JSON body ``{"detail": detail}`` and ``Connection: close``."""
    body = json.dumps({"detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    return head + body


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read timeout on the request head and JSON 400s."""

    read_timeout_s = READ_TIMEOUT_S  #: set per server by :func:`protocol`

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._head_timer = None
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _arm_head_timer(self) -> None:
        """(Re)start the head timer while a request head is awaited on a fresh or partly sent request."""
        self._cancel_head_timer()
        waiting = self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)
        # a fresh connection, or part of a next request's head (an idle connection after a response
        # is left to uvicorn's keep-alive timeout)
        if waiting and (self.cycle is None or self.conn.trailing_data[0]) and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.read_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # half a request head: say why it is closed
            log.info("%s: request head incomplete after %g s of silence; closed (408)", self._peer(), self.read_timeout_s)
            self.transport.write(raw_json_response(408, "Request Timeout", f"request timed out: no data for "
                                                   f"{self.read_timeout_s:g} s while the request head was incomplete"))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, in JSON like every other error."""
        self.transport.write(raw_json_response(400, "Bad Request", f"malformed HTTP request ({msg.rstrip('.')})"))
        self.transport.close()

    def _peer(self) -> str:
        return "%s:%d" % self.client if self.client else "client"


def protocol(read_timeout_s: float = READ_TIMEOUT_S) -> type[TimedH11Protocol]:
    """The HTTP protocol class for uvicorn (its ``http`` option) with this head read timeout (s)."""
    if read_timeout_s <= 0:
        raise ValueError(f"read_timeout_s must be positive, got {read_timeout_s}")
    return type("TimedH11Protocol", (TimedH11Protocol,), {"read_timeout_s": float(read_timeout_s)})


def log_config() -> dict:
    """uvicorn's logging configuration plus emoadapt's own lines (timeouts, disconnects, cancelled
    jobs) at INFO, in the same format."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["emoadapt"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def run(app, host: str = "127.0.0.1", port: int = 8000, read_timeout_s: float = READ_TIMEOUT_S,
        keep_alive_s: int = KEEP_ALIVE_S, shutdown_timeout_s: int = SHUTDOWN_TIMEOUT_S, torch_threads: int = 1,
        **options) -> None:
    """Serve ``app`` with uvicorn until SIGINT/SIGTERM. Timeouts in seconds: ``read_timeout_s`` for
    a request head sent slowly, ``keep_alive_s`` for an idle connection between requests,
    ``shutdown_timeout_s`` for running requests once a stop is asked (then they are cancelled and
    background jobs are marked cancelled). ``torch_threads``: intra-op threads of the torch model
    (layer-wise grids): one per job, the explain lane's slots running side by side (two OpenMP
    threads per job crawl once the cores are shared). ``options`` go to ``uvicorn.Config``."""
    import torch
    import uvicorn

    torch.set_num_threads(torch_threads)
    options.setdefault("log_config", log_config())
    config = uvicorn.Config(app, host=host, port=port, http=protocol(read_timeout_s), timeout_keep_alive=keep_alive_s,
                            timeout_graceful_shutdown=shutdown_timeout_s, **options)
    uvicorn.Server(config).run()
