"""``emoadapt train``: make a model from data with a recipe file — face branch, scene branch, head
with the paper's loss, calibration, affect heads and the model card, each step resumable.

    emoadapt train --config configs/emoadapt-ier.toml --out runs/emoadapt-ier --cv     # 5-fold CV table
    emoadapt train --config configs/emoadapt-ier.toml --out runs/emoadapt-ier --ship   # the shipped fit
    emoadapt train --config configs/emoadapt-ier.toml --out runs/emoadapt-ier --install  # into the package

Rerunning a command continues where it stopped (the run folder keeps every step's result).
"""

from __future__ import annotations

import argparse

from ._shared import user_description

NAME = "train"
HELP = "train a model from data with a recipe file (CV, the shipped fit, calibration, card)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=user_description(__doc__),
                       epilog="Recipe files: configs/*.toml (configs/emoadapt-ier.toml makes the shipped default; "
                              "configs/folder-example.toml trains on your own folder-per-class images). "
                              "docs/training.md explains every key.")
    p.add_argument("--config", required=True, help="recipe file (TOML), e.g. configs/emoadapt-ier.toml")
    p.add_argument("--out", required=True, help="run folder (features, fold heads, cv.json, model.*)")
    p.add_argument("--cv", action="store_true", help="run the recipe's k-fold cross-validation (writes OUT/cv.json)")
    p.add_argument("--folds", default=None, help="with --cv: only these folds, e.g. 0,1 (default all)")
    p.add_argument("--cv-mode", choices=("final", "select"), default="final",
                   help="with --cv: final (default) trains each fold's head on every other fold, the estimate of "
                        "the shipped fit (OUT/cv.json); select holds fold k+1 out for validation, to choose "
                        "between recipes (OUT/cv-select.json)")
    p.add_argument("--ship", action="store_true",
                   help="the final fit on every labelled image, calibration, affect heads, card (needs OUT/cv.json)")
    p.add_argument("--install", action="store_true",
                   help="with --ship: copy OUT/model.* into the package's weights/ and its registry.json entry")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from ..errors import EmoadaptError
    from .. import recipe as steps
    from ..recipe import load_recipe

    recipe = load_recipe(args.config)  # a bad recipe fails before any image is read
    if not (args.cv or args.ship or args.install):
        raise EmoadaptError("say what to run: --cv (the cross-validation table), --ship (the final model) or both")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flags = [flag for flag, on in (("--cv", args.cv), ("--ship", args.ship), ("--install", args.install)) if on]
    command = " ".join(["emoadapt train --config", shlex.quote(args.config), "--out", shlex.quote(args.out), *flags])
    if args.cv:
        folds = [int(f) for f in args.folds.split(",")] if args.folds else None
        result = steps.cross_validate(recipe, out, folds=folds, mode=args.cv_mode)
        print(steps.cv_table(result))
    if args.ship or args.install:
        entry = steps.ship(recipe, out, args.config, command)
        if args.install:
            steps.install(out, entry)
    return 0
