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

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pipeline import distributed
from pipeline import image_metrics as metrics
from pipeline.device import autocast, resolve_device
from pipeline.params import TokenizerParams
from pipeline.training import (EMA, Prefetcher, batch_indices, clip_gradients, lr_at, make_adamw, resume_state,
                               run_fingerprint, save_checkpoint, seed_everything, set_lr, step_generator)
from pipeline.vqgan import (VQGAN, PerceptualLoss, adaptive_gan_weight, build_vqgan, discriminator_for,
                            gumbel_noise, hinge_d_loss, hinge_g_loss, tau_at, to_model_range, to_uint8,
                            usage_deficit)

VAL_SUBSET = 256  # images scored at each checkpoint to track the hard (argmax) path


@dataclass
class TrainResult:
    model: VQGAN  # final weights (the EMA average when ema_decay > 0), eval mode
    history: list[dict[str, float]]  # one row per log window: step, loss, recon, kl, tau, lr, usage, ...
    val_history: list[dict[str, float]] = field(default_factory=list)  # step, psnr, usage at checkpoints
    seconds: float = 0.0  # training wall time, summed over resumed runs
    start_step: int = 0  # where this call began: 0 fresh, the checkpoint's step when resumed


def _fingerprint(params: TokenizerParams, images: torch.Tensor) -> str:
    """What a checkpoint must match to be resumed: the settings that change the result, and the data."""
    digest = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()
    return run_fingerprint(params, {"shape": list(images.shape), "sha256": digest})


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_all(model: VQGAN, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """uint8 images (N,3,H,W) -> hard codes (N,h,w), int16 when K fits, else int32; on the CPU.
    Runs in fp32 on every device so a code never flips with the precision."""
    model.eval()
    device = _model_device(model)
    dtype = torch.int16 if model.n_codes <= 2**15 else torch.int32
    out = [model.encode(to_model_range(images[i:i + batch_size].to(device))).to("cpu", dtype)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, model.grid, model.grid, dtype=dtype)


@torch.no_grad()
def decode_all(model: VQGAN, codes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Codes (N,h,w) of any integer dtype -> uint8 images (N,3,H,W) on the CPU."""
    model.eval()
    device = _model_device(model)
    out = [to_uint8(model.decode_codes(codes[i:i + batch_size].to(device).long())).cpu()
           for i in range(0, len(codes), batch_size)]
    size = model.resolution
    return torch.cat(out) if out else torch.empty(0, 3, size, size, dtype=torch.uint8)


def reconstruct(model: VQGAN, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, reconstructions) of uint8 images through the hard path."""
    codes = encode_all(model, images, batch_size)
    return codes, decode_all(model, codes, batch_size)


def evaluate_tokenizer(model: VQGAN, images: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """Reconstruction quality and codebook health on held-out uint8 images (hard codes).

    psnr pools the error over the set (see image_metrics.psnr); ssim is the mean per image;
    bits_per_image is the fixed-length grid size, entropy_bits_per_image the size under the
    codes' marginal distribution.
    """
    codes, recon = reconstruct(model, images, batch_size)
    k, positions = model.n_codes, model.grid * model.grid
    entropy = metrics.code_entropy_bits(codes, k)
    return {
        "psnr": float(metrics.psnr(images, recon)),
        "ssim": float(metrics.ssim(images, recon).mean()),
        "codebook_usage": metrics.codebook_usage(codes, k),
        "codes_used": int((metrics.code_histogram(codes, k) > 0).sum()),
        "perplexity": 2**entropy,
        "bits_per_image": metrics.bits_per_image(positions, k),
        "entropy_bits_per_image": positions * entropy,
        "n_images": len(images),
    }


def reconstruction_grid(model: VQGAN, images: torch.Tensor, pad: int = 2) -> Image.Image:
    """A PNG-ready sheet: the uint8 images in the top row, their reconstructions below,
    separated by ``pad`` white pixels. Size: (n*W + (n+1)*pad) x (2*H + 3*pad)."""
    _, recon = reconstruct(model, images, len(images) or 1)
    n, _, h, w = images.shape
    sheet = np.full((2 * h + 3 * pad, n * w + (n + 1) * pad, 3), 255, dtype=np.uint8)
    for row, batch in enumerate((images, recon)):
        for i, image in enumerate(batch):
            y, x = pad + row * (h + pad), pad + i * (w + pad)
            sheet[y:y + h, x:x + w] = image.permute(1, 2, 0).numpy()
    return Image.fromarray(sheet, "RGB")


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


def train_tokenizer(params: TokenizerParams, train_images: torch.Tensor, work_dir: Path,
                    val_images: torch.Tensor | None = None, *, device: torch.device | None = None,
                    log_every: int = 25, stop_at: int | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume, or just reload when finished) the tokenizer on uint8 images (N,3,H,W).

    Checkpoints go to ``work_dir`` every ``checkpoint_every`` steps and at the end; one that
    was made with other settings or other data is deleted, not resumed. ``val_images`` (the
    first 256) are scored through the hard path at each checkpoint. ``stop_at`` ends the run
    after that many steps without saving, as a kill would (for tests).
    Under torchrun every process calls this with the same arguments; each trains on its
    share of every batch and rank 0 writes the checkpoints (pipeline/distributed.py).
    """
    device = device or resolve_device(params.device)
    cuda = device.type == "cuda"  # the GPU fast paths (channels_last, compile, prefetch) apply only there
    layout = torch.channels_last if cuda and params.channels_last else torch.contiguous_format
    work_dir = Path(work_dir)
    resolution = train_images.shape[-1]
    fingerprint = _fingerprint(params, train_images)

    seed_everything(params.seed)
    model = build_vqgan(params, resolution).to(device, memory_format=layout)
    optimizer = make_adamw(model, params.lr, tuple(params.betas), params.weight_decay)
    ema = EMA(model, params.ema_decay) if params.ema_decay > 0 else None
    disc = discriminator_for(resolution).to(device, memory_format=layout) if params.disc_weight > 0 else None
    disc_opt = make_adamw(disc, params.lr, tuple(params.betas), params.weight_decay) if disc else None
    perceptual = PerceptualLoss(params.perceptual_weights).to(device) if params.perceptual_weights else None

    result = TrainResult(model, [])
    step = 0
    checkpoint = resume_state(work_dir, fingerprint, "tokenizer")
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if ema:
            ema.load_state_dict(checkpoint["ema"])
        if disc:
            disc.load_state_dict(checkpoint["disc"])
            disc_opt.load_state_dict(checkpoint["disc_optimizer"])
        result.history, result.val_history = checkpoint["history"], checkpoint["val_history"]
        result.seconds, step = checkpoint["seconds"], checkpoint["step"]
    start = step
    net = distributed.wrap(model)
    net = torch.compile(net) if cuda and params.compile else net
    disc_net = distributed.wrap(disc) if disc else None

    def save() -> None:
        state = {"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "history": result.history, "val_history": result.val_history, "seconds": result.seconds}
        if ema:
            state["ema"] = ema.state_dict()
        if disc:
            state |= {"disc": disc.state_dict(), "disc_optimizer": disc_opt.state_dict()}
        save_checkpoint(work_dir, step, state)

    def score_val() -> None:
        if val_images is not None and len(val_images):
            codes, recon = reconstruct(model, val_images[:VAL_SUBSET], params.encode_batch_size)
            result.val_history.append({"step": step, "psnr": float(metrics.psnr(val_images[:VAL_SUBSET], recon)),
                                       "usage": metrics.codebook_usage(codes, params.n_codes)})

    mine = distributed.rows(params.batch_size)
    loader = Prefetcher([train_images], lambda i: batch_indices(len(train_images), params.batch_size, i,
                                                                params.seed)[mine], device)
    noise_shape = (params.batch_size, params.n_codes, model.grid, model.grid)
    window = _Window(params.n_codes)
    bar = tqdm(total=params.steps, initial=step, desc="tokenizer", unit="step",
               disable=not progress or not distributed.is_main())
    started = time.perf_counter()
    while step < params.steps:
        if stop_at is not None and step >= stop_at:
            bar.close()
            return result
        model.train()
        (batch,) = loader.get(step)
        x = to_model_range(batch).contiguous(memory_format=layout)
        # noise for the whole global batch from (seed, step), this rank's rows of it
        noise = gumbel_noise(noise_shape, device, step_generator(params.seed, step, device))[mine]
        tau = tau_at(step, params.tau_start, params.tau_end, params.tau_steps)
        lr = lr_at(step, params.lr, params.warmup_steps, params.steps, cosine=True)
        set_lr(optimizer, lr)
        gan_on = disc is not None and step >= params.disc_start
        with autocast(device, params.precision):
            out = net(x, torch.tensor(tau, device=device), noise)  # tau as a tensor: no recompile per step
            error = x - out.recon
            recon_loss = error.abs().mean() if params.recon_loss == "l1" else error.square().mean()
            deficit = usage_deficit(distributed.mean_with_grad(out.code_mean))
            loss = recon_loss + params.kl_weight * out.kl + params.usage_weight * deficit
            logged: dict[str, Any] = {"recon": recon_loss.detach(), "kl": out.kl.detach(),
                                      "usage_deficit": deficit.detach()}
            if perceptual is not None:
                p_loss = perceptual(x, out.recon)
                loss = loss + params.perceptual_weight * p_loss
                logged["perceptual"] = p_loss.detach()
            if disc is not None:
                g_loss = d_loss = torch.zeros((), device=device)
                if gan_on:
                    g_loss = hinge_g_loss(disc_net(out.recon))
                    nll = recon_loss + (params.perceptual_weight * p_loss if perceptual is not None else 0)
                    loss = loss + params.disc_weight * adaptive_gan_weight(nll, g_loss, model.last_layer()) * g_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model, params.grad_clip)
        optimizer.step()
        if gan_on:
            set_lr(disc_opt, lr)
            with autocast(device, params.precision):
                d_loss = hinge_d_loss(disc_net(x), disc_net(out.recon.detach()))
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            clip_gradients(disc, params.grad_clip)
            disc_opt.step()
        loader.start(step + 1)
        if disc is not None:
            logged |= {"g_loss": g_loss.detach(), "d_loss": d_loss.detach()}
        if ema:
            ema.update(model)
        step += 1
        bar.update(1)

        window.add({"loss": loss.detach(), **logged, "tau": tau, "lr": lr}, out.codes)
        if step % log_every == 0 or step == params.steps:
            row = window.row(step)
            result.history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", tau=f"{tau:.3f}", usage=f"{row['usage']:.2f}", refresh=False)
            window = _Window(params.n_codes)
        if step % params.checkpoint_every == 0 or step == params.steps:
            result.seconds += time.perf_counter() - started
            if distributed.is_main():
                score_val()
                save()
            started = time.perf_counter()
    bar.close()
    if ema:
        ema.copy_to(model)
    return TrainResult(model.eval(), result.history, result.val_history, result.seconds, start)
