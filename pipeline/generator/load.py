"""Any generator's model file -> a ready Generator (pipeline/generator/sampling.py): the file's
``generator`` key picks the loader; code-grid generators get the tokenizer's decoder."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.clipgen.sampler import clipgen_generator
from pipeline.diffusion.generate import DiffusionGenerator
from pipeline.diffusion.model import model_from_file
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.files import read_generator_file
from pipeline.generator.sampling import Generator
from pipeline.lafite.sampler import lafite_generator
from pipeline.tokenizer.model import decode_all, load_vqgan


def load_generator(path: Path, tokenizer: Path, device: torch.device | str = "cpu") -> Generator:
    """The generator in ``path``; ``tokenizer`` decodes the codes of those that draw code grids."""
    payload = read_generator_file(path)
    kind = payload["generator"]
    if kind == "lafite":  # draws pixels: no tokenizer
        return lafite_generator(payload, device)
    vqgan = load_vqgan(tokenizer, device)

    def decode(codes: torch.Tensor) -> torch.Tensor:
        return decode_all(vqgan, codes, 256)

    conditioning = Conditioning.from_file(payload["conditioning"])
    if kind == "vqdiffusion":
        return DiffusionGenerator(*model_from_file(payload, device), decode, conditioning)
    if kind == "clipgen":
        return clipgen_generator(payload, decode, device)
    raise ValueError(f"{path}: unknown generator {kind!r}")
