"""The generate command's files: prompts read from a text file, each image as its own PNG named
by prompt and sample index, and one grid of them all, a row per prompt, labelled with the prompt.

Kept apart from sample_set.py so that the sample stage's code, and so its DVC result, does not
change with what this command writes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from pipeline.core.atomic import atomic_file

GRID = "grid.png"
PAD = 4  # pixels around labels and between cells


def parse_prompts(text: str) -> list[str]:
    """One prompt per line; blank lines and lines starting with # are skipped."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def labelled_grid(rows: list[tuple[str, list[Image.Image]]], min_cell: int = 64) -> Image.Image:
    """A row per (label, images): the label in a strip on the left, then the images.

    Images are upscaled (nearest, by a whole factor, so pixels stay sharp) until their side is
    at least ``min_cell``, so a 32 px sample sits beside a label that can be read.
    """
    if not rows or not all(images for _, images in rows):
        raise ValueError("a grid needs at least one row, each with at least one image")
    width, height = rows[0][1][0].size
    scale = math.ceil(min_cell / min(width, height))
    cell_w, cell_h = width * scale, height * scale
    font = ImageFont.load_default(size=12)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(measure.textlength(label, font=font) for label, _ in rows)
    strip = math.ceil(label_w) + 2 * PAD
    columns = max(len(images) for _, images in rows)
    grid = Image.new("RGB", (strip + columns * (cell_w + PAD), len(rows) * (cell_h + PAD) + PAD), "white")
    draw = ImageDraw.Draw(grid)
    for r, (label, images) in enumerate(rows):
        top = PAD + r * (cell_h + PAD)
        draw.text((PAD, top + cell_h // 2), label, fill="black", font=font, anchor="lm")
        for c, image in enumerate(images):
            tile = image.convert("RGB").resize((cell_w, cell_h), Image.Resampling.NEAREST)
            grid.paste(tile, (strip + c * (cell_w + PAD), top))
    return grid


def write_generated(folder: Path, prompts: list[str], images: torch.Tensor) -> tuple[list[str], Path]:
    """uint8 images (P, N, 3, H, W) -> ``folder/pPP_sSS.png`` each and ``folder/grid.png``; each
    prompt's file pattern (``pPP_s*.png``) and the grid's path.

    Each file is written atomically on its own: the folder is the user's and may hold other
    files, so it is never replaced as a whole.
    """
    digits = [max(2, len(str(count - 1))) for count in images.shape[:2]]
    patterns, rows = [], []
    for p, (prompt, batch) in enumerate(zip(prompts, images, strict=True)):
        pictures = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in batch]
        for n, picture in enumerate(pictures):
            _save(picture, folder / f"p{p:0{digits[0]}d}_s{n:0{digits[1]}d}.png")
        patterns.append(f"p{p:0{digits[0]}d}_s*.png")
        rows.append((prompt, pictures))
    _save(labelled_grid(rows), folder / GRID)
    return patterns, folder / GRID


def _save(image: Image.Image, path: Path) -> None:
    with atomic_file(path) as tmp:
        image.save(tmp, format="PNG", compress_level=6)
