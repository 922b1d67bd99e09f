"""The sample stage's output: every evaluation prompt sampled by the generator from its CLIP text
embedding (VQ-Diffusion: fast, skip-step, and for the first few prompts with all T steps too);
PNGs, an index with the prompts' labels and seeds, a contact sheet.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pipeline.core.images import contact_sheet
from pipeline.core.params import SampleParams
from pipeline.generator.sampling import Generator, generate_images, settings_from

FULL_T = "full_t"  # the sample stage's subfolder of prompts also sampled with all T steps


def write_pngs(folder: Path, images: torch.Tensor) -> list[str]:
    """uint8 images (P, N, 3, H, W) -> ``folder/PPPP_NNN.png``; the names, prompt-major."""
    names = []
    for p in range(images.shape[0]):
        for n in range(images.shape[1]):
            name = f"{p:04d}_{n:03d}.png"
            Image.fromarray(images[p, n].permute(1, 2, 0).numpy()).save(folder / name, compress_level=6)
            names.append(name)
    return names


def sample_prompt_set(model: Generator, prompts: pd.DataFrame, conditions: torch.Tensor, params: SampleParams,
                      folder: Path) -> dict[str, dict]:
    """Write the samples of every prompt, from its condition (row of ``conditions``), into ``folder``
    (FULL_T/ for the all-T pass) with a contact sheet in sample order; return each pass's speed.
    Scoring them is the evaluate stage's job."""
    conditions = conditions.to(model.device, torch.float32, copy=True)  # a copy: an Arrow view is read-only
    passes = {"fast": (params.steps, len(prompts))}
    if model.full_steps is not None:  # a generator with a steps setting: compare it with all of them
        passes[FULL_T] = (None, min(params.full_steps_prompts, len(prompts)))
    timing = {}
    for name, (steps, count) in passes.items():
        if count == 0:
            continue
        start = time.perf_counter()
        images, seeds = generate_images(model, conditions[:count], params.samples_per_prompt,
                                        settings_from(params, steps), params.seed, desc=f"sample {name}")
        seconds = time.perf_counter() - start
        n_images = images.shape[0] * images.shape[1]
        timing[name] = {"steps": steps or model.full_steps, "images": n_images, "seconds": round(seconds, 2),
                        "images_per_second": round(n_images / seconds, 3)}
        out = folder if name == "fast" else folder / FULL_T
        out.mkdir(exist_ok=True)
        _write_index(out, prompts, images, seeds)
        if name == "fast":
            contact_sheet(images.permute(0, 1, 3, 4, 2).numpy(), prompts["prompt"].tolist()[:count]).save(
                folder / "contact_sheet.png")
    return timing


def _write_index(folder: Path, prompts: pd.DataFrame, images: torch.Tensor, seeds: list[int]) -> None:
    count, per_prompt = images.shape[:2]
    index = prompts.iloc[np.repeat(np.arange(count), per_prompt)].reset_index(drop=True)
    index.insert(0, "prompt_index", np.repeat(np.arange(count), per_prompt))
    index.insert(2, "sample", np.tile(np.arange(per_prompt), count))
    index.insert(3, "seed", np.repeat(seeds, per_prompt))
    index["path"] = write_pngs(folder, images)
    index.to_parquet(folder / "index.parquet", index=False)
