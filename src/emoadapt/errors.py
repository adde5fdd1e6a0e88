"""Error types. Every error a user can cause is a subclass of :class:`EmoadaptError` (a ``ValueError``)
with a message that names the file and, where possible, the fix. The CLI turns these into one-line
messages; everything else is a bug and keeps its traceback."""

from __future__ import annotations


class EmoadaptError(ValueError):
    """Base class for every error caused by user input (files, options, layouts)."""


class ImageDecodeError(EmoadaptError):
    """An image file could not be decoded into a correct picture.

    Attributes:
        path: the file (``str``), or ``"<bytes>"`` for in-memory input.
        reason: a short machine-friendly reason: ``empty``, ``not-an-image``, ``truncated``,
            ``corrupt``, ``too-many-pixels``, ``too-large`` (a side), ``bad-aspect-ratio``,
            ``unsupported-mode``, ``missing`` (``emoadapt.data.decode.REASONS``).
    """

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        msg = f"cannot decode image {self.path}: {reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class DatasetLayoutError(EmoadaptError):
    """A dataset folder or file does not have the expected layout."""


class CheckpointError(EmoadaptError):
    """A checkpoint or weights file is missing, incomplete or does not match the model."""


class ModelOutputError(EmoadaptError):
    """The model returned something that is not a probability vector (NaN, inf, negative values):
    broken or incompatible weights. Raised instead of returning a silently wrong result."""


class VideoDecodeError(EmoadaptError):
    """A video could not be opened or stopped before its end.

    Attributes:
        path: the file (``str``).
        reason: ``missing``, ``unsupported`` (OpenCV cannot open it: corrupt, truncated header or
            unknown codec) or ``truncated`` (frames stop before the length the file announces).
    """

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"cannot decode video {self.path}: {reason}" + (f" ({detail})" if detail else ""))
