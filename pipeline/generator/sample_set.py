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


def write_pngs(folder: Path, images: torch.Tensor, first_prompt: int = 0) -> list[str]:
    """uint8 images (P, N, 3, H, W) -> ``folder/PPPP_NNN.png``, P counted from ``first_prompt``;
    the names, prompt-major."""
    names = []
    for p in range(images.shape[0]):
        for n in range(images.shape[1]):
            name = f"{first_prompt + p:04d}_{n:03d}.png"
            Image.fromarray(images[p, n].permute(1, 2, 0).numpy()).save(folder / name, compress_level=6)
            names.append(name)
    return names


def samples_per_prompt(prompts: pd.DataFrame, params: SampleParams) -> np.ndarray:
    """How many samples each prompt gets: ``samples_per_prompt``, or for held-out prompts
    ``heldout_samples_per_prompt`` where set (few held-out prompts need more samples for a
    tight interval)."""
    counts = np.full(len(prompts), params.samples_per_prompt)
    if params.heldout_samples_per_prompt is not None and "split" in prompts:
        counts[(prompts["split"] == "heldout").to_numpy()] = params.heldout_samples_per_prompt
    return counts


def runs_of(counts: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of consecutive prompts with the same count."""
    edges = [0, *(np.flatnonzero(np.diff(counts)) + 1).tolist(), len(counts)]
    return list(zip(edges[:-1], edges[1:]))


def sample_prompt_set(model: Generator, prompts: pd.DataFrame, conditions: torch.Tensor, params: SampleParams,
                      folder: Path) -> dict[str, dict]:
    """Write the samples of every prompt, from its condition (row of ``conditions``), into ``folder``
    (FULL_T/ for the all-T pass, ``samples_per_prompt`` each) with a contact sheet in sample order;
    return each pass's speed. Scoring them is the evaluate stage's job."""
    conditions = conditions.to(model.device, torch.float32, copy=True)  # a copy: an Arrow view is read-only
    passes = {"fast": (params.steps, samples_per_prompt(prompts, params))}
    if model.full_steps is not None:  # a generator with a steps setting: compare it with all of them
        passes[FULL_T] = (None, np.full(min(params.full_steps_prompts, len(prompts)), params.samples_per_prompt))
    timing = {}
    for name, (steps, counts) in passes.items():
        if len(counts) == 0:
            continue
        out = folder if name == "fast" else folder / FULL_T
        out.mkdir(exist_ok=True)
        start = time.perf_counter()
        indexes, sheet = [], []
        for first, stop in runs_of(counts):
            images, seeds = generate_images(model, conditions[first:stop], int(counts[first]),
                                            settings_from(params, steps), params.seed, desc=f"sample {name}",
                                            first_index=first, chunk=params.samples_per_prompt)
            indexes.append(_index(out, prompts.iloc[first:stop], first, images, seeds))
            sheet.append(images[:, :int(counts.min())])
        seconds = time.perf_counter() - start
        n_images = int(counts.sum())
        timing[name] = {"steps": steps or model.full_steps, "images": n_images, "seconds": round(seconds, 2),
                        "images_per_second": round(n_images / seconds, 3)}
        pd.concat(indexes, ignore_index=True).to_parquet(out / "index.parquet", index=False)
        if name == "fast":
            contact_sheet(torch.cat(sheet).permute(0, 1, 3, 4, 2).numpy(), prompts["prompt"].tolist()).save(
                folder / "contact_sheet.png")
    return timing


def _index(folder: Path, prompts: pd.DataFrame, first: int, images: torch.Tensor, seeds: list[int]) -> pd.DataFrame:
    """Write one run of prompts' PNGs; their rows of the index (prompt indices from ``first``)."""
    count, per_prompt = images.shape[:2]
    index = prompts.iloc[np.repeat(np.arange(count), per_prompt)].reset_index(drop=True)
    index.insert(0, "prompt_index", np.repeat(np.arange(first, first + count), per_prompt))
    index.insert(2, "sample", np.tile(np.arange(per_prompt), count))
    index.insert(3, "seed", np.repeat(seeds, per_prompt))
    index["path"] = write_pngs(folder, images, first)
    return index
