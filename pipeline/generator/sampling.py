"""Prompts -> images, for any generator: the interface the sample, tradeoff, generate and compare
commands call, whichever generator made the model file.

Each prompt's samples come from their own generator, seeded by (seed, prompt index), so any
prompt's images can be regenerated alone and do not depend on the batch around them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from tqdm import tqdm

from pipeline.generator.conditioning import Conditioning

Decode = Callable[[torch.Tensor], torch.Tensor]  # the tokenizer's decoder: codes (B, h, w) -> uint8 (B, 3, H, W)


@dataclass(frozen=True)
class SamplingSettings:
    """The sample: params, each read by the generators it means something to."""
    steps: int | None  # vqdiffusion: reverse steps; None = all T
    guidance: float  # classifier-free guidance scale (vqdiffusion, clipgen); 1 = none
    truncation: float  # top-p over codes (vqdiffusion, clipgen); lafite: StyleGAN's psi
    top_k: int  # clipgen: the k likeliest codes; 0 = all
    purity: bool  # vqdiffusion: unmask the most confident positions first
    purity_sharpen: float


def settings_from(params, steps: int | None) -> SamplingSettings:
    """Sampling settings from the ``sample:`` params, with the number of steps given."""
    return SamplingSettings(steps, params.guidance, params.truncation, params.top_k, params.purity,
                            params.purity_sharpen)


class Generator(Protocol):
    """A trained text-to-image generator, ready to sample (what each generator's model file loads as)."""
    kind: str  # "vqdiffusion", "lafite" or "clipgen": train.generator
    conditioning: Conditioning
    uses_guidance: bool  # whether SamplingSettings.guidance changes its samples
    device: torch.device
    full_steps: int | None  # vqdiffusion: T, what SamplingSettings.steps = None runs; None: no steps setting

    def num_params(self) -> int: ...

    def images(self, cond: torch.Tensor | None, n: int, settings: SamplingSettings,
               generator: torch.Generator) -> torch.Tensor:
        """uint8 images (n, 3, H, W) on the CPU for ``cond`` (n, D) conditions, or None for
        unconditional samples, drawing every random number from ``generator``."""
        ...


def prompt_seed(seed: int, prompt_index: int) -> int:
    return seed * 1_000_003 + prompt_index


def generate_images(model: Generator, conditions: torch.Tensor | None, samples_per_prompt: int,
                    settings: SamplingSettings, seed: int, n_prompts: int | None = None,
                    desc: str = "sample", first_index: int = 0,
                    chunk: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """uint8 images (P, N, 3, H, W) and the seed of each prompt's generator.

    conditions: (P, D) CLIP embeddings (text or image), or None with ``n_prompts`` for
    unconditional samples. ``first_index``: the first prompt's index in its whole list, which
    seeds it, so a list sampled in parts draws what it would draw whole. ``chunk``: draw each
    prompt's samples this many at a time from its generator (a big batch runs slower per image on a
    CPU), so its first ``chunk`` samples are those a run of ``chunk`` per prompt draws.
    """
    if conditions is not None:
        conditions = conditions.to(model.device, torch.float32)
    count = conditions.shape[0] if conditions is not None else n_prompts
    step = chunk or samples_per_prompt
    images, seeds = [], []
    for index in tqdm(range(count), desc=desc, unit="prompt"):
        seeds.append(prompt_seed(seed, first_index + index))
        generator = torch.Generator(model.device).manual_seed(seeds[-1])
        pieces = []
        for start in range(0, samples_per_prompt, step):
            n = min(step, samples_per_prompt - start)
            cond = None if conditions is None else conditions[index:index + 1].expand(n, -1)
            with torch.inference_mode():
                pieces.append(model.images(cond, n, settings, generator))
        images.append(torch.cat(pieces))
    return torch.stack(images), seeds
