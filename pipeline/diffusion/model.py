"""A trained diffusion model's file: the EMA transformer with what rebuilds it and its noise
schedule, so sampling needs neither params.yaml nor the training code."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from pipeline.core.atomic import atomic_file
from pipeline.core.errors import UserError
from pipeline.core.torch_files import load_tensors
from pipeline.diffusion.process import Schedule
from pipeline.diffusion.transformer import Transformer, TransformerConfig


def noise_schedule(n_codes: int, steps: int, abar_range: list[float], gbar_range: list[float]) -> Schedule:
    """The schedule from its [start, end] keep and mask probabilities, as params and model files give them."""
    return Schedule(n_codes, steps, abar_start=abar_range[0], abar_end=abar_range[1],
                    gbar_start=gbar_range[0], gbar_end=gbar_range[1])


def save_model(path: Path, model: Transformer, config: TransformerConfig, abar_range: list[float],
               gbar_range: list[float], sources: dict[str, str]) -> None:
    """The trained (EMA) weights with everything needed to rebuild model and schedule."""
    payload = {"config": dataclasses.asdict(config), "state_dict": model.state_dict(),
               "schedule": {"abar_range": abar_range, "gbar_range": gbar_range},
               "sources": sources}
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[Transformer, Schedule, dict[str, Any]]:
    """Rebuild a saved transformer (eval mode) and its noise schedule."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no trained diffusion model; run the train stage (`dvc repro train`)")
    payload = load_tensors(path, "diffusion model")
    config = TransformerConfig(**payload["config"])
    model = Transformer(config)
    model.load_state_dict(payload["state_dict"])
    schedule = noise_schedule(config.n_codes, config.steps, **payload["schedule"])
    return model.to(device).eval(), schedule, payload["sources"]
