"""Model soups of adapted networks: average the weights of runs that started from one checkpoint.

    python benchmarks/soup.py --weights 'benchmarks/results/adaptation/runs/*ema*-s?/best.safetensors' \
        --tag ema --save runs/soup-ema.safetensors

Every run, the uniform soup (all runs; also with the members' averaged batch-norm statistics
instead of re-estimated ones), the greedy soup (runs added best-validation first, kept when
validation accuracy does not drop; the functions below) and, for reference, the
ensemble of all runs (probabilities averaged: N networks at inference) are scored on the Emotion6
split of ``--manifest``. Averages of two or more runs get batch-norm statistics re-estimated on
the training images (and mirrors); a single run keeps its own. Validation picks; the test column
is reported, never used. Writes OUT/soup<tag>.json.

Why soups (Wortsman et al. 2022): several networks fine-tuned from the *same* start weights (one
FER checkpoint, different seeds) often lie in one basin of the loss, so the average of their
weights can itself be a good network, at the cost of one at inference. Averaged batch-norm running
statistics are not the statistics of the averaged network, so :func:`refresh_batch_norm`
re-estimates them from training images before the soup is scored.
"""

from __future__ import annotations

import argparse
import glob
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from emotion6 import SPLIT, emotion6_splits
from torch import nn

from emoadapt.data.labels import IER_CLASSES
from emoadapt.data.transforms import uint8_to_tensor
from emoadapt.fileio import atomic_write_json
from emoadapt.models.registry import load_model
from emoadapt.models.weights import save_weights
from emoadapt.training.metrics import classification_report, predict_arrays


