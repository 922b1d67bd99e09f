"""Pseudo text embeddings: cosine to h against the closed form, LAFITE form, dropout rate."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.generator.pseudo_text import (ABLATION, ConditionMeans, drop_mask, inference_condition, perturb,
                                          pseudo_text, setting_name)


def expected_cosine(scale: float, dim: int) -> float:
    """E[cos(h, h')] for unit h and h' = normalise(h + scale * u), u uniform on the sphere.

    With z = <u, h>, cos = (1 + scale z) / sqrt(1 + 2 scale z + scale^2) and z has density
    proportional to (1 - z^2)^((dim - 3)/2) on [-1, 1]; the expectation is this one 1-D
    integral, evaluated here by quadrature. For large dim it tends to 1/sqrt(1 + scale^2)
    (0.894 for 0.5, 0.316 for 3).
    """
    if dim < 3:
        raise ValueError(f"dim must be >= 3, got {dim}")
    z = torch.linspace(-1.0, 1.0, 400_001, dtype=torch.float64)[1:-1]
    log_w = 0.5 * (dim - 3) * torch.log1p(-z * z)
    w = torch.exp(log_w - log_w.max())
    cos = (1 + scale * z) / torch.sqrt(1 + 2 * scale * z + scale * scale)
    return float((w * cos).sum() / w.sum())


def unit(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_closed_form_values() -> None:
    assert expected_cosine(0.5, 512) == pytest.approx(0.894, abs=0.002)
    assert expected_cosine(0.25, 512) == pytest.approx(1 / math.sqrt(1 + 0.25**2), abs=1e-3)
    assert expected_cosine(3.0, 512) == pytest.approx(0.32, abs=0.01)
    assert expected_cosine(0.0, 64) == pytest.approx(1.0)


@pytest.mark.parametrize("a,dim", [(0.5, 512), (0.25, 512), (1.0, 8), (2.0, 4)])
def test_clipvq_cosine_matches_closed_form(a: float, dim: int) -> None:
    h = unit(20_000, dim)
    hp = perturb(h, "clipvq", a, torch.Generator().manual_seed(1))
    assert torch.allclose(hp.norm(dim=-1), torch.ones(len(h)), atol=1e-5)
    cos = (h * hp).sum(-1)
    tol = 4 * cos.std().item() / math.sqrt(len(h)) + 1e-4
    assert abs(cos.mean().item() - expected_cosine(a, dim)) < tol


def test_lafite_form_scales_with_norm_of_h() -> None:
    h = unit(20_000, 512) * 3.7  # LAFITE scales the noise by ||h||, so the norm of h drops out
    hp = perturb(h, "lafite", 3.0, torch.Generator().manual_seed(2))
    assert torch.allclose(hp.norm(dim=-1), torch.ones(len(h)), atol=1e-5)
    cos = (F.normalize(h, dim=-1) * hp).sum(-1)
    assert cos.mean().item() == pytest.approx(expected_cosine(3.0, 512), abs=0.003)
    # for unit h both noisy forms are the same map of the same noise
    u = F.normalize(h, dim=-1)
    a = perturb(u, "lafite", 0.7, torch.Generator().manual_seed(3))
    b = perturb(u, "clipvq", 0.7, torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-6)


def test_none_and_bad_mode() -> None:
    h = unit(4, 16)
    assert torch.equal(perturb(h, "none", 0.5), h)
    with pytest.raises(ValueError):
        perturb(h, "gaussian", 0.5)  # type: ignore[arg-type]


def test_dropout_rate_and_interface() -> None:
    g = torch.Generator().manual_seed(0)
    drop = drop_mask(200_000, 0.1, torch.device("cpu"), g)
    assert drop.dtype == torch.bool and abs(drop.float().mean().item() - 0.1) < 0.003
    assert not drop_mask(1000, 0.0, torch.device("cpu"), g).any()
    assert drop_mask(1000, 1.0, torch.device("cpu"), g).all()
    h = unit(8, 32)
    emb, drop = pseudo_text(h, "clipvq", 0.5, 0.5, torch.Generator().manual_seed(4))
    assert emb.shape == (8, 32) and drop.shape == (8,) and drop.dtype == torch.bool
    again = pseudo_text(h, "clipvq", 0.5, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(emb, again[0]) and torch.equal(drop, again[1])


def test_c3_removes_each_modalitys_mean_then_adds_noise_of_the_given_norm():
    g = torch.Generator().manual_seed(0)
    dim = 256
    image_mean, text_mean = (F.normalize(torch.randn(dim, generator=g), dim=0) for _ in range(2))
    means = ConditionMeans(image=image_mean, text=text_mean)
    residual = F.normalize(torch.randn(512, dim, generator=g), dim=-1) * 0.5
    h = image_mean + residual
    t = text_mean + residual  # a caption: the same content, the other modality's offset
    clean = perturb(h, "c3", 0.0, None, means)
    at_inference = inference_condition(t, "c3", means)
    torch.testing.assert_close(clean, at_inference)  # the gap is gone once each mean is removed
    torch.testing.assert_close(clean, F.normalize(residual, dim=-1))
    noisy = perturb(h, "c3", 0.5, torch.Generator().manual_seed(1), means)
    torch.testing.assert_close(noisy.norm(dim=-1), torch.ones(512))
    # noise of expected norm 0.5 around a unit vector: cosine about 1/sqrt(1 + 0.25)
    assert float((noisy * clean).sum(-1).mean()) == pytest.approx(1 / math.sqrt(1.25), abs=0.01)
    for mode in ("none", "clipvq", "lafite"):
        assert torch.equal(inference_condition(t, mode, None), t)
    with pytest.raises(ValueError, match="mean embeddings"):
        perturb(h, "c3", 0.5)
    with pytest.raises(ValueError, match="'c3'"):
        perturb(h, "gaussian", 0.5)


def test_setting_names():
    assert [setting_name(m, s) for m, s in ABLATION] == [
        "none", "clipvq-0.25", "clipvq-0.5", "clipvq-0.75", "lafite-3", "c3-0.5"]
