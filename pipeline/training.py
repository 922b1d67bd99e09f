"""Training utilities shared by the tokenizer and diffusion trainers.

The contract they serve: a run killed at any point and rerun resumes from its last
checkpoint and ends with bit-identical weights to an uninterrupted run (on CPU, same seed,
same thread count). That needs (1) every RNG state in the checkpoint, (2) a data order
that is a pure function of (seed, step), so it needs no state at all, and (3) the learning
rate computed from the step, not kept in a scheduler object.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from pipeline.atomic import atomic_file


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, for a checkpoint."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the examples in batch ``step``: a fresh permutation per epoch, drawn from a
    generator seeded by (seed, epoch). A pure function of its arguments, so resuming at any
    step replays the same order; the last partial batch of each epoch is dropped."""
    per_epoch = max(n // batch_size, 1)
    epoch, i = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return order[i * batch_size:(i + 1) * batch_size]


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, cosine: bool = False) -> float:
    """Linear warm-up from ~0 to base_lr over warmup_steps, then constant, or (cosine=True) a
    cosine decay to 10% of base_lr at total_steps. Constant suits short runs that are cut by
    a step budget; cosine helps when the run length is fixed in advance."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if not cosine or total_steps <= warmup_steps:
        return base_lr
    progress = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_adamw(model: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW that decays only matrices, kernels and embedding tables, not biases or norm gains
    (decaying a norm's gain just fights the normalisation)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm when max_norm > 0; return the norm before clipping."""
    if max_norm <= 0:
        return math.nan
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied as they are)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[name].lerp_(value, 1 - self.decay)
            else:
                self.shadow[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            self.shadow[name].copy_(value)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow)


_CKPT = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_path(work_dir: Path, step: int) -> Path:
    return Path(work_dir) / f"step-{step:08d}.pt"


def save_checkpoint(work_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``step-NNNNNNNN.pt`` atomically (a kill mid-write leaves the previous one intact),
    then delete all but the newest ``keep`` checkpoints."""
    path = checkpoint_path(work_dir, step)
    with atomic_file(path) as tmp:
        torch.save({**state, "step": step}, tmp)
    for old in list_checkpoints(work_dir)[:-keep]:
        old.unlink()
    return path


def list_checkpoints(work_dir: Path) -> list[Path]:
    """Checkpoints in ``work_dir``, oldest first."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in work_dir.iterdir() if (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest_checkpoint(work_dir: Path) -> dict[str, Any] | None:
    """The newest checkpoint's contents, or None when there is none."""
    paths = list_checkpoints(work_dir)
    if not paths:
        return None
    return torch.load(paths[-1], map_location="cpu", weights_only=False)
