"""The web server under load and faults (issue #36), on a tiny model: predictions answered while
the explain lane is full, slow and silent clients cut off, a bounded shutdown that reports the
jobs it cancels, JSON errors for malformed requests, one log line for a client that leaves.

The socket tests run the real uvicorn server (emoadapt.serve.server) in a thread on loopback."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from conftest import png_bytes  # noqa: E402
from emoadapt.api import Predictor  # noqa: E402
from emoadapt.serve import create_app  # noqa: E402
from emoadapt.serve.server import protocol  # noqa: E402

BOUNDARY = "b0undary"


@pytest.fixture(scope="module")
def predictor(tiny_predictor):
    return tiny_predictor


def png(seed: int = 0) -> bytes:
    return png_bytes(seed=seed)


def multipart(data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


class Blocking:
    """Wraps a predictor: every model call of an explanation (a batch of more than one image)
    waits until ``release`` is set, checking its deadline first like any model call."""

    def __init__(self, predictor: Predictor):
        self.release, self.batches = threading.Event(), []
        self.predictor = predictor

        def hook(_module, inputs):
            if len(inputs[0]) > 1:
                self.batches.append(len(inputs[0]))
                while not self.release.wait(0.02):
                    from emoadapt.serve.limits import check_deadline

                    check_deadline()

        # on every module: layer-wise explanations run parts of the model (forward_from), not the whole
        self.handles = [module.register_forward_pre_hook(hook) for module in predictor.model.modules()]

    def close(self) -> None:
        self.release.set()
        for handle in self.handles:
            handle.remove()


@pytest.fixture()
def blocking(predictor):
    blocked = Blocking(predictor)
    yield blocked
    blocked.close()


@contextlib.contextmanager
def live_server(app, read_timeout_s: float = 0.5, shutdown_timeout_s: int = 1):
    """The app under uvicorn with emoadapt's protocol, in a thread; yields (port, thread); stops
    it (as SIGTERM does) on leaving."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=protocol(read_timeout_s), timeout_graceful_shutdown=shutdown_timeout_s,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1], thread
    finally:
        server.should_exit = True
        thread.join(30)


