"""Property-based tests (hypothesis), bounded to a few seconds each:

* the decoding entry point on random bytes, on mutated real files and on random arrays: a picture
  in RGB, or :class:`ImageDecodeError` — never any other exception;
* the web app driven by its own OpenAPI schema (every POST operation, fields generated from the
  documented types plus hostile variants): always a JSON answer, never a 500.

schemathesis is not used: it is not available to this project's installs, so the schema-driven
part is a small generator of our own over ``app.openapi()``."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed: pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import corpus  # noqa: E402
from conftest import save_tiny_model  # noqa: E402

from emoadapt.data.decode import REASONS, decode_image  # noqa: E402
from emoadapt.errors import ImageDecodeError  # noqa: E402

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    out = []
    for fmt, options in (("PNG", {}), ("JPEG", {"quality": 80}), ("JPEG", {"progressive": True}), ("GIF", {}),
                         ("WEBP", {}), ("TIFF", {}), ("BMP", {})):
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, fmt, **options)
        out.append(buffer.getvalue())
    return out + [corpus.sample_jpeg()[:6000] + b"\xff\xd9", corpus.png_header(300, 200)]


SEEDS = _seeds()


def _decodes_or_refuses(data) -> None:
    try:
        image = decode_image(data, max_pixels=4_000_000)
    except ImageDecodeError as exc:
        assert exc.reason in REASONS, exc.reason
        return
    assert image.mode == "RGB" and image.size[0] * image.size[1] <= 4_000_000


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_image_decode_error(data):
    _decodes_or_refuses(data)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "big"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 256))]
        elif op == "big" and len(data) > at + 4:  # a size or length field set to a huge value
            data[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00",
                                                    b"\x00\x01\x00\x00"]))
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_real_files_decode_or_raise_image_decode_error(data):
    _decodes_or_refuses(data)


@FUZZ
@given(st.tuples(st.integers(0, 40), st.integers(0, 40), st.sampled_from([None, 1, 2, 3, 4, 5])),
       st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_]),
       st.sampled_from(["random", "nan", "negative", "huge", "unit"]))
def test_random_arrays_decode_or_raise_image_decode_error(shape, dtype, fill):
    height, width, channels = shape
    dims = (height, width) if channels is None else (height, width, channels)
    rng = np.random.default_rng(height * 41 + width)
    values = {"random": rng.integers(0, 256, dims), "unit": rng.random(dims), "nan": np.full(dims, np.nan),
              "negative": -rng.random(dims), "huge": np.full(dims, 1e12)}[fill]
    with np.errstate(invalid="ignore", over="ignore"):
        array = values.astype(dtype)
    _decodes_or_refuses(array)


# The web app against its own OpenAPI schema -------------------------------------------------------

_HOSTILE_TEXT = st.sampled_from(["", " ", "²", "٣", "１６", "-1", "99999999999999999999", "1e3", "0x10", "full",
                                 "true", "null", "\x00", "é" * 300, "9" * 1000, "NaN", "∞"])


def _field(schema: dict) -> st.SearchStrategy:
    kind = schema.get("type")
    if kind == "integer":
        low = schema.get("minimum", -10)
        high = schema.get("maximum", max(low, 0) + 20)  # e.g. min_face: at least 20 px, no upper bound
        return st.one_of(st.integers(low - 3, high + 3).map(str), _HOSTILE_TEXT)
    if kind == "boolean":
        return st.one_of(st.sampled_from(["true", "false", "1", "0", "yes", "maybe"]), _HOSTILE_TEXT)
    return st.one_of(st.text(max_size=40), _HOSTILE_TEXT)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from emoadapt.api import Predictor
    from emoadapt.serve import create_app

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    weights = save_tiny_model(tmp_path_factory.mktemp("fuzz") / "tiny.safetensors")
    app = create_app(Predictor(str(weights), runtime="torch"), timeout_s=10, max_request_evals=300)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    torch.set_num_threads(threads)


def _operations(client) -> list[tuple[str, dict]]:
    schema = client.get("/openapi.json").json()
    found = []
    for path, methods in schema["paths"].items():
        body = methods.get("post", {}).get("requestBody", {})
        form = body.get("content", {}).get("multipart/form-data", {}).get("schema")
        if form:
            found.append((path, form))
    return found


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_web_answers_every_schema_generated_request_with_json(app_client, data):
    operations = _operations(app_client)
    assert {path for path, _ in operations} == {"/api/predict", "/api/explain", "/api/explain/layers"}
    path, form = data.draw(st.sampled_from(operations))
    fields = {}
    for name, prop in form["properties"].items():
        if prop.get("format") == "binary" or not data.draw(st.booleans()):
            continue
        fields[name] = data.draw(_field(prop))
    upload = data.draw(st.one_of(st.sampled_from(SEEDS[:3]), mutated(), st.binary(max_size=256)))
    part_type = data.draw(st.sampled_from(["image/png", "application/octet-stream", "text/plain", ""]))
    file_name = data.draw(st.one_of(st.just("a.png"), st.text(max_size=30)))
    files = {} if data.draw(st.integers(0, 9)) == 0 else {"file": (file_name, upload, part_type)}
    in_query = data.draw(st.booleans())
    try:
        answer = app_client.post(path, files=files or None, data=None if in_query else fields,
                                 params=fields if in_query else None)
    except UnicodeEncodeError:  # the client cannot send this file name (lone surrogates): nothing reached us
        return
    assert answer.status_code in (200, 202, 400, 413, 415, 422, 504), (answer.status_code, answer.text[:300])
    body = answer.json()
    if answer.status_code == 202:  # a background job (the layer grid): its state is JSON too
        assert path == "/api/explain/layers" and app_client.get(body["status_url"]).json()["id"] == body["id"]
        return
    assert ("emotion" in body) if answer.status_code == 200 else isinstance(body["detail"], (str, list))
