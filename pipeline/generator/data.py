"""What every generator's trainer reads and returns: the caches joined on image id (code grids or
images, with their CLIP image embeddings) and the run's result."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.core.errors import UserError
from pipeline.data.shards import decode_pngs, read_table
from pipeline.data.vectors import read_vectors
from pipeline.generator.pseudo_text import ConditionMeans


@dataclass
class TrainingData:
    """Code grids (vqdiffusion, clipgen) with each image's CLIP embedding."""
    codes: torch.Tensor  # (N, h, w) long
    embeddings: torch.Tensor  # (N, D) float32, unit norm
    n_codes: int
    sources: dict[str, str]  # provenance of the caches, kept in the model file
    means: ConditionMeans | None = None  # C3's modality means (with_text_mean adds them)
    code_books: int = 1  # the tokenizer's books: K = k ** code_books joint codes (pipeline/core/codes.py)


@dataclass
class ImageTrainingData:
    """Images (lafite, which generates pixels) with each image's CLIP embedding."""
    images: torch.Tensor  # (N, 3, H, W) uint8
    embeddings: torch.Tensor  # (N, D) float32, unit norm
    sources: dict[str, str]
    means: ConditionMeans | None = None


def with_text_mean(data: TrainingData | ImageTrainingData, text_embeddings: np.ndarray
                   ) -> TrainingData | ImageTrainingData:
    """The data with C3's means: of its image embeddings, and of ``text_embeddings`` (N, D), the
    only text a language-free pipeline holds (the evaluation prompts)."""
    text = torch.tensor(np.asarray(text_embeddings, dtype=np.float32)).mean(0)  # a copy: Arrow views are read-only
    return dataclasses.replace(data, means=ConditionMeans(image=data.embeddings.mean(0), text=text))


def _embeddings_in_order(embeddings_dir: Path, ids: list[str], split: str, what: str
                         ) -> tuple[torch.Tensor, dict[str, str]]:
    embeddings = read_vectors(embeddings_dir, "embedding", split)
    position = {image_id: i for i, image_id in enumerate(embeddings.ids)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise UserError(f"{embeddings_dir}: no CLIP embedding for {len(missing)} {what} "
                        f"(e.g. id {missing[0]}); rerun the embed stage")
    order = np.fromiter((position[i] for i in ids), dtype=np.int64, count=len(ids))
    return torch.from_numpy(embeddings.vectors[order].copy()), {f"clip.{k}": v for k, v in embeddings.metadata.items()}


def load_training_data(tokens_dir: Path, embeddings_dir: Path, split: str = "train") -> TrainingData:
    """Join the token-grid and CLIP-embedding caches on image id."""
    tokens = read_vectors(tokens_dir, "codes", split)
    embeddings, clip_sources = _embeddings_in_order(embeddings_dir, list(tokens.ids), split, "token grids")
    grid_h, grid_w = int(tokens.metadata["grid_h"]), int(tokens.metadata["grid_w"])
    codes = torch.from_numpy(tokens.vectors.astype(np.int64)).view(-1, grid_h, grid_w)
    sources = {f"tokens.{k}": v for k, v in tokens.metadata.items()} | clip_sources
    return TrainingData(codes, embeddings, int(tokens.metadata["n_codes"]), sources,
                        code_books=int(tokens.metadata.get("code_books", 1)))


def load_image_training_data(ingest_dir: Path, embeddings_dir: Path, split: str = "train") -> ImageTrainingData:
    """Join the ingest shards' images and the CLIP-embedding cache on image id."""
    table = read_table(ingest_dir, ["id", "image", "sha256"], split)
    if table.num_rows == 0:
        raise UserError(f"{ingest_dir}: no {split} images; rerun the ingest stage")
    ids = table["id"].to_pylist()
    embeddings, clip_sources = _embeddings_in_order(embeddings_dir, ids, split, "images")
    digest = hashlib.sha256("".join(table["sha256"].to_pylist()).encode()).hexdigest()
    return ImageTrainingData(decode_pngs(table["image"].to_pylist()), embeddings,
                             {"images.sha256": digest, "images.count": str(len(ids))} | clip_sources)


@dataclass
class GeneratorRun:
    """A finished (or resumed and finished) training run."""
    model: torch.nn.Module  # carries the EMA weights when EMA is on
    config: object  # the model's config dataclass, saved with it
    history: list[dict[str, float]]  # the logged rows
    steps: int
    images_seen: int
    seconds: float  # training wall time, summed over resumed runs
    start_step: int  # where this call began: 0 fresh, the checkpoint's step when resumed
