"""Pseudo text embeddings: noisy CLIP image embeddings that stand in for text embeddings.

Training conditions on h' near the image embedding h so the generator accepts the whole
neighbourhood of h, which the (different) text embedding of a matching prompt falls into.
C3 instead removes the gap itself: both modalities' mean embeddings are subtracted (the
means are measured once and kept in the model file), and only then is noise added.
Condition dropout for classifier-free guidance is decided here as a boolean mask; the model
swaps in its own learnable null embedding where the mask is True.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.core.rng import normal, uniform

Mode = Literal["none", "clipvq", "lafite", "c3"]
# The settings the ablation (t2i ablation) trains, and reports/clip.json measures: CLIP-VQDiffusion's
# a for COCO, FFHQ and above; LAFITE's xi of its released language-free code; C3 at noise 0.5.
ABLATION: tuple[tuple[Mode, float], ...] = (
    ("none", 0.0), ("clipvq", 0.25), ("clipvq", 0.5), ("clipvq", 0.75), ("lafite", 3.0), ("c3", 0.5))


@dataclass(frozen=True)
class ConditionMeans:
    """Mean CLIP image embedding of the training images and mean text embedding (C3)."""
    image: Tensor  # (D,)
    text: Tensor  # (D,)


def setting_name(mode: Mode, scale: float) -> str:
    """'none', 'clipvq-0.5', 'lafite-3.0', 'c3-0.5': how reports name a pseudo-text setting."""
    return "none" if mode == "none" else f"{mode}-{scale:g}"


def _needs_means(mode: Mode, means: ConditionMeans | None) -> ConditionMeans:
    if means is None:
        raise ValueError(f"pseudo-text mode {mode!r} needs the image and text mean embeddings")
    return means


def perturb(h: Tensor, mode: Mode, scale: float, generator: torch.Generator | None = None,
            means: ConditionMeans | None = None) -> Tensor:
    """(B, D) embeddings -> pseudo text embeddings (B, D), float32.

    clipvq: normalise(normalise(h) + scale * eps/||eps||)          (CLIP-VQDiffusion, a)
    lafite: normalise(h + scale * eps * ||h||/||eps||)              (LAFITE fixed, xi)
    c3:     normalise(normalise(h - mean_image) + scale * eps/sqrt(D))  (C3, sigma: the noise's expected norm)
    none:   h unchanged.
    For unit h the clipvq and lafite forms coincide; LAFITE's is also invariant to the scale of h.
    """
    h = h.float()
    if mode == "none":
        return h
    if mode not in ("clipvq", "lafite", "c3"):
        raise ValueError(f"pseudo-text mode must be 'none', 'clipvq', 'lafite' or 'c3', got {mode!r}")
    if mode == "c3":
        centred = F.normalize(h - _needs_means(mode, means).image.to(h.device, torch.float32), dim=-1)
        if scale == 0:
            return centred
        noise = normal(tuple(h.shape), h.device, generator) / h.shape[-1] ** 0.5
        return F.normalize(centred + scale * noise, dim=-1)
    if scale == 0:
        return F.normalize(h, dim=-1)
    eps = normal(tuple(h.shape), h.device, generator)
    direction = eps / eps.norm(dim=-1, keepdim=True)
    if mode == "clipvq":
        return F.normalize(F.normalize(h, dim=-1) + scale * direction, dim=-1)
    return F.normalize(h + scale * h.norm(dim=-1, keepdim=True) * direction, dim=-1)


def inference_condition(text: Tensor, mode: Mode, means: ConditionMeans | None = None) -> Tensor:
    """(P, D) prompt text embeddings -> the conditions the generator samples from: the
    embeddings themselves, or for C3 with the text mean removed (renormalised)."""
    text = text.float()
    if mode != "c3":
        return text
    return F.normalize(text - _needs_means(mode, means).text.to(text.device, torch.float32), dim=-1)


def drop_mask(batch: int, p: float, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """(B,) bool, each True with probability p: use the null embedding for that sample."""
    return uniform((batch,), device, generator) < p


def pseudo_text(h: Tensor, mode: Mode, scale: float, p_drop: float, generator: torch.Generator | None = None,
                means: ConditionMeans | None = None) -> tuple[Tensor, Tensor]:
    """Training condition for a batch of image embeddings: (embeddings, drop mask)."""
    return perturb(h, mode, scale, generator, means), drop_mask(h.shape[0], p_drop, h.device, generator)
