import numpy as np
import pandas as pd
import pytest
import torch
import torch_fidelity
from PIL import Image
from torch_fidelity.metric_fid import fid_statistics_to_metric

from pipeline import metrics
from pipeline.errors import UserError
from pipeline.metrics import (
    alignment_accuracy,
    clip_scores,
    fd_embedding,
    fid_inception,
    frechet_distance,
    frechet_from_statistics,
    gaussian_statistics,
    hessel_clipscore,
    paired_cosine,
    random_real_floor,
)
from pipeline.shapes import ATTRIBUTES, sample_spec

torch.set_num_threads(1)


def test_frechet_is_zero_for_identical_sets_and_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    b = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8)) + 2
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, b) > 1


def test_frechet_matches_closed_form():
    """Diagonal covariances: |mu_a - mu_b|^2 + sum (sd_a - sd_b)^2."""
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    exact = ((mu_a - mu_b) ** 2).sum() + ((sd_a - sd_b) ** 2).sum()
    assert frechet_from_statistics(mu_a, np.diag(sd_a**2), mu_b, np.diag(sd_b**2)) == pytest.approx(exact, rel=1e-9)
    # Rotating both Gaussians together leaves the distance unchanged.
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    rotated = frechet_from_statistics(rotation @ mu_a, rotation @ np.diag(sd_a**2) @ rotation.T,
                                      rotation @ mu_b, rotation @ np.diag(sd_b**2) @ rotation.T)
    assert rotated == pytest.approx(exact, rel=1e-9)
    # From samples of those Gaussians, up to sampling error.
    rng = np.random.default_rng(2)
    samples_a = mu_a + sd_a * rng.normal(size=(40_000, 3))
    samples_b = mu_b + sd_b * rng.normal(size=(40_000, 3))
    assert frechet_distance(samples_a, samples_b) == pytest.approx(exact, rel=0.02)


def test_frechet_agrees_with_torch_fidelity_and_handles_singular_covariances():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 6)), rng.normal(size=(60, 6)) * 1.5 + 0.3
    (mu_a, s_a), (mu_b, s_b) = gaussian_statistics(a), gaussian_statistics(b)
    reference = fid_statistics_to_metric({"mu": mu_a, "sigma": s_a}, {"mu": mu_b, "sigma": s_b}, False)
    assert frechet_distance(a, b) == pytest.approx(reference[torch_fidelity.KEY_METRIC_FID], rel=1e-8)
    few = rng.normal(size=(5, 20))  # rank-deficient covariance
    assert np.isfinite(frechet_distance(few, few + 1)) and frechet_distance(few, few) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError):
        gaussian_statistics(np.zeros((1, 3)))


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


def test_paired_cosine():
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [-3.0, -4.0], [0.0, 5.0]])
    assert paired_cosine(a, torch.from_numpy(b)) == pytest.approx([1.0, -1.0, np.sqrt(0.5)])


def labels_frame(rows):
    return pd.DataFrame(rows, columns=list(ATTRIBUTES))


def test_alignment_accuracy_on_constructed_cases():
    labels = labels_frame([("circle", "red", "small", "left"), ("square", "blue", "large", "top"),
                           ("triangle", "green", "small", "centre"), ("circle", "red", "large", "right")])
    labels["wording"] = ["canonical", "new", "canonical", "new"]
    predicted = {
        "shape": ["circle", "square", "circle", "circle"],
        "colour": ["red", "blue", "green", "red"],
        "size": ["small", "large", "small", "large"],
        "position": ["left", "top", "centre", "right"],
        "found": [True, True, True, False],  # the last matches by luck but holds no object
    }
    result = alignment_accuracy(predicted, labels, by="wording")
    assert result["shape"] == pytest.approx(2 / 4) and result["colour"] == pytest.approx(3 / 4)
    assert result["all"] == pytest.approx(2 / 4) and result["found"] == pytest.approx(3 / 4) and result["n"] == 4
    assert result["by_wording"]["canonical"]["all"] == pytest.approx(1 / 2)
    assert result["by_wording"]["new"]["all"] == pytest.approx(1 / 2)
    with pytest.raises(ValueError):
        alignment_accuracy({k: v[:3] for k, v in predicted.items()}, labels)


def test_random_real_floor_exact_and_by_sampling():
    real = labels_frame([("circle", "red", "small", "left"), ("circle", "blue", "small", "left"),
                         ("square", "red", "large", "top"), ("circle", "red", "small", "left")])
    prompts = labels_frame([("circle", "red", "small", "left"), ("triangle", "red", "large", "top")])
    floor = random_real_floor(real, prompts)
    assert floor["shape"] == pytest.approx((3 / 4 + 0) / 2)
    assert floor["colour"] == pytest.approx((3 / 4 + 3 / 4) / 2)
    assert floor["all"] == pytest.approx((2 / 4 + 0) / 2) and floor["n_real"] == 4

    # A generator that returns random real images scores the floor, up to sampling error.
    rng = np.random.default_rng(0)
    real = labels_frame([tuple(vars(sample_spec(rng)).values()) for _ in range(3000)])
    prompts = labels_frame([tuple(vars(sample_spec(rng)).values()) for _ in range(60)])
    prompts = prompts.loc[prompts.index.repeat(50)]  # 50 samples per prompt
    drawn = real.iloc[rng.integers(len(real), size=len(prompts))].to_dict("list")
    empirical = alignment_accuracy(drawn, prompts)
    floor = random_real_floor(real, prompts)
    for name in [*ATTRIBUTES, "all"]:
        assert empirical[name] == pytest.approx(floor[name], abs=0.03), name
