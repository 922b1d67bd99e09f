import numpy as np
import pandas as pd
import pytest
import torch
import torch_fidelity
from PIL import Image

from pipeline.core.errors import UserError
from pipeline.evaluate import metrics
from pipeline.evaluate.metrics import (
    clip_scores,
    fd_embedding,
    fid_inception,
    hessel_clipscore,
)

torch.set_num_threads(1)


def channel_stats(batch: torch.Tensor) -> torch.Tensor:
    """A tiny stand-in for CLIP: per-channel mean and spread of a uint8 batch."""
    x = batch.float()
    return torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1)


def test_fd_embedding_through_torch_fidelity(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 200, (40, 16, 16, 3), dtype=np.uint8)
    same = fd_embedding(images, images, channel_stats, reference_split="val", space="toy")
    assert same["fd_toy"] == pytest.approx(0, abs=1e-6)
    assert same["n_generated"] == same["n_reference"] == 40 and same["reference_split"] == "val"
    assert not any(key.startswith("fid") for key in same)
    folder = tmp_path / "generated"
    folder.mkdir()
    for i, image in enumerate(images[:30] + 50):  # shifted, as PNG files in a folder
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    as_numpy = lambda batch: channel_stats(batch).numpy()  # noqa: E731 (ClipEncoder returns arrays too)
    shifted = fd_embedding(folder, torch.from_numpy(images).permute(0, 3, 1, 2), as_numpy, "val", space="toy")
    assert shifted["n_generated"] == 30 and shifted["fd_toy"] > 1000
    again = fd_embedding(images, images + 5, channel_stats, "val", space="toy")  # registers only once
    assert 0 < again["fd_toy"] < shifted["fd_toy"]


def test_fid_inception_uses_the_local_weights(tmp_path, monkeypatch):
    seen = {}

    def fake_calculate_metrics(**kwargs):
        seen.update(kwargs)
        return {torch_fidelity.KEY_METRIC_FID: 12.5}

    monkeypatch.setattr(metrics.torch_fidelity, "calculate_metrics", fake_calculate_metrics)
    weights = tmp_path / "inception.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, weights)  # stands in: calculate_metrics is faked
    images = np.zeros((4, 8, 8, 3), np.uint8)
    result = fid_inception(images, images[:3], weights, reference_split="train")
    assert result == {"fid_inception": 12.5, "n_generated": 4, "n_reference": 3, "reference_split": "train",
                      "features": "inception-v3-compat pool 2048"}
    assert seen["feature_extractor"] == "inception-v3-compat" and seen["feature_layer_fid"] == "2048"
    assert seen["feature_extractor_weights_path"] == str(weights) and seen["cache"] is False
    assert seen["input1"][0].dtype == torch.uint8 and seen["input1"][0].shape == (3, 8, 8)
    with pytest.raises(UserError, match="evaluate.inception_weights"):
        fid_inception(images, images, tmp_path / "absent.pth", reference_split="train")


def test_clip_score_conventions():
    scores = pd.DataFrame({"prompt": [0, 0, 0, 1, 1], "sample": [0, 1, 2, 0, 1],
                           "cosine": [0.2, 0.3, -0.1, 0.5, 0.1]})
    result = clip_scores(scores)
    assert result["clip_cosine_mean"] == pytest.approx(0.2)
    assert result["clipscore_hessel_mean"] == pytest.approx(2.5 * (0.2 + 0.3 + 0 + 0.5 + 0.1) / 5)
    assert result["clip_cosine_best_of_n"] == pytest.approx(0.4)
    assert result["clipscore_hessel_best_of_n"] == pytest.approx(1.0)
    assert (result["n_prompts"], result["n_samples"]) == (2, 5)
    assert (result["samples_per_prompt_min"], result["samples_per_prompt_max"]) == (2, 3)
    assert hessel_clipscore(-0.3) == 0 and hessel_clipscore(0.4) == pytest.approx(1.0)


