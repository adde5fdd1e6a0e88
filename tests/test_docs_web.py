"""Every example in docs/web.md runs: the curl commands of its Examples section against a live server
(a tiny model), the ``emoadapt serve`` lines parse, the ``create_app`` call binds, and the documented
defaults and ranges are the code's."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install -e '.[web]')")
if shutil.which("curl") is None:
    pytest.skip("curl not found", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from conftest import save_tiny_model  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "web.md"
DEFAULT_URL = "http://127.0.0.1:8000"


def bash_blocks(section: str | None = None) -> list[str]:
    """The ```bash blocks of docs/web.md (of one ``## section`` when given)."""
    text = DOC.read_text()
    if section is not None:
        start = text.index(f"## {section}\n")
        end = text.find("\n## ", start + 1)
        text = text[start:end if end > 0 else None]
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[str]:
    """The commands of a block: continuation lines joined, comment-only lines and comments dropped."""
    joined = block.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(line)
    return out


def test_documented_defaults_and_ranges_are_the_code_s():
    from emoadapt.attribution import settings
    from emoadapt.serve.limits import MAX_DEPTH, MAX_EVALS

    text = DOC.read_text()
    assert f"`depth` (0–{MAX_DEPTH}, default {settings.DEPTH}" in text
    assert f"`max_evals` (2–{MAX_EVALS} or `full`" in text


def test_serve_lines_parse_and_create_app_binds():
    from emoadapt.cli import build_parser
    from emoadapt.serve import create_app

    parser = build_parser()
    lines = [c for block in bash_blocks() for c in commands(block) if c.startswith("emoadapt serve")]
    assert lines
    for line in lines:
        parser.parse_args(shlex.split(line, comments=True)[1:])
    calls = re.findall(r"create_app\((.*?)\)\n", DOC.read_text())
    assert calls
    for call in calls:
        keywords = dict(re.findall(r"(\w+)=([^,]+)", call))
        inspect.signature(create_app).bind(None, **keywords)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import screenshots
    from emoadapt.api import Predictor
    from emoadapt.serve import create_app

    weights = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    with screenshots.serve(create_app(Predictor(str(weights)))) as url:
        yield url


def test_every_curl_example_runs(server, tmp_path):
    from importlib import resources

    shutil.copyfile(Path(str(resources.files("emoadapt") / "samples" / "chelsea.jpg")), tmp_path / "photo.jpg")
    (tmp_path / "notes.txt").write_text("not an image\n")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    [block] = bash_blocks("Examples")
    listed = commands(block)
    script = ["set -eo pipefail"]
    for index, command in enumerate(listed):
        command = command.split(" #")[0].replace(DEFAULT_URL, server) if "$job" in command else \
            command.replace(DEFAULT_URL, server)
        if "$job" in command:  # the job's status: polled until it is done, as the comment says
            command = (f"for i in $(seq 600); do out=$({command}); case $out in *'\"status\":\"done\"'*|*'\"status\":\"failed\"'*) break;; esac; "
                       "sleep 0.2; done; echo \"$out\"")
        script += [f"echo @@{index}", command]
    run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, (run.stdout, run.stderr)
    parts = run.stdout.split("@@")[1:]
    outputs = [(listed[int(part.split("\n", 1)[0])], part.split("\n", 1)[1].strip()) for part in parts]
    by_path = {re.search(r"(/api/[\w/]+|/healthz|\$job)", c).group(1): out for c, out in outputs
               if "job=" not in c and "notes.txt" not in c}
    predicted = json.loads(by_path["/api/predict"])
    assert set(predicted) >= {"emotion", "dominant_emotion", "uncertain", "uncertain_reason", "model"}
    assert json.loads(by_path["$job"])["status"] == "done"
    assert "'target': 'sad'" in by_path["/api/explain"] and (tmp_path / "overlay.png").stat().st_size > 0
    assert json.loads(by_path["/healthz"])["status"] == "ok"
    refused = [out for c, out in outputs if "notes.txt" in c]
    assert refused and "unsupported content type" in json.loads(refused[0])["detail"]
