"""What the endpoints do, apart from routing: read an upload under its byte cap, parse the explain
options, and the model jobs themselves (prediction, explanation, layer-wise grid) with their PNGs
rendered in a temporary directory that is deleted before the answer is sent."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fastapi import HTTPException, Request
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

from ..errors import EmoadaptError
from ..attribution import settings
from .limits import MAX_DEPTH, MAX_EVALS, Service

_INTEGER = re.compile(r"-?[0-9]{1,6}")  #: ASCII digits only: int() accepts "٣" as a digit string
#: the most faces one request may ask to read (``max_faces``): each costs a face-branch pass
MAX_FACES_LIMIT = 50
_FORM_OVERHEAD = 64 * 1024  #: bytes allowed beyond the file for multipart framing and small fields
_ANY_TYPE = ("", "application/octet-stream")  #: part types that still get decoded (curl, some browsers)
_CLOSE = {"Connection": "close"}  #: on answers sent before the whole body was read: the connection ends
log = logging.getLogger("emoadapt.serve")


async def read_upload(request: Request, service: Service) -> tuple[bytes, str, dict[str, str]]:
    """The ``file`` part's bytes and name, and the other form fields, reading at most the byte cap
    within the upload timeouts (408 after); 400 for a malformed or truncated multipart body."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(415, "send multipart/form-data with the image in a field named 'file'")
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise HTTPException(400, "malformed multipart/form-data: the Content-Type header has no boundary")
    cap = service.max_upload_bytes + _FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise HTTPException(413, _too_big(service), headers=_CLOSE)
    body = await read_body(request, cap, service)
    if b"--" + boundary + b"--" not in body:
        raise HTTPException(400, f"malformed multipart/form-data: the body ({len(body):,} bytes) ends before its "
                                 "closing boundary (the upload was cut short?)")

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
            raise HTTPException(413, _too_big(service))
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        return data, upload.filename or "upload", fields
    finally:
        await form.close()  # drops the spooled copy (an anonymous temp file above 1 MiB)


def _too_big(service: Service) -> str:
    return f"upload larger than the limit of {service.max_upload_bytes:,} bytes"


async def read_body(request: Request, cap: int, service: Service) -> bytes:
    """The request body, at most ``cap`` bytes (413 above, whatever ``Content-Length`` says), with
    at most ``service.read_timeout_s`` seconds between two chunks and ``service.upload_timeout_s``
    seconds in all (408 after, and the connection is closed). A client that leaves mid-upload is
    logged as one line (no traceback) and gets no answer; an upload still arriving when the
    server's shutdown timeout is over gets 503 (one log line, where uvicorn logged a traceback)."""
    chunks, total = [], 0
    start = time.monotonic()
    stream = request.stream().__aiter__()
    while True:
        left = service.upload_timeout_s - (time.monotonic() - start)
        wait = min(service.read_timeout_s, left)
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(wait, 0))
        except StopAsyncIteration:
            break
        except TimeoutError:
            why = (f"no data for {service.read_timeout_s:g} s" if wait < left else
                   f"the upload took longer than {service.upload_timeout_s:g} s")
            log.info("%s %s: upload timed out after %s bytes (%s); answered 408", _peer(request), request.url.path,
                     f"{total:,}", why)
            raise HTTPException(408, f"upload too slow: {why}; send the file at once", headers=_CLOSE) from None
        except ClientDisconnect:
            log.info("%s %s: client disconnected mid-upload after %s bytes", _peer(request), request.url.path,
                     f"{total:,}")
            raise HTTPException(400, "client disconnected mid-upload", headers=_CLOSE) from None
        except asyncio.CancelledError:  # uvicorn cancels what is left once its shutdown timeout is over
            log.info("%s %s: upload cut off by the shutdown after %s bytes; answered 503", _peer(request),
                     request.url.path, f"{total:,}")
            raise HTTPException(503, "the server is shutting down", headers=_CLOSE) from None
        total += len(chunk)
        if total > cap:  # Content-Length may lie or be absent (chunked)
            raise HTTPException(413, _too_big(service), headers=_CLOSE)
        chunks.append(chunk)
    return b"".join(chunks)


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "client"


