"""The parallel input pipeline of ``predict`` and ``explain``: decode + resize in worker threads,
results in input order, a bounded window of images in flight.

Decoding (Pillow, libjpeg) and resizing release the GIL, and so does onnxruntime, so threads
overlap: while the main thread runs the model on batch k, the workers decode the next images.
At most ``window`` images are decoded ahead of the consumer, whatever the number of inputs, so
memory stays bounded (window × one preprocessed tensor, 160 px: 0.3 MB each).

Every image goes through :func:`emoadapt.data.decode.decode_image` (its size limits and
corruption checks) and then the predictor's own ``preprocess``; a file that fails gives a
:class:`Loaded` with its ``error`` (``reason: message``) and never stops the stream.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .data.decode import decode_image
from .errors import ImageDecodeError

T = TypeVar("T")
R = TypeVar("R")

#: JPEGs are decoded at a reduced DCT scale while their short side stays ≥ DRAFT_FACTOR × the
#: model's input size (see docs/scaling.md for the measured change of the probabilities).
DRAFT_FACTOR = 2


def default_workers(cores: int | None = None) -> int:
    """Decode threads when ``--workers`` is not given: ``cores`` (default: the usable cores) less one
    (the model's threads run on all of them in the main thread), at least 1, at most 8. On 2 cores
    one decode thread kept the model busier than two (docs/benchmarks.md §9)."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
    return max(1, min(8, cores - 1))


@dataclass
class Loaded:
    """One input after decoding: ``tensor`` (C, S, S) float32 in [0, 1], or ``error`` (``reason:
    message``) and no tensor; ``seconds``: wall time of its decode + preprocess; ``picture``: the
    decoded RGB ``PIL.Image`` at its own size when asked for (explanations drawn over the whole image)."""

    path: Path
    tensor: Any
    error: str | None
    seconds: float
    picture: Any = None


def load_one(preprocess: Callable[[Any], Any], path: Path, draft_side: int | None = None, *,
             keep_picture: bool = False) -> Loaded:
    """Decode ``path`` (JPEG at a reduced scale when ``draft_side``, see ``decode_image(reduce_to=)``)
    and ``preprocess`` it; any failure becomes the result's ``error``. ``keep_picture`` also returns
    the decoded picture (full resolution unless ``draft_side``)."""
    started = time.perf_counter()
    try:
        image = decode_image(path, mode="RGB", reduce_to=draft_side) if draft_side or keep_picture else path
        return Loaded(path, preprocess(image), None, time.perf_counter() - started, image if keep_picture else None)
    except ImageDecodeError as exc:
        error = f"{exc.reason}: {exc}"
    except Exception as exc:  # a bug or an exhausted resource: this image fails, the run goes on
        error = f"internal-error: {type(exc).__name__}: {exc}"
    return Loaded(path, None, error, time.perf_counter() - started)


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int, window: int) -> Iterator[R]:
    """``map(function, items)`` run by ``workers`` threads, yielded in input order, with at most
    ``window`` results computed ahead of the consumer; ``workers`` 0 runs inline (no threads).
    ``function`` should not raise (an exception is re-raised at its item)."""
    if workers <= 0:
        yield from map(function, items)
        return
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emoadapt-decode") as pool:
        try:
            for item in items:
                if len(pending) >= max(1, window):
                    yield pending.popleft().result()
                pending.append(pool.submit(function, item))
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early (an error, a kill): drop what is not started yet
            for future in pending:
                future.cancel()


def loaded_batches(preprocess: Callable[[Any], Any], paths: Iterable[Path], batch_size: int, *, workers: int,
                   draft_side: int | None = None) -> Iterator[list[Loaded]]:
    """Lists of up to ``batch_size`` :class:`Loaded` inputs, in the order of ``paths``, decoded by
    ``workers`` threads that run up to two batches ahead (the window)."""
    batch: list[Loaded] = []
    for loaded in ordered_map(lambda p: load_one(preprocess, p, draft_side), paths, workers,
                              window=2 * max(batch_size, workers)):
        batch.append(loaded)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
