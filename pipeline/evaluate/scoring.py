"""The evaluate stage's figures: Frechet distance (with a scrambled-token baseline),
CLIPScore, and text alignment judged by a world's CLIP-free checker."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pipeline.core.images import as_uint8_nchw, contact_sheet
from pipeline.evaluate.alignment import alignment_accuracy, random_real_floor
from pipeline.evaluate.metrics import clip_scores, fd_embedding, fid_inception
from pipeline.worlds.base import World

Embed = Callable[[torch.Tensor], np.ndarray]


def load_samples(folder: Path) -> tuple[pd.DataFrame, torch.Tensor]:
    """A sample folder's index and its images as uint8 (N, 3, H, W), in index order."""
    index = pd.read_parquet(folder / "index.parquet")
    return index, as_uint8_nchw([Image.open(folder / p) for p in index["path"]])


def scrambled_grids(codes: torch.Tensor, seed: int) -> torch.Tensor:
    """Real code grids with their positions shuffled: right codes, no layout (a baseline)."""
    generator = torch.Generator().manual_seed(seed)
    flat = codes.flatten(1)
    order = torch.argsort(torch.rand(flat.shape, generator=generator), dim=1)
    return torch.gather(flat, 1, order).view_as(codes)


def frechet(generated: torch.Tensor, reference: torch.Tensor, embed: Embed, inception_weights: str | None,
            batch_size: int) -> dict:
    """FID with local Inception weights, else the Frechet distance in CLIP space (never called FID)."""
    if inception_weights:
        return fid_inception(generated, reference, inception_weights, "val", batch_size=batch_size)
    return fd_embedding(generated, reference, embed, "val", space="clip", batch_size=batch_size)


def alignment(world: World, index: pd.DataFrame, images: torch.Tensor) -> dict:
    by = "wording" if "wording" in index else None
    names = list(world.attributes)
    return alignment_accuracy(world.classify(images), index[[*names, *([by] if by else [])]], names, by=by)


def text_alignment(world: World, index: pd.DataFrame, images: torch.Tensor,
                   full: tuple[pd.DataFrame, torch.Tensor] | None, real_labels: pd.DataFrame,
                   checker_images: int, checker_seed: int) -> dict:
    """Checker accuracy of generated images vs their prompts, the random-real floor, the
    checker's own accuracy, and the fast sampler against the full-T one on the same prompts.
    ``world`` must have a checker."""
    resolution = images.shape[-1]
    names = list(world.attributes)
    prompts = index.drop_duplicates("prompt_index")
    out = {"generated": alignment(world, index, images),
           "random_real_floor": random_real_floor(real_labels, prompts[names], names),
           "checker_on_real_renders": world.checker_accuracy(checker_images, checker_seed, resolution)}
    if full is not None:
        full_index, full_images = full
        same = index["prompt_index"].isin(full_index["prompt_index"]).to_numpy()
        out["fast_vs_full_t"] = {"fast": alignment(world, index[same], images[torch.tensor(same)]),
                                 "full_t": alignment(world, full_index, full_images)}
    return out


def clip_cosines(index: pd.DataFrame, images: torch.Tensor, embed: Embed, text_embeddings: np.ndarray) -> np.ndarray:
    """Each sample's CLIP cosine to its prompt (unit embeddings: the dot product), in index order."""
    return np.sum(embed(images) * text_embeddings[index["prompt_index"].to_numpy()], axis=-1)


def clip_score_summary(index: pd.DataFrame, cosine: np.ndarray) -> dict:
    """CLIPScore conventions, named: raw cosine and Hessel's 2.5 * max(cos, 0)."""
    return clip_scores(pd.DataFrame({"prompt": index["prompt_index"], "sample": index["sample"], "cosine": cosine}))


def rank_by_cosine(cosine: np.ndarray) -> np.ndarray:
    """(P, N) cosines -> rank of each sample within its prompt (0 = best)."""
    order = np.argsort(-cosine, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(cosine.shape[1])[None].repeat(len(cosine), 0), axis=1)
    return ranks


def samples_sheet(index: pd.DataFrame, images: torch.Tensor, cosine: np.ndarray, best_first: bool) -> bytes:
    """The contact sheet of the samples as PNG bytes: a row per prompt, best CLIP cosine first
    when ``best_first`` (the sample stage's own sheet keeps sample order)."""
    prompts = index.drop_duplicates("prompt_index")["prompt"].tolist()
    grid = images.view(len(prompts), -1, *images.shape[1:]).permute(0, 1, 3, 4, 2).numpy()
    if best_first:
        order = np.argsort(rank_by_cosine(cosine.reshape(len(prompts), -1)), axis=1)
        grid = np.take_along_axis(grid, order[:, :, None, None, None], axis=1)
    buffer = io.BytesIO()
    contact_sheet(grid, prompts).save(buffer, format="PNG")
    return buffer.getvalue()
