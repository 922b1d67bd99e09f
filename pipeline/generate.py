"""Prompts -> images: batched reverse diffusion per prompt, decoding, contact sheets.

Each prompt's samples come from their own generator, seeded by (seed, prompt index), so
any prompt's images can be regenerated alone and do not depend on the batch around them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from pipeline.diffusion import Schedule
from pipeline.sampler import sample

FULL_T = "full_t"  # the sample stage's subfolder of prompts also sampled with all T steps
Decode = Callable[[torch.Tensor], torch.Tensor]  # codes (B, h, w) -> uint8 images (B, 3, H, W)


@dataclass(frozen=True)
class SamplingSettings:
    steps: int | None  # reverse steps; None = all T
    guidance: float
    truncation: float
    purity: bool
    purity_sharpen: float


def prompt_seed(seed: int, prompt_index: int) -> int:
    return seed * 1_000_003 + prompt_index


def generate_images(model: torch.nn.Module, schedule: Schedule, decode: Decode, conditions: torch.Tensor | None,
                    samples_per_prompt: int, settings: SamplingSettings, seed: int,
                    n_prompts: int | None = None, desc: str = "sample") -> tuple[torch.Tensor, list[int]]:
    """uint8 images (P, N, 3, H, W) and the seed of each prompt's generator.

    conditions: (P, D) CLIP embeddings (text or image), or None with ``n_prompts`` for
    unconditional samples (the model's null embedding).
    """
    device = next(model.parameters()).device
    count = conditions.shape[0] if conditions is not None else n_prompts
    images, seeds = [], []
    for index in tqdm(range(count), desc=desc, unit="prompt"):
        seeds.append(prompt_seed(seed, index))
        generator = torch.Generator(device).manual_seed(seeds[-1])
        cond = None if conditions is None else conditions[index:index + 1].expand(samples_per_prompt, -1)
        with torch.inference_mode():
            codes = sample(model, schedule, cond, n=samples_per_prompt, steps=settings.steps,
                           guidance=settings.guidance, truncation=settings.truncation, purity=settings.purity,
                           purity_sharpen=settings.purity_sharpen, generator=generator)
            images.append(decode(codes).cpu())
    return torch.stack(images), seeds


def contact_sheet(images: np.ndarray, labels: list[str], cell: int = 64, label_width: int = 300) -> Image.Image:
    """One row per prompt: its label, then its samples (images: (P, N, H, W, 3) uint8)."""
    rows, columns = images.shape[:2]
    sheet = Image.new("RGB", (label_width + columns * cell, rows * cell), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for r in range(rows):
        draw.text((4, r * cell + cell // 2), labels[r], fill="black", font=font, anchor="lm")
        for c in range(columns):
            tile = Image.fromarray(images[r, c]).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (label_width + c * cell, r * cell))
    return sheet


def settings_from(params, steps: int | None) -> SamplingSettings:
    """Sampling settings from the ``sample:`` params, with the number of steps given."""
    return SamplingSettings(steps, params.guidance, params.truncation, params.purity, params.purity_sharpen)


def rank_by_cosine(cosine: np.ndarray) -> np.ndarray:
    """(P, N) cosines -> rank of each sample within its prompt (0 = best)."""
    order = np.argsort(-cosine, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(cosine.shape[1])[None].repeat(len(cosine), 0), axis=1)
    return ranks


def write_pngs(folder: Path, images: torch.Tensor) -> list[str]:
    """uint8 images (P, N, 3, H, W) -> ``folder/PPPP_NNN.png``; the names, prompt-major."""
    names = []
    for p in range(images.shape[0]):
        for n in range(images.shape[1]):
            name = f"{p:04d}_{n:03d}.png"
            Image.fromarray(images[p, n].permute(1, 2, 0).numpy()).save(folder / name, compress_level=6)
            names.append(name)
    return names
