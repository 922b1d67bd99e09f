"""Train LAFITE's generator and discriminator on images and their pseudo text embeddings.

Each step is a discriminator step (real and generated images, the contrastive itd term on the
reals, R1 every r1_every steps) and then a generator step (the adversarial term and the
contrastive itc term through the frozen CLIP). As in pipeline/diffusion/train.py, the data
order and every random number come from (seed, step), so a run killed at any point resumes
from its last checkpoint and, on CPU, ends with the same weights as an uninterrupted run.
Single-process: LAFITE at this project's sizes needs no data parallelism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.clip.encoder import ClipEncoder
from pipeline.core.device import autocast, resolve_device
from pipeline.core.errors import UserError
from pipeline.core.live import TrainingLog
from pipeline.core.params import TrainParams
from pipeline.core.rng import normal, seed_everything, step_generator
from pipeline.core.training import EMA, Prefetcher, adam_kernel, batch_indices
from pipeline.generator.data import GeneratorRun, ImageTrainingData
from pipeline.generator.loop import finished_run, train_loop
from pipeline.generator.pseudo_text import ConditionMeans, perturb, pseudo_text
from pipeline.generator.resume import generator_resume
from pipeline.lafite.losses import d_adversarial, g_adversarial, info_nce, r1_penalty
from pipeline.lafite.model import LafiteConfig, build_discriminator, build_generator
from pipeline.lafite.networks import Discriminator, Generator


def model_config(params: TrainParams, resolution: int, clip_dim: int) -> LafiteConfig:
    """LAFITE's networks of ``params`` for square images of side ``resolution`` and CLIP width ``clip_dim``."""
    lafite = params.lafite
    return LafiteConfig(resolution=resolution, z_dim=lafite.z_dim, w_dim=lafite.w_dim,
                        mapping_layers=lafite.mapping_layers, channel_base=lafite.channel_base,
                        channel_max=lafite.channel_max, clip_dim=clip_dim)


@dataclass
class Trainer:
    """What a training step advances, and the frozen CLIP the generator's itc term reads."""
    generator: Generator
    discriminator: Discriminator
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    ema: EMA | None
    clip: ClipEncoder
    means: ConditionMeans | None  # C3's modality means; None for the other modes


@dataclass
class StepLosses:
    """One step's terms, unweighted: d_loss and g_loss are the adversarial ones alone."""
    d_loss: torch.Tensor
    g_loss: torch.Tensor
    itd: torch.Tensor
    itc: torch.Tensor  # nan when itc_weight is 0 (the CLIP pass is skipped)
    r1: torch.Tensor | None  # None on the steps lazy R1 skips


