"""What every results file carries about how it was made (issue #32): the command line, the date,
the machine, the git commit and, when a model was measured, its name and weights sha256."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def git_commit() -> str:
    """The checkout's HEAD commit (with ``+dirty`` when tracked files differ), or ``"unknown"``."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src"], cwd=REPO).returncode != 0
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo (machines of the same kind differ: timings from two
    of them are not comparable), or ``"unknown"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, Any]:
    """Cores, processor, whether it has VNNI, platform, Python, the load average when the run started (other jobs on the
    box skew timings) and, when the benchmark uses torch, its version and threads."""
    from emoadapt.models.int8 import cpu_has_vnni

    block = {"cores": os.cpu_count(), "cpu": cpu_model(), "platform": platform.machine(),
             "vnni": cpu_has_vnni(),  # explanations evaluate in int8 only on such CPUs (emoadapt.models.int8)
             "python": platform.python_version(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    if "torch" in sys.modules:  # a client-only benchmark (server_load) does not import it for this
        torch = sys.modules["torch"]
        block.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return block


def provenance(model: str | None = None, weights_sha256: str | None = None, **extra: Any) -> dict[str, Any]:
    """A ``provenance`` block for a results file."""
    block = {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
             "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "commit": git_commit(), "machine": machine()}
    if model is not None:
        block["model"] = model
    if weights_sha256 is not None:
        block["weights_sha256"] = weights_sha256
    block.update(extra)
    return {"provenance": block}


def weights_identity(spec: str | Path) -> dict[str, str]:
    """``model`` and ``weights_sha256`` for :func:`provenance`: a shipped model by its name and the
    registry's sha256, a weights file by its path and the sha256 of its bytes."""
    import hashlib

    from emoadapt.models.registry import get_preset, list_models

    name = str(spec)
    if name in list_models():
        return {"model": name, "weights_sha256": get_preset(name).sha256}
    return {"model": name, "weights_sha256": hashlib.sha256(Path(name).read_bytes()).hexdigest()}


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
