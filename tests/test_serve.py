"""The web app (emoadapt.serve) with FastAPI's TestClient: every endpoint and every limit, on a tiny model."""

from __future__ import annotations

import base64
import io
import struct
import tempfile
import threading
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from emoadapt.api import Predictor  # noqa: E402
from emoadapt.cli import main  # noqa: E402
from emoadapt.models.emonet import EmoNet, EmoNetConfig  # noqa: E402
from emoadapt.serve import create_app  # noqa: E402
from emoadapt.training.checkpoint import save_weights  # noqa: E402

CLASSES = ["happy", "sad", "hate", "anger"]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    torch.manual_seed(0)
    model = EmoNet(EmoNetConfig(in_chans=3, input_size=32, width=0.125, batch_norm=True, head="pool",
                                hidden=(16,), num_classes=4)).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_weights(path, model, model.config.to_dict(), {"classes": CLASSES})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server runs (docs/web.md): two OpenMP threads per job crawl on a busy CPU
    yield Predictor(str(path))
    torch.set_num_threads(threads)


def png(height=40, width=50, seed=0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header declares width × height pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def upload(data: bytes, name="a.png", content_type="image/png") -> dict:
    return {"file": (name, data, content_type)}


class Slow:
    """A predictor whose ``analyze`` blocks until ``release`` is set (``entered`` tells it started)."""

    def __init__(self, inner: Predictor):
        self.inner, self.classes, self.meta = inner, inner.classes, {}
        self.entered, self.release = threading.Event(), threading.Event()

    def analyze(self, image):
        self.entered.set()
        self.release.wait(10)
        return self.inner.analyze(image)


@pytest.fixture()
def client(predictor):
    with TestClient(create_app(predictor, max_upload_bytes=2 * 2**20, max_pixels=1_000_000, depth=4)) as c:
        yield c


def test_page_health_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="file"', 'id="drop"', 'id="probs"', 'id="overlay"', 'id="layers"', 'id="error"'):
        assert element in page.text
    assert "http://" not in page.text and "https://" not in page.text and "@import" not in page.text  # no CDN
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/healthz").json() == {"status": "ok", "model": "tiny", "model_loaded": True}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "multipart/form-data" in paths["/api/explain"]["post"]["requestBody"]["content"]


def test_predict(client):
    answer = client.post("/api/predict", files=upload(png()))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert list(result["emotion"]) == CLASSES and abs(sum(result["emotion"].values()) - 1) < 1e-5
    assert result["dominant_emotion"] == max(result["emotion"], key=result["emotion"].get)
    assert result["model"] == "tiny" and result["seconds"] >= 0


def test_explain_overlay_then_layers_with_depth_and_target(client):
    result = client.post("/api/explain", files=upload(png())).json()
    assert result["explanation"]["depth"] == 4 and result["explanation"]["evaluations"] > 0
    assert result["explanation"]["target"] == result["dominant_emotion"]
    assert result["explanation"]["precision"] == "fp32"  # a model without a shipped int8 copy
    assert base64.b64decode(result["overlay_png"]).startswith(b"\x89PNG") and "layers_png" not in result
    result = client.post("/api/explain", files=upload(png()), data={"depth": "2", "layers": "true"},
                         params={"target": "sad"}).json()
    summary = result["explanation"]
    assert (summary["target"], summary["target_index"], summary["depth"]) == ("sad", 1, 2)
    assert Image.open(io.BytesIO(base64.b64decode(result["layers_png"]))).size[0] > 0
    assert result["layers"] and all(s["target"] == "sad" for s in result["layers"].values())


def test_explain_budget(client):
    from emoadapt.attribution.settings import tree_evaluations

    summary = client.post("/api/explain", files=upload(png()), data={"max_evals": "8"}).json()["explanation"]
    assert (summary["evaluations"], summary["max_evals"]) == (8, 8)
    summary = client.post("/api/explain", files=upload(png()), data={"depth": "3", "max_evals": "full"}).json()
    assert (summary["explanation"]["evaluations"], summary["explanation"]["max_evals"]) == (tree_evaluations(3), None)


@pytest.mark.parametrize("options", [{"depth": "11"}, {"depth": "-1"}, {"depth": "deep"}, {"target": "joy"},
                                     {"layers": "maybe"}, {"max_evals": "1"}, {"max_evals": "many"},
                                     {"max_evals": str(4 * 2 ** 10 + 1)}])
def test_bad_explain_options_are_422(client, options):
    answer = client.post("/api/explain", files=upload(png()), data=options)
    assert answer.status_code == 422 and isinstance(answer.json()["detail"], str)


def test_upload_size_is_capped_even_without_content_length(predictor):
    with TestClient(create_app(predictor, max_upload_bytes=1000)) as client:
        answer = client.post("/api/predict", files=upload(b"\0" * 1001))
        assert answer.status_code == 413 and "limit" in answer.json()["detail"]
        assert client.post("/api/predict", files=upload(b"\0" * 1000)).status_code == 422  # at the cap: decoded
        assert client.post("/api/predict", files=upload(b"\0" * 200_000)).status_code == 413  # by Content-Length
        boundary = "xyz"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + b"\0" * 200_000 + f"\r\n--{boundary}--\r\n".encode()
        chunked = client.post("/api/predict", content=iter([body[i:i + 8192] for i in range(0, len(body), 8192)]),
                              headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in chunked.request.headers and chunked.status_code == 413


def test_pixel_limit(client):
    for width in (2000, 100_000):  # refused by decode_image's limit, then by Pillow's own bomb check
        answer = client.post("/api/predict", files=upload(png_header(width, width)))
        assert answer.status_code == 413 and "too-many-pixels" in answer.json()["detail"]
    flat = io.BytesIO()
    Image.new("RGB", (1001, 1000), "grey").save(flat, "PNG")  # a small file of 1,001,000 > 1,000,000 pixels
    answer = client.post("/api/predict", files=upload(flat.getvalue()))
    assert answer.status_code == 413 and "too-many-pixels" in answer.json()["detail"]


def test_content_type_and_corrupt_images(client):
    assert client.post("/api/predict", files=upload(png(), "a.txt", "text/plain")).status_code == 415
    assert client.post("/api/predict", json={"file": "a.png"}).status_code == 415
    assert client.post("/api/predict", data={"depth": "3"}).status_code == 415  # url-encoded form
    no_file = client.post("/api/predict", files={"image": ("a.png", png(), "image/png")})
    assert no_file.status_code == 422 and "'file'" in no_file.json()["detail"]
    answer = client.post("/api/predict", files=upload(b"GIF89a not really", "a.gif", "image/gif"))
    assert answer.status_code == 422 and "not-an-image" in answer.json()["detail"]
    answer = client.post("/api/predict", files=upload(png(200, 200)[:300]))
    assert answer.status_code == 422 and "truncated" in answer.json()["detail"]
    ok = client.post("/api/predict", files=upload(png(), "a.png", "application/octet-stream"))  # curl's default
    assert ok.status_code == 200


def test_timeout_is_504(predictor):
    slow = Slow(predictor)
    with TestClient(create_app(slow, timeout_s=0.2)) as client:
        answer = client.post("/api/predict", files=upload(png()))
        slow.release.set()
    assert answer.status_code == 504 and "0.2 s" in answer.json()["detail"]


def test_busy_server_is_503_with_retry_after(predictor):
    slow = Slow(predictor)
    with TestClient(create_app(slow, predict_slots=1, queue_timeout_s=0.2)) as client:
        first: list = []
        worker = threading.Thread(target=lambda: first.append(client.post("/api/predict", files=upload(png()))))
        worker.start()
        assert slow.entered.wait(10)
        busy = client.post("/api/predict", files=upload(png()))
        slow.release.set()
        worker.join(10)
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) > 0 and "busy" in busy.json()["detail"]
        assert first[0].status_code == 200
        assert client.post("/api/predict", files=upload(png())).status_code == 200  # the slot was given back


def test_nothing_left_in_the_temp_dir(predictor, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    big = png(800, 800)  # > 1 MiB: the multipart parser spools it to a temp file
    assert len(big) > 2**20
    with TestClient(create_app(predictor, depth=3, timeout_s=300)) as client:
        assert client.post("/api/explain", files=upload(big), data={"layers": "true"}).status_code == 200
        assert client.post("/api/predict", files=upload(b"corrupt")).status_code == 422
    assert list(scratch.iterdir()) == []


def test_cli_serve_starts_uvicorn_with_the_app(monkeypatch, tmp_path, predictor):
    from fastapi import FastAPI

    from emoadapt.serve import server

    calls = []
    monkeypatch.setattr(server, "run", lambda app, **kw: calls.append((app, kw)))
    weights = tmp_path / "tiny.safetensors"
    save_weights(weights, predictor.model, predictor.model.config.to_dict(), {"classes": CLASSES})
    assert main(["serve", "--model", str(weights), "--port", "8123", "--max-upload-mb", "1", "--concurrency", "1"]) == 0
    app, options = calls[0]
    assert isinstance(app, FastAPI) and options == {"host": "127.0.0.1", "port": 8123, "read_timeout_s": 10,
                                                    "shutdown_timeout_s": 5}
    assert app.state.service.max_upload_bytes == 2**20 and app.state.service.max_concurrency == 1
    assert TestClient(app).get("/healthz").json() == {"status": "ok", "model": "tiny", "model_loaded": True}
    assert main(["serve", "--model", str(tmp_path / "missing.safetensors")]) == 2 and len(calls) == 1
    assert main(["serve", "--model", str(weights), "--depth", "5", "--max-evals", "40"]) == 0
    assert (calls[-1][0].state.service.depth, calls[-1][0].state.service.max_evals) == (5, 40)
    assert main(["serve", "--model", str(weights), "--depth", "11"]) == 2 and len(calls) == 2  # one line, no traceback


def test_a_model_that_cannot_load_is_500_not_422(tmp_path):
    with TestClient(create_app(model=str(tmp_path / "missing.safetensors"))) as client:
        assert client.get("/healthz").json()["model_loaded"] is False
        answer = client.post("/api/predict", files=upload(png()))
    assert answer.status_code == 500 and "could not be loaded" in answer.json()["detail"]
