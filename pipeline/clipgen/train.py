"""Train CLIP-GEN's transformer on cached code grids and CLIP image embeddings.

Teacher forcing: one causal pass predicts every code of a grid from the condition and the
codes before it. The condition is the image's pseudo text embedding, sometimes dropped to
the null embedding, exactly as the VQ-Diffusion trainer makes it; the run follows the same
resume contract (pipeline/core/training.py): killed and rerun, it ends, on CPU, with the
weights of an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.clipgen.model import ClipgenConfig, ClipGPT
from pipeline.core import distributed
from pipeline.core.device import autocast, resolve_device
from pipeline.core.errors import UserError
from pipeline.core.live import TrainingLog
from pipeline.core.params import TrainParams
from pipeline.core.rng import seed_everything, step_generator
from pipeline.core.training import (
    EMA,
    Prefetcher,
    batch_indices,
    clip_gradients,
    lr_at,
    make_adamw,
    set_lr,
)
from pipeline.generator.data import GeneratorRun, TrainingData
from pipeline.generator.loop import finished_run, train_loop
from pipeline.generator.pseudo_text import ConditionMeans, pseudo_text
from pipeline.generator.resume import generator_resume


def model_config(params: TrainParams, n_codes: int, grid_h: int, grid_w: int, clip_dim: int) -> ClipgenConfig:
    """The transformer of ``params.clipgen`` for a K-code h x w grid and CLIP embeddings of width ``clip_dim``."""
    p = params.clipgen
    return ClipgenConfig(n_codes=n_codes, grid_h=grid_h, grid_w=grid_w, clip_dim=clip_dim, depth=p.depth,
                         width=p.width, heads=p.heads, mlp_ratio=p.mlp_ratio)


def next_code_loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, L, K) against codes (B, L), over every position."""
    return F.cross_entropy(logits.flatten(0, 1).float(), codes.flatten())


@dataclass
class Trainer:
    """What a training step advances. ``net`` runs the forward pass: ``model`` itself, or
    ``model`` wrapped for data parallelism and compiled."""
    model: ClipGPT
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    means: ConditionMeans | None  # C3's modality means; None for the other modes


def build_trainer(params: TrainParams, config: ClipgenConfig, device: torch.device,
                  means: ConditionMeans | None, state: dict[str, Any] | None = None) -> Trainer:
    """A model initialised from ``params.seed`` with its optimiser and EMA, continued from a
    checkpoint's ``state`` when given; ``means`` are C3's (required for that mode)."""
    if params.pseudo_text == "c3" and means is None:
        raise UserError("train.pseudo_text = 'c3' subtracts the image and text mean embeddings: give the "
                        "training data the text mean (with_text_mean; the train stage reads the prompt embeddings)")
    seed_everything(params.seed)
    model = ClipGPT(config).to(device)
    optimizer = make_adamw(model, params.optim)
    ema = EMA(model, params.ema_decay) if params.ema_decay > 0 else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
    net = distributed.wrap(model)
    net = torch.compile(net) if device.type == "cuda" and params.compile else net
    return Trainer(model.train(), net, optimizer, ema, means)


def train_step(trainer: Trainer, loader: Prefetcher, step: int, params: TrainParams) -> torch.Tensor:
    """Train on batch ``step``, with conditions drawn from (seed, step); returns this rank's loss.

    Every rank loads the whole global batch, draws its conditions and runs the network on
    its own rows of it (see pipeline/core/distributed.py)."""
    codes, embeddings = loader.get(step)
    device, own_rows = loader.device, distributed.rows(params.batch_size)
    generator = step_generator(params.seed, step, device)
    cond, drop = pseudo_text(embeddings, params.pseudo_text, params.pseudo_scale, params.cond_drop, generator,
                             trainer.means)
    codes = codes.flatten(1)[own_rows]
    set_lr(trainer.optimizer, lr_at(step, params.optim.lr, params.optim.warmup_steps, params.steps))
    with autocast(device, params.precision):
        loss = next_code_loss(trainer.net(codes, cond[own_rows], drop[own_rows]), codes)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(trainer.model, params.optim.grad_clip)
    trainer.optimizer.step()
    loader.start(step + 1)  # the next batch's copy overlaps the work queued above
    if trainer.ema is not None:
        trainer.ema.update(trainer.model)
    return loss.detach()


def train_clipgen(params: TrainParams, data: TrainingData, work_dir: Path,
                  log: TrainingLog | None = None) -> GeneratorRun:
    """Train for ``params.steps``, checkpointing into ``work_dir`` and resuming from it; each
    logged row also goes to ``log`` (rank 0's DVCLive log), resumed with the checkpoint.

    Under torchrun every process calls this with the same arguments and rank 0 writes the checkpoints.
    """
    device = resolve_device(params.device)
    config = model_config(params, data.n_codes, *data.codes.shape[1:], data.embeddings.shape[1])
    inputs = {"sources": data.sources, "n": len(data.codes),
              "text_mean": None if data.means is None else data.means.text.tolist()}
    key, state = generator_resume(params, inputs, work_dir)
    trainer = build_trainer(params, config, device, data.means, state)
    loader = Prefetcher([data.codes, data.embeddings],
                        lambda step: batch_indices(len(data.codes), params.batch_size, step, params.seed), device)
    result = train_loop(
        params, work_dir, state, lambda step: train_step(trainer, loader, step, params),
        lambda loss: {"loss": distributed.mean(loss).item(), "lr": trainer.optimizer.param_groups[0]["lr"]},
        lambda logged: {"loss": f"{logged['loss']:.3f}"},
        lambda: {"fingerprint": key, "model": trainer.model.state_dict(),
                 "optimizer": trainer.optimizer.state_dict(),
                 "ema": trainer.ema.state_dict() if trainer.ema is not None else None},
        log)
    return finished_run(trainer.model, trainer.ema, config, params, result)