def option(request: Request, fields: dict[str, str], name: str) -> str | None:
    """A form field, else a query parameter, else ``None``."""
    value = fields.get(name, request.query_params.get(name))
    return value.strip() if value is not None and value.strip() != "" else None


@dataclass
class ExplainOptions:
    depth: int
    max_evals: int | None
    target: str | None
    layers: bool


def explain_options(request: Request, fields: dict[str, str], service: Service) -> ExplainOptions:
    """``depth`` (0..MAX_DEPTH), ``max_evals`` (2..MAX_EVALS or ``full``), ``target`` and ``layers``; 422 if bad."""
    raw_depth = option(request, fields, "depth")
    if raw_depth is not None and not _INTEGER.fullmatch(raw_depth):
        raise HTTPException(422, f"depth must be an integer in 0..{MAX_DEPTH}, got {raw_depth!r}")
    try:
        depth = service.depth if raw_depth is None else settings.check_depth(raw_depth, MAX_DEPTH)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    raw = option(request, fields, "max_evals")
    max_evals = service.max_evals
    if raw is not None:
        if raw != "full" and not _INTEGER.fullmatch(raw):
            raise HTTPException(422, f"max_evals must be an integer in 2..{MAX_EVALS} or 'full', got {raw!r}")
        try:
            max_evals = settings.check_max_evals(raw, MAX_EVALS)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    return ExplainOptions(depth, max_evals, option(request, fields, "target"), flag(request, fields, "layers"))


@dataclass
class FaceOptions:
    """``faces=true`` asks for every face located and read; ``min_face`` px and ``max_faces`` bound it."""
    faces: bool
    min_face: int
    max_faces: int


def flag(request: Request, fields: dict[str, str], name: str) -> bool:
    """A true/false form field or query parameter (default false); 422 if it is neither."""
    value = (option(request, fields, name) or "false").lower()
    if value not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
        raise HTTPException(422, f"{name} must be true or false, got {value!r}")
    return value in ("true", "1", "on", "yes")


def face_options(request: Request, fields: dict[str, str]) -> FaceOptions:
    """``faces`` (true/false), ``min_face`` (px, ≥ 20) and ``max_faces`` (≥ 1, at most
    :data:`MAX_FACES_LIMIT`); 422 if bad."""
    from ..faces.options import CASCADE_WINDOW, MAX_FACES, MIN_FACE

    numbers = {}
    for name, default, low, high in (("min_face", MIN_FACE, CASCADE_WINDOW, 10_000), ("max_faces", MAX_FACES, 1,
                                                                                       MAX_FACES_LIMIT)):
        raw = option(request, fields, name)
        if raw is not None and (not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high):
            raise HTTPException(422, f"{name} must be an integer in {low}..{high}, got {raw!r}")
        numbers[name] = default if raw is None else int(raw)
    return FaceOptions(flag(request, fields, "faces"), numbers["min_face"], numbers["max_faces"])


def png_base64(render: Callable[[Path], Any]) -> str:
    """Render a PNG with ``render(path)`` inside a temporary directory; return it base64-encoded."""
    with tempfile.TemporaryDirectory(prefix="emoadapt-serve-") as folder:
        path = Path(folder) / "figure.png"
        render(path)
        return base64.b64encode(path.read_bytes()).decode("ascii")


def request_cost(service: Service, depth: int, max_evals: int | None, explanation: bool = True,
                 layers: bool = False) -> int:
    """Model evaluations of an explain request: 1 prediction and the DnCShap explanation
    (:func:`~emoadapt.attribution.settings.explanation_evaluations`) when ``explanation``, plus, with
    ``layers``, each spatial layer (:func:`~emoadapt.attribution.settings.layer_evaluations`) — at the
    depth the model's input and each layer's feature map allow, as the explainers cap it. The same
    count the explainers report as ``evaluations`` (tests/test_serve_cost.py)."""
    from ..attribution.partition import max_depth

    predictor = service.predictor
    cost = 0
    if explanation:
        size = predictor.input_size
        cost += 1 + settings.explanation_evaluations(min(depth, max_depth(size, size)), max_evals)
    if layers:
        cost += sum(settings.layer_evaluations(min(depth, max_depth(*shape))) for shape in tap_shapes(service))
    return cost


