"""Trade-off curves, the plot generators are compared by: text alignment against the Frechet
distance as classifier-free guidance and truncation change.

Two lines through the sample stage's setting: guidance swept at its truncation, truncation at
its guidance. Every point samples the same prompts from the same seeds, so points differ by
their setting alone; a setting both lines pass through is sampled and scored once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm import tqdm

from pipeline.core.errors import UserError
from pipeline.core.params import SampleParams
from pipeline.data.shards import decode_pngs
from pipeline.evaluate.metrics import fd_embedding
from pipeline.evaluate.scoring import Embed, alignment, prompt_sets
from pipeline.generator.sampling import Generator, generate_images, settings_from
from pipeline.judge.checker import Checker
from pipeline.worlds.base import World
from pipeline.worlds.registry import world_of

COLUMNS = ["sweep", "guidance", "truncation", "align_all", "align_low", "align_high", "fd_scorer_clip", "n"]


@dataclass(frozen=True)
class SweepPoint:
    sweep: str  # the line it lies on: "guidance" or "truncation"
    guidance: float
    truncation: float


def sweep_points(guidance: Sequence[float], truncation: Sequence[float], at_guidance: float,
                 at_truncation: float) -> list[SweepPoint]:
    """The guidance line at ``at_truncation``, then the truncation line at ``at_guidance``, each
    in the order given without repeats; the point where they cross stays on both lines."""
    points = [SweepPoint("guidance", value, at_truncation) for value in dict.fromkeys(guidance)]
    points += [SweepPoint("truncation", at_guidance, value) for value in dict.fromkeys(truncation)]
    if not points:
        raise UserError("tradeoff.guidance and tradeoff.truncation are both empty: list the values to sweep")
    return points


def prompt_set_rows(prompts: pd.DataFrame, name: str) -> np.ndarray:
    """Row mask of the prompt set ``name``; a prompts file without sets is used whole."""
    sets = prompt_sets(prompts)
    mask = sets.get(name, sets.get("all"))
    if mask is None:
        raise UserError(f"tradeoff.prompt_set = {name!r}: the prompt embeddings hold no such prompts, only "
                        f"{', '.join(sets)}")
    return mask


def fd_count(fd_images: int | None, per_point: int) -> int:
    """N of every Frechet distance: ``fd_images``, or every sample of a point when None."""
    n = fd_images or per_point
    if n > per_point:
        raise UserError(f"tradeoff.fd_images = {n}: a point has only {per_point} samples (prompts x "
                        "tradeoff.samples_per_prompt)")
    return n


def real_sets(val: pa.Table, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` held-out images, the reference every point is measured against (evaluate's
    too), and the next ``n``, for the real-vs-real floor at the same N."""
    if len(val) < 2 * n:
        raise UserError(f"the trade-off's Frechet distances need 2 x {n} held-out (val) images and the ingest "
                        f"has {len(val)}: lower tradeoff.fd_images or tradeoff.samples_per_prompt")
    return decode_pngs(val.slice(0, n)["image"].to_pylist()), decode_pngs(val.slice(n, n)["image"].to_pylist())


def checker_world(data_columns: Iterable[str], prompt_columns: Iterable[str]) -> World | None:
    """The world of the data when the prompts carry its labels (its judge scores alignment);
    None: alignment is left blank."""
    world = world_of(data_columns)
    if world is None or not set(world.attributes) <= set(prompt_columns):
        return None
    return world


def draw_point(model: Generator, conditions: torch.Tensor, sample: SampleParams, samples_per_prompt: int, seed: int,
               guidance: float, truncation: float) -> torch.Tensor:
    """uint8 images (P, N, 3, H, W) by the sample stage's sampler and settings, at ``guidance``
    and ``truncation``."""
    settings = settings_from(dataclasses.replace(sample, guidance=guidance, truncation=truncation), sample.steps)
    images, _ = generate_images(model, conditions, samples_per_prompt, settings, seed,
                                desc="tradeoff sample")
    return images


@dataclass(frozen=True)
class Scoring:
    """What every point is scored against."""
    embed: Embed  # the scoring CLIP's image embedding
    reference: torch.Tensor  # N real held-out images
    prompts: pd.DataFrame  # the prompts sampled, in order, with their label columns
    classify: Checker | None  # the world's CLIP-free judge; None: alignment left blank
    names: list[str]  # the attributes it reads
    batch_size: int


def _fd(images: torch.Tensor, scoring: Scoring) -> float:
    return fd_embedding(images, scoring.reference, scoring.embed, "val", space="clip",
                        batch_size=scoring.batch_size)["fd_clip"]


def score_point(images: torch.Tensor, scoring: Scoring) -> dict[str, float | int]:
    """Alignment of every sample (all attributes right, with its 95% Wilson interval) and the
    Frechet distance of N samples to the N reference images. The N are taken sample-major
    (every prompt's first sample, then its second, ...), so every prompt counts when N is smaller."""
    n = len(scoring.reference)
    row: dict[str, float | int] = {"fd_scorer_clip": _fd(images.transpose(0, 1).flatten(0, 1)[:n], scoring),
                                   "n": images.shape[0] * images.shape[1]}
    if scoring.classify is not None:
        labels = scoring.prompts.iloc[np.repeat(np.arange(images.shape[0]), images.shape[1])]
        figures = alignment(scoring.classify, scoring.names, labels, images.flatten(0, 1))
        row |= {"align_all": figures["all"], "align_low": figures["all_ci95"][0], "align_high": figures["all_ci95"][1]}
    return row


def real_floor(others: torch.Tensor, scoring: Scoring) -> float:
    """The Frechet distance of N other real held-out images to the reference: what N alone costs."""
    return _fd(others, scoring)


def run_sweep(points: Sequence[SweepPoint], draw: Callable[[float, float], torch.Tensor],
              score: Callable[[torch.Tensor], dict]) -> tuple[list[dict], dict[str, float | int]]:
    """One row per point (COLUMNS), each distinct (guidance, truncation) drawn and scored once,
    and the time spent drawing and scoring."""
    settings = list(dict.fromkeys((point.guidance, point.truncation) for point in points))
    scored, sampling, scoring, images = {}, 0.0, 0.0, 0
    for setting in tqdm(settings, desc="tradeoff", unit="point"):
        start = time.perf_counter()
        drawn = draw(*setting)
        sampled = time.perf_counter()
        scored[setting] = score(drawn)
        sampling, scoring = sampling + sampled - start, scoring + time.perf_counter() - sampled
        images += drawn.shape[0] * drawn.shape[1]
    rows = [{"sweep": point.sweep, "guidance": point.guidance, "truncation": point.truncation,
             **scored[(point.guidance, point.truncation)]} for point in points]
    timing = {"settings_sampled": len(settings), "images": images, "sampling_seconds": round(sampling, 2),
              "images_per_second": round(images / sampling, 3) if sampling else 0.0,
              "scoring_seconds": round(scoring, 2)}
    return rows, timing
