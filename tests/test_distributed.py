"""DDP training under torchrun (issue #20): 2 CPU processes on loopback (gloo) hold identical
weights after training (``fit``, as train-fer, and the joint adaptation trainer), and a run killed after its first epoch resumes to the same weights as an
uninterrupted one. The worker is tests/ddp_toy.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(HERE / "ddp_toy.py"), *args], env=env, capture_output=True, text=True, timeout=300)


def _digests(out: Path) -> list[str]:
    return [json.loads((out / f"rank{r}.json").read_text())["digest"] for r in (0, 1)]


@pytest.mark.slow
def test_two_cpu_ranks_train_identical_weights_and_resume_after_a_kill(tmp_path):
    first = _torchrun(str(tmp_path), "2", "first")  # the uninterrupted run, then one killed after epoch 1
    assert first.returncode != 0, "the killed run's processes should have vanished"
    assert all((tmp_path / "full" / f"rank{r}.json").exists() for r in (0, 1)), first.stderr[-3000:]
    a, b = _digests(tmp_path / "full")  # written before the killed run started
    assert a == b  # DDP: rank 1 started from other weights and ends equal to rank 0
    adapted = [json.loads((tmp_path / "full" / f"rank{r}.json").read_text())["adapt"] for r in (0, 1)]
    assert adapted[0] == adapted[1] and (tmp_path / "full" / "adapt" / "best.safetensors").exists()
    log = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert len((tmp_path / "killed" / "log.jsonl").read_text().splitlines()) == 1  # died after epoch 1's checkpoint
    assert not (tmp_path / "killed" / "rank0.json").exists()

    resumed = _torchrun(str(tmp_path), "2", "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _digests(tmp_path / "killed") == [a, a]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()] == [1, 2]
