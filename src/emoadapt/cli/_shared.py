"""Options and helpers shared by the commands that read images with a model (predict, explain, demo)."""

from __future__ import annotations

import argparse
from pathlib import Path


MODEL_HELP = ("a shipped model name (default: emoadapt-ier; see emoadapt models), a .safetensors file or an "
              ".onnx file written by emoadapt export")
#: the input fits (emoadapt.data.transforms.FITS, written here so that --help imports no torch)
FIT_CHOICES = ("squash", "pad", "centre", "crop")
CROP_HELP = ("how an image becomes the model's square input (default: the model's own, from its training "
             "recipe): squash (the whole image resized), pad (the whole image on grey), centre (the centre "
             "square of the short side) or crop (the centre square of 87.5 %% of the short side)")


def user_description(doc: str) -> str:
    """A command's ``--help`` text from its module docstring's first paragraph, for users: without
    the developer prefix (````emoadapt X``: ``) and reST quotes, starting with a capital."""
    import re

    text = " ".join(doc.split("\n\n")[0].split())
    text = re.sub(r"^``emoadapt [a-z-]+``:\s*", "", text).replace("``", "")
    return text[:1].upper() + text[1:]


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--weights", dest="model", default=None, help=MODEL_HELP)
    p.add_argument("--crop", choices=FIT_CHOICES, default=None, help=CROP_HELP)
    p.add_argument("--runtime", choices=("auto", "torch", "onnx"), default="auto",
                   help="inference engine (default auto: onnxruntime when installed, else torch)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                   help="numbers the masked images of an explanation are evaluated in (predictions are always "
                        "fp32): auto (default) takes the model's shipped int8 copy on CPUs with VNNI, about twice "
                        "as fast; fp32; int8 (also without VNNI, where it is less exact)")


def add_dncshap_options(p: argparse.ArgumentParser) -> None:
    """``--depth`` and ``--max-evals``: the partition depth and evaluation budget of DnCShap
    (defaults and checks from :mod:`emoadapt.attribution.settings`, which does not import torch)."""
    from ..attribution import settings

    p.add_argument("--depth", type=checked(settings.check_depth), default=settings.DEPTH,
                   help=f"DnCShap partition depth T: at most 2^T regions (default {settings.DEPTH})")
    p.add_argument("--max-evals", type=checked(lambda value: settings.check_max_evals(value, name="max-evals")), default=settings.MAX_EVALS,
                   help="DnCShap budget of model evaluations: regions with the largest scores are split first "
                        f"(default {settings.MAX_EVALS or 'full'}; 'full': the whole tree)")


def checked(check):
    """An argparse type from a settings check (its message becomes the argument error)."""
    def parse(value: str):
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def label_map_option(value: str) -> dict[str, str]:
    """``--label-map``'s argparse type: ``joy=happy,sadness=sad,…`` or a file of such pairs
    (:func:`emoadapt.data.labels.parse_label_map`)."""
    from ..data.labels import parse_label_map

    return checked(parse_label_map)(value)


def add_label_map_option(p: argparse.ArgumentParser) -> None:
    """``--label-map``: the map from a labelled dataset's own labels onto the 4 IER classes, for a
    dataset (e.g. a folder per class named joy/sadness/disgust/anger) that has none of its own."""
    p.add_argument("--label-map", type=label_map_option, default=None, metavar="LABEL=CLASS,...",
                   help="map the dataset's labels onto the IER classes happy, sad, hate, anger, e.g. "
                        "joy=happy,sadness=sad,disgust=hate,anger=anger, or a file of such pairs (one per line "
                        "or a JSON object); labels that are IER classes keep their name, others are left out")


def add_target_options(p: argparse.ArgumentParser, manifest_help: str) -> None:
    """``--target``, ``--layout``, ``--manifest`` and ``--source``: the generic images and FER2013 faces
    of the commands that work across the two domains (adapt, embed)."""
    p.add_argument("--target", required=True, help="labelled generic images (Emotion6, FI, folder, CSV…)")
    p.add_argument("--layout", default="auto", help="target layout (default: auto-detect)")
    p.add_argument("--manifest", default=None, help=manifest_help)
    p.add_argument("--source", default=None, help="FER2013 folder (default: $EMOADAPT_DATA/fer2013)")


def add_scale_options(p: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--shard``: parallel decoding and one share of a large collection
    (docs/scaling.md)."""
    p.add_argument("--workers", type=int, default=None,
                   help="threads that decode and resize images ahead of the model (default: the usable cores less one, "
                        "at most 8, divided among the ranks of this node under torchrun; 0 = decode in the "
                        "main thread)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="process only the I-th of N contiguous blocks of the sorted inputs (0 <= I < N), into "
                        "OUT.part-I-of-N; join the parts with `emoadapt merge`. Under torchrun the shard is "
                        "RANK/WORLD_SIZE unless given")


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--amp`` of the training commands (``train-fer``, ``adapt``), which run
    data-parallel under torchrun (docs/scaling.md)."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="train on the CPU or a CUDA GPU (default auto: GPU LOCAL_RANK when CUDA is available). "
                        "Under torchrun every process is one data-parallel rank (DDP; gloo on CPU, nccl on GPU)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (bfloat16 autocast) on a CUDA GPU; refused on the CPU (not tested on a GPU "
                        "yet, see docs/scaling.md)")


def distributed_setup(args: argparse.Namespace):
    """(:class:`~emoadapt.training.distributed.Dist`, torch threads): the process group under torchrun;
    ``--threads`` 0 with several ranks on this node becomes the node's cores divided among them."""
    from ..shards import cores_per_rank
    from ..training.distributed import setup

    from ..training.distributed import autocast

    d = setup(args.device)
    autocast(d, args.amp)  # refuses --amp without CUDA before any data is read
    threads = args.threads or (cores_per_rank() if d.active else 0)
    return d, threads


def shard_of(args: argparse.Namespace) -> tuple[int, int] | None:
    """This process's (shard, count): ``--shard`` when given, else torchrun's RANK/WORLD_SIZE, else None."""
    from ..shards import parse_shard, shard_from_env

    return parse_shard(args.shard) if args.shard else shard_from_env()


def workers_of(args: argparse.Namespace) -> int:
    """``--workers``, or :func:`~emoadapt.pipeline.default_workers` of the cores this rank may use."""
    from ..pipeline import default_workers
    from ..shards import cores_per_rank

    if args.workers is not None and args.workers < 0:
        from ..errors import EmoadaptError

        raise EmoadaptError(f"--workers must be 0 or more, got {args.workers}")
    return default_workers(cores_per_rank()) if args.workers is None else args.workers


def load_predictor(args: argparse.Namespace):
    from ..predictor import Predictor

    threads = args.threads or None
    if threads is None and getattr(args, "shard", None) is None:
        from ..shards import cores_per_rank, shard_from_env

        threads = cores_per_rank() if shard_from_env() else None  # N ranks on a node share its cores
    return Predictor(args.model, runtime=args.runtime, threads=threads, fit=args.crop, precision=args.precision)


def expand_inputs(items: list[str]) -> list[Path]:
    """:func:`emoadapt.data.folder.expand_inputs` (imported when a command runs, not for ``--help``)."""
    from ..data.folder import expand_inputs as expand

    return expand(items)


def unique_stem(path: Path, used: set[str]) -> str:
    """``path``'s stem, made unique among ``used`` with -2, -3… (and recorded there)."""
    stem, index = path.stem, 2
    while stem in used:
        stem, index = f"{path.stem}-{index}", index + 1
    used.add(stem)
    return stem
