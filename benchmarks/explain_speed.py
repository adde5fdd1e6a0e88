"""Time one DnCShap explanation at depths 8 and 9 (torch, and onnxruntime when installed).

    python benchmarks/explain_speed.py --weights RUN/best.safetensors [--image FILE] [--depths 8 9]
    python benchmarks/explain_speed.py --weights emoadapt-ier --depths 8 10 --max-evals full 128
    python benchmarks/explain_speed.py --preset fer-cpu          # random weights, for a smoke run

Prints a markdown table: backend, depth, budget (``--max-evals``; ``full``: the whole tree),
regions, model evaluations, seconds (median and min–max of ``--repeat`` runs), evaluations per second;
``--out FILE.json`` also writes every run's seconds with the provenance (model name, weights sha256;
docs/results/speed.md is generated from ``benchmarks/results/explain_speed.json``). The ONNX model is exported to a temporary file with torch's TorchScript exporter (which
needs the ``onnx`` package but not ``onnxscript``); install with ``pip install -e '.[onnx]'``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.speed import model_identity, spread  # noqa: E402

from emoadapt.data.decode import decode_image
from emoadapt.data.transforms import image_to_tensor
from emoadapt.attribution import DnCShap
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


def _time(forward, image: torch.Tensor, depth: int, max_evals: int | None, batch_size: int,
          repeat: int) -> tuple[int, int, list[float]]:
    """(regions, evaluations, wall seconds of each of ``repeat`` runs) of one explanation."""
    explainer = DnCShap(forward, depth=depth, batch_size=batch_size, max_evals=max_evals)
    runs = [explainer.attribute(image) for _ in range(repeat)]
    return len(runs[0].values), runs[0].evaluations, [r.seconds for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="a .safetensors weights file or a shipped model name")
    source.add_argument("--preset", help="a registry preset with random weights (smoke runs)")
    parser.add_argument("--image", help="image to explain (default: random pixels)")
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 9])
    parser.add_argument("--max-evals", nargs="+", default=["full"],
                        help="budgets to time at every depth ('full': the whole tree)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backends", nargs="+", choices=("torch", "onnxruntime"), default=["torch", "onnxruntime"])
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
                    ("onnxruntime", lambda: _onnx_session(model, folder, args.threads))]
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
