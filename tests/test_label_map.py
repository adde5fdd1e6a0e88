"""``--label-map`` for a labelled dataset whose labels are not IER classes (evaluate, report,
calibrate, embed, adapt), the one error that asks for it, and ``--model`` defaulting to the default
model in evaluate, report and embed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model, write_image

from emoadapt.cli import main
from emoadapt.data import open_dataset
from emoadapt.data.labels import IER_CLASSES, parse_label_map
from emoadapt.errors import EmoadaptError

SRC = Path(__file__).resolve().parents[1] / "src" / "emoadapt"
MAP = "joy=happy,sadness=sad,disgust=hate,anger=anger"
MAPPED = {"joy": "happy", "sadness": "sad", "disgust": "hate", "anger": "anger"}


@pytest.fixture(scope="module")
def joy_folder(tmp_path_factory) -> Path:
    """A folder per class named joy/sadness/disgust/anger (2 images each) plus ``fear`` (1, unmapped)."""
    root = tmp_path_factory.mktemp("labels") / "photos"
    rng = np.random.default_rng(0)
    for label in (*MAPPED, "fear"):
        for i in range(1 if label == "fear" else 2):
            write_image(root / label / f"{i}.png", rng)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_the_map_is_read_from_pairs_a_file_of_lines_or_json(tmp_path):
    assert parse_label_map(MAP) == MAPPED
    assert parse_label_map(" joy = happy , sadness=sad ") == {"joy": "happy", "sadness": "sad"}
    lines = tmp_path / "map.txt"
    lines.write_text("# folder=class\njoy=happy\n\nsadness=sad\ndisgust=hate\nanger=anger\n")
    assert parse_label_map(str(lines)) == MAPPED
    as_json = tmp_path / "map.json"
    as_json.write_text(json.dumps(MAPPED))
    assert parse_label_map(str(as_json)) == MAPPED


@pytest.mark.parametrize("spec, message", [("joy=glad", "glad is not an IER class"), ("joy", "LABEL=CLASS"),
                                           ("=happy", "LABEL=CLASS"), (" , ", "no LABEL=CLASS pair")])
def test_a_wrong_map_is_a_one_line_error(spec, message):
    with pytest.raises(EmoadaptError, match=message):
        parse_label_map(spec)


def test_a_file_that_is_not_json_is_named(tmp_path):
    bad = tmp_path / "map.json"
    bad.write_text("{joy: happy}")
    with pytest.raises(EmoadaptError, match="not valid JSON"):
        parse_label_map(str(bad))


def test_the_map_relabels_and_a_label_it_names_must_exist(joy_folder):
    dataset = open_dataset(joy_folder, "folder")
    with pytest.raises(EmoadaptError, match="--label-map") as error:
        dataset.to_ier_dataset()
    assert "no map onto the IER classes" in str(error.value) and "\n" not in str(error.value)
    mapped = dataset.with_label_map(MAPPED).to_ier_dataset()
    assert mapped.classes == IER_CLASSES and len(mapped) == 8  # fear is named nowhere: left out
    assert {s.meta["source_label"] for s in mapped} == set(MAPPED)
    with pytest.raises(EmoadaptError, match="joyful, which is not a label"):
        dataset.with_label_map({"joyful": "happy"})


def test_the_no_map_error_is_written_once():
    """Every command gets it from ``ImageDataset.to_ier_dataset`` (``data.labels.no_ier_map_error``)."""
    places = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "no map onto" in p.read_text()]
    assert places == ["data/labels.py"]


def test_evaluate_says_which_option_fixes_unmapped_labels_and_then_scores(joy_folder, tiny, capsys):
    assert main(["evaluate", "--model", str(tiny), str(joy_folder), "--layout", "folder"]) == 2
    err = capsys.readouterr().err
    assert "--label-map" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", "--model", str(tiny), str(joy_folder), "--label-map", MAP]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[:out.index("}") + 1])["n"] == 8
    assert main(["evaluate", str(tiny), str(joy_folder), "--label-map", MAP]) == 0  # the older positional form
    assert main(["evaluate", str(tiny), str(joy_folder), "--model", str(tiny), "--label-map", MAP]) == 2
    assert "give the model once" in capsys.readouterr().err


def test_evaluate_without_model_scores_the_default_model(joy_folder, tmp_path):
    assert main(["evaluate", str(joy_folder), "--label-map", MAP, "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["weights"] == "emoadapt-ier" and metrics["n"] == 8
    run = metrics["run"]  # where the figures came from (issue #32)
    assert run["command"] == f"emoadapt evaluate {joy_folder} --label-map {MAP} --out {tmp_path / 'eval'}"
    assert {"command", "date", "emoadapt", "torch", "cores"} <= set(run) and run["date"].endswith("UTC")


def test_report_without_model_uses_the_default_and_takes_a_label_map(joy_folder, tiny, tmp_path, monkeypatch,
                                                                     one_thread):
    import emoadapt.models.registry as registry

    monkeypatch.setattr(registry, "DEFAULT_MODEL", str(tiny))  # the default model, made tiny for speed
    out = tmp_path / "report"
    assert main(["report", "--data", str(joy_folder), "--label-map", MAP, "--out", str(out), "--explain-budget",
                 "0", "--layer-grids", "0", "--bootstrap", "10", "--faces", "0", "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["models"][0]["metrics"]["n"] == 8 and report["data"]["label_map"] == MAPPED
    assert f"--model {tiny}" in report["command"] and f"--label-map {MAP}" in report["command"]
    # --limit: a seeded subset of the split, said in report.json
    assert main(["report", "--data", str(joy_folder), "--label-map", MAP, "--out", str(out), "--explain-budget",
                 "0", "--layer-grids", "0", "--bootstrap", "10", "--faces", "0", "--no-progress", "--limit", "5"]) == 0
    limited = json.loads((out / "report.json").read_text())
    assert (limited["data"]["images"], limited["data"]["limit"]) == (5, 5)
    assert 4 <= limited["models"][0]["metrics"]["n"] <= 5  # the unmapped "fear" image may be drawn


def test_calibrate_and_embed_take_a_label_map(joy_folder, tiny, tmp_path, monkeypatch, one_thread):
    import emoadapt.models.registry as registry

    manifest = tmp_path / "split.json"
    assert main(["data", "split", str(joy_folder), "--layout", "folder", "--out", str(manifest), "--val", "0.25",
                 "--test", "0.25"]) == 0
    assert main(["calibrate", "--model", str(tiny), "--data", str(joy_folder), "--manifest", str(manifest),
                 "--out", str(tmp_path / "c.json"), "--label-map", MAP]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["fitted"]["n_val"] > 0
    monkeypatch.setattr(registry, "DEFAULT_MODEL", str(tiny))
    assert main(["embed", "--target", str(joy_folder), "--label-map", MAP, "--faces", "0", "--out",
                 str(tmp_path / "embed.png"), "--no-progress"]) == 0  # no --model: the default model
    assert len((tmp_path / "embed.csv").read_text().splitlines()) > 8


@pytest.mark.parametrize("command", ["evaluate", "report", "calibrate", "embed", "adapt"])
def test_every_command_that_reads_a_labelled_folder_has_label_map(command):
    from emoadapt.cli import build_parser

    required = {"evaluate": ["d"], "report": ["--data", "d", "--out", "o"],
                "calibrate": ["--data", "d", "--manifest", "m", "--out", "o"],
                "embed": ["--target", "d", "--out", "o"], "adapt": ["--target", "d", "--out", "o"]}[command]
    args = build_parser().parse_args([command, *required, "--label-map", MAP])
    assert args.label_map == MAPPED
    if command in ("evaluate", "report", "embed"):
        assert args.model is None  # not required: the command uses the default model


def test_evaluate_limit_scores_the_same_seeded_subset_and_records_each_answer(joy_folder, tmp_path):
    """``--limit N``: N images chosen with seed 0, the same on every run, each with its key, true
    label and prediction in metrics.json (what the faces test compares image by image)."""
    from emoadapt.evaluate import evaluate_model

    model = save_tiny_model(tmp_path / "tiny.safetensors")
    mapping = parse_label_map(MAP)
    first = evaluate_model(str(model), joy_folder, label_map=mapping, progress=False, limit=5, out_dir=tmp_path / "a")
    again = evaluate_model(str(model), joy_folder, label_map=mapping, progress=False, limit=5)
    whole = evaluate_model(str(model), joy_folder, label_map=mapping, progress=False)
    assert first["n"] == 5 and first["keys"] == again["keys"] and len(set(first["keys"])) == 5
    assert set(first["keys"]) < set(whole["keys"]) and first["limit"] == 5 and whole["limit"] is None
    answers = dict(zip(whole["keys"], whole["predicted"]))
    assert [answers[key] for key in first["keys"]] == first["predicted"]
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["labels"] == first["labels"]
    with pytest.raises(EmoadaptError, match="at least 1"):
        open_dataset(joy_folder).sample(0)
