"""Train, evaluate and run the Gumbel VQGAN tokenizer.

`train_tokenizer` checkpoints into its work folder and resumes from the newest matching
checkpoint, so a killed run picks up where it stopped and ends bit-identical (CPU) to an
uninterrupted one. Images cross this API as uint8 NCHW tensors on the CPU; everything else
(reports, plots, PNG files) is the stage's job.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch._functorch.config as functorch_config
from tqdm import tqdm

from pipeline.core import distributed
from pipeline.core.device import autocast, resolve_device
from pipeline.core.live import TrainingLog
from pipeline.core.params import TokenizerParams
from pipeline.core.rng import seed_everything, step_generator
from pipeline.core.training import (
    EMA,
    Prefetcher,
    batch_indices,
    clip_gradients,
    lr_at,
    make_adamw,
    resume_state,
    run_fingerprint,
    save_checkpoint,
    set_lr,
)
from pipeline.tokenizer.losses import (
    PerceptualLoss,
    adaptive_gan_weight,
    discriminator_for,
    hinge_d_loss,
    hinge_g_loss,
    usage_deficit,
)
from pipeline.tokenizer.metrics import codebook_usage, psnr
from pipeline.tokenizer.model import VQGAN, VQOutput, gumbel_noise, reconstruct, to_model_range

VAL_SUBSET = 256  # images scored at each checkpoint to track the hard (argmax) path


@dataclass
class TokenizerRun:
    model: VQGAN  # final weights (the EMA average when ema_decay > 0), eval mode
    history: list[dict[str, float]]  # one row per log window: step, loss, recon, kl, tau, lr, usage, ...
    val_history: list[dict[str, float]] = field(default_factory=list)  # step, psnr, usage at checkpoints
    seconds: float = 0.0  # training wall time, summed over resumed runs
    start_step: int = 0  # where this call began: 0 fresh, the checkpoint's step when resumed


def _fingerprint(params: TokenizerParams, images: torch.Tensor) -> str:
    """What a checkpoint must match to be resumed: the settings that change the result, and the data."""
    digest = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()
    return run_fingerprint(params, {"shape": list(images.shape), "sha256": digest})


class _Window:
    """Running means of the logged quantities between two history rows."""

    def __init__(self, n_codes: int) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.seen = torch.zeros(n_codes, dtype=torch.bool)

    def add(self, values: dict[str, torch.Tensor | float], codes: torch.Tensor) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.count += 1
        self.seen[codes.flatten().cpu()] = True

    def row(self, step: int) -> dict[str, float]:
        """The window's means over the global batch (every rank calls this at the same step)."""
        means = distributed.mean(torch.tensor(list(self.sums.values()), dtype=torch.float64)) / self.count
        row = {"step": step, **dict(zip(self.sums, means.tolist()))}
        row["usage"] = float(distributed.any_rank(self.seen).float().mean())
        return row


@dataclass
class _Trainer:
    """What a training step advances. ``net`` and ``disc_net`` run the forward passes: the
    models themselves, or wrapped for data parallelism (and ``net`` compiled)."""
    model: VQGAN
    net: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    disc: nn.Module | None  # the patch-GAN discriminator, when disc_weight > 0
    disc_net: nn.Module | None
    disc_opt: torch.optim.Optimizer | None
    perceptual: PerceptualLoss | None
    layout: torch.memory_format  # of the images and convolutions: channels_last on CUDA when asked


def _build_trainer(params: TokenizerParams, resolution: int, device: torch.device,
                   state: dict[str, Any] | None) -> _Trainer:
    """The models initialised from ``params.seed``, continued from a checkpoint's ``state`` when given."""
    cuda = device.type == "cuda"  # the GPU fast paths (channels_last, compile) apply only there
    layout = torch.channels_last if cuda and params.channels_last else torch.contiguous_format
    seed_everything(params.seed)
    model = build_vqgan(params, resolution).to(device, memory_format=layout)
    optimizer = make_adamw(model, params.optim)
    ema = EMA(model, params.ema_decay) if params.ema_decay > 0 else None
    disc = discriminator_for(resolution).to(device, memory_format=layout) if params.disc_weight > 0 else None
    disc_opt = make_adamw(disc, params.optim) if disc is not None else None
    perceptual = PerceptualLoss(params.perceptual_weights).to(device) if params.perceptual_weights else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if disc is not None:
            disc.load_state_dict(state["disc"])
            disc_opt.load_state_dict(state["disc_optimizer"])
    net = distributed.wrap(model)
    if cuda and params.compile:
        if disc is not None:  # adaptive_gan_weight differentiates the compiled graph again (retain_graph=True),
            functorch_config.donated_buffer = False  # which AOTAutograd's donated buffers forbid (seen on an H200)
        net = torch.compile(net)
    disc_net = distributed.wrap(disc) if disc is not None else None
    return _Trainer(model, net, optimizer, ema, disc, disc_net, disc_opt, perceptual, layout)


