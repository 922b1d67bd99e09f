"""Train the VQ-Diffusion transformer on cached code grids and CLIP image embeddings.

The network never sees a caption: each image's condition is its CLIP image embedding,
perturbed into a pseudo text embedding and sometimes dropped to the null embedding. A run
killed at any point resumes from its last checkpoint and, on CPU, ends with the same
weights as an uninterrupted run (see pipeline/core/training.py for how).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

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
from pipeline.diffusion.model import noise_schedule
from pipeline.diffusion.process import Losses, Schedule, TimestepSampler, denoising_loss, q_sample
from pipeline.generator.data import GeneratorRun, TrainingData
from pipeline.generator.loop import finished_run, train_loop
from pipeline.generator.pseudo_text import ConditionMeans, pseudo_text
from pipeline.generator.resume import generator_resume
from pipeline.diffusion.transformer import Transformer, TransformerConfig


def model_config(params: TrainParams, n_codes: int, grid_h: int, grid_w: int, clip_dim: int,
                 code_books: int = 1) -> TransformerConfig:
    """The transformer of ``params`` for a K-code h x w grid (of ``code_books`` books) and CLIP
    embeddings of width ``clip_dim``."""
    return TransformerConfig(n_codes=n_codes, grid_h=grid_h, grid_w=grid_w, steps=params.diffusion_steps,
                             clip_dim=clip_dim, depth=params.depth, width=params.width,
                             heads=params.heads, mlp_ratio=params.mlp_ratio, mlp=params.mlp,
                             cond_tokens=params.cond_tokens, code_books=code_books)


@dataclass
class Trainer:
    """What a training step advances. ``net`` runs the forward pass: ``model`` itself, or
    ``model`` wrapped for data parallelism and compiled."""
    model: Transformer
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    t_sampler: TimestepSampler
    schedule: Schedule
    means: ConditionMeans | None  # C3's modality means; None for the other modes


def build_trainer(params: TrainParams, config: TransformerConfig, device: torch.device,
                  means: ConditionMeans | None, state: dict[str, Any] | None = None) -> Trainer:
    """A model initialised from ``params.seed`` with its optimiser, EMA and t-sampler, continued
    from a checkpoint's ``state`` when given; ``means`` are C3's (required for that mode)."""
    if params.pseudo_text == "c3" and means is None:
        raise UserError("train.pseudo_text = 'c3' subtracts the image and text mean embeddings: give the "
                        "training data the text mean (with_text_mean; the train stage reads the prompt embeddings)")
    seed_everything(params.seed)
    model = Transformer(config).to(device)
    optimizer = make_adamw(model, params.optim)
    ema = EMA(model, params.ema_decay) if params.ema_decay > 0 else None
    t_sampler = TimestepSampler(params.diffusion_steps, params.t_min_count, params.t_history_decay)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        t_sampler.load_state_dict(state["t_sampler"])
    net = distributed.wrap(model)
    net = torch.compile(net) if device.type == "cuda" and params.compile else net
    schedule = noise_schedule(config.n_codes, params.diffusion_steps, params.abar_range, params.gbar_range)
    return Trainer(model.train(), net, optimizer, ema, t_sampler, schedule, means)


def train_step(trainer: Trainer, loader: Prefetcher, step: int, params: TrainParams) -> tuple[Losses, torch.Tensor]:
    """Train on batch ``step`` (the loader's rows for it), with noise drawn from (seed, step).

    Every rank loads the whole global batch (small), draws its noise and runs the network on
    its own rows of it, so all ranks keep the same t-sampler. Returns this rank's losses and
    the global batch's per-sample L_t.
    """
    codes, embeddings = loader.get(step)
    device, own_rows = loader.device, distributed.rows(params.batch_size)
    generator = step_generator(params.seed, step, device)
    cond, drop = pseudo_text(embeddings, params.pseudo_text, params.pseudo_scale, params.cond_drop, generator,
                             trainer.means)
    x0 = codes.flatten(1)
    t, pt = trainer.t_sampler.sample(len(x0), device, generator)
    x_t = q_sample(x0, t, trainer.schedule, generator)
    set_lr(trainer.optimizer, lr_at(step, params.optim.lr, params.optim.warmup_steps, params.steps))
    with autocast(device, params.precision):
        losses = denoising_loss(trainer.net, x0[own_rows], x_t[own_rows], t[own_rows], pt[own_rows],
                                cond[own_rows], drop[own_rows], trainer.schedule, params.aux_weight)
    trainer.optimizer.zero_grad(set_to_none=True)
    losses.loss.backward()
    clip_gradients(trainer.model, params.optim.grad_clip)
    trainer.optimizer.step()
    loader.start(step + 1)  # the next batch's copy overlaps the work queued above
    vb = distributed.gather(losses.vb)
    trainer.t_sampler.update(t, vb)
    if trainer.ema is not None:
        trainer.ema.update(trainer.model)
    return losses, vb


def train_diffusion(params: TrainParams, data: TrainingData, work_dir: Path,
                    log: TrainingLog | None = None) -> GeneratorRun:
    """Train for ``params.steps``, checkpointing into ``work_dir`` and resuming from it; each
    logged row also goes to ``log`` (rank 0's DVCLive log), resumed with the checkpoint.

    Under torchrun every process calls this with the same arguments and rank 0 writes the
    checkpoints (see train_step and pipeline/core/distributed.py).
    """
    device = resolve_device(params.device)
    config = model_config(params, data.n_codes, *data.codes.shape[1:], data.embeddings.shape[1], data.code_books)
    inputs = {"sources": data.sources, "n": len(data.codes),
              "text_mean": None if data.means is None else data.means.text.tolist()}
    key, state = generator_resume(params, inputs, work_dir)
    trainer = build_trainer(params, config, device, data.means, state)
    loader = Prefetcher([data.codes, data.embeddings],
                        lambda step: batch_indices(len(data.codes), params.batch_size, step, params.seed), device)

    def row(output: tuple[Losses, torch.Tensor]) -> dict[str, float]:
        losses, vb = output
        loss, aux = distributed.mean(torch.stack([losses.loss.detach(), losses.aux.detach().mean()])).tolist()
        return {"loss": loss, "vlb": vb.mean().item(), "aux": aux, "lr": trainer.optimizer.param_groups[0]["lr"]}

    result = train_loop(
        params, work_dir, state, lambda step: train_step(trainer, loader, step, params), row,
        lambda logged: {"loss": f"{logged['loss']:.3f}", "vlb": f"{logged['vlb']:.3f}"},
        lambda: {"fingerprint": key, "model": trainer.model.state_dict(),
                 "optimizer": trainer.optimizer.state_dict(),
                 "ema": trainer.ema.state_dict() if trainer.ema is not None else None,
                 "t_sampler": trainer.t_sampler.state_dict()},
        log)
    return finished_run(trainer.model, trainer.ema, config, params, result)
