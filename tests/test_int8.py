"""The faster model pass (issue #33): the ONNX export folds its "same" pads into the convs and
leaves the model as it found it; the int8 copy (emoadapt.models.int8) keeps its head in fp32 and
stays close; when explanations use it (VNNI CPUs, a copy made from these very weights); the
shipped copy is the file its registry entry names."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emoadapt.errors import EmoadaptError
from emoadapt.models.efficientnet_lite import Conv2dSame

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


class Tiny(torch.nn.Module):
    """Two "same" convs (stride 2 then 1), batch norm, global pooling, a linear head: (N, 3, 16, 16) → (N, 2)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.config = SimpleNamespace(input_size=16, in_chans=3)
        self.a, self.b = Conv2dSame(3, 8, 3, 2), Conv2dSame(8, 8, 3, 1)
        self.norm = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.b(torch.relu(self.norm(self.a(x)))))
        return self.head(h.mean(dim=(2, 3)))


def _export(tmp_path, model=None):
    from emoadapt.models.onnx import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(model or Tiny().eval(), tmp_path / "tiny.onnx")


def test_export_folds_the_same_pads_into_the_convs_with_identical_outputs(tmp_path):
    model = Tiny().eval()
    graph = onnx.load(str(_export(tmp_path, model))).graph
    ops = [n.op_type for n in graph.node]
    assert "Shape" not in ops and "Pad" not in ops  # no shape arithmetic, no Pad node left
    pads = [list(a.ints) for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "pads"]
    assert [0, 0, 1, 1] in pads  # the stride-2 conv: TensorFlow's "same", one more pixel after than before
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(tmp_path / "tiny.onnx")).run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_export_leaves_the_model_in_the_mode_it_found(tmp_path, training):
    model = Tiny().train(training)
    _export(tmp_path, model)  # torch's exporter used to leave it training: batch-statistics BN afterwards
    assert model.training is training and model.norm.training is training


def test_int8_copy_keeps_the_head_in_fp32_and_stays_close(tmp_path):
    from emoadapt.models.int8 import head_nodes, quantize_onnx

    fp32 = _export(tmp_path)
    rng = np.random.default_rng(0)
    batches = iter([rng.random((4, 3, 16, 16), dtype=np.float32) for _ in range(3)])
    done = []
    int8 = quantize_onnx(fp32, tmp_path / "tiny.int8.onnx", batches, progress=done.append)
    assert done == [4, 8, 12]
    model = onnx.load(str(int8))
    head = set(head_nodes(model))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert gemm.name in head and not set(gemm.input) & dequantized  # fp32 weights, fp32 input
    assert any(n.op_type == "Conv" and set(n.input) & dequantized for n in model.graph.node)
    x = rng.random((8, 3, 16, 16), dtype=np.float32)
    a = ort.InferenceSession(str(fp32)).run(None, {"images": x})[0]
    b = ort.InferenceSession(str(int8)).run(None, {"images": x})[0]
    assert np.abs(a - b).max() < 0.05 * (np.abs(a).max() + 1e-6) + 0.02


def test_cpu_flags_and_vnni(tmp_path):
    from emoadapt.models.int8 import cpu_flags, cpu_has_vnni

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx2", "avx512f", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") == set()
    assert cpu_has_vnni({"avx2", "avx_vnni"}) and not cpu_has_vnni({"avx2", "avx512bw"})


def test_use_int8_rules():
    from emoadapt.models.int8 import use_int8

    entry, vnni, plain = {"file": "m.int8.onnx"}, {"avx512_vnni"}, {"avx2"}
    assert use_int8("auto", entry, vnni) and not use_int8("auto", entry, plain)  # u8s8 saturates without VNNI
    assert not use_int8("auto", None, vnni) and not use_int8("fp32", entry, vnni)
    assert use_int8("int8", entry, plain)  # asked for: used, whatever the CPU
    with pytest.raises(EmoadaptError, match="ships no int8 copy"):
        use_int8("int8", None, vnni)
    with pytest.raises(EmoadaptError, match="precision must be one of"):
        use_int8("half", entry, vnni)


def test_int8_config_errors_name_the_problem(tmp_path):
    from emoadapt.models.int8 import load_int8_config

    config = tmp_path / "int8.toml"
    config.write_text('model = "emoadapt-ier"\n[[calibration]]\ndataset = "emotion6"\nimages = 3\nsplit = "x"\n')
    with pytest.raises(EmoadaptError, match="unknown keys split"):
        load_int8_config(config)
    config.write_text('model = "emoadapt-ier"\n')
    with pytest.raises(EmoadaptError, match=r"\[\[calibration\]\]"):
        load_int8_config(config)
    config.write_text('model = "emoadapt-ier"\n[[calibration]]\ndataset = "emotion6"\nimages = 3\n'
                      'splits = ["Training"]\nclasses = ["angry"]\n')
    loaded = load_int8_config(config)
    assert loaded.sources[0].splits == ("Training",) and loaded.sources[0].classes == ("angry",)


