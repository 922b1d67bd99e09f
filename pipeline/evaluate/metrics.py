"""Image metrics: Fréchet and kernel distances, and CLIPScore (text alignment: evaluate/alignment.py).

Every number says what it is: ``fid_inception`` and ``kid_inception_*`` only when the
Inception-v3 weights were really used, ``fd_<space>`` and ``kd_<space>_*`` (e.g. ``fd_clip``)
for the same distances in another feature space, and CLIPScore names its convention (raw
cosine, or Hessel et al.'s 2.5 * max(cos, 0)). Distance results carry their sample counts and
reference split, as the protocol asks.
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch_fidelity
from PIL import Image
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from pipeline.core.atomic import atomic_file
from pipeline.core.checksum import sha256_file
from pipeline.core.images import as_uint8_nchw
from pipeline.core.torch_files import load_tensors

ImageSet = np.ndarray | torch.Tensor | Sequence[Image.Image] | str | Path
EMBEDDING_EXTRACTOR = "t2i-embedding"
EMBEDDING_FEATURE = "embedding"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
KID_SUBSET_SIZE = 1000  # torch-fidelity's default; smaller sets use all their images per subset
INCEPTION_SHA256_PREFIX = "6726825d"  # in the file's name, as torch.hub checks it


# ------------------------------------------------------ Fréchet and kernel distances, by torch-fidelity


class UInt8Images(Dataset):
    """An image set as torch-fidelity reads it: uint8 (3, H, W) tensors."""

    def __init__(self, images: ImageSet):
        if isinstance(images, (str, Path)):
            images = [_load_rgb(p) for p in image_files(images)]
        self.images = as_uint8_nchw(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def image_files(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _load_rgb(path: Path) -> Image.Image:
    """Decoded now, so a folder of thousands of files never holds them all open."""
    with Image.open(path) as image:
        return image.convert("RGB")


class EmbeddingExtractor(torch_fidelity.FeatureExtractorBase):
    """torch-fidelity feature extractor around a caller's embedding function.

    torch-fidelity instantiates extractors itself, passing every ``calculate_metrics``
    keyword on; the function travels as the ``embedding_fn`` keyword. It maps a uint8
    (B, 3, H, W) CPU batch to (B, D) features, a tensor or an array (e.g.
    ``ClipEncoder.embed_images``), and runs on whatever device it holds its model on.
    """

    def __init__(self, name: str, features_list: list[str], embedding_fn: Callable[[torch.Tensor], torch.Tensor],
                 **kwargs):
        super().__init__(name, features_list)
        self.embedding_fn = embedding_fn

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (EMBEDDING_FEATURE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return EMBEDDING_FEATURE

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a uint8 (B, 3, H, W) batch, got {x.dtype} {tuple(x.shape)}")
        features = self.embedding_fn(x)
        return (torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
                .float().flatten(1),)


def _fidelity_distances(generated: ImageSet, reference: ImageSet, device: torch.device | str, batch_size: int,
                        layer: str, **options) -> tuple[tuple[float, float, float], int, int]:
    """torch-fidelity's Fréchet distance and kernel distance (mean, std over subsets) of two
    in-memory image sets, from one pass of features: no caching under the torch home, no
    loader workers, no network unless the extractor itself needs it."""
    first, second = UInt8Images(generated), UInt8Images(reference)
    if len(first) < 2 or len(second) < 2:
        raise ValueError(f"a Fréchet distance needs >= 2 images per set, got {len(first)} and {len(second)}")
    result = torch_fidelity.calculate_metrics(
        input1=first, input2=second, fid=True, kid=True, feature_layer_fid=layer, feature_layer_kid=layer,
        kid_subset_size=min(KID_SUBSET_SIZE, len(first), len(second)), cuda=torch.device(device).type == "cuda",
        batch_size=batch_size, cache=False, save_cpu_ram=True, verbose=False, **options)
    values = (result[torch_fidelity.KEY_METRIC_FID], result[torch_fidelity.KEY_METRIC_KID_MEAN],
              result[torch_fidelity.KEY_METRIC_KID_STD])
    return tuple(float(v) for v in values), len(first), len(second)


def inception_weights_cache() -> Path:
    """Where torch-fidelity keeps its Inception-v3 weights once downloaded (torch hub's
    checkpoints folder): fetching to the same name there lets either find the other's copy."""
    return Path(torch.hub.get_dir()) / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[-1]


