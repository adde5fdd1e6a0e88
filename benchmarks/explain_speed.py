"""Time one DnCShap explanation at depths 8 and 9 (torch, and onnxruntime when installed).

    python benchmarks/explain_speed.py --weights RUN/best.safetensors [--image FILE] [--depths 8 9]
    python benchmarks/explain_speed.py --weights emoadapt-ier --depths 8 10 --max-evals full 128
    python benchmarks/explain_speed.py --preset fer-cpu          # random weights, for a smoke run

    python benchmarks/explain_speed.py compare --out benchmarks/results/explain/speed_int8.json

``compare`` (issue #33) times the default model's candidate onnxruntime paths side by side in one
run, interleaved: the export of the day the issue was filed (per-conv pad arithmetic), the export
with constant pads (session 15), the product's export (those pads folded into the convs) and int8
copies (benchmarks/lib/int8.py; by default the shipped one) — model-only images/s at batch 1 and
at the explainer's batch size, and the wall time of ``Predictor.explain`` with the defaults on the
bundled samples (an int8 candidate explains as the product does: prediction in fp32, masked images
in int8).

Prints a markdown table: backend, depth, budget (``--max-evals``; ``full``: the whole tree),
regions, model evaluations, seconds (median and min–max of ``--repeat`` runs), evaluations per second;
``--out FILE.json`` also writes every run's seconds with the provenance (model name, weights sha256;
docs/results/speed.md is generated from ``benchmarks/results/explain_speed.json``). The ONNX model is exported to a temporary file with torch's TorchScript exporter (which
needs the ``onnx`` package but not ``onnxscript``); install with ``pip install -e '.[onnx]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import REPO, provenance, write_json  # noqa: E402
from benchmarks.lib.int8 import SHIPPED as INT8_SHIPPED, VARIANTS as INT8_VARIANTS  # noqa: E402
from benchmarks.lib.speed import model_identity, spread  # noqa: E402

from emoadapt.data.decode import decode_image
from emoadapt.data.transforms import image_to_tensor
from emoadapt.attribution import DnCShap, settings
from emoadapt.models.registry import create_model, resolve_model


def _model(args: argparse.Namespace) -> torch.nn.Module:
    model = resolve_model(args.weights)[0] if args.weights else create_model(args.preset)
    return model.eval()


def _image(args: argparse.Namespace, model: torch.nn.Module) -> torch.Tensor:
    size, channels = model.config.input_size, model.config.in_chans
    if args.image:
        return image_to_tensor(decode_image(args.image, mode="L" if channels == 1 else "RGB"), size, channels)
    return torch.rand(channels, size, size, generator=torch.Generator().manual_seed(0))


def _onnx_session(model: torch.nn.Module, folder: str, threads: int):
    """An onnxruntime session of ``model`` (ImportError without onnxruntime)."""
    import onnxruntime as ort

    from emoadapt.models.onnx import export_onnx

    path = export_onnx(model, os.path.join(folder, "model.onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _int8_session(args: argparse.Namespace):
    """An onnxruntime session of the shipped int8 copy of ``args.weights``."""
    from emoadapt.models.onnx import onnx_file_session

    from benchmarks.lib.int8 import shipped_int8_path

    return onnx_file_session(shipped_int8_path(args.weights), args.threads)


def _time(forward, image: torch.Tensor, depth: int, max_evals: int | None, batch_size: int,
          repeat: int) -> tuple[int, int, list[float]]:
    """(regions, evaluations, wall seconds of each of ``repeat`` runs) of one explanation."""
    explainer = DnCShap(forward, depth=depth, batch_size=batch_size, max_evals=max_evals)
    runs = [explainer.attribute(image) for _ in range(repeat)]
    return len(runs[0].values), runs[0].evaluations, [r.seconds for r in runs]


# ------------------------------------------------------------------------------------ compare (issue #33)

SAMPLES = REPO / "src" / "emoadapt" / "samples"
#: the candidates that are not int8 copies: the export of the day issue #33 was filed, session 15's
TODAY, UNFOLDED = "fp32 (today's export)", "fp32 (constant pads, not folded)"


def _traced_pads_forward(self, x: torch.Tensor) -> torch.Tensor:
    """``Conv2dSame.forward`` before issue #33: pads computed from the traced shape, so the ONNX
    export carries shape arithmetic and a ``Pad`` per conv (today's default export)."""
    pads = []
    for side in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(side / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - side, 0)
        pads += [total // 2, total - total // 2]
    return torch.nn.Conv2d.forward(self, torch.nn.functional.pad(x, pads))


@contextlib.contextmanager
def _unfolded_pads(traced: bool):
    """Export as in session 15 inside the block (constant ``Pad`` nodes not folded into the convs),
    or, ``traced``, as before issue #33 (pads computed from the traced shape)."""
    import emoadapt.models.onnx as onnx_export
    from emoadapt.models.efficientnet_lite import Conv2dSame

    kept, kept_fold = Conv2dSame.forward, onnx_export.fold_pads
    Conv2dSame.forward = _traced_pads_forward if traced else kept
    onnx_export.fold_pads = lambda path: 0
    try:
        yield
    finally:
        Conv2dSame.forward, onnx_export.fold_pads = kept, kept_fold


def _candidate_files(predictor, folder: Path, args: argparse.Namespace) -> tuple[dict[str, Path], dict]:
    """{candidate name: .onnx file}: today's export, the constant-pad export (session 15), the
    product's export and the int8 copies ``args.int8`` (names of
    :data:`benchmarks.lib.int8.VARIANTS`); plus what they were calibrated on."""
    from emoadapt.data.locate import data_home

    from benchmarks.lib.int8 import CONFIG, VARIANTS, calibration_paths, export_fp32, variant_file

    with _unfolded_pads(traced=True):
        files = {TODAY: export_fp32(predictor, folder / "fp32-traced-pads.onnx")}
    with _unfolded_pads(traced=False):
        files[UNFOLDED] = export_fp32(predictor, folder / "fp32-constant-pads.onnx")
    files["fp32"] = export_fp32(predictor, folder / "fp32.onnx")
    paths = calibration_paths()
    for index, name in enumerate(args.int8):
        files[name] = variant_file(name, files["fp32"], folder / f"int8-{index}.onnx", predictor.preprocess, paths,
                                   unfolded=files[UNFOLDED])
    listed = "\n".join(os.path.relpath(p, data_home()) for p in sorted(paths))
    calibration = {"config": str(CONFIG.relative_to(REPO)), "images": len(paths),
                   "paths_sha256": hashlib.sha256(listed.encode()).hexdigest(),
                   "variants": {name: VARIANTS[name] or "the shipped file" for name in args.int8},
                   "format": "QDQ, per-channel int8 weights, uint8 activations, MinMax ranges, head kept in fp32"}
    return files, calibration


def _model_only(sessions: dict, batch: np.ndarray, repeat: int) -> dict[str, list[float]]:
    """{candidate: images/s of each of ``repeat`` runs of ``batch``}, candidates interleaved."""
    rates: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():  # warm-up
        session.run(None, {"images": batch})
    for _ in range(repeat):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {"images": batch})
            rates[name].append(len(batch) / (time.perf_counter() - start))
    return rates


def _explanations(predictor, sessions: dict, samples: list[Path], repeat: int) -> tuple[dict, dict]:
    """({candidate: wall seconds of each ``Predictor.explain(path)`` with the defaults}, {candidate:
    agreement with "fp32" per sample: same target, correlation of region values}), interleaved. An
    int8 candidate explains as the product does: the prediction by the fp32 session, the masked
    images by the int8 one (``Predictor.explain_session``)."""
    seconds: dict[str, list[float]] = {name: [] for name in sessions}
    first: dict[tuple[str, str], Any] = {}
    for _ in range(repeat):
        for sample in samples:
            for name, session in sessions.items():
                int8 = name in INT8_VARIANTS
                predictor.session = sessions["fp32"] if int8 else session
                predictor.explain_session = session if int8 else None
                start = time.perf_counter()
                explanation = predictor.explain(str(sample))
                seconds[name].append(time.perf_counter() - start)
                first.setdefault((name, sample.name), explanation)
    agreement = {name: [{"sample": sample.name,
                         "same_target": first[(name, sample.name)].target == first[("fp32", sample.name)].target,
                         "values_correlation": float(np.corrcoef(first[(name, sample.name)].values,
                                                                 first[("fp32", sample.name)].values)[0, 1]),
                         "evaluations": first[(name, sample.name)].evaluations}
                        for sample in samples] for name in sessions}
    return seconds, agreement


def _cpu_flags() -> dict[str, bool]:
    """Which int8-relevant instruction sets /proc/cpuinfo lists."""
    from emoadapt.models.int8 import cpu_flags

    flags = cpu_flags()
    return {flag: flag in flags for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")}


def compare(argv: list[str]) -> None:
    """``explain_speed.py compare``: fp32 vs int8 (and today's export), side by side."""
    parser = argparse.ArgumentParser(prog="explain_speed.py compare", description=compare.__doc__)
    parser.add_argument("--model", default=None, help="a shipped model name (default: the default model)")
    parser.add_argument("--int8", nargs="+", default=[INT8_SHIPPED], choices=list(INT8_VARIANTS),
                        help="int8 copies to time (benchmarks/lib/int8.py VARIANTS)")
    parser.add_argument("--repeat", type=int, default=2, help="explanations of each sample per candidate")
    parser.add_argument("--model-repeat", type=int, nargs=2, default=[20, 3], metavar=("B1", "BATCH"),
                        help="model-only runs per candidate at batch 1 and at the explainer's batch size")
    parser.add_argument("--out", default="benchmarks/results/explain/speed-int8-shipped.json")
    args = parser.parse_args(argv)

    from emoadapt.models.onnx import onnx_file_session
    from emoadapt.predictor import Predictor

    from benchmarks.lib.int8 import file_sha256

    predictor = Predictor(args.model, runtime="onnx")
    load = {"before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as folder:
        files, calibration = _candidate_files(predictor, Path(folder), args)
        sessions = {name: onnx_file_session(path) for name, path in files.items()}
        sizes = {name: path.stat().st_size for name, path in files.items()}
        digests = {name: file_sha256(path) for name, path in files.items()}
        samples = sorted(SAMPLES.glob("*.jpg"))
        pictures = torch.stack([predictor.preprocess(str(p)) for p in samples]).numpy()
        load["after_export"] = os.getloadavg()
        batches = {1: pictures[:1], settings.BATCH_SIZE: np.resize(pictures, (settings.BATCH_SIZE, *pictures.shape[1:]))}
        model_only = {size: _model_only(sessions, batch, repeat)
                      for (size, batch), repeat in zip(batches.items(), args.model_repeat)}
        load["after_model_only"] = os.getloadavg()
        seconds: dict[str, list[float]] = {name: [] for name in sessions}
        for done in range(1, args.repeat + 1):  # a results file after every round: what is done is kept
            more, agreement = _explanations(predictor, sessions, samples, 1)
            for name in sessions:
                seconds[name] += more[name]
            load["after_explanations"] = os.getloadavg()
            _report(args, {"sizes": sizes, "digests": digests, "model_only": model_only, "seconds": seconds,
                           "agreement": agreement, "calibration": calibration, "samples": samples, "load": load,
                           "rounds": done})


def _report(args: argparse.Namespace, measured: dict[str, Any]) -> None:
    """Print the table and write ``args.out`` from what :func:`compare` ``measured`` so far."""
    import onnxruntime as ort

    from benchmarks.lib.int8 import FOLDS, file_sha256

    today, model_only, seconds = TODAY, measured["model_only"], measured["seconds"]
    rows = {name: {"onnx_bytes": measured["sizes"][name], "onnx_sha256": measured["digests"][name],
                   "model_only_images_per_s": {f"batch{size}": spread(rates[name]) for size, rates in model_only.items()},
                   "explain_seconds": spread(seconds[name]),
                   "explain_speedup_vs_today": statistics.median(seconds[today]) / statistics.median(seconds[name]),
                   "explain_time_vs_today": statistics.median(seconds[name]) / statistics.median(seconds[today]),
                   "model_only_speedup_vs_today": {
                       f"batch{size}": statistics.median(rates[name]) / statistics.median(rates[today])
                       for size, rates in model_only.items()},
                   "agreement_with_fp32": measured["agreement"][name]} for name in seconds}
    print(f"| candidate | img/s batch 1 | img/s batch {settings.BATCH_SIZE} | explain s, median (min–max) | × today |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        rate1, rate64 = (row["model_only_images_per_s"][f"batch{s}"]["median"] for s in model_only)
        time_ = row["explain_seconds"]
        print(f"| {name} | {rate1:.1f} | {rate64:.1f} | {time_['median']:.2f} ({time_['min']:.2f}–{time_['max']:.2f}) "
              f"| {row['explain_speedup_vs_today']:.2f} |")
    model_name, sha = model_identity(args.model)
    write_json(args.out, {
        "what": "default model's onnxruntime paths side by side, interleaved in one run (issue #33): model-only "
                "images/s on the bundled samples (tiled to the batch) and wall seconds of Predictor.explain(path) "
                "with the defaults (flip-averaged prediction + DnCShap) on each bundled sample × repeat",
        "candidates": rows, "calibration": measured["calibration"],
        "explain_defaults": {"depth": settings.DEPTH, "context": settings.CONTEXT, "max_evals": settings.MAX_EVALS,
                             "batch_size": settings.BATCH_SIZE},
        "samples": [p.name for p in measured["samples"]], "repeats": measured["rounds"],
        "complete": measured["rounds"] == args.repeat, "load_average": measured["load"],
        **provenance(model=model_name, weights_sha256=sha, onnxruntime=ort.__version__, cpu_flags=_cpu_flags(),
                     calibration_manifest=str(FOLDS.relative_to(REPO)), calibration_manifest_sha256=file_sha256(FOLDS))})
    print(f"\nwrote {args.out}")


def main() -> None:
    if sys.argv[1:2] == ["compare"]:
        return compare(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="a .safetensors weights file or a shipped model name")
    source.add_argument("--preset", help="a registry preset with random weights (smoke runs)")
    parser.add_argument("--image", help="image to explain (default: random pixels)")
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 9])
    parser.add_argument("--max-evals", nargs="+", default=["full"],
                        help="budgets to time at every depth ('full': the whole tree)")
    parser.add_argument("--batch-size", type=int, default=settings.BATCH_SIZE,
                        help=f"images per model call (default {settings.BATCH_SIZE}: the product's explanations)")
    parser.add_argument("--backends", nargs="+", choices=("torch", "onnxruntime", "onnxruntime int8"),
                        default=["torch", "onnxruntime"],
                        help="'onnxruntime int8': the shipped int8 copy of --weights (what explanations evaluate "
                             "masked images with on CPUs with VNNI)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median and min–max are reported")
    parser.add_argument("--out", help="write the results JSON here (e.g. benchmarks/results/explain_speed.json)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = _model(args)
    image = _image(args, model)
    print(f"model: {args.weights or args.preset}, input {tuple(image.shape)}, batch {args.batch_size}, "
          f"{args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}\n")
    budgets = [None if b == "full" else int(b) for b in args.max_evals]
    print("| backend | depth | budget | regions | evaluations | seconds, median (min–max) | evaluations/s |")
    print("|---|---|---|---|---|---|---|")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as folder:
        backends = [("torch", lambda: model),
                    ("onnxruntime", lambda: _onnx_session(model, folder, args.threads)),
                    ("onnxruntime int8", lambda: _int8_session(args))]
        for name, make in backends:
            if name not in args.backends:
                continue
            try:
                forward = make()
            except Exception as exc:  # onnxruntime missing, or an operator the exporter cannot convert
                print(f"| {name} | – | – | – | – | unavailable: {type(exc).__name__}: {str(exc)[:80]} | – |")
                continue
            for depth in args.depths:
                for budget in budgets:
                    regions, evaluations, times = _time(forward, image, depth, budget, args.batch_size, args.repeat)
                    seconds = statistics.median(times)
                    rate = evaluations / seconds
                    print(f"| {name} | {depth} | {budget or 'full'} | {regions} | {evaluations} | {seconds:.3f} "
                          f"({min(times):.3f}–{max(times):.3f}) | {rate:,.0f} |", flush=True)
                    rows.append({"backend": name, "depth": depth, "budget": budget or "full", "regions": regions,
                                 "evaluations": evaluations, "seconds": spread(times)})
    if args.out:
        model_name, sha = model_identity(args.weights) if args.weights else (f"{args.preset} (random weights)", None)
        write_json(args.out, {"what": "seconds per DnCShap explanation (both contexts), every run", "rows": rows,
                              "input": list(image.shape), "image": args.image or "random pixels (seed 0)",
                              "batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeat,
                              **provenance(model=model_name, weights_sha256=sha)})
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
