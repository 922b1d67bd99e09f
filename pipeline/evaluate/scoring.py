"""The evaluate stage's figures: FID and KID where the Inception weights are at hand, else
the Frechet and kernel distances in the scoring CLIP's space (with a scrambled-token baseline),
CLIPScore, and text alignment judged by a world's CLIP-free checker."""

from __future__ import annotations

import io
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pipeline.core.errors import UserError
from pipeline.core.images import as_uint8_nchw, contact_sheet
from pipeline.evaluate.alignment import alignment_accuracy, named_alignment, named_real_floor, random_real_floor
from pipeline.evaluate.metrics import clip_scores, fd_embedding, fetch_inception_weights, fid_inception
from pipeline.judge.checker import Checker
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


def inception_for_fid(setting: str | None, say: Callable[[str], None]) -> Path | None:
    """The Inception-v3 weights file for a true FID, or None for the scoring CLIP's distances.

    ``auto`` takes torch-fidelity's own weights (downloaded once, then cached); where they cannot
    be had (offline) it ``say``s so in one line and falls back, rather than failing a run whose
    other figures need no network. A path must name a file: checked before any scoring starts.
    """
    if setting is None:
        return None
    if setting != "auto":
        if not Path(setting).is_file():
            raise UserError(f"evaluate.inception_weights = {setting!r}: no such file; put the Inception-v3 weights "
                            "there, or set it to auto (torch-fidelity's, downloaded) or null (scoring CLIP only)")
        return Path(setting)
    try:
        return fetch_inception_weights()
    except (OSError, HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        say(f"evaluate: cannot fetch torch-fidelity's Inception weights ({reason}); reporting the scoring CLIP's "
            "Frechet and kernel distances (fd_clip, kd_clip) instead of FID and KID")
        return None


def frechet(generated: torch.Tensor, reference: torch.Tensor, embed: Embed, inception: Path | None,
            batch_size: int) -> dict:
    """FID and KID with the Inception weights, else the Frechet and kernel distances in the
    scoring CLIP's space (``fd_clip``, ``kd_clip_*``, never called FID or KID)."""
    if inception is not None:
        return fid_inception(generated, reference, inception, "val", batch_size=batch_size)
    return fd_embedding(generated, reference, embed, "val", space="clip", batch_size=batch_size)


# The evaluation prompt sets a prompts file may mark (columns ``set`` and ``split``; see
# pipeline/worlds/shapes/prompts.py), named as the scorecard names them.
PROMPT_SETS = {"seen": ("canonical", "seen"), "heldout": ("canonical", "heldout"),
               "new_wording": ("new_wording", "seen"), "partial": ("partial", "seen")}


def prompt_sets(index: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row masks of each prompt set present in a samples index; without ``set``/``split``
    columns every row is one set, ``all``."""
    if not {"set", "split"} <= set(index.columns):
        return {"all": np.ones(len(index), dtype=bool)}
    masks = {name: ((index["set"] == kind) & (index["split"] == split)).to_numpy()
             for name, (kind, split) in PROMPT_SETS.items()}
    return {name: mask for name, mask in masks.items() if mask.any()}


def alignment(classify: Checker, names: list[str], index: pd.DataFrame, images: torch.Tensor) -> dict:
    """Checker accuracy of samples against prompts naming every attribute."""
    return alignment_accuracy(classify(images), index[names], names)


def best_of_n_pool(index: pd.DataFrame) -> np.ndarray:
    """Row mask of the samples a best of N chooses from: each prompt's first N, N the fewest any
    prompt has, so held-out prompts sampled more often are still judged by the best of N."""
    n = index.groupby("prompt_index")["sample"].size().min()
    return (index["sample"] < n).to_numpy()


def best_of_n(index: pd.DataFrame, cosine: np.ndarray) -> np.ndarray:
    """Row mask of each prompt's sample the scoring CLIP ranks first (the papers' best of N)."""
    pool = best_of_n_pool(index)
    best = pd.Series(cosine[pool], index=index.index[pool]).groupby(index["prompt_index"].to_numpy()[pool]).idxmax()
    return index.index.isin(best.to_numpy())


def text_alignment(world: World, classify: Checker, index: pd.DataFrame, images: torch.Tensor, cosine: np.ndarray,
                   full: tuple[pd.DataFrame, torch.Tensor] | None, real_labels: pd.DataFrame) -> dict:
    """Per prompt set: checker accuracy of generated images vs their prompts (partial prompts:
    only what they name, plus the entropy of the rest), the same over each prompt's best sample
    by the scoring CLIP's ``cosine`` (``best_of_n``), and the random-real floor; and the fast
    sampler against the full-T one on the same prompts."""
    names = list(world.attributes)
    predicted = pd.DataFrame(classify(images))
    best = best_of_n(index, cosine)
    out: dict = {}
    for name, mask in prompt_sets(index).items():
        labels = index.loc[mask, names].astype(str)
        prompts = index[mask].drop_duplicates("prompt_index")[names].astype(str)
        top = mask & best
        if name == "partial":
            out[name] = {"generated": named_alignment(predicted[mask], labels, world.attributes),
                         "best_of_n": named_alignment(predicted[top], index.loc[top, names].astype(str),
                                                      world.attributes),
                         "random_real_floor": {"named_all": named_real_floor(real_labels, prompts, names)}}
        else:
            out[name] = {"generated": alignment_accuracy(predicted[mask], labels, names),
                         "best_of_n": alignment_accuracy(predicted[top], index.loc[top, names].astype(str), names),
                         "random_real_floor": random_real_floor(real_labels, prompts, names)}
        out[name]["n_prompts"] = int(len(prompts))
    if full is not None:
        full_index, full_images = full
        same = index["prompt_index"].isin(full_index["prompt_index"]).to_numpy()
        complete = (full_index[names].astype(str) != "").all(axis=1).to_numpy()
        keep = same & (index[names].astype(str) != "").all(axis=1).to_numpy()
        out["fast_vs_full_t"] = {"fast": alignment(classify, names, index[keep], images[torch.tensor(keep)]),
                                 "full_t": alignment(classify, names, full_index[complete],
                                                     full_images[torch.tensor(complete)])}
    return out


def clip_cosines(index: pd.DataFrame, image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Each sample's CLIP cosine to its prompt (unit embeddings: the dot product), in index order;
    ``text_embeddings`` has one row per prompt index."""
    return np.sum(image_embeddings * text_embeddings[index["prompt_index"].to_numpy()], axis=-1)


def clip_score_summary(index: pd.DataFrame, cosine: np.ndarray) -> dict:
    """CLIPScore conventions, named: raw cosine and Hessel's 2.5 * max(cos, 0); the best of N
    over ``best_of_n_pool``."""
    scores = pd.DataFrame({"prompt": index["prompt_index"], "sample": index["sample"], "cosine": cosine})
    return clip_scores(scores, best_of=best_of_n_pool(index))


def rank_by_cosine(cosine: np.ndarray) -> np.ndarray:
    """(P, N) cosines -> rank of each sample within its prompt (0 = best)."""
    order = np.argsort(-cosine, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(cosine.shape[1])[None].repeat(len(cosine), 0), axis=1)
    return ranks


def samples_sheet(index: pd.DataFrame, images: torch.Tensor, cosine: np.ndarray, best_first: bool,
                  per_prompt: int) -> bytes:
    """The contact sheet of the samples as PNG bytes: a row per prompt, its first ``per_prompt``
    samples, or its best ``per_prompt`` by CLIP cosine when ``best_first`` (the sample stage's own
    sheet keeps sample order). Rows of ``index`` are prompt-major, as the sample stage writes them."""
    prompts = index.drop_duplicates("prompt_index")["prompt"].tolist()
    grid = images.view(len(prompts), -1, *images.shape[1:]).permute(0, 1, 3, 4, 2).numpy()
    if best_first:
        order = np.argsort(rank_by_cosine(cosine.reshape(len(prompts), -1)), axis=1)
        grid = np.take_along_axis(grid, order[:, :, None, None, None], axis=1)
    grid = grid[:, :per_prompt]
    buffer = io.BytesIO()
    contact_sheet(grid, prompts).save(buffer, format="PNG")
    return buffer.getvalue()
