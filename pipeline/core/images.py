"""One normaliser for image batches, whatever form they come in."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

ImageBatch = np.ndarray | torch.Tensor | Sequence[Image.Image]


def as_uint8_nchw(images: ImageBatch) -> torch.Tensor:
    """(N, 3, H, W) uint8 on the CPU from PIL images or NHWC/NCHW arrays and tensors
    (values that are not uint8 are read on the 0-255 scale and rounded)."""
    if not isinstance(images, (np.ndarray, torch.Tensor)):
        images = np.stack([np.asarray(im.convert("RGB")) for im in images]) if len(images) else np.zeros((0, 1, 1, 3))
    images = torch.as_tensor(np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images))
    if images.ndim != 4 or 3 not in (images.shape[1], images.shape[3]):
        raise ValueError(f"expected (N, H, W, 3) or (N, 3, H, W) images, got shape {tuple(images.shape)}")
    if images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    if images.dtype != torch.uint8:
        images = images.float().round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()