def tap_shapes(service: Service) -> list[tuple[int, int]]:
    """(h, w) of each spatial layer's feature map, from one forward pass of a blank input (cached)."""
    if service.tap_shapes is None:
        import torch

        from ..attribution.layerwise import layer_taps

        predictor = service.predictor
        taps = layer_taps(predictor.model)
        size = predictor.input_size
        with torch.inference_mode():
            out = predictor.model.forward_taps(torch.zeros(1, predictor.channels, size, size), taps)
        service.tap_shapes = [tuple(int(d) for d in out[tap].shape[-2:]) for tap in taps]
    return service.tap_shapes


def check_cost(service: Service, cost: int) -> None:
    if cost > service.max_request_evals:
        raise EmoadaptError(f"this explanation would take {cost:,} model evaluations, more than the limit of "
                            f"{service.max_request_evals:,}: lower depth, set max_evals or drop layers")


def summary(explanation) -> dict[str, Any]:
    out = {"target": explanation.target_name if explanation.target_name is not None else explanation.target,
           "target_index": explanation.target, "probability": explanation.probability,
           "evaluations": explanation.evaluations, "seconds": round(explanation.seconds, 4),
           "depth": explanation.depth, "requested_depth": explanation.requested_depth,
           "max_evals": explanation.max_evals}
    if explanation.grid is not None:
        out["grid"] = list(explanation.grid)
    return out


def explain_job(service: Service, data: bytes, name: str, options: ExplainOptions,
                faces: FaceOptions | None = None) -> dict[str, Any]:
    """The prediction, a DnCShap explanation drawn over the whole image (``overlay_png``) and, with
    ``options.layers``, the layer-wise grid (``layers_png``, ``layers``); with ``faces.faces`` also
    every face (``faces``), outlined on the overlay with its number and class."""
    from ..attribution import save_overlay
    from ..results import overlay_note

    predictor = service.predictor
    check_cost(service, request_cost(service, options.depth, options.max_evals, layers=options.layers))
    target_index = settings.check_target(options.target, predictor.classes)  # before decoding: a cheap 422
    image = service.decode(data, name)
    wanted = faces is not None and faces.faces
    out = predictor.analyze(image, faces=True, min_face=faces.min_face, max_faces=faces.max_faces) if wanted \
        else predictor.analyze(image)
    if target_index is None:  # the class the page shows (the model's test-time augmentation included)
        target_index = predictor.classes.index(out["dominant_emotion"])
    tensor = predictor.preprocess(image)
    explanation = predictor.explain(tensor, depth=options.depth, target=target_index, max_evals=options.max_evals,
                                    batch_size=service.explain_batch_size)
    fit = getattr(predictor, "fit", "centre")
    out["explanation"] = {**summary(explanation), "precision": getattr(predictor, "explain_precision", "fp32")}
    note = overlay_note(out)  # an uncertain prediction says so on its map too
    boxes = [(face["box"], f"{i + 1} {face['dominant_emotion']}") for i, face in enumerate(out["faces"]["faces"])] \
        if wanted else []
    out["overlay_png"] = png_base64(lambda path: save_overlay(tensor, explanation, path, picture=image, fit=fit,
                                                              note=note, faces=boxes))
    if options.layers:
        out.update(layers_job(service, image, options.depth, target_index))
    return out


def layers_job(service: Service, image, depth: int, target_index: int | None,
               on_tap: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """``layers`` (a summary per tap), ``shares`` (per tap, its share of p(class) over the image on a
    64-cell grid: what the page draws one layer at a time from) and ``layers_png`` (the grid over
    the whole image)."""
    from ..attribution import save_layer_grid
    from ..attribution.figures import share_grid

    predictor = service.predictor
    tensor = predictor.preprocess(image)
    by_tap = predictor.explain_layers(image, depth=depth, target=target_index, on_tap=on_tap,
                                      batch_size=service.explain_batch_size)
    fit = getattr(predictor, "fit", "centre")
    return {"layers": {tap: summary(e) for tap, e in by_tap.items()},
            "shares": {tap: share_grid(e, image.width, image.height, fit) for tap, e in by_tap.items()},
            "layers_png": png_base64(lambda path: save_layer_grid(tensor, by_tap, path, picture=image, fit=fit))}