def test_shipped_int8_copy_matches_its_registry_entry_and_weights():
    from emoadapt.models.registry import REGISTRY_FILE, get_preset, resolve_model, sha256, shipped_int8
    from emoadapt.models.int8 import load_int8_config

    entry = json.loads(REGISTRY_FILE.read_text())["emoadapt-ier"]["int8"]
    path = REGISTRY_FILE.parent / entry["file"]
    assert sha256(path) == entry["sha256"] and entry["fp32_sha256"] == get_preset("emoadapt-ier").sha256
    assert path.stat().st_size < 20e6
    assert load_int8_config(entry["config"]).model == "emoadapt-ier"  # the config it names exists
    meta = resolve_model("emoadapt-ier")[1]
    assert shipped_int8(meta)["path"] == path
    assert shipped_int8(dict(meta, weights_sha256="0" * 64)) is None  # a retrained model: no stale copy
    assert shipped_int8(dict(meta, name="fer-cpu")) is None


@pytest.fixture(scope="module")
def default_and_fp32():
    from emoadapt.predictor import Predictor

    return Predictor(), Predictor(precision="fp32")


def test_predictor_explains_with_int8_only_where_it_is_exact(default_and_fp32):
    from emoadapt.models.int8 import cpu_has_vnni
    from emoadapt.predictor import Predictor

    default, fp32 = default_and_fp32
    assert (default.explain_session is not None) == cpu_has_vnni()
    assert default.explain_precision == ("int8" if cpu_has_vnni() else "fp32")
    assert fp32.explain_session is None and fp32.explain_precision == "fp32"
    with pytest.raises(EmoadaptError, match="needs the onnx runtime"):
        Predictor(runtime="torch", precision="int8")


def test_int8_explanation_agrees_with_fp32_and_keeps_its_axioms(default_and_fp32):
    from emoadapt.models.int8 import cpu_has_vnni

    if not cpu_has_vnni():
        pytest.skip("this CPU has no VNNI: explanations run in fp32 here (test_predictor_explains_with_int8_…)")
    from importlib import resources

    default, fp32 = default_and_fp32
    sample = str(resources.files("emoadapt") / "samples" / "chelsea.jpg")
    fast, exact = default.explain(sample), fp32.explain(sample)
    assert fast.target == exact.target and fast.evaluations == exact.evaluations == 124
    assert np.corrcoef(fast.values, exact.values)[0, 1] > 0.8
    # efficiency holds for the function it explains: the int8 copy's v(x) - v(black)
    assert fast.values.sum() == pytest.approx(fast.full_value - fast.base_value, abs=1e-6)
    assert fast.full_value == pytest.approx(exact.full_value, abs=0.1)


def test_card_section_is_replaced_not_repeated():
    from emoadapt.quantize import with_card_section

    card = "# m\n\n## Metrics\n\nx\n\n## Intended use and limits\n\nresearch\n"
    once = with_card_section(card, "## int8 copy for explanations\n\nfile a\n")
    twice = with_card_section(once, "## int8 copy for explanations\n\nfile b\n")
    assert twice.count("## int8 copy") == 1 and "file b" in twice and "file a" not in twice
    assert twice.index("## int8 copy") < twice.index("## Intended use") and twice.startswith("# m\n\n## Metrics\n\nx\n")
    section = "## int8 copy for explanations\n\nc\n"
    assert with_card_section("# m\n", section).endswith("\n\n" + section)  # no "Intended use": at the end


def test_quantize_command_builds_a_copy_from_a_config(tmp_path, capsys):
    from conftest import save_tiny_model, write_image

    from emoadapt.cli import main
    from emoadapt.models.registry import sha256

    weights = save_tiny_model(tmp_path / "tiny.safetensors")
    rng = np.random.default_rng(0)
    for label in ("happy", "sad"):
        for i in range(6):
            write_image(tmp_path / "images" / label / f"{i}.png", rng)
    config = tmp_path / "int8.toml"
    config.write_text(f'model = "{weights}"\nseed = 1\n[[calibration]]\ndataset = "{tmp_path / "images"}"\n'
                      'images = 8\nclasses = ["happy", "sad"]\n')
    out = tmp_path / "tiny.int8.onnx"
    assert main(["quantize", "--config", str(config), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert "8 calibration images" in captured.err  # progress on stderr, the entry alone on stdout
    assert printed["sha256"] == sha256(out) and printed["fp32_sha256"] == sha256(weights)
    assert printed["calibration"]["images"] == 8 and printed["config"] == str(config)
    assert main(["quantize", "--config", str(config), "--install"]) == 2  # not a shipped model: nothing written
    assert "not a shipped model" in capsys.readouterr().err
