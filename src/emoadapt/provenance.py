"""What a results file written by the product says about the run that wrote it."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

#: the ``emoadapt …`` command being run, set by the CLI's ``main`` (None from the Python API)
COMMAND: str | None = None


def run_record() -> dict[str, Any]:
    """``{"command", "date", "emoadapt", "torch", "python", "cores"}``: the command line (``emoadapt
    evaluate …`` from the CLI, else the program's own arguments), the UTC date, the versions and
    the CPU cores, so that a figure quoted from the file can be traced and rerun."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        emoadapt_version = version("emoadapt")
    except PackageNotFoundError:  # run from a source tree that is not installed
        emoadapt_version = "unknown"
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return {"command": COMMAND or shlex.join([program, *sys.argv[1:]]),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "emoadapt": emoadapt_version, "torch": torch.__version__, "python": platform.python_version(),
            "cores": os.cpu_count()}
