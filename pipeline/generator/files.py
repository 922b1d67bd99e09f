"""A generator's model file: one torch file whose ``generator`` key says which generator wrote it,
beside the ``conditioning`` and the ``sources`` (caches) every generator keeps, so the sample,
tradeoff, generate and compare commands load any of them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.core.atomic import atomic_file
from pipeline.core.errors import UserError
from pipeline.core.torch_files import load_tensors
from pipeline.generator.conditioning import Conditioning

KINDS = ("vqdiffusion", "lafite", "clipgen")


def save_generator_file(path: Path, kind: str, payload: dict[str, Any], sources: dict[str, str],
                        conditioning: Conditioning) -> None:
    """Write ``payload`` (the generator's own keys) with the shared ones, atomically."""
    if kind not in KINDS:
        raise ValueError(f"generator kind must be one of {KINDS}, got {kind!r}")
    with atomic_file(path) as tmp:
        torch.save({**payload, "generator": kind, "sources": sources, "conditioning": conditioning.to_file()}, tmp)


def read_generator_file(path: Path, kind: str | None = None) -> dict[str, Any]:
    """A model file's contents; with ``kind``, a clear error when another generator wrote it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no trained generator; run the train stage (`dvc repro train`)")
    payload = load_tensors(path, "generator model")
    if "conditioning" not in payload:
        raise UserError(f"{path}: a model file from before pseudo-text settings were saved with it; "
                        "retrain it (`dvc repro train`)")
    payload.setdefault("generator", "vqdiffusion")  # files from before there was a choice
    if kind is not None and payload["generator"] != kind:
        raise UserError(f"{path}: a {payload['generator']} model, not a {kind} one")
    return payload
