"""Prompts -> images: batched reverse diffusion per prompt, then decoding.

Each prompt's samples come from their own generator, seeded by (seed, prompt index), so
any prompt's images can be regenerated alone and do not depend on the batch around them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from pipeline.diffusion.process import Schedule
from pipeline.diffusion.sampler import sample

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


def settings_from(params, steps: int | None) -> SamplingSettings:
    """Sampling settings from the ``sample:`` params, with the number of steps given."""
    return SamplingSettings(steps, params.guidance, params.truncation, params.purity, params.purity_sharpen)