def fetch_inception_weights(timeout_s: float = 10.0) -> Path:
    """torch-fidelity's own Inception-v3 weights: the cached file, downloaded first if missing.

    ``timeout_s`` bounds each network wait, so an offline machine fails in seconds rather than
    hanging; it then raises OSError (urllib's URLError, a timeout) or http.client.HTTPException.
    """
    path = inception_weights_cache()
    if path.is_file():
        return path
    with urllib.request.urlopen(URL_INCEPTION_V3, timeout=timeout_s) as response, atomic_file(path) as tmp:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
        if not sha256_file(tmp).startswith(f"sha256:{INCEPTION_SHA256_PREFIX}"):
            raise OSError(f"{URL_INCEPTION_V3}: the download does not match its checksum")
    return path


def fid_inception(generated: ImageSet, reference: ImageSet, weights_path: str | Path, reference_split: str,
                  device: torch.device | str = "cpu", batch_size: int = 64) -> dict[str, float | int | str]:
    """FID proper, and KID beside it: torch-fidelity's Inception-v3 (TF-compatible) pool
    features, from a local weights file (nothing is downloaded here). torch-fidelity unpickles
    that file without restriction, so it is first loaded here as tensors only: one that could
    run code is refused."""
    load_tensors(weights_path, "Inception-v3 weights")
    (fid, kid, kid_std), n_gen, n_ref = _fidelity_distances(
        generated, reference, device, batch_size, "2048", feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(weights_path))
    return {"fid_inception": fid, "kid_inception_mean": kid, "kid_inception_std": kid_std, "n_generated": n_gen,
            "n_reference": n_ref, "reference_split": reference_split, "features": "inception-v3-compat pool 2048"}


def fd_embedding(generated: ImageSet, reference: ImageSet,
                 embedding_fn: Callable[[torch.Tensor], torch.Tensor | np.ndarray], reference_split: str,
                 space: str = "clip", batch_size: int = 64) -> dict[str, float | int | str]:
    """Fréchet and kernel distances in another feature space (``fd_<space>``,
    ``kd_<space>_mean``/``_std``), through torch-fidelity.

    Not FID or KID: distances in CLIP space are on another scale and rank models differently.
    """
    if EMBEDDING_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(EMBEDDING_EXTRACTOR, EmbeddingExtractor)
    (fd, kd, kd_std), n_gen, n_ref = _fidelity_distances(
        generated, reference, "cpu", batch_size, EMBEDDING_FEATURE, feature_extractor=EMBEDDING_EXTRACTOR,
        embedding_fn=embedding_fn)
    return {f"fd_{space}": fd, f"kd_{space}_mean": kd, f"kd_{space}_std": kd_std, "n_generated": n_gen,
            "n_reference": n_ref, "reference_split": reference_split, "features": f"{space} image embedding"}


# -------------------------------------------------------------------------- CLIPScore


def hessel_clipscore(cosine: np.ndarray | float) -> np.ndarray:
    """Hessel et al. (2021): 2.5 * max(cos, 0)."""
    return 2.5 * np.maximum(cosine, 0.0)


def clip_scores(scores: pd.DataFrame, best_of: np.ndarray | None = None) -> dict[str, float | int]:
    """CLIPScore over all samples and best-of-N per prompt (the FFHQ protocol keeps the best
    of 16 by cosine; the mean over all samples is reported beside it).

    ``scores`` has columns ``prompt`` (index or text), ``sample`` and ``cosine``; ``best_of``: a
    row mask of the samples the best of N picks from (None: all).
    """
    if scores.empty:
        raise ValueError("no CLIP scores to summarise")
    best = (scores if best_of is None else scores[best_of]).groupby("prompt")["cosine"].max()
    per_prompt = scores.groupby("prompt").size()
    return {
        "clip_cosine_mean": float(scores["cosine"].mean()),
        "clip_cosine_best_of_n": float(best.mean()),
        "clipscore_hessel_mean": float(hessel_clipscore(scores["cosine"].to_numpy()).mean()),
        "clipscore_hessel_best_of_n": float(hessel_clipscore(best.to_numpy()).mean()),
        "n_prompts": int(len(best)),
        "n_samples": int(len(scores)),
        "samples_per_prompt_min": int(per_prompt.min()),
        "samples_per_prompt_max": int(per_prompt.max()),
    }
