"""Seeded randomness for every trainer and sampler.

Noise is drawn on the generator's device and then moved, because a torch generator only
reproduces its numbers on the device it belongs to: a CPU generator gives the same noise
whether the model runs on the CPU or a GPU, and a run resumed from (seed, step) draws what
the killed run drew (pipeline/core/training.py).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import Tensor


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The generator for batch ``step``'s noise, seeded from (seed, step) alone.

    A resumed run draws the same noise without any saved RNG state, and every rank of a
    data-parallel run draws the same numbers for the global batch. SeedSequence mixes the
    two numbers, so no step shares a seed with another step or with ``batch_indices``.
    """
    state = np.random.SeedSequence([seed, step]).generate_state(2, np.uint32)
    return torch.Generator(device).manual_seed(int(state[0]) << 32 | int(state[1]))


def _source(device: torch.device, generator: torch.Generator | None) -> torch.device:
    """Where to draw: on the generator's device when there is one (see the module docstring)."""
    return device if generator is None else generator.device


def uniform(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None,
            dtype: torch.dtype = torch.float32) -> Tensor:
    """U[0, 1) noise on ``device``."""
    return torch.rand(shape, generator=generator, device=_source(device, generator), dtype=dtype).to(device)


def normal(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """N(0, 1) float32 noise on ``device``."""
    return torch.randn(shape, generator=generator, device=_source(device, generator)).to(device)


def exponential(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """Exp(1) float32 noise on ``device``."""
    return torch.empty(shape, device=_source(device, generator)).exponential_(generator=generator).to(device)
