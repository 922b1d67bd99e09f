"""Pseudo text embeddings: noisy CLIP image embeddings that stand in for text embeddings.

Training conditions on h' near the image embedding h so the generator accepts the whole
neighbourhood of h, which the (different) text embedding of a matching prompt falls into.
Condition dropout for classifier-free guidance is decided here as a boolean mask; the model
swaps in its own learnable null embedding where the mask is True.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.core.rng import normal, uniform

Mode = Literal["clipvq", "lafite", "none"]


def perturb(h: Tensor, mode: Mode, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """(B, D) embeddings -> pseudo text embeddings (B, D), float32.

    clipvq: normalise(normalise(h) + scale * eps/||eps||)     (CLIP-VQDiffusion, a)
    lafite: normalise(h + scale * eps * ||h||/||eps||)         (LAFITE fixed, xi)
    none:   h unchanged.
    For unit h the two noisy forms coincide; LAFITE's is also invariant to the scale of h.
    """
    h = h.float()
    if mode == "none":
        return h
    eps = normal(tuple(h.shape), h.device, generator)
    direction = eps / eps.norm(dim=-1, keepdim=True)
    if mode == "clipvq":
        return F.normalize(F.normalize(h, dim=-1) + scale * direction, dim=-1)
    if mode == "lafite":
        return F.normalize(h + scale * h.norm(dim=-1, keepdim=True) * direction, dim=-1)
    raise ValueError(f"pseudo-text mode must be 'clipvq', 'lafite' or 'none', got {mode!r}")


def drop_mask(batch: int, p: float, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """(B,) bool, each True with probability p: use the null embedding for that sample."""
    return uniform((batch,), device, generator) < p


def pseudo_text(h: Tensor, mode: Mode, scale: float, p_drop: float,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Training condition for a batch of image embeddings: (embeddings, drop mask)."""
    return perturb(h, mode, scale, generator), drop_mask(h.shape[0], p_drop, h.device, generator)