def average_state_dicts(state_dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors of same-shaped state dicts (integer
    buffers, e.g. batch-norm step counts, are taken from the first)."""
    if not state_dicts:
        raise ValueError("nothing to average")
    keys = state_dicts[0].keys()
    for other in state_dicts[1:]:
        if other.keys() != keys or any(other[k].shape != state_dicts[0][k].shape for k in keys):
            raise ValueError("the networks to average differ in their tensors: same architecture needed")
    return {k: (torch.stack([sd[k].float() for sd in state_dicts]).mean(0).to(state_dicts[0][k].dtype)
                if state_dicts[0][k].is_floating_point() else state_dicts[0][k].clone()) for k in keys}


@torch.no_grad()
def refresh_batch_norm(model: nn.Module, images: np.ndarray, batch_size: int = 64, flip: bool = True) -> nn.Module:
    """Re-estimate every batch-norm layer's running mean and variance as the exact average over
    ``images`` (N, H, W, C) uint8 (and their mirror images when ``flip``); weights are unchanged.
    Returns ``model`` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    for start in range(0, len(images), batch_size):
        x = uint8_to_tensor(images[start:start + batch_size])
        model(x)
        if flip:
            model(x.flip(3))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


def greedy_soup(state_dicts: Sequence[dict[str, torch.Tensor]], val_scores: Sequence[float],
                score: Callable[[list[dict[str, torch.Tensor]]], float]) -> tuple[list[int], float]:
    """Greedy soup: visit the runs by decreasing ``val_scores``; keep a run when ``score`` of the
    candidate members (the validation accuracy of their averaged weights, e.g. after a batch-norm
    refresh: the caller decides) does not drop.

    Returns (indices of the kept runs in the order added, the soup's validation score)."""
    order = sorted(range(len(state_dicts)), key=lambda i: -val_scores[i])
    kept = [order[0]]
    best = score([state_dicts[order[0]]])
    for i in order[1:]:
        trial = score([state_dicts[j] for j in kept + [i]])
        if trial >= best:
            kept, best = kept + [i], trial
    return kept, best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", nargs="+", required=True, help="weight files or globs (same architecture)")
    parser.add_argument("--manifest", default=str(SPLIT))
    parser.add_argument("--out", default="benchmarks/results/adaptation")
    parser.add_argument("--tag", default="")
    parser.add_argument("--save", default=None, help="write the soup validation picks to this weights file")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = sorted({p for pattern in args.weights for p in (glob.glob(pattern) or [pattern])})
    if len(paths) < 2:
        raise SystemExit(f"a soup needs at least 2 weight files, got {paths}")
    models = [load_model(p) for p in paths]
    model, extra = models[0]
    splits = emotion6_splits(model.config.input_size, model.config.in_chans, manifest=args.manifest)
    started = time.time()

    def scores(net, names=("val", "test")) -> dict:
        return {name: classification_report(splits[name].labels, predict_arrays(net, splits[name].images),
                                            IER_CLASSES) for name in names}

    def soup_of(state_dicts, refresh: bool = True) -> torch.nn.Module:
        """The model holding the average of ``state_dicts``; batch-norm statistics re-estimated on
        the training images when ``refresh`` and there is more than one member (a single run keeps
        the statistics it was trained with)."""
        model.load_state_dict(average_state_dicts(state_dicts))
        return refresh_batch_norm(model, splits["train"].images) if refresh and len(state_dicts) > 1 else model.eval()

    runs, probs = [], {"val": [], "test": []}
    for path, (net, _) in zip(paths, models):
        s = scores(net)
        runs.append({"weights": path, "val_acc": s["val"]["accuracy"], "test_acc": s["test"]["accuracy"],
                     "test_macro_f1": s["test"]["macro_f1"]})
        for name in probs:
            probs[name].append(predict_arrays(net, splits[name].images))
    # the ensemble (N networks at inference, probabilities averaged): the reference a soup tries to match
    ensemble = {name: classification_report(splits[name].labels, np.mean(p, axis=0), IER_CLASSES)
                for name, p in probs.items()}
    state_dicts = [{k: v.clone() for k, v in net.state_dict().items()} for net, _ in models]
    uniform = scores(soup_of(state_dicts))
    uniform_stats = scores(soup_of(state_dicts, refresh=False))  # averaged running statistics instead
    kept, _ = greedy_soup(state_dicts, [r["val_acc"] for r in runs],
                          lambda members: scores(soup_of(members), ("val",))["val"]["accuracy"])
    greedy = scores(soup_of([state_dicts[i] for i in kept]))
    everyone = list(range(len(paths)))
    soups = {"uniform": {"runs": everyone, "val": uniform["val"], "test": uniform["test"]},
             "uniform, averaged batch-norm statistics": {"runs": everyone, "val": uniform_stats["val"],
                                                         "test": uniform_stats["test"]},
             "greedy": {"runs": kept, "val": greedy["val"], "test": greedy["test"]}}
    pick = max(("uniform", "greedy"), key=lambda n: (soups[n]["val"]["accuracy"], n == "uniform"))  # ties: uniform
    for row in runs:
        print(f"{row['weights']}: val {row['val_acc']:.3f} test {row['test_acc']:.3f}")
    for name, soup in soups.items():
        print(f"{name} soup of {[Path(paths[i]).parent.name for i in soup['runs']]}: val {soup['val']['accuracy']:.3f} "
              f"test {soup['test']['accuracy']:.3f} macro-F1 {soup['test']['macro_f1']:.3f}")
    print(f"ensemble of all {len(paths)}: val {ensemble['val']['accuracy']:.3f} test {ensemble['test']['accuracy']:.3f} "
          f"macro-F1 {ensemble['test']['macro_f1']:.3f}", flush=True)
    if args.save:
        soup_of([state_dicts[i] for i in soups[pick]["runs"]])
        save_weights(args.save, model, model.config.to_dict(),
                     extra={**extra, "soup": {"kind": pick, "of": [paths[i] for i in soups[pick]["runs"]]},
                            "val": soups[pick]["val"]})
    atomic_write_json(Path(args.out) / f"soup{args.tag}.json",
                      {"runs": runs, "soups": soups, "pick": pick, "ensemble": ensemble, "command": shlex.join(["python"] + sys.argv),
                       "seconds": time.time() - started, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "torch_threads": torch.get_num_threads()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
