"""Every number has a source (issue #32): the figures marked in README.md, the model cards and docs/
equal what their results files give (``python -m benchmarks.docnumbers``, ``make numbers``), and no
results file names other weights than the shipped model of that name. Fast and torch-free."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import docnumbers  # noqa: E402


def test_every_marked_figure_matches_its_results_file():
    changed, seen = docnumbers.run(ROOT, write=False)
    assert seen, "no marked figure found in README.md, the cards or docs/"
    assert not changed, "figures differ from their results files (run `make numbers`):\n" + "\n".join(map(str, changed))


def test_the_headline_documents_are_marked():
    _, seen = docnumbers.run(ROOT, write=False)
    docs = {f.doc for f in seen}
    for doc in ("README.md", "docs/benchmarks.md", "docs/history.md", "docs/results/affect.md",
                "docs/results/calibration.md", "docs/results/speed.md"):
        assert doc in docs, f"{doc} quotes no marked figure"


def test_results_files_name_the_shipped_weights():
    assert not docnumbers.sha_mismatches(ROOT), "\n".join(docnumbers.sha_mismatches(ROOT))
    _, seen = docnumbers.run(ROOT, write=False)
    assert not docnumbers.history_only(ROOT, seen)


def test_the_check_imports_no_torch():
    import subprocess

    code = ("import sys; from benchmarks import docnumbers; docnumbers.run(write=False); "
            "docnumbers.sha_mismatches(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---------------------------------------------------------------------------------------------- the test of the test


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    """A copy of what the checker reads: the docs, the cards, the registry and the results files."""
    for rel in ("README.md", "docs", "benchmarks/results", "src/emoadapt/weights"):
        src, dst = ROOT / rel, tmp_path / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.png", "runs"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    # the checker also reads the shipped weights' metadata where a marker names a .safetensors file
    for weights in (ROOT / "src/emoadapt/weights").glob("*.safetensors"):
        (tmp_path / "src/emoadapt/weights" / weights.name).symlink_to(weights)
    return tmp_path


def test_a_figure_edited_by_hand_is_reported(copy: Path):
    doc = copy / "docs" / "results" / "calibration.md"
    text = doc.read_text()
    marker = "<!-- number: benchmarks/results/confidence.json#scores.energy.test_auroc fmt=f3 -->"
    assert marker in text
    quoted = text.split(marker, 1)[1].split("<!--", 1)[0]
    doc.write_text(text.replace(marker + quoted, marker + "0.999", 1))
    files = [doc]
    changed, _ = docnumbers.run(copy, write=False, files=files)
    assert len(changed) == 1 and changed[0].quoted == "0.999" and changed[0].expected == quoted
    assert "confidence.json" in str(changed[0]) and "calibration.md" in str(changed[0])
    docnumbers.run(copy, write=True, files=files)  # make numbers puts it back
    assert doc.read_text() == text


def test_a_generated_table_edited_by_hand_is_reported(copy: Path):
    doc = copy / "docs" / "results" / "affect.md"
    text = doc.read_text()
    assert "| 0.746 ± 0.028 |" in text
    doc.write_text(text.replace("| 0.746 ± 0.028 |", "| 0.796 ± 0.028 |", 1))
    changed, _ = docnumbers.run(copy, write=False, files=[doc])
    assert [f.marker for f in changed] == ["table: affect-cv"]


def test_a_changed_results_file_is_reported(copy: Path):
    path = copy / "benchmarks" / "results" / "confidence.json"
    data = json.loads(path.read_text())
    data["uncertain_share"]["emotion6_test"] = 0.5
    path.write_text(json.dumps(data))
    changed, _ = docnumbers.run(copy, write=False, files=[copy / "docs" / "results" / "calibration.md"])
    assert any("uncertain_share.emotion6_test" in f.marker and f.expected == "50.0 %" for f in changed)


def test_derived_figures_follow_their_results_files(copy: Path):
    """The 1 M-image cost model of scaling.md is computed from the measured rates, not typed."""
    path = copy / "benchmarks" / "results" / "pipeline_speed.json"
    data = json.loads(path.read_text())
    row = data["throughput"]["predict, 1 decode thread (default)"]["images_per_s"]
    row["median"] = 2 * data["provenance"]["machine"]["cores"] * 10.0  # 20 images/s per core
    path.write_text(json.dumps(data))
    doc = copy / "docs" / "scaling.md"
    changed, _ = docnumbers.run(copy, write=False, files=[doc])
    cost = [f for f in changed if f.marker == "table: cost-1m"]
    assert len(cost) == 1 and "1e6 / 20.0 ≈ 50,000 core-s ≈ **14 core-hours**" in cost[0].expected


def test_a_missing_key_or_file_is_an_error(copy: Path):
    doc = copy / "docs" / "results" / "calibration.md"
    doc.write_text(doc.read_text() + "\n<!-- number: benchmarks/results/confidence.json#no.such.key -->1<!-- /number -->"
                   "\n<!-- number: benchmarks/results/nothing.json#a -->1<!-- /number -->\n")
    changed, _ = docnumbers.run(copy, write=False, files=[doc])
    errors = [f.error for f in changed if f.error]
    assert len(errors) == 2 and "no key" in errors[0] and "no such results file" in errors[1]


def test_results_of_other_weights_under_a_shipped_name_are_reported(copy: Path):
    path = copy / "benchmarks" / "results" / "speed_check.json"
    path.write_text(json.dumps({"x": 1, "provenance": {"model": "emoadapt-ier", "weights_sha256": "0" * 64}}))
    problems = docnumbers.sha_mismatches(copy)
    assert len(problems) == 1 and "speed_check.json" in problems[0] and "emoadapt-ier" in problems[0]
    assert not docnumbers.sha_mismatches(copy, superseded=docnumbers.SUPERSEDED | {"benchmarks/results/speed_check.json"})


def test_a_run_over_several_models_is_checked_model_by_model(copy: Path):
    shipped = docnumbers.shipped_sha(copy)
    path = copy / "benchmarks" / "results" / "two_models.json"
    path.write_text(json.dumps({"provenance": {"weights_sha256": {"fer-cpu": shipped["fer-cpu"], "emoadapt-ier": "0" * 64}}}))
    problems = docnumbers.sha_mismatches(copy)
    assert len(problems) == 1 and "two_models.json" in problems[0] and "emoadapt-ier" in problems[0]
    path.write_text(json.dumps({"provenance": {"weights_sha256": {name: shipped[name] for name in ("fer-cpu", "emoadapt-ier")}}}))
    assert not docnumbers.sha_mismatches(copy)


def test_formats():
    assert docnumbers.fmt_value(0.82466, "pct1") == "82.5 %"
    assert docnumbers.fmt_value(0.82466, "p1") == "82.5"
    assert docnumbers.fmt_value(-0.0123, "+p1") == "−1.2"
    assert docnumbers.fmt_value(1233879, "int") == "1,233,879"
    assert docnumbers.lookup({"a": {"b.c": [1, {"d": 2}]}}, "a.b.c.1.d") == 2


def test_a_reliability_failure_shows_in_the_generated_tables(copy: Path):
    """docs/reliability.md's tables are rendered from reliability.json: a crash recorded there marks its cell."""
    path = copy / "benchmarks" / "results" / "reliability.json"
    data = json.loads(path.read_text())
    data["kinds"][0]["outcomes"]["web"].update(result="crash: 500", crash=True)
    data["per_surface"]["web"]["crashes"] = data["totals"]["crashes"] = 1
    path.write_text(json.dumps(data))
    changed, _ = docnumbers.run(copy, write=False, files=[copy / "docs" / "reliability.md"])
    by_marker = {f.marker: f for f in changed}
    assert "| crash: 500 **✗** |" in by_marker["table: reliability kinds"].expected
    web = data["per_surface"]["web"]
    row = " | ".join(str(web[k]) for k in ("cases_tried", "results", "error_rows", "not_applicable", "crashes"))
    assert f"| web | {row} | " in by_marker["table: reliability surfaces"].expected
    assert by_marker["number: benchmarks/results/reliability.json#totals.crashes"].expected == "1"
