"""Valence, arousal and the emotion distribution (issue #23): the sidecar heads, every surface that
shows a prediction (Predictor, analyze, CLI rows, web JSON, report examples) and ONNX, on a tiny
FusionNet with random heads; the shipped sidecar against the registry."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_CLASSES, save_tiny_affect_model, save_tiny_model
from emoadapt.api import Predictor
from emoadapt.cli import main
from emoadapt.models.affect import DIST_NAMES, find_affect, load_affect, model_features, sidecar_path

SAMPLES = sorted(Path(str(resources.files("emoadapt") / "samples")).glob("*.jpg"))
AFFECT_COLUMNS = ["valence", "arousal", *[f"dist_{n}" for n in DIST_NAMES]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_affect_model(tmp_path_factory.mktemp("affect") / "tiny.safetensors")


@pytest.fixture(scope="module")
def predictor(tiny) -> Predictor:
    torch.set_num_threads(1)
    return Predictor(str(tiny), runtime="torch")


def test_heads_read_the_features_of_the_same_pass_and_leave_the_four_classes_alone(tiny, predictor, tmp_path):
    x = torch.stack([predictor.preprocess(p) for p in SAMPLES[:3]])
    out = predictor.predict_outputs(x)
    assert predictor.affect_names == DIST_NAMES
    assert out["probs"].shape == (3, 4) and out["dist"].shape == (3, 7)
    assert out["valence"].shape == out["arousal"].shape == (3,)
    np.testing.assert_allclose(out["dist"].sum(1), 1.0, atol=1e-5)
    with torch.no_grad():
        feats = model_features(predictor.model, x)
        expected = predictor.affect(feats["fused"])
        np.testing.assert_allclose(out["valence"], expected["valence"].numpy(), atol=1e-6)
        np.testing.assert_allclose(out["probs"], predictor.model(x).softmax(1).numpy(), atol=1e-6)  # T = 1: no calibration
    assert np.ptp(out["valence"]) > 1e-3 and np.ptp(out["dist"][:, 0]) > 1e-4  # the images differ
    bare = tmp_path / "bare.safetensors"  # the same weights without the sidecar: same classes, no affect
    shutil.copy(tiny, bare)
    plain = Predictor(str(bare), runtime="torch")
    assert plain.affect is None and plain.affect_names == ()
    assert set(plain.predict_outputs(x)) == {"probs", "verdicts"}
    np.testing.assert_array_equal(plain.predict_tensors(x), out["probs"])


def test_a_sidecar_fitted_on_other_weights_is_ignored_with_a_warning(tiny, tmp_path):
    other = save_tiny_model(tmp_path / "other.safetensors")
    shutil.copy(sidecar_path(tiny), sidecar_path(other))
    with pytest.warns(UserWarning, match="fitted on other weights"):
        assert find_affect(other) is None
    heads, meta = load_affect(sidecar_path(tiny))
    assert heads.config.source == "fused" and len(meta["base_sha256"]) == 64


def test_analyze_has_valence_arousal_and_distribution_only_with_heads(predictor):
    result = predictor.analyze(SAMPLES[0])
    assert set(result) == {"emotion", "dominant_emotion", "uncertain", "uncertain_reason", "ood_score", "valence",
                           "arousal", "distribution"}
    assert list(result["distribution"]) == list(DIST_NAMES)
    assert abs(sum(result["distribution"].values()) - 1) < 1e-5
    assert isinstance(result["valence"], float) and isinstance(result["arousal"], float)


def test_cli_rows_have_valence_arousal_and_dist_columns_and_resume(tiny, tmp_path):
    out = tmp_path / "rows.csv"
    images = [str(p) for p in SAMPLES[:3]]
    assert main(["predict", *images, "--model", str(tiny), "--runtime", "torch", "--out", str(out),
                 "--no-progress"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "emotion", *[f"prob_{c}" for c in TINY_CLASSES], *AFFECT_COLUMNS,
                             "uncertain", "uncertain_reason", "seconds", "error"]
    expected = Predictor(str(tiny), runtime="torch").analyze(SAMPLES[1])
    assert float(rows[1]["valence"]) == pytest.approx(expected["valence"], abs=1e-3)
    assert float(rows[1]["dist_joy"]) == pytest.approx(expected["distribution"]["joy"], abs=1e-5)
    assert main(["predict", *images, str(SAMPLES[3]), "--model", str(tiny), "--runtime", "torch", "--out", str(out),
                 "--resume", "--no-progress"]) == 0
    assert [r["path"] for r in csv.DictReader(out.open())] == images + [str(SAMPLES[3])]
    jsonl = tmp_path / "rows.jsonl"
    assert main(["predict", images[0], "--model", str(tiny), "--runtime", "torch", "--out", str(jsonl),
                 "--no-progress"]) == 0
    row = json.loads(jsonl.read_text().splitlines()[0])
    assert {"valence", "arousal", "dist_neutral"} <= set(row)


def test_rows_of_a_model_without_heads_have_no_affect_columns(tmp_path):
    weights = save_tiny_model(tmp_path / "plain.safetensors")
    out = tmp_path / "rows.csv"
    assert main(["predict", str(SAMPLES[0]), "--model", str(weights), "--out", str(out), "--no-progress"]) == 0
    assert "valence" not in next(csv.reader(out.open()))


def test_onnx_runtime_gives_the_same_affect_outputs(tiny, predictor):
    pytest.importorskip("onnxruntime")
    onnx = Predictor(str(tiny), runtime="onnx")
    x = torch.stack([predictor.preprocess(p) for p in SAMPLES[:2]])
    a, b = predictor.predict_outputs(x), onnx.predict_outputs(x)
    assert set(a) == set(b)
    for key in set(a) - {"verdicts"}:
        np.testing.assert_allclose(b[key], a[key], atol=1e-3, rtol=0)
    assert [v["uncertain"] for v in a["verdicts"]] == [v["uncertain"] for v in b["verdicts"]]


def test_web_json_has_the_affect_outputs(predictor):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from emoadapt.serve import create_app

    with TestClient(create_app(predictor, depth=2)) as client:
        body = client.post("/api/predict", files={"file": ("a.jpg", SAMPLES[0].read_bytes(), "image/jpeg")}).json()
        page = client.get("/").text
    assert set(body["distribution"]) == set(DIST_NAMES) and {"arousal", "emotion"} <= set(body)
    assert body["valence"] == pytest.approx(predictor.analyze(SAMPLES[0])["valence"], abs=1e-5)
    assert 'id="circumplex"' in page and "showAffect(result)" in page


def test_report_examples_carry_the_affect_outputs(tiny, predictor):
    from emoadapt.report.build import affect_of_examples
    from emoadapt.data.transforms import image_to_uint8, resize_center_crop
    from PIL import Image

    images = np.stack([image_to_uint8(resize_center_crop(Image.open(p).convert("RGB"), 64)) for p in SAMPLES[:2]])
    examples = [{"index": 1}, {"index": 0}]
    affect_of_examples(str(tiny), predictor.model, images, examples)
    assert set(examples[0]["distribution"]) == set(DIST_NAMES)
    expected = predictor.predict_outputs(torch.from_numpy(images[1]).permute(2, 0, 1)[None].float() / 255)
    assert examples[0]["valence"] == pytest.approx(float(expected["valence"][0]), abs=1e-3)


def test_the_shipped_sidecar_is_the_registry_s_and_fits_the_shipped_weights():
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset, sha256, shipped_weights

    preset = get_preset(DEFAULT_MODEL)
    weights = shipped_weights(preset)
    sidecar = sidecar_path(weights)
    assert sidecar.is_file(), "the default model ships its affect heads (python benchmarks/affect_heads.py ship)"
    assert sha256(sidecar) == preset.extra["affect_sha256"]
    _, meta = load_affect(sidecar)
    assert meta["base_sha256"] == preset.sha256 == sha256(weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_affect(weights, preset.extra["affect_sha256"]) is not None


def test_benchmark_metrics_and_heads_learn_a_known_relation():
    """benchmarks/affect_heads.py: KL and Bhattacharyya by hand, and heads fitted on a synthetic cache
    whose valence, arousal and votes follow the features recover them on held-out images."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import affect_heads  # its baselines (constant); the fitting code it shares with emoadapt train is affect_fit

    from emoadapt.training import affect_fit

    votes = np.array([[0.5, 0.5, 0, 0, 0, 0, 0]])
    assert affect_fit.kl(votes, votes) == pytest.approx(0.0, abs=1e-5)  # pred clipped at 1e-6
    assert affect_fit.kl(votes, np.full((1, 7), 1 / 7)) == pytest.approx(np.log(7 / 2), rel=1e-5)
    assert affect_fit.bhattacharyya(votes, votes) == pytest.approx(1.0)
    assert affect_fit.bhattacharyya(votes, np.array([[0, 0, 1.0, 0, 0, 0, 0]])) == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    n = 300
    features = rng.normal(size=(n, 16)).astype(np.float32)
    logits = features[:, :7] * 2
    y = {"valence": 5 + 2 * features[:, 0], "arousal": 5 - features[:, 1],
         "votes": np.exp(logits) / np.exp(logits).sum(1, keepdims=True), "ier": np.zeros(n, int)}
    cache = {"pre_logits": features, "pre_logits_flip": features}
    train, val = np.arange(n) < 200, np.arange(n) >= 250
    test = (np.arange(n) >= 200) & (np.arange(n) < 250)
    heads, _ = affect_fit.fit_heads(cache, y, train, val, "pre_logits", 0, 1e-2)
    got = affect_fit.scores(affect_fit.subset(y, test), affect_fit.head_predict(heads, cache, test))
    assert got["valence_r"] > 0.95 and got["arousal_r"] > 0.95 and got["bc"] > 0.9
    plan = {"train": train, "val": val, "test": test}
    mean = affect_fit.scores(affect_fit.subset(y, test), affect_heads.constant(y, plan))
    assert got["kl"] < mean["kl"] / 2 and got["valence_mae"] < mean["valence_mae"] / 2


