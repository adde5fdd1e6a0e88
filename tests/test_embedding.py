"""Embedding plots: features, projections, figure and CSV, and ``emoadapt embed`` on generated data."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny_model, write_faces_and_target

from emoadapt.cli import main
from emoadapt.data import open_dataset, split_dataset, write_manifest
from emoadapt.data.labels import FER_CLASSES, IER_CLASSES
from emoadapt.data.transforms import uint8_to_tensor
from emoadapt.data.transforms import fit_images
from emoadapt.embedding import collect, embed, project, save_embedding_csv, save_embedding_figure
from emoadapt.errors import EmoadaptError
from emoadapt.models.registry import load_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fixtures(tmp_path):
    write_faces_and_target(tmp_path, np.random.default_rng(0), per_class=5, size=40)
    save_tiny_model(tmp_path / "fer.safetensors", in_chans=1, classes=FER_CLASSES)
    save_tiny_model(tmp_path / "ier.safetensors")
    return tmp_path


@pytest.fixture
def tiny(tmp_path):
    return load_model(save_tiny_model(tmp_path / "tiny.safetensors"))[0]


def test_pca_points_are_the_principal_components_of_standardised_features(one_thread):
    features = np.random.default_rng(1).normal(size=(20, 6)) * np.arange(1, 7) + 3
    scaled = (features - features.mean(0)) / features.std(0)
    _, _, vt = np.linalg.svd(scaled, full_matrices=False)
    expected = scaled @ vt[:2].T
    points = project(features, "pca")
    assert points.shape == (20, 2) and points.dtype == np.float32
    signs = np.sign((points * expected).sum(0))  # a component's sign is arbitrary
    np.testing.assert_allclose(points * signs, expected, rtol=1e-4, atol=1e-4)


def test_tsne_gives_finite_points_and_bad_input_is_a_clear_error(one_thread):
    features = np.random.default_rng(2).normal(size=(12, 5))
    points = project(features, "tsne", seed=0)
    assert points.shape == (12, 2) and np.isfinite(points).all()
    with pytest.raises(EmoadaptError, match="umap.*pca, tsne"):
        project(features, "umap")
    with pytest.raises(EmoadaptError, match="at least 3"):
        project(features[:2], "pca")


def test_collect_pools_the_tap_and_predicts_the_argmax(tiny, one_thread):
    images = np.random.default_rng(3).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        out = tiny.forward_taps(uint8_to_tensor(images), ("b3", "pre_logits", "logits"))
    features, predicted = collect(tiny, images, "b3", batch_size=2)
    assert features.shape == (5, out["b3"].shape[1]) and features.dtype == np.float32
    np.testing.assert_allclose(features, out["b3"].mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(predicted, out["logits"].argmax(1).numpy())
    dense, _ = collect(tiny, images, "pre_logits")
    np.testing.assert_allclose(dense, out["pre_logits"].numpy(), rtol=1e-5, atol=1e-6)


def test_collect_fits_grey_faces_of_another_size_to_the_model(tiny, one_thread):
    faces = np.random.default_rng(4).integers(0, 255, (3, 48, 48, 1), dtype=np.uint8)
    fitted = fit_images(faces, 32, 3)
    assert fitted.shape == (3, 32, 32, 3) and (fitted[..., 0] == fitted[..., 2]).all()
    np.testing.assert_array_equal(fit_images(faces, 48, 3), np.repeat(faces, 3, axis=-1))
    np.testing.assert_allclose(collect(tiny, faces, "merged")[0], collect(tiny, fitted, "merged")[0], rtol=1e-5)


def test_an_unknown_tap_names_the_valid_ones(tiny):
    with pytest.raises(EmoadaptError, match="'s3'.*b1, b2, b3, b4, b5, merged, pre_logits, logits"):
        collect(tiny, np.zeros((2, 32, 32, 3), np.uint8), "s3")


def test_embed_projects_every_group_per_model_and_writes_figure_and_csv(tiny, tmp_path, one_thread):
    rng = np.random.default_rng(5)
    groups = {"images": (rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), np.array([0, 1, 2, 3, 0, 1])),
              "faces": (rng.integers(0, 255, (4, 48, 48, 1), dtype=np.uint8), np.array([0, -1, 3, -1]))}
    embeddings = embed({"a": tiny, "b": tiny}, groups, IER_CLASSES, "pre_logits")
    assert [e.model for e in embeddings] == ["a", "b"]
    e = embeddings[0]
    assert e.points.shape == (10, 2) and list(e.domain) == ["images"] * 6 + ["faces"] * 4
    assert list(e.labels) == [0, 1, 2, 3, 0, 1, 0, -1, 3, -1] and e.predicted_classes == IER_CLASSES
    figure = save_embedding_figure(embeddings, tmp_path / "fig.png", title="test")
    assert figure.read_bytes()[:8] == PNG_MAGIC
    rows = list(csv.DictReader(open(save_embedding_csv(embeddings, tmp_path / "fig.csv"))))
    assert len(rows) == 20 and rows[7]["label"] == "" and rows[6]["label"] == "happy"


def _embed_args(root: Path, *extra: str) -> list[str]:
    return ["embed", "--model", str(root / "ier.safetensors"), "--target", str(root / "target"), "--layout", "folder",
            "--out", str(root / "out" / "fig.png"), "--threads", "1", "--no-progress", *extra]


def _rows(root: Path) -> list[dict]:
    with open(root / "out" / "fig.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_cli_plots_two_models_with_images_and_faces(fixtures, capsys, one_thread):
    rc = main(_embed_args(fixtures, "--model", str(fixtures / "fer.safetensors"), "--source", str(fixtures / "fer"),
                          "--faces", "10", "--images", "12", "--tap", "merged"))
    assert rc == 0
    assert (fixtures / "out" / "fig.png").read_bytes()[:8] == PNG_MAGIC
    rows = _rows(fixtures)
    assert len(rows) == 2 * (12 + 10)
    assert {r["model"] for r in rows} == {str(fixtures / "ier.safetensors"), str(fixtures / "fer.safetensors")}
    assert sorted(r["domain"] for r in rows[:22]) == ["faces"] * 10 + ["images"] * 12
    assert {r["predicted"] for r in rows[22:]} <= set(FER_CLASSES)
    assert "fig.png" in capsys.readouterr().out


def test_cli_without_faces_plots_a_manifest_split(fixtures, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("EMOADAPT_DATA", str(tmp_path / "no-data"))  # no default FER2013 folder
    plan = split_dataset(open_dataset(fixtures / "target", "folder"), val=0.2, test=0.4, seed=0)
    write_manifest(plan, fixtures / "split.json")
    rc = main(_embed_args(fixtures, "--manifest", str(fixtures / "split.json"), "--split", "test",
                          "--method", "tsne"))
    assert rc == 0
    rows = _rows(fixtures)
    assert len(rows) == plan.counts()["test"] and {r["domain"] for r in rows} == {"images"}


@pytest.mark.parametrize("option, message", [(("--tap", "s9"), "unknown tap 's9'"),
                                             (("--method", "umap"), "unknown projection method 'umap'")])
def test_cli_bad_tap_or_method_is_a_one_line_error(fixtures, capsys, option, message):
    rc = main(_embed_args(fixtures, *option))
    err = capsys.readouterr().err
    assert rc != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not (fixtures / "out").exists()
