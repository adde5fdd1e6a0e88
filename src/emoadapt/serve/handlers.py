"""What the endpoints do, apart from routing: read an upload under its byte cap, parse the explain
options, and the model jobs themselves (prediction, explanation, layer-wise grid) with their PNGs
rendered in a temporary directory that is deleted before the answer is sent."""

from __future__ import annotations

import base64
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fastapi import HTTPException, Request

from ..errors import EmoadaptError
from ..explain import settings
from .limits import MAX_DEPTH, MAX_EVALS, Service

_INTEGER = re.compile(r"-?[0-9]{1,6}")  #: ASCII digits only: int() accepts "٣" as a digit string
_FORM_OVERHEAD = 64 * 1024  #: bytes allowed beyond the file for multipart framing and small fields
_ANY_TYPE = ("", "application/octet-stream")  #: part types that still get decoded (curl, some browsers)


async def read_upload(request: Request, service: Service) -> tuple[bytes, str, dict[str, str]]:
    """The ``file`` part's bytes and name, and the other form fields, reading at most the byte cap."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(415, "send multipart/form-data with the image in a field named 'file'")
    cap = service.max_upload_bytes + _FORM_OVERHEAD
    too_big = f"upload larger than the limit of {service.max_upload_bytes:,} bytes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise HTTPException(413, too_big)
    chunks, total = [], 0
    async for chunk in request.stream():  # Content-Length may lie or be absent (chunked)
        total += len(chunk)
        if total > cap:
            raise HTTPException(413, too_big)
        chunks.append(chunk)
    body = b"".join(chunks)
    del chunks

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
            raise HTTPException(413, too_big)
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        return data, upload.filename or "upload", fields
    finally:
        await form.close()  # drops the spooled copy (an anonymous temp file above 1 MiB)


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
    layers = (option(request, fields, "layers") or "false").lower()
    if layers not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
        raise HTTPException(422, f"layers must be true or false, got {layers!r}")
    return ExplainOptions(depth, max_evals, option(request, fields, "target"), layers in ("true", "1", "on", "yes"))


def png_base64(render: Callable[[Path], Any]) -> str:
    """Render a PNG with ``render(path)`` inside a temporary directory; return it base64-encoded."""
    with tempfile.TemporaryDirectory(prefix="emoadapt-serve-") as folder:
        path = Path(folder) / "figure.png"
        render(path)
        return base64.b64encode(path.read_bytes()).decode("ascii")


def request_cost(predictor, depth: int, max_evals: int | None, with_layers: bool) -> int:
    """Model evaluations of an explain request: 1 prediction, the DnCShap tree (or its budget) and,
    with layers, a full tree per spatial layer (layer-wise explanations take no budget)."""
    from ..explain.layerwise import layer_taps

    tree = 2 ** (depth + 1)
    cost = 1 + (tree if max_evals is None else min(tree, max_evals))
    if with_layers:
        cost += tree * len(layer_taps(predictor.model))
    return cost


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


def explain_job(service: Service, data: bytes, name: str, options: ExplainOptions) -> dict[str, Any]:
    """The prediction, a DnCShap explanation drawn over the whole image (``overlay_png``) and, with
    ``options.layers``, the layer-wise grid (``layers_png``, ``layers``)."""
    from ..explain import save_overlay
    from ..results import overlay_note

    predictor = service.predictor
    check_cost(service, request_cost(predictor, options.depth, options.max_evals, options.layers))
    target_index = settings.check_target(options.target, predictor.classes)  # before decoding: a cheap 422
    image = service.decode(data, name)
    out = predictor.analyze(image)
    tensor = predictor.preprocess(image)
    explanation = predictor.explain(tensor, depth=options.depth, target=target_index, max_evals=options.max_evals)
    fit = getattr(predictor, "fit", "centre")
    out["explanation"] = summary(explanation)
    note = overlay_note(out)  # an uncertain prediction says so on its map too
    out["overlay_png"] = png_base64(lambda path: save_overlay(tensor, explanation, path, picture=image, fit=fit,
                                                              note=note))
    if options.layers:
        out.update(layers_job(service, image, options.depth, target_index))
    return out


def layers_job(service: Service, image, depth: int, target_index: int | None,
               on_tap: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """``layers`` (a summary per tap), ``shares`` (per tap, its share of p(class) over the image on a
    64-cell grid: what the page draws one layer at a time from) and ``layers_png`` (the grid over
    the whole image)."""
    from ..explain import save_layer_grid
    from ..explain.figures import share_grid

    predictor = service.predictor
    tensor = predictor.preprocess(image)
    by_tap = predictor.explain_layers(image, depth=depth, target=target_index, on_tap=on_tap)
    fit = getattr(predictor, "fit", "centre")
    return {"layers": {tap: summary(e) for tap, e in by_tap.items()},
            "shares": {tap: share_grid(e, image.width, image.height, fit) for tap, e in by_tap.items()},
            "layers_png": png_base64(lambda path: save_layer_grid(tensor, by_tap, path, picture=image, fit=fit))}
