"""Data-parallel training under ``torchrun`` (torch.distributed): one process per device or per share
of the CPU cores, DistributedDataParallel, a DistributedSampler, rank 0 for logs and checkpoints.

    torchrun --nproc_per_node 2 -m emoadapt train-fer --out runs/fer-ddp           # one node, 2 CPU ranks
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m emoadapt train-fer --out runs/fer-ddp                                     # 2 nodes × 4 GPUs

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`setup` reads them (gloo on CPU, nccl on CUDA). Without them (a plain
``emoadapt train-fer``) it returns a single-process :class:`Dist` and nothing changes.

Each rank steps on its own ``batch_size`` images (the global batch is ``world × batch_size``);
gradients are averaged by DDP, so every rank holds the same weights after every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import distributed as tdist
from torch import nn

from ..errors import EmoadaptError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world`` (``local_rank`` on its node) and the
    ``device`` it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        """More than one process (a process group exists)."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, validates and writes checkpoints."""
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """The :class:`Dist` of this process, with the process group initialised when ``WORLD_SIZE`` > 1.

    ``device``: ``auto`` (CUDA device ``LOCAL_RANK`` when CUDA is available, else CPU), ``cpu`` or
    ``cuda``. The backend is nccl on CUDA, gloo on CPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise EmoadaptError(f"device must be auto, cpu or cuda, got {device!r}")
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise EmoadaptError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise EmoadaptError("device cuda asked for, but torch sees no CUDA device")
    target = torch.device("cuda", local_rank % max(1, torch.cuda.device_count())) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return Dist(rank, world, local_rank, target)


def teardown(d: Dist) -> None:
    """Destroy the process group (after the last collective)."""
    if d.active and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap(model: nn.Module, d: Dist, find_unused: bool = False) -> nn.Module:
    """``model`` on ``d.device``, inside DistributedDataParallel when the job has several ranks
    (DDP broadcasts rank 0's weights at construction, so every rank starts equal);
    ``find_unused``: some trainable parameters take no part in the loss (e.g. a branch's own head)."""
    model.to(d.device)
    if not d.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [d.device.index] if d.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def barrier(d: Dist) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint)."""
    if d.active:
        tdist.barrier()


def all_sum(values: list[float], d: Dist) -> list[float]:
    """The element-wise sum of ``values`` over the ranks (float64; ``values`` itself with one rank)."""
    if not d.active:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=d.device)
    tdist.all_reduce(tensor)
    return tensor.tolist()


def sync_buffers(model: nn.Module, d: Dist) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics). DDP broadcasts them before
    each forward pass, but the last pass of an epoch updates each rank's own copy with its own batch;
    after this call all ranks hold identical parameters and buffers."""
    if d.active:
        for buffer in model.buffers():
            tdist.broadcast(buffer, src=0)


def autocast(d: Dist, enabled: bool):
    """Mixed precision (bfloat16 autocast) for a forward pass on CUDA when ``enabled``; a no-op
    context otherwise. Asking for it without CUDA is a user error."""
    if enabled and d.device.type != "cuda":
        raise EmoadaptError("--amp (mixed precision) needs a CUDA device; this process trains on the CPU")
    if not enabled:
        from contextlib import nullcontext

        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


class Taps(nn.Module):
    """``model.forward_taps(x, taps)`` as a ``forward``, so DistributedDataParallel (which hooks
    ``forward``) can wrap a model that is called through its taps (adaptation)."""

    def __init__(self, model: nn.Module, taps: tuple[str, ...]):
        super().__init__()
        self.model, self.taps = model, taps

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.forward_taps(x, self.taps)
