"""The LAFITE generator behind the sampling interface: one forward pass from (z, condition) to
pixels, with StyleGAN's truncation as the sample's ``truncation`` setting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pipeline.core.rng import normal
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.sampling import SamplingSettings
from pipeline.lafite.model import model_from_file
from pipeline.lafite.networks import Generator


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 pixels; values outside the range are clipped here, not in the network."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


@dataclass
class LafiteGenerator:
    """A trained (EMA) LAFITE generator (pipeline.generator.sampling.Generator)."""
    model: Generator
    conditioning: Conditioning
    kind: str = "lafite"
    uses_guidance: bool = False
    full_steps: None = None  # no steps setting: one pass of the generator

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_params(self) -> int:
        return self.model.num_params()

    def images(self, cond: torch.Tensor | None, n: int, settings: SamplingSettings,
               generator: torch.Generator) -> torch.Tensor:
        """z, then every noise map, from ``generator``; psi = settings.truncation."""
        if cond is None:
            raise ValueError("LAFITE has no unconditional mode (it never trains without a condition): give each "
                             "sample a condition")
        z = normal((n, self.model.z_dim), self.device, generator)
        images = self.model(z, cond.to(self.device, torch.float32), generator, psi=settings.truncation)
        return to_uint8(images).cpu()


def lafite_generator(payload: dict[str, Any], device: torch.device | str = "cpu") -> LafiteGenerator:
    """The sampler of a read LAFITE model file (pipeline.generator.files.read_generator_file)."""
    return LafiteGenerator(model_from_file(payload, device), Conditioning.from_file(payload["conditioning"]))