def build_trainer(params: TrainParams, config: LafiteConfig, clip: ClipEncoder, device: torch.device,
                  means: ConditionMeans | None, state: dict[str, Any] | None = None) -> Trainer:
    """Both networks initialised from ``params.seed`` with their Adam optimisers and the generator's
    EMA, continued from a checkpoint's ``state`` when given; the CLIP is frozen."""
    if params.pseudo_text == "c3" and means is None:
        raise UserError("train.pseudo_text = 'c3' subtracts the image and text mean embeddings: give the "
                        "training data the text mean (with_text_mean; the train stage reads the prompt embeddings)")
    seed_everything(params.seed)
    generator, discriminator = build_generator(config).to(device), build_discriminator(config).to(device)
    lafite = params.lafite
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=lafite.lr, betas=tuple(lafite.betas),
                                   **adam_kernel(list(generator.parameters())))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lafite.lr, betas=tuple(lafite.betas),
                                   **adam_kernel(list(discriminator.parameters())))
    ema = EMA(generator, params.ema_decay) if params.ema_decay > 0 else None
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        g_optimizer.load_state_dict(state["g_optimizer"])
        d_optimizer.load_state_dict(state["d_optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
    clip.model.requires_grad_(False).eval()
    return Trainer(generator.train(), discriminator.train(), g_optimizer, d_optimizer, ema, clip, means)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> floats in [-1, 1], the generator's range."""
    return images.float() / 127.5 - 1


def discriminator_step(trainer: Trainer, real: torch.Tensor, cond: torch.Tensor, generator: torch.Generator,
                       step: int, params: TrainParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One D update: adversarial loss on real and generated images, itd on the reals, and every
    r1_every steps the R1 penalty scaled by r1_every (lazy regularisation, same average weight)."""
    lafite, device = params.lafite, real.device
    with_r1 = lafite.r1_gamma > 0 and step % lafite.r1_every == 0
    real.requires_grad_(with_r1)
    z = normal((len(real), lafite.z_dim), device, generator)
    with autocast(device, params.precision):
        with torch.no_grad():
            fake = trainer.generator(z, cond, generator)
        real_logits, projected = trainer.discriminator(real, cond)
        fake_logits, _ = trainer.discriminator(fake, cond)
        adversarial = d_adversarial(real_logits.float(), fake_logits.float())
        itd = info_nce(projected, cond, lafite.temperature)
        loss = adversarial + lafite.itd_weight * itd
        r1 = r1_penalty(real_logits.float(), real, lafite.r1_gamma) if with_r1 else None
        if r1 is not None:
            loss = loss + lafite.r1_every * r1
    trainer.d_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.d_optimizer.step()
    return adversarial.detach(), itd.detach(), None if r1 is None else r1.detach()


def generator_step(trainer: Trainer, cond: torch.Tensor, generator: torch.Generator,
                   params: TrainParams) -> tuple[torch.Tensor, torch.Tensor]:
    """One G update: fool D, and make CLIP see in each image its own condition (itc), the CLIP
    embedding taken into the condition's space (C3 centres it as it centred the condition)."""
    lafite, device = params.lafite, cond.device
    z = normal((len(cond), lafite.z_dim), device, generator)
    trainer.discriminator.requires_grad_(False)  # no D gradients needed here
    with autocast(device, params.precision):
        fake = trainer.generator(z, cond, generator, update_w_avg=True)
        fake_logits, _ = trainer.discriminator(fake, cond)
        adversarial = g_adversarial(fake_logits.float())
        loss = adversarial
        itc = torch.tensor(math.nan)
        if lafite.itc_weight > 0:
            clip_fake = trainer.clip.image_features(((fake + 1) / 2).to(trainer.clip.device)).to(device)
            itc = info_nce(perturb(clip_fake, params.pseudo_text, 0.0, None, trainer.means), cond,
                           lafite.temperature)
            loss = loss + lafite.itc_weight * itc
    trainer.g_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.g_optimizer.step()
    trainer.discriminator.requires_grad_(True)
    return adversarial.detach(), itc.detach()


def train_step(trainer: Trainer, loader: Prefetcher, step: int, params: TrainParams) -> StepLosses:
    """Train on batch ``step``, every random number (z, noise maps, pseudo-text noise) drawn from (seed, step)."""
    images, embeddings = loader.get(step)
    generator = step_generator(params.seed, step, loader.device)
    cond, _ = pseudo_text(embeddings, params.pseudo_text, params.pseudo_scale, 0.0, generator, trainer.means)
    d_loss, itd, r1 = discriminator_step(trainer, to_signed(images), cond, generator, step, params)
    g_loss, itc = generator_step(trainer, cond, generator, params)
    loader.start(step + 1)  # the next batch's copy overlaps the work queued above
    if trainer.ema is not None:
        trainer.ema.update(trainer.generator)
    return StepLosses(d_loss, g_loss, itd, itc, r1)


def check_images(images: torch.Tensor) -> int:
    """The side of a batch of square, power-of-two images (what the networks are built for)."""
    height, width = images.shape[-2:]
    if height != width or height < 4 or height & (height - 1):
        raise UserError(f"LAFITE generates square images with a power-of-two side >= 4; the training images are "
                        f"{height}x{width}: set ingest.resolution to 32 or 64")
    return height


def train_lafite(params: TrainParams, data: ImageTrainingData, clip: ClipEncoder, work_dir: Path,
                 log: TrainingLog | None = None) -> GeneratorRun:
    """Train for ``params.steps``, checkpointing into ``work_dir`` and resuming from it; each
    logged row also goes to ``log``, resumed with the checkpoint. The returned model is the
    generator with its EMA weights."""
    device = resolve_device(params.device)
    config = model_config(params, check_images(data.images), data.embeddings.shape[1])
    key, state = generator_resume(params, {"sources": data.sources, "n": len(data.images),
                                           "text_mean": None if data.means is None else data.means.text.tolist(),
                                           "clip": [clip.model_name, clip.checkpoint_id]}, work_dir)
    trainer = build_trainer(params, config, clip, device, data.means, state)
    loader = Prefetcher([data.images, data.embeddings],
                        lambda step: batch_indices(len(data.images), params.batch_size, step, params.seed), device)
    r1 = math.nan if state is None else state["r1"]  # the latest penalty: R1 runs every r1_every steps

    def step(index: int) -> StepLosses:
        nonlocal r1
        losses = train_step(trainer, loader, index, params)
        r1 = r1 if losses.r1 is None else losses.r1.item()
        return losses

    def row(losses: StepLosses) -> dict[str, float]:
        return {"d_loss": losses.d_loss.item(), "g_loss": losses.g_loss.item(), "r1": r1,
                "itd": losses.itd.item(), "itc": losses.itc.item()}

    result = train_loop(
        params, work_dir, state, step, row,
        lambda logged: {"d": f"{logged['d_loss']:.3f}", "g": f"{logged['g_loss']:.3f}"},
        lambda: {"fingerprint": key, "generator": trainer.generator.state_dict(),
                 "discriminator": trainer.discriminator.state_dict(),
                 "g_optimizer": trainer.g_optimizer.state_dict(), "d_optimizer": trainer.d_optimizer.state_dict(),
                 "ema": trainer.ema.state_dict() if trainer.ema is not None else None, "r1": r1},
        log)
    return finished_run(trainer.generator, trainer.ema, config, params, result)
