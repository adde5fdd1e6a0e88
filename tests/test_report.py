"""``emoadapt report`` on a tiny generated set: the numbers (bootstrap, calibration, examples) and
the page, opened in Debian's headless chromium (playwright) when both are installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_CLASSES, save_tiny_model, write_image
from emoadapt.report.stats import bootstrap_metrics, calibration, select_examples

CHROMIUM = "/usr/bin/chromium"
COLOURS = {"happy": (230, 200, 40), "sad": (40, 60, 200), "hate": (60, 160, 60), "anger": (210, 30, 30)}


def _fixture(root: Path, per_class: int = 3) -> Path:
    """A folder per IER class of 32 px coloured squares (with noise), plus one unreadable file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, colour in COLOURS.items():
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            pixels[8:24, 8:24] = 255 - pixels[8:24, 8:24]
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    (root / "anger" / "broken.png").write_bytes(b"not an image")
    return root


def _tiny_with_temperature(path: Path) -> Path:
    """The conftest tiny model with a calibration file beside it (temperature 1.7), as ``emoadapt
    calibrate`` writes one: the report shows the curve before and after it."""
    from emoadapt.models.calibration import Calibration, calibration_path_for
    from emoadapt.models.registry import sha256

    save_tiny_model(path)
    Calibration(temperature=1.7, fitted={"weights_sha256": sha256(path), "n_val": 12}).save(calibration_path_for(path))
    return path


def _faces(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for label in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"):
        for i in range(2):
            write_image(root / "train" / label / f"Training_{label}{i}.jpg", rng, "L", 48)
        write_image(root / "test" / label / f"PrivateTest_{label}.jpg", rng, "L", 48)
    return root


def test_bootstrap_intervals_cover_the_point_and_match_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    probs[np.arange(100), labels[:100]] += 2  # half right
    report = bootstrap_metrics(labels, probs, TINY_CLASSES, resamples=200)
    assert report["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())
    assert report["macro_f1"] == pytest.approx(f1_score(labels, probs.argmax(1), average="macro"))
    low, high = report["accuracy_ci"]
    assert low < report["accuracy"] < high and high - low < 0.2
    assert sum(map(sum, report["confusion"])) == 200
    assert all(abs(sum(row) - 1) < 1e-3 for row in report["confusion_normalised"])


def test_calibration_and_examples():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    curve = calibration(labels, probs, bins=10)
    # bins: 0.9 (right), 0.6 (right), 0.8 (right), 0.7 (wrong) → ECE = mean |acc - conf|
    assert curve["ece"] == pytest.approx((0.1 + 0.4 + 0.2 + 0.7) / 4)
    examples = select_examples(labels, probs, k=1)
    by = {(e["class"], e["kind"]): e["index"] for e in examples}
    assert by[0, "confident_correct"] == 0 and by[0, "least_confident"] == 1
    assert by[1, "confident_errors"] == 3 and by[1, "confident_correct"] == 2
    assert (0, "confident_errors") not in by


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    import torch

    from emoadapt.cli import main

    root = tmp_path_factory.mktemp("report")
    data = _fixture(root / "data")
    weights = _tiny_with_temperature(root / "tiny.safetensors")
    out = root / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        status = main(["report", "--model", str(weights), "--data", str(data), "--layout", "folder",
                       "--source", str(_faces(root / "fer")), "--faces", "10", "--out", str(out),
                       "--explain-budget", "3", "--per-class", "1", "--layer-grids", "1", "--depth", "3",
                       "--bootstrap", "100", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert status == 1  # one unreadable image: listed, not a crash, and the exit status says so
    return out


def test_report_files_and_numbers(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    (model,) = report["models"]
    assert model["metrics"]["n"] == 12 and model["classes"] == TINY_CLASSES
    assert [e["path"].endswith("broken.png") for e in model["errors"]] == [True]
    assert list(model["calibration"]) == ["before calibration (T = 1)", "as predicted (T = 1.7)"]
    assert model["temperature"] == 1.7 and all("uncertain" in e for e in model["examples"])
    assert sum(e["explanation"] is not None for e in model["examples"]) == 3
    assert sum(e["layer_grid"] is not None for e in model["examples"]) == 1
    assert report["command"].startswith("emoadapt report --model ") and "--explain-budget 3" in report["command"]
    assert {"images", "faces"} <= {k for e in report["embeddings"] for c in e["models"].values() for k in c}
    assert len(report["embeddings"]) == 2  # pre_logits and the last spatial tap
    for name in [*model["figures"].values(), *(e["file"] for e in report["embeddings"])]:
        assert (report_dir / name).stat().st_size > 0
    html = (report_dir / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_report_page_in_chromium(report_dir, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from emoadapt.report.html import pct

    report = json.loads((report_dir / "report.json").read_text())
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto((report_dir / "report.html").as_uri())
            page.wait_for_load_state("load")
            sizes = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])")
            accuracy = page.text_content("#accuracy-0")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    model = report["models"][0]
    expected = 2 + len(report["embeddings"]) + len(model["examples"]) + sum(bool(e["layer_grid"])
                                                                           for e in model["examples"])
    assert len(sizes) == expected
    assert all(complete and width > 0 and height > 0 for complete, width, height, _ in sizes), sizes
    assert accuracy == pct(model["metrics"]["accuracy"])
    assert all(url.startswith(("file:", "data:")) for url in requests), requests  # nothing external
    assert shot.stat().st_size > 10_000


def test_command_line_repeats_the_run():
    import shlex

    from emoadapt.cli import build_parser
    from emoadapt.cli.report_cmd import command_line

    parser = build_parser()
    args = parser.parse_args(["report", "--model", "fer-cpu", "--model", "my runs/best.safetensors", "--data", "d",
                              "--out", "o", "--tap", "s5", "--explain-budget", "5"])
    line = command_line(args)
    again = parser.parse_args(shlex.split(line)[1:])
    skip = {"run", "threads", "no_progress", "batch_size", "debug"}
    assert {k: v for k, v in vars(again).items() if k not in skip} == {k: v for k, v in vars(args).items()
                                                                       if k not in skip}


def test_two_models_side_by_side_on_the_page(report_dir, tmp_path):
    """Two model sections render with one accuracy each (the page is built from report.json alone)."""
    import shutil

    from emoadapt.report.html import pct, render_html

    report = json.loads((report_dir / "report.json").read_text())
    second = dict(report["models"][0], name="second", metrics=dict(report["models"][0]["metrics"], accuracy=0.5))
    report["models"].append(second)
    shutil.copytree(report_dir, tmp_path / "out")
    html = render_html(report, tmp_path / "out")
    assert html.count('class="accuracy"') == 2
    assert f'id="accuracy-1" class="accuracy" data-value="0.5">{pct(0.5)}' in html
