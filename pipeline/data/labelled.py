"""A labelled image folder read whole into memory: ``labels.csv`` with a ``file`` column (each
image's path inside the folder) and attribute columns. The CLIPs and the judge train on such
folders when their world has photos instead of a renderer (the faces world's parts)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from pipeline.core.errors import UserError
from pipeline.data.imagefile import centre_square

LABELS = "labels.csv"


def read_labels(folder: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """The folder's labels.csv (``file`` plus ``columns`` as strings), sorted by file."""
    path = Path(folder) / LABELS
    if not path.is_file():
        raise UserError(f"{path}: not found; a labelled folder holds its images and a labels.csv with a 'file' "
                        "column (the world stage writes one per part)")
    labels = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = sorted({"file", *columns} - set(labels.columns))
    if missing:
        raise UserError(f"{path}: missing columns {missing}; it has {list(labels.columns)}")
    return labels.sort_values("file", ignore_index=True)


def load_labelled(folder: str | Path, columns: Sequence[str], resolution: int,
                  limit: int | None = None) -> tuple[torch.Tensor, pd.DataFrame]:
    """uint8 (N, 3, R, R) images and their labels (first ``limit`` rows by file name), in the same order."""
    labels = read_labels(folder, columns)
    if limit is not None:
        labels = labels.iloc[:limit].reset_index(drop=True)
    images = np.empty((len(labels), 3, resolution, resolution), dtype=np.uint8)
    for i, name in enumerate(tqdm(labels["file"], desc=f"read {Path(folder).name}", unit="img")):
        path = Path(folder) / name
        try:
            with Image.open(path) as image:
                square = centre_square(image.convert("RGB"), resolution)
        except OSError as error:
            raise UserError(f"{path}: cannot read this image ({error}); rerun the world stage") from error
        images[i] = np.asarray(square).transpose(2, 0, 1)
    return torch.from_numpy(images), labels