def http_get(port: int, path: str = "/healthz") -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def read_answer(sock: socket.socket, limit_s: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds it took."""
    start = time.monotonic()
    sock.settimeout(limit_s)
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - start


def json_body(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


# --- capacity: the predict lane is not the explain lane -------------------------------------

def test_predictions_are_answered_while_the_explain_lane_is_full(predictor, blocking):
    with TestClient(create_app(predictor, max_concurrency=2, depth=3, queue_timeout_s=0.3)) as client:
        explaining = [threading.Thread(target=client.post, args=("/api/explain",),
                                       kwargs={"files": {"file": ("a.png", png(), "image/png")}}) for _ in range(2)]
        for thread in explaining:
            thread.start()
        deadline = time.monotonic() + 10
        while client.app.state.service.lanes["explain"].running < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.app.state.service.lanes["explain"].running == 2
        for seed in range(5):  # once: every prediction 503 while two explanations ran
            start = time.monotonic()
            answer = client.post("/api/predict", files={"file": ("a.png", png(seed), "image/png")})
            assert answer.status_code == 200 and time.monotonic() - start < 5
        third = client.post("/api/explain", files={"file": ("a.png", png(), "image/png")})
        assert third.status_code == 503 and "explain" in third.json()["detail"]  # the explain lane queues, then 503
        blocking.release.set()
        for thread in explaining:
            thread.join(30)


def test_explanations_run_in_batches_of_the_servers_batch_size(predictor, blocking):
    blocking.release.set()
    with TestClient(create_app(predictor, explain_batch_size=8)) as client:
        assert client.post("/api/explain?depth=4", files={"file": ("a.png", png(), "image/png")}).status_code == 200
    assert blocking.batches and max(blocking.batches) <= 8  # the activations of 8 images at most per call


# --- slow clients, malformed requests -------------------------------------------------------

def test_a_silent_upload_is_cut_off_with_408_while_others_are_served(predictor):
    with live_server(create_app(predictor, read_timeout_s=0.5)) as (port, _server):
        body = multipart(png())
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(head("/api/predict", len(body)) + body[: len(body) // 2])  # then silence
        assert http_get(port) == 200  # served meanwhile
        answer, seconds = read_answer(slow)
        slow.close()
    assert answer.startswith(b"HTTP/1.1 408") and "upload too slow" in json_body(answer)["detail"]
    assert 0.4 < seconds < 3  # the documented read timeout, then the connection is closed


def test_a_half_sent_request_head_is_cut_off_with_408(predictor):
    with live_server(create_app(predictor), read_timeout_s=0.5) as (port, _server):
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Ty")  # once: open for ever
        assert http_get(port) == 200
        answer, seconds = read_answer(slow)
        slow.close()
        idle = socket.create_connection(("127.0.0.1", port))  # connects, sends nothing
        nothing, idle_seconds = read_answer(idle)
        idle.close()
    assert answer.startswith(b"HTTP/1.1 408") and "request head" in json_body(answer)["detail"]
    assert 0.4 < seconds < 3 and nothing == b"" and idle_seconds < 3


def test_malformed_http_is_a_json_400(predictor):
    with live_server(create_app(predictor)) as (port, _server):
        bad = socket.create_connection(("127.0.0.1", port))
        bad.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer, _ = read_answer(bad)
        bad.close()
    assert answer.startswith(b"HTTP/1.1 400") and b"application/json" in answer
    assert "malformed HTTP request" in json_body(answer)["detail"]


def test_truncated_or_boundaryless_multipart_is_a_json_400(predictor):
    with TestClient(create_app(predictor)) as client:
        body = multipart(png())
        cut = client.post("/api/predict", content=body[: len(body) - 30],
                          headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
        assert cut.status_code == 400 and "closing boundary" in cut.json()["detail"]  # once: 422 "no file"
        answer = client.post("/api/predict", content=body, headers={"content-type": "multipart/form-data"})
        assert answer.status_code == 400 and "boundary" in answer.json()["detail"]


def test_a_client_leaving_mid_upload_is_one_log_line(predictor, caplog):
    import asyncio

    app = create_app(predictor)
    messages = iter([{"type": "http.request", "body": multipart(png())[:100], "more_body": True},
                     {"type": "http.disconnect"}])
    scope = {"type": "http", "http_version": "1.1", "method": "POST", "path": "/api/predict", "raw_path": b"/api/predict",
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 5555), "headers": [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
                                                        (b"content-length", b"5000")]}

    async def receive():
        return next(messages)

    async def send(_message):
        pass

    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and "127.0.0.1:5555" in lines[0].getMessage()
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


# --- shutdown -------------------------------------------------------------------------------

def test_shutdown_is_bounded_with_a_silent_client_and_reports_the_cancelled_job(predictor, blocking, caplog):
    app = create_app(predictor, read_timeout_s=30, depth=2)
    with caplog.at_level(logging.WARNING, logger="emoadapt.serve"):
        with live_server(app, read_timeout_s=30, shutdown_timeout_s=1) as (port, thread):
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = multipart(png())
            conn.request("POST", "/api/explain/layers", body,
                         {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            job = json.loads(conn.getresponse().read())
            conn.close()
            silent = socket.create_connection(("127.0.0.1", port))
            silent.sendall(head("/api/predict", len(body)) + body[:50])  # and nothing more
            deadline = time.monotonic() + 10
            while not blocking.batches and time.monotonic() < deadline:  # the job is in the model
                time.sleep(0.02)
            assert app.state.jobs.get(job["id"])["status"] == "running", app.state.jobs.get(job["id"])
            start = time.monotonic()
        stopped = time.monotonic() - start  # leaving the block asked the server to stop and joined it
        assert not thread.is_alive()
        silent.close()
    assert stopped < 10  # once: never, with a silent client connected
    state = app.state.jobs.get(job["id"])
    assert state["status"] == "cancelled" and state["code"] == 503 and "stopped" in state["error"]
    assert any(job["id"] in r.getMessage() and "cancelled" in r.getMessage() for r in caplog.records)


# --- memory ---------------------------------------------------------------------------------

def test_explain_lane_runs_its_own_session_and_shrinks_its_arena():
    """onnxruntime's arena kept the peak of the largest batch for ever, and predictions waited in
    the explanations' thread pool: explain-lane runs go to a second session (made in an explain-lane
    thread, at its lower priority) and ask it to shrink its arena when they end."""
    import asyncio
    import os

    from emoadapt.serve.limits import CancellableSession, Service

    pytest.importorskip("onnxruntime")
    calls = []

    class Session:
        def __init__(self, name: str):
            self.name = name
            self.made_at_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        def run(self, output_names, input_feed, run_options=None):
            calls.append((self.name, run_options))
            return [np.zeros((1, 4), dtype=np.float32)]

    made = []
    session = CancellableSession(Session("predict"), lambda: made.append(Session("explain")) or made[-1])
    service = Service(None, None, 1, 1, 5, 1, 2, None, 1, explain_nice=3)

    async def both() -> None:
        await service.run(lambda: session.run(None, {}), "predict")
        await service.run(lambda: session.run(None, {}), "explain")
        await service.run(lambda: session.run(None, {}), "explain")

    asyncio.run(both())
    assert [name for name, _ in calls] == ["predict", "explain", "explain"] and len(made) == 1
    assert calls[0][1] is None
    assert calls[1][1].get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    assert made[0].made_at_nice >= os.getpriority(os.PRIO_PROCESS, 0) + 3 or os.name != "posix"
