"""A trained LAFITE generator's file (pipeline/generator/files.py): the EMA generator's weights
and the config that rebuilds it, so sampling needs neither params.yaml nor the training code.
The discriminator is training-only and stays in the checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.generator.conditioning import Conditioning
from pipeline.generator.files import save_generator_file
from pipeline.lafite.networks import Discriminator, Generator


@dataclass(frozen=True)
class LafiteConfig:
    """The sizes of both networks (the discriminator shares resolution, channels and clip_dim)."""
    resolution: int
    z_dim: int
    w_dim: int
    mapping_layers: int
    channel_base: int
    channel_max: int
    clip_dim: int


def build_generator(config: LafiteConfig) -> Generator:
    return Generator(config.resolution, config.z_dim, config.w_dim, config.mapping_layers, config.channel_base,
                     config.channel_max, config.clip_dim)


def build_discriminator(config: LafiteConfig) -> Discriminator:
    return Discriminator(config.resolution, config.channel_base, config.channel_max, config.clip_dim)


def save_model(path: Path, generator: Generator, config: LafiteConfig, sources: dict[str, str],
               conditioning: Conditioning) -> None:
    """The trained (EMA) generator, w's running mean included (truncation needs it), with the
    pseudo-text setting that decides how prompts are fed to it."""
    save_generator_file(path, "lafite", {"config": asdict(config), "state_dict": generator.state_dict()},
                        sources, conditioning)


def model_from_file(payload: dict[str, Any], device: torch.device | str = "cpu") -> Generator:
    """The generator (eval mode) of a read model file."""
    generator = build_generator(LafiteConfig(**payload["config"]))
    generator.load_state_dict(payload["state_dict"])
    return generator.to(device).eval()
