"""A trained diffusion model's file (pipeline/generator/files.py): the EMA transformer with what
rebuilds it and its noise schedule, so sampling needs neither params.yaml nor the training code."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from pipeline.diffusion.process import Schedule
from pipeline.diffusion.transformer import Transformer, TransformerConfig
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.files import read_generator_file, save_generator_file


def noise_schedule(n_codes: int, steps: int, abar_range: list[float], gbar_range: list[float]) -> Schedule:
    """The schedule from its [start, end] keep and mask probabilities, as params and model files give them."""
    return Schedule(n_codes, steps, abar_start=abar_range[0], abar_end=abar_range[1],
                    gbar_start=gbar_range[0], gbar_end=gbar_range[1])


def save_model(path: Path, model: Transformer, config: TransformerConfig, abar_range: list[float],
               gbar_range: list[float], sources: dict[str, str], conditioning: Conditioning) -> None:
    """The trained (EMA) weights with everything needed to rebuild model and schedule, and
    the pseudo-text setting (with C3's means) that decides how prompts are fed to it."""
    save_generator_file(path, "vqdiffusion", {"config": dataclasses.asdict(config), "state_dict": model.state_dict(),
                                              "schedule": {"abar_range": abar_range, "gbar_range": gbar_range}},
                        sources, conditioning)


def model_from_file(payload: dict[str, Any], device: torch.device | str = "cpu") -> tuple[Transformer, Schedule]:
    """The transformer (eval mode) and noise schedule of a read model file."""
    config = TransformerConfig(**payload["config"])
    model = Transformer(config)
    model.load_state_dict(payload["state_dict"])
    schedule = noise_schedule(config.n_codes, config.steps, **payload["schedule"])
    return model.to(device).eval(), schedule


def load_model(path: Path, device: torch.device | str = "cpu"
               ) -> tuple[Transformer, Schedule, dict[str, Any], Conditioning]:
    """Rebuild a saved transformer (eval mode), its noise schedule, the caches it was trained
    from and its conditioning."""
    payload = read_generator_file(path, "vqdiffusion")
    model, schedule = model_from_file(payload, device)
    return model, schedule, payload["sources"], Conditioning.from_file(payload["conditioning"])
