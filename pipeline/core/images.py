"""Image batches: one normaliser for whatever form they come in, and the contact sheet that
lays them out a row per prompt."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

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


def contact_sheet(images: np.ndarray, labels: list[str], cell: int = 64, label_width: int = 300) -> Image.Image:
    """One row per prompt: its label, then its samples (images: (P, N, H, W, 3) uint8)."""
    rows, columns = images.shape[:2]
    sheet = Image.new("RGB", (label_width + columns * cell, rows * cell), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for r in range(rows):
        draw.text((4, r * cell + cell // 2), labels[r], fill="black", font=font, anchor="lm")
        for c in range(columns):
            tile = Image.fromarray(images[r, c]).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (label_width + c * cell, r * cell))
    return sheet
