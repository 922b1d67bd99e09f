"""Training utilities shared by the tokenizer, CLIP and diffusion trainers.

The contract they serve (the tokenizer and diffusion trainers; the CLIP trainer only shares
the optimiser and schedule): a run killed at any point and rerun resumes from its last
checkpoint and ends with bit-identical weights to an uninterrupted run (on CPU, same seed,
same thread count). That needs (1) a data order and (2) noise that are pure functions of
(seed, step) (pipeline/core/rng.py), so they need no saved state at all, and (3) the
learning rate computed from the step, not kept in a scheduler object. (1) and (2) are also
what lets N processes train the model one process would (pipeline/core/distributed.py).

Both trainers also checkpoint at the last step, so rerunning a finished run reloads it
instead of training again, and both resume only a checkpoint whose ``run_fingerprint``
matches: the settings that change what is computed and the data, never how the steps run
(device, precision, compile, threads) or how often they log and save.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from pipeline.core import distributed
from pipeline.core.atomic import atomic_file
from pipeline.core.params import OptimParams
from pipeline.core.torch_files import load_tensors


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the examples in batch ``step``: a fresh permutation per epoch, drawn from a
    generator seeded by (seed, epoch). A pure function of its arguments, so resuming at any
    step replays the same order; the last partial batch of each epoch is dropped."""
    per_epoch = max(n // batch_size, 1)
    epoch, i = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return order[i * batch_size:(i + 1) * batch_size]


class Prefetcher:
    """Rows of CPU tensors for each step, on the device and copied one step ahead.

    On CUDA the rows are gathered into pinned memory and copied on a side stream, so calling
    ``start(step + 1)`` once a step's work is queued overlaps the gather and the copy with
    it. Elsewhere ``get`` is plain indexing and ``start`` does nothing. ``rows(step)`` gives
    the indices of a step's examples.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], rows: Callable[[int], torch.Tensor],
                 device: torch.device) -> None:
        self.tensors, self.rows, self.device = list(tensors), rows, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.pending: tuple[int, list[torch.Tensor]] | None = None

    def start(self, step: int) -> None:
        if self.stream is None:
            return
        index = self.rows(step)
        with torch.cuda.stream(self.stream):
            batch = []
            for t in self.tensors:
                pinned = torch.empty((len(index), *t.shape[1:]), dtype=t.dtype, pin_memory=True)
                batch.append(torch.index_select(t, 0, index, out=pinned).to(self.device, non_blocking=True))
        self.pending = (step, batch)

    def get(self, step: int) -> list[torch.Tensor]:
        if self.stream is None:
            index = self.rows(step)
            return [t[index] for t in self.tensors]
        if self.pending is None or self.pending[0] != step:
            self.start(step)
        _, batch = self.pending
        self.pending = None
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.stream)
        for t in batch:
            t.record_stream(current)
        return batch


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


def make_adamw(model: nn.Module, optim: OptimParams) -> torch.optim.AdamW:
    """AdamW that decays only matrices, kernels and embedding tables, not biases, norm gains
    or scalars such as CLIP's temperature (decaying a norm's gain just fights the
    normalisation). Fused (one kernel for all parameters) when they are on CUDA; elsewhere
    ``foreach``, which torch leaves off on CPU by default: it computes the per-tensor loop's
    weights bit for bit, 3x faster (a 4.6M-parameter CLIP: 17 ms a step against 55)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), **adam_kernel(decay + no_decay))


def adam_kernel(parameters: Sequence[torch.Tensor]) -> dict[str, bool]:
    """Adam(W)'s implementation keyword: fused on CUDA, foreach elsewhere (make_adamw says why)."""
    return {"fused": True} if all(p.is_cuda for p in parameters) else {"foreach": True}


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


# settings that change how a run executes or reports, not the weights it computes
HOW_IT_RUNS = frozenset({"device", "precision", "compile", "channels_last", "threads", "checkpoint_every",
                         "log_every", "encode_batch_size"})


def run_fingerprint(params: Any, data: dict[str, Any]) -> str:
    """What a checkpoint must match to be resumed: ``params`` (a section dataclass) less
    HOW_IT_RUNS, and ``data``, a JSON-able description of the inputs."""
    settings = {k: v for k, v in dataclasses.asdict(params).items() if k not in HOW_IT_RUNS}
    blob = json.dumps({"params": settings, "data": data}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def resume_state(work_dir: Path, fingerprint: str, name: str) -> dict[str, Any] | None:
    """The newest checkpoint in ``work_dir`` if it was made with ``fingerprint``, else None.

    Checkpoints of other settings or data are deleted (rank 0), never resumed; every rank
    must see the same newest checkpoint. ``name`` labels the messages."""
    work_dir = Path(work_dir)
    state = load_latest_checkpoint(work_dir)
    distributed.check_same(state["step"] if state else -1,
                           f"{work_dir}: the newest checkpoint (put it on a filesystem every node sees)")
    if state is not None and state.get("fingerprint") != fingerprint:
        if distributed.is_main():
            tqdm.write(f"{name}: {work_dir} holds checkpoints of other settings or data; starting afresh",
                       file=sys.stderr)
            for stale in list_checkpoints(work_dir):
                stale.unlink()
        return None
    if state is not None and distributed.is_main():
        tqdm.write(f"{name}: resuming from step {state['step']}", file=sys.stderr)
    return state


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
    return load_tensors(paths[-1], "training checkpoint")