def _generator_loss(trainer: _Trainer, params: TokenizerParams, x: torch.Tensor, out: VQOutput,
                    gan_on: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The tokenizer's loss on images ``x`` (model range) and its detached terms, to log."""
    error = x - out.recon
    recon_loss = error.abs().mean() if params.recon_loss == "l1" else error.square().mean()
    deficit = usage_deficit(distributed.mean_with_grad(out.code_mean))
    loss = recon_loss + params.kl_weight * out.kl + params.usage_weight * deficit
    terms = {"recon": recon_loss.detach(), "kl": out.kl.detach(), "usage_deficit": deficit.detach()}
    nll = recon_loss
    if trainer.perceptual is not None:
        p_loss = trainer.perceptual(x, out.recon)
        loss = loss + params.perceptual_weight * p_loss
        nll = nll + params.perceptual_weight * p_loss
        terms["perceptual"] = p_loss.detach()
    if trainer.disc is not None:
        g_loss = torch.zeros((), device=x.device)
        if gan_on:
            g_loss = hinge_g_loss(trainer.disc_net(out.recon))
            loss = loss + params.disc_weight * adaptive_gan_weight(nll, g_loss, trainer.model.last_layer()) * g_loss
        terms["g_loss"] = g_loss.detach()
    return loss, terms


def _step(trainer: _Trainer, loader: Prefetcher, step: int,
          params: TokenizerParams) -> tuple[VQOutput, dict[str, torch.Tensor | float]]:
    """Train on batch ``step``: the tokenizer, then the discriminator once the GAN is on.

    The Gumbel noise of the whole global batch is drawn from (seed, step) and each rank takes
    its rows of it. Returns the model's output and the values to log.
    """
    (batch,) = loader.get(step)
    device, own_rows = loader.device, distributed.rows(params.batch_size)
    x = to_model_range(batch).contiguous(memory_format=trainer.layout)
    grid = trainer.model.grid
    noise = gumbel_noise((params.batch_size, params.n_codes, grid, grid), device,
                         step_generator(params.seed, step, device))[own_rows]
    tau = tau_at(step, params.tau_start, params.tau_end, params.tau_steps)
    lr = lr_at(step, params.optim.lr, params.optim.warmup_steps, params.steps, cosine=True)
    gan_on = trainer.disc is not None and step >= params.disc_start
    trainer.model.train()
    set_lr(trainer.optimizer, lr)
    with autocast(device, params.precision):
        out = trainer.net(x, torch.tensor(tau, device=device), noise)  # tau as a tensor: no recompile per step
        loss, terms = _generator_loss(trainer, params, x, out, gan_on)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(trainer.model, params.optim.grad_clip)
    trainer.optimizer.step()
    if trainer.disc is not None:
        d_loss = torch.zeros((), device=device)
        if gan_on:
            set_lr(trainer.disc_opt, lr)
            with autocast(device, params.precision):
                d_loss = hinge_d_loss(trainer.disc_net(x), trainer.disc_net(out.recon.detach()))
            trainer.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            clip_gradients(trainer.disc, params.optim.grad_clip)
            trainer.disc_opt.step()
        terms["d_loss"] = d_loss.detach()
    loader.start(step + 1)  # the next batch's copy overlaps the work queued above
    if trainer.ema is not None:
        trainer.ema.update(trainer.model)
    return out, {"loss": loss.detach(), **terms, "tau": tau, "lr": lr}


def _checkpoint_state(trainer: _Trainer, result: TokenizerRun, fingerprint: str) -> dict[str, Any]:
    state = {"fingerprint": fingerprint, "model": trainer.model.state_dict(),
             "optimizer": trainer.optimizer.state_dict(), "history": result.history,
             "val_history": result.val_history, "seconds": result.seconds}
    if trainer.ema is not None:
        state["ema"] = trainer.ema.state_dict()
    if trainer.disc is not None:
        state |= {"disc": trainer.disc.state_dict(), "disc_optimizer": trainer.disc_opt.state_dict()}
    return state


def _val_row(row: dict[str, float]) -> dict[str, float]:
    """A val_history row under the log's names: val_psnr, val_usage."""
    return {k if k == "step" else f"val_{k}": v for k, v in row.items()}


def _score_val(model: VQGAN, val_images: torch.Tensor, params: TokenizerParams) -> dict[str, float]:
    """PSNR and code usage of the hard (argmax) path on the first VAL_SUBSET held-out images."""
    images = val_images[:VAL_SUBSET]
    codes, recon = reconstruct(model, images, params.encode_batch_size)
    return {"psnr": float(psnr(images, recon)), "usage": codebook_usage(codes, params.n_codes)}


def train_tokenizer(params: TokenizerParams, train_images: torch.Tensor, work_dir: Path,
                    val_images: torch.Tensor | None = None, *, device: torch.device | None = None,
                    log_every: int = 25, stop_at: int | None = None, progress: bool = True,
                    log: TrainingLog | None = None) -> TokenizerRun:
    """Train (or resume, or just reload when finished) the tokenizer on uint8 images (N,3,H,W).

    Checkpoints go to ``work_dir`` every ``checkpoint_every`` steps and at the end; one that
    was made with other settings or other data is deleted, not resumed. ``val_images`` (the
    first 256) are scored through the hard path at each checkpoint. ``stop_at`` ends the run
    after that many steps without saving, as a kill would (for tests). Logged rows and val
    scores also go to ``log`` (rank 0's DVCLive log), resumed with the checkpoint.
    Under torchrun every process calls this with the same arguments; each trains on its
    share of every batch and rank 0 writes the checkpoints (pipeline/core/distributed.py).
    """
    device = device or resolve_device(params.device)
    work_dir = Path(work_dir)
    fingerprint = _fingerprint(params, train_images)
    checkpoint = resume_state(work_dir, fingerprint, "tokenizer")
    trainer = _build_trainer(params, train_images.shape[-1], device, checkpoint)
    result = TokenizerRun(trainer.model, [])
    step = 0
    if checkpoint is not None:
        result.history, result.val_history = checkpoint["history"], checkpoint["val_history"]
        result.seconds, step = checkpoint["seconds"], checkpoint["step"]
    start = step
    if log is not None:
        log.begin(start, sorted(result.history + [_val_row(row) for row in result.val_history],
                                key=lambda row: row["step"]))

    own_rows = distributed.rows(params.batch_size)
    loader = Prefetcher([train_images], lambda i: batch_indices(len(train_images), params.batch_size, i,
                                                                params.seed)[own_rows], device)
    window = _Window(params.n_codes)
    bar = tqdm(total=params.steps, initial=step, desc="tokenizer", unit="step",
               disable=not progress or not distributed.is_main())
    started = time.perf_counter()
    while step < params.steps:
        if stop_at is not None and step >= stop_at:
            bar.close()
            return result
        out, logged = _step(trainer, loader, step, params)
        step += 1
        bar.update(1)

        window.add(logged, out.codes)
        if step % log_every == 0 or step == params.steps:
            row = window.row(step)
            result.history.append(row)
            if log is not None:
                log.row(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", tau=f"{logged['tau']:.3f}", usage=f"{row['usage']:.2f}",
                            refresh=False)
            window = _Window(params.n_codes)
        if step % params.checkpoint_every == 0 or step == params.steps:
            result.seconds += time.perf_counter() - started
            if distributed.is_main():
                if val_images is not None and len(val_images):
                    result.val_history.append({"step": step, **_score_val(trainer.model, val_images, params)})
                    if log is not None:
                        log.row(_val_row(result.val_history[-1]))
                save_checkpoint(work_dir, step, _checkpoint_state(trainer, result, fingerprint))
            started = time.perf_counter()
    bar.close()
    if trainer.ema is not None:
        trainer.ema.copy_to(trainer.model)
    return TokenizerRun(trainer.model.eval(), result.history, result.val_history, result.seconds, start)


def tau_at(step: int, tau_start: float, tau_end: float, tau_steps: int) -> float:
    """Gumbel temperature: exponential (geometric) decay from tau_start to tau_end over tau_steps.

    Geometric decay spends equal training time per factor of temperature, so the
    high-temperature phase that spreads usage over the codebook is short and most steps
    run near-hard, where the soft training path and the hard argmax path agree.
    Held at tau_end after tau_steps.
    """
    frac = min(max(step, 0), tau_steps) / tau_steps
    return tau_start * (tau_end / tau_start) ** frac


def build_vqgan(params: TokenizerParams, resolution: int) -> VQGAN:
    return VQGAN(params.n_codes, params.code_dim, params.ch, list(params.ch_mult), params.num_res_blocks,
                 list(params.attn_resolutions), resolution, params.norm, params.code_books)
