"""``emoadapt calibrate``: fit a model's temperature and OOD score (:mod:`emoadapt.calibrate`) and
write the calibration JSON that ``analyze``, ``predict`` and the web app read for ``uncertain``."""

from __future__ import annotations

import argparse

from ._shared import add_label_map_option

NAME = "calibrate"
HELP = "fit a model's confidence: temperature and 'unlike the training images' score (JSON)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=(
        "Fits the temperature on the validation split, the OOD score on the training split and its "
        "threshold on the validation split (the test split is never read), then writes the calibration "
        "JSON. For a shipped preset, write it where the preset names it (src/emoadapt/weights/"
        "<name>.calibration.json); for a .safetensors file, <stem>.calibration.json beside it is found "
        "automatically."))
    p.add_argument("--model", "--weights", dest="model", default=None,
                   help="a .safetensors file or a shipped model name (default: the shipped IER model)")
    p.add_argument("--data", required=True, help="labelled dataset folder (e.g. .cache/data/emotion6)")
    p.add_argument("--layout", default="auto", help="dataset layout (default: auto-detect)")
    add_label_map_option(p)
    p.add_argument("--manifest", required=True,
                   help="split manifest with train and val (e.g. benchmarks/results/adaptation/split.json)")
    p.add_argument("--out", required=True, help="calibration JSON to write")
    p.add_argument("--ood", choices=("energy", "mahalanobis"), default="energy",
                   help="OOD score: energy, -logsumexp(logits) (default; chosen on validation, docs/benchmarks.md "
                        "§10), or mahalanobis on the pre_logits features")
    p.add_argument("--ood-quantile", type=float, default=0.95,
                   help="share of validation images below the OOD threshold (default 0.95)")
    p.add_argument("--min-confidence", type=float, default=0.4,
                   help="a top probability below this is 'low confidence' (default 0.4)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from .. import provenance
    from ..predictor import Predictor
    from ..calibrate import fit_calibration, split_images
    from ..errors import EmoadaptError

    if not 0.5 <= args.ood_quantile < 1:
        raise EmoadaptError(f"--ood-quantile must be in [0.5, 1), got {args.ood_quantile}")
    # calibrated=False: the model's current calibration (perhaps fitted for older weights) is not read
    predictor = Predictor(args.model, runtime="torch", threads=args.threads or None, calibrated=False)
    train = split_images(args.data, args.manifest, "train", predictor.classes, args.layout, args.label_map)
    val = split_images(args.data, args.manifest, "val", predictor.classes, args.layout, args.label_map)
    command = provenance.COMMAND or ""  # the emoadapt command as typed (set by the CLI's main)
    calibration = fit_calibration(predictor, train, val, ood=args.ood, ood_quantile=args.ood_quantile,
                                  min_confidence=args.min_confidence, command=command)
    calibration.save(args.out)
    summary = {"out": args.out, "temperature": calibration.temperature, "ood": calibration.ood_kind,
               "ood_threshold": round(calibration.ood_threshold, 4), **calibration.fitted}
    print(json.dumps(summary, indent=2))
    return 0
