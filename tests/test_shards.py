"""Sharded predict (issue #20): ``--shard 0/2`` + ``--shard 1/2`` + ``emoadapt merge`` equals one
process row for row; the merge reports a missing and a duplicated image; the decode pipeline keeps
input order with any number of workers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from conftest import save_tiny_model

from emoadapt.cli import main
from emoadapt.pipeline import ordered_map
from emoadapt.shards import merge_parts, parse_shard, part_path, shard_block, shard_from_env

DROP = ("seconds",)  # wall time differs between runs


@pytest.fixture()
def setup(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(images / f"i{i}.jpg")
    (images / "i3_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return images, save_tiny_model(tmp_path / "tiny.safetensors")


def _rows(path):
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in DROP} for row in csv.DictReader(handle)]


def _predict(images, weights, out, *extra):
    return main(["predict", str(images), "--out", str(out), "--model", str(weights), "--runtime", "torch",
                 "--no-progress", "--batch-size", "3", *extra])


def test_two_shards_merged_equal_one_process_and_merge_finds_problems(tmp_path, setup, capsys):
    images, weights = setup
    assert _predict(images, weights, tmp_path / "single.csv", "--workers", "0") == 1  # the broken image
    out = tmp_path / "sharded.csv"
    statuses = [_predict(images, weights, out, "--shard", shard, "--workers", "2") for shard in ("0/2", "1/2")]
    assert sorted(statuses) == [0, 1]  # the broken image is in one of the two blocks
    assert part_path(out, 1, 2).name == "sharded.part-00001-of-00002.csv"
    assert main(["merge", "--out", str(out), "--inputs", str(images)]) == 0
    assert _rows(out) == _rows(tmp_path / "single.csv") and len(_rows(out)) == 8
    capsys.readouterr()

    part0, part1 = part_path(out, 0, 2), part_path(out, 1, 2)
    lines0, lines1 = part0.read_text().splitlines(True), part1.read_text().splitlines(True)
    part0.write_text("".join(lines0[:-1]))  # a missing image: its row is gone
    part1.write_text("".join(lines1 + [lines0[1]]))  # a duplicated image: rank 0's first row again
    assert main(["merge", "--out", str(out), "--inputs", str(images)]) == 1
    err = capsys.readouterr().err
    missing = lines0[-1].split(",")[0]
    assert f"missing: {missing}" in err and f"duplicated: {lines0[1].split(',')[0]}" in err
    report = merge_parts(out)  # without the input list the sidecars still catch both parts
    assert not report.ok and report.short_parts == {part0.name: (3, 4), part1.name: (5, 4)}
    part1.unlink()
    assert merge_parts(out).missing_parts == [1]


def test_shard_helpers():
    items = list(range(10))
    assert sum((shard_block(items, i, 3) for i in range(3)), []) == items
    assert [len(shard_block(items, i, 4)) for i in range(4)] == [2, 3, 2, 3]
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(Exception, match="--shard"):
            parse_shard(bad)
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "3"}) == (1, 3)
    assert shard_from_env({}) is None and shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None


def test_ordered_map_keeps_order_with_a_bounded_window():
    import threading
    import time

    ahead, lock, consumed = [0], threading.Lock(), [0]

    def slow(i):
        time.sleep(0.002 * (i % 3))
        with lock:
            ahead[0] = max(ahead[0], i - consumed[0])
        return i * i

    out = []
    for value in ordered_map(slow, range(40), workers=4, window=5):
        out.append(value)
        consumed[0] += 1
    assert out == [i * i for i in range(40)] and ahead[0] <= 5
    assert list(ordered_map(slow, range(5), workers=0, window=1)) == [0, 1, 4, 9, 16]


def test_explain_shards_write_the_files_of_one_process(tmp_path, setup):
    import json

    images, weights = setup
    files = [str(images / name) for name in ("i0.jpg", "i1.jpg", "i3_broken.jpg")]
    common = ["--model", str(weights), "--runtime", "torch", "--depth", "1", "--no-progress"]
    main(["explain", *files, "--out", str(tmp_path / "one"), "--workers", "0", *common])
    for shard in ("0/2", "1/2"):
        main(["explain", *files, "--out", str(tmp_path / "two"), "--shard", shard, "--workers", "2", *common])
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 2 * 3

    def content(path):
        return {k: v for k, v in json.loads(path.read_text()).items() if "seconds" not in k and "time" not in k}

    for name in names:
        if name.endswith(".json"):
            assert content(tmp_path / "one" / name) == content(tmp_path / "two" / name)


def test_draft_decoding_keeps_the_short_side_and_skips_other_formats(tmp_path):
    from emoadapt.data.decode import decode_image

    rng = np.random.default_rng(1)
    picture = Image.fromarray(rng.integers(0, 256, (500, 700, 3), dtype=np.uint8))
    picture.save(tmp_path / "a.jpg", quality=90)
    picture.save(tmp_path / "a.png")
    assert decode_image(tmp_path / "a.jpg").size == (700, 500)
    assert decode_image(tmp_path / "a.jpg", reduce_to=160).size == (350, 250)  # 1/2: short side 250 >= 160
    assert decode_image(tmp_path / "a.jpg", reduce_to=120).size == (175, 125)  # 1/4
    assert decode_image(tmp_path / "a.jpg", reduce_to=300).size == (700, 500)  # 1/2 would be < 300
    assert decode_image(tmp_path / "a.png", reduce_to=120).size == (700, 500)


def test_torchrun_environment_shards_jsonl_and_merge_keeps_rows(tmp_path, setup, monkeypatch):
    import json

    images, weights = setup
    main(["predict", str(images), "--out", str(tmp_path / "one.jsonl"), "--model", str(weights), "--runtime", "torch",
          "--no-progress"])
    out = tmp_path / "ranks.jsonl"
    for rank in (0, 1):  # what torchrun sets for each of its 2 processes
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        _predict(images, weights, out)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert part_path(out, 1, 2).exists() and not out.exists()
    assert main(["merge", "--out", str(out)]) == 0

    def rows(path):
        return [{k: v for k, v in json.loads(line).items() if k not in DROP} for line in path.read_text().splitlines()]

    assert rows(out) == rows(tmp_path / "one.jsonl")


def test_default_workers_leave_one_core_to_the_model():
    from emoadapt.pipeline import default_workers

    assert [default_workers(c) for c in (1, 2, 3, 9, 64)] == [1, 1, 2, 8, 8]
    assert 1 <= default_workers() <= 8


def test_onnx_sessions_do_not_spin_wait():
    ort = pytest.importorskip("onnxruntime")
    from emoadapt.models.onnx import session_options

    options = session_options(ort, 3)
    assert options.intra_op_num_threads == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(ort).intra_op_num_threads == 0  # onnxruntime's default: one per core
