"""The VQ-Diffusion generator behind the sampling interface: reverse diffusion to code grids, then
the tokenizer's decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.diffusion.process import Schedule
from pipeline.diffusion.sampler import sample
from pipeline.diffusion.transformer import Transformer
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.sampling import Decode, SamplingSettings


@dataclass
class DiffusionGenerator:
    """A trained transformer, its noise schedule and the tokenizer's decoder (pipeline.generator.sampling.Generator)."""
    model: Transformer
    schedule: Schedule
    decode: Decode
    conditioning: Conditioning
    kind: str = "vqdiffusion"
    uses_guidance: bool = True

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def full_steps(self) -> int:
        return self.schedule.steps

    def num_params(self) -> int:
        return self.model.num_params()

    def images(self, cond: torch.Tensor | None, n: int, settings: SamplingSettings,
               generator: torch.Generator) -> torch.Tensor:
        codes = sample(self.model, self.schedule, cond, n=n, steps=settings.steps, guidance=settings.guidance,
                       truncation=settings.truncation, purity=settings.purity,
                       purity_sharpen=settings.purity_sharpen, generator=generator)
        return self.decode(codes).cpu()
