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
from pipeline.diffusion.pseudo_text import ConditionMeans, Mode
from pipeline.diffusion.transformer import Transformer, TransformerConfig


def noise_schedule(n_codes: int, steps: int, abar_range: list[float], gbar_range: list[float]) -> Schedule:
    """The schedule from its [start, end] keep and mask probabilities, as params and model files give them."""
    return Schedule(n_codes, steps, abar_start=abar_range[0], abar_end=abar_range[1],
                    gbar_start=gbar_range[0], gbar_end=gbar_range[1])


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """How the model was conditioned, which decides how prompts must be given to it."""
    mode: Mode
    scale: float
    means: ConditionMeans | None  # C3's modality means; None for the other modes

    def to_file(self) -> dict[str, Any]:
        means = None if self.means is None else {"image": self.means.image.float().cpu(),
                                                   "text": self.means.text.float().cpu()}
        return {"mode": self.mode, "scale": self.scale, "means": means}

    @classmethod
    def from_file(cls, saved: dict[str, Any]) -> Conditioning:
        means = saved["means"]
        return cls(saved["mode"], saved["scale"], None if means is None else ConditionMeans(**means))


def save_model(path: Path, model: Transformer, config: TransformerConfig, abar_range: list[float],
               gbar_range: list[float], sources: dict[str, str], conditioning: Conditioning) -> None:
    """The trained (EMA) weights with everything needed to rebuild model and schedule, and
    the pseudo-text setting (with C3's means) that decides how prompts are fed to it."""
    payload = {"config": dataclasses.asdict(config), "state_dict": model.state_dict(),
               "schedule": {"abar_range": abar_range, "gbar_range": gbar_range},
               "sources": sources, "conditioning": conditioning.to_file()}
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: Path, device: torch.device | str = "cpu"
               ) -> tuple[Transformer, Schedule, dict[str, Any], Conditioning]:
    """Rebuild a saved transformer (eval mode), its noise schedule, the caches it was trained
    from and its conditioning."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no trained diffusion model; run the train stage (`dvc repro train`)")
    payload = load_tensors(path, "diffusion model")
    config = TransformerConfig(**payload["config"])
    model = Transformer(config)
    model.load_state_dict(payload["state_dict"])
    schedule = noise_schedule(config.n_codes, config.steps, **payload["schedule"])
    if "conditioning" not in payload:
        raise UserError(f"{path}: a model file from before pseudo-text settings were saved with it; "
                        "retrain it (`dvc repro train`)")
    return model.to(device).eval(), schedule, payload["sources"], Conditioning.from_file(payload["conditioning"])