def test_the_default_model_gives_the_recorded_affect_outputs_on_the_samples():
    """The shipped heads' numbers on the bundled samples (tests/data/record_shipped_outputs.py), to 1e-5."""
    recorded = json.loads((Path(__file__).parent / "data" / "shipped_outputs.json").read_text())["default_affect"]
    predictor = Predictor(runtime="torch")
    out = predictor.predict_outputs(torch.stack([predictor.preprocess(p) for p in SAMPLES]))
    for key in ("valence", "arousal", "dist"):
        np.testing.assert_allclose(out[key], np.array(recorded[key]), atol=1e-5, rtol=0)
    assert (out["valence"] >= 1).all() and (out["valence"] <= 9).all()


def test_the_same_heads_give_the_same_file_bytes(tiny, tmp_path):
    """So that re-running ``affect_heads.py ship`` on the same weights leaves the registry sha256 alone."""
    from emoadapt.models.affect import save_affect
    from emoadapt.models.weights import sha256

    heads, meta = load_affect(sidecar_path(tiny))
    a = save_affect(tmp_path / "a.affect.safetensors", heads, meta["base_sha256"], {"b": 1, "a": 2})
    b = save_affect(tmp_path / "b.affect.safetensors", heads, meta["base_sha256"], {"a": 2, "b": 1})
    assert sha256(a) == sha256(b)
