"""Train the VQ-Diffusion transformer on cached code grids and CLIP image embeddings.

The network never sees a caption: each image's condition is its CLIP image embedding,
perturbed into a pseudo text embedding and sometimes dropped to the null embedding. A run
killed at any point resumes from its last checkpoint and, on CPU, ends with the same
weights as an uninterrupted run (see pipeline/training.py for how).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline import distributed
from pipeline.atomic import atomic_file
from pipeline.cache import read_vectors
from pipeline.device import autocast, resolve_device
from pipeline.diffusion import Schedule, TimestepSampler, denoising_loss, q_sample
from pipeline.errors import UserError
from pipeline.params import TrainParams
from pipeline.pseudo_text import pseudo_text
from pipeline.torch_files import load_tensors
from pipeline.training import (EMA, Prefetcher, batch_indices, clip_gradients, lr_at, make_adamw, resume_state,
                               run_fingerprint, save_checkpoint, seed_everything, set_lr, step_generator)
from pipeline.transformer import Transformer, TransformerConfig

HISTORY_COLUMNS = ("step", "loss", "vlb", "aux", "lr", "steps_per_s")


@dataclass
class TrainingData:
    codes: torch.Tensor  # (N, h, w) long
    embeddings: torch.Tensor  # (N, D) float32, unit norm
    n_codes: int
    sources: dict[str, str]  # provenance of the caches, kept in the model file


def load_training_data(tokens_dir: Path, embeddings_dir: Path, split: str = "train") -> TrainingData:
    """Join the token-grid and CLIP-embedding caches on image id."""
    tokens = read_vectors(tokens_dir, "codes", split)
    embeddings = read_vectors(embeddings_dir, "embedding", split)
    position = {image_id: i for i, image_id in enumerate(embeddings.ids)}
    missing = [i for i in tokens.ids if i not in position]
    if missing:
        raise UserError(f"{embeddings_dir}: no CLIP embedding for {len(missing)} token grids "
                        f"(e.g. id {missing[0]}); rerun the embed stage")
    order = np.fromiter((position[i] for i in tokens.ids), dtype=np.int64, count=len(tokens.ids))
    grid_h, grid_w = int(tokens.metadata["grid_h"]), int(tokens.metadata["grid_w"])
    codes = torch.from_numpy(tokens.vectors.astype(np.int64)).view(-1, grid_h, grid_w)
    sources = {f"tokens.{k}": v for k, v in tokens.metadata.items()}
    sources |= {f"clip.{k}": v for k, v in embeddings.metadata.items()}
    return TrainingData(codes, torch.from_numpy(embeddings.vectors[order].copy()),
                        int(tokens.metadata["n_codes"]), sources)


def model_config(params: TrainParams, n_codes: int, grid_h: int, grid_w: int, clip_dim: int) -> TransformerConfig:
    """The transformer of ``params`` for a K-code h x w grid and CLIP embeddings of width ``clip_dim``."""
    return TransformerConfig(n_codes=n_codes, grid_h=grid_h, grid_w=grid_w, steps=params.diffusion_steps,
                             clip_dim=clip_dim, depth=params.depth, width=params.width,
                             heads=params.heads, mlp_ratio=params.mlp_ratio, mlp=params.mlp)


def schedule_for(params: TrainParams, n_codes: int) -> Schedule:
    return Schedule(n_codes, params.diffusion_steps, abar_start=params.abar_range[0], abar_end=params.abar_range[1],
                    gbar_start=params.gbar_range[0], gbar_end=params.gbar_range[1])


@dataclass
class TrainResult:
    model: Transformer  # carries the EMA weights when EMA is on
    config: TransformerConfig
    history: list[dict[str, float]]
    steps: int
    images_seen: int
    seconds: float  # training wall time, summed over resumed runs
    start_step: int  # where this call began: 0 fresh, the checkpoint's step when resumed


def train_diffusion(params: TrainParams, data: TrainingData, work_dir: Path) -> TrainResult:
    """Train for ``params.steps``, checkpointing into ``work_dir`` and resuming from it.

    Under torchrun every process calls this with the same arguments: all of them draw the
    noise of the whole global batch, each runs the network on its share, and rank 0 writes
    the checkpoints (pipeline/distributed.py).
    """
    device = resolve_device(params.device)
    seed_everything(params.seed)
    config = model_config(params, data.n_codes, *data.codes.shape[1:], data.embeddings.shape[1])
    model = Transformer(config).to(device)
    schedule = schedule_for(params, data.n_codes)
    optimizer = make_adamw(model, params.lr, tuple(params.betas), params.weight_decay)
    ema = EMA(model, params.ema_decay) if params.ema_decay > 0 else None
    t_sampler = TimestepSampler(params.diffusion_steps, params.t_min_count, params.t_history_decay)

    key = run_fingerprint(params, {"sources": data.sources, "n": len(data.codes)})
    state = resume_state(work_dir, key, "train")
    start, history, seconds = 0, [], 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        t_sampler.load_state_dict(state["t_sampler"])
        start, history, seconds = state["step"], state["history"], state["seconds"]
    net = distributed.wrap(model)
    net = torch.compile(net) if device.type == "cuda" and params.compile else net

    # every rank loads the whole global batch of codes and embeddings (small), draws its noise,
    # and runs the network on its own rows of it
    mine = distributed.rows(params.batch_size)
    loader = Prefetcher([data.codes, data.embeddings],
                        lambda step: batch_indices(len(data.codes), params.batch_size, step, params.seed), device)
    model.train()
    progress = tqdm(range(start, params.steps), initial=start, total=params.steps, desc="train", unit="step",
                    disable=not distributed.is_main())
    tick, tick_step = time.perf_counter(), start
    for step in progress:
        codes, embeddings = loader.get(step)
        generator = step_generator(params.seed, step, device)
        cond, drop = pseudo_text(embeddings, params.pseudo_text, params.pseudo_scale, params.cond_drop, generator)
        x0 = codes.flatten(1)
        t, pt = t_sampler.sample(len(x0), device, generator)
        x_t = q_sample(x0, t, schedule, generator)
        set_lr(optimizer, lr_at(step, params.lr, params.warmup_steps, params.steps))
        with autocast(device, params.precision):
            losses = denoising_loss(net, x0[mine], x_t[mine], t[mine], pt[mine], cond[mine], drop[mine], schedule,
                                    params.aux_weight)
        optimizer.zero_grad(set_to_none=True)
        losses.loss.backward()
        clip_gradients(model, params.grad_clip)
        optimizer.step()
        loader.start(step + 1)
        vb = distributed.gather(losses.vb)  # the global batch's L_t, so every rank keeps the same history
        t_sampler.update(t, vb)
        if ema is not None:
            ema.update(model)
        done = step + 1
        if done % params.log_every == 0 or done == params.steps:
            now = time.perf_counter()
            seconds += now - tick
            loss, aux = distributed.mean(torch.stack([losses.loss.detach(), losses.aux.detach().mean()])).tolist()
            row = {"step": done, "loss": loss, "vlb": vb.mean().item(), "aux": aux,
                   "lr": optimizer.param_groups[0]["lr"], "steps_per_s": (done - tick_step) / max(now - tick, 1e-9)}
            history.append(row)
            progress.set_postfix(loss=f"{row['loss']:.3f}", vlb=f"{row['vlb']:.3f}", refresh=False)
            tick, tick_step = now, done
        if (done % params.checkpoint_every == 0 or done == params.steps) and distributed.is_main():
            save_checkpoint(work_dir, done, {
                "fingerprint": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None, "t_sampler": t_sampler.state_dict(),
                "history": history, "seconds": seconds,
            })
    if ema is not None:
        ema.copy_to(model)
    model.eval()
    return TrainResult(model, config, history, params.steps, params.steps * params.batch_size, seconds, start)


def save_model(path: Path, model: Transformer, config: TransformerConfig, params: TrainParams,
               sources: dict[str, str]) -> None:
    """The trained (EMA) weights with everything needed to rebuild model and schedule."""
    payload = {"config": dataclasses.asdict(config), "state_dict": model.state_dict(),
               "schedule": {"abar_range": params.abar_range, "gbar_range": params.gbar_range},
               "sources": sources}
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[Transformer, Schedule, dict[str, Any]]:
    """Rebuild a saved transformer (eval mode) and its noise schedule."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no trained diffusion model; run the train stage (`dvc repro train`)")
    payload = load_tensors(path, "diffusion model")
    config = TransformerConfig(**payload["config"])
    model = Transformer(config)
    model.load_state_dict(payload["state_dict"])
    abar, gbar = payload["schedule"]["abar_range"], payload["schedule"]["gbar_range"]
    schedule = Schedule(config.n_codes, config.steps, abar_start=abar[0], abar_end=abar[1],
                        gbar_start=gbar[0], gbar_end=gbar[1])
    return model.to(device).eval(), schedule, payload["sources"]
