"""Worker of tests/test_distributed.py, run by torchrun: a tiny DDP training on the toy problem
(``toy_data``, ``CONFIG``; test_training.py trains on the same) (gloo, CPU).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_toy.py OUT EPOCHS first|resume

``first``: trains OUT/full to the end, adapts a tiny FER network with the joint trainer (OUT/full/adapt)
and writes OUT/full/rank<r>.json (the digests of that rank's final weights and buffers, ``digest``, and
of its adapted weights, ``adapt``); then starts the same training in OUT/killed and, after its first
epoch's checkpoint, leaves with ``os._exit`` (no teardown, as under a kill). ``resume``: resumes
OUT/killed to the end and writes OUT/killed/rank<r>.json. (One launch does both the uninterrupted
run and the killed one: each torchrun start costs seconds of imports.)"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from emoadapt.models.emonet import EmoNet, EmoNetConfig
from emoadapt.training.distributed import setup, teardown
from emoadapt.training.loop import TrainConfig, fit

CONFIG = EmoNetConfig(num_classes=2, in_chans=1, input_size=32, width=0.125, batch_norm=True, head="pool", hidden=(16,))


def toy_data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 1: a bright square top-left; class 0: bottom-right. uint8 (n, 32, 32, 1), labels (n,)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(n, 32, 32, 1), dtype=np.uint8)
    labels = np.arange(n) % 2
    images[labels == 1, 2:12, 2:12] = 250
    images[labels == 0, 20:30, 20:30] = 250
    return images, labels.astype(np.int64)


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(out: Path, epochs: int, d, *, resume: bool = False, stop_after_epochs: int | None = None) -> EmoNet:
    """The toy DDP training into ``out``; each rank starts from its own random weights."""
    torch.manual_seed(123 + 1000 * d.rank)  # ranks start apart: DDP must give them rank 0's weights
    model = EmoNet(CONFIG)
    x, y = toy_data()
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=3e-3, warmup_epochs=0.5, augment=True, seed=7, threads=1)
    fit(model, x, y, x[:16], y[:16], ("a", "b"), cfg, out, model_config=CONFIG.to_dict(), resume=resume,
        stop_after_epochs=stop_after_epochs, progress=False, dist=d)
    return model


def main() -> None:
    out, epochs, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    d = setup("cpu")
    if mode == "first":
        model = train(out / "full", epochs, d)
        record = {"digest": digest(model), "world": d.world, "adapt": adapt_joint(out / "full" / "adapt", d)}
        (out / "full" / f"rank{d.rank}.json").write_text(json.dumps(record))
        train(out / "killed", epochs, d, stop_after_epochs=1)
        os._exit(9)
    model = train(out / "killed", epochs, d, resume=True)
    (out / "killed" / f"rank{d.rank}.json").write_text(json.dumps({"digest": digest(model), "world": d.world}))
    teardown(d)


def adapt_joint(out: Path, d) -> str:
    """Two epochs of the joint adaptation trainer on toy target images and faces; its weights' digest."""
    from emoadapt.adapt.config import AdaptConfig
    from emoadapt.adapt.train import adapt
    from emoadapt.data.labels import FER_CLASSES
    from emoadapt.training.checkpoint import save_weights
    from emoadapt.training.distributed import barrier

    fer = EmoNetConfig(num_classes=7, in_chans=1, input_size=32, width=0.125, batch_norm=True, head="pool",
                       hidden=(16,))
    init = out.parent / "fer.safetensors"
    if d.is_main:
        torch.manual_seed(0)
        save_weights(init, EmoNet(fer).eval(), fer.to_dict(), extra={"classes": list(FER_CLASSES)})
    barrier(d)
    x, y = toy_data(48)
    faces, face_labels = toy_data(40, seed=3)
    cfg = AdaptConfig(init=str(init), input_size=32, epochs=2, batch_size=8, lr=3e-3, threads=1,
                      backbone_lr_scale=1.0, warmup_epochs=0.5, freeze="none", discrepancy="mmd")
    from emoadapt.adapt.start import build_start_model

    torch.manual_seed(5 + d.rank)
    model = build_start_model(cfg)
    adapt((np.repeat(x, 3, -1), y), (np.repeat(x[:16], 3, -1), y[:16]), (faces, face_labels), cfg, out,
          progress=False, model=model, dist=d)
    return digest(model)


if __name__ == "__main__":
    main()
