"""Reconstruction and codebook metrics for the tokenizer report.

Pixel metrics take images on the [0, 255] scale (uint8 or float), NCHW. Code metrics take
integer code grids of any shape.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from pipeline.tokenizer.model import VQGAN, reconstruct


def psnr(a: torch.Tensor, b: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """PSNR in dB with peak 255.

    per_image=False (the reported figure) pools the squared error over every pixel of every
    image first: the PSNR of the set as one signal. The mean of per-image PSNRs is
    dominated by easy images (a flat background can reach 60+ dB), so it flatters.
    Identical inputs give inf (no cap): an exact reconstruction is never confused with a
    merely good one.
    """
    err = (a.double() - b.double()).pow(2)
    mse = err.flatten(1).mean(1) if per_image else err.mean()
    return 10 * torch.log10(255.0**2 / mse)


def _blur_matrix(size: int, window: int, sigma: float) -> torch.Tensor:
    """(size-window+1, size) matrix whose rows are the shifted 1-D Gaussian ('valid' filtering)."""
    x = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    out = size - window + 1
    matrix = torch.zeros(out, size, dtype=torch.float64)
    for i in range(out):
        matrix[i, i:i + window] = g
    return matrix


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03,
    peak 255, each channel separately over the valid region, then averaged. Returns (B,).
    float64, because the variances are differences of large squares; the separable Gaussian
    is applied as two matrix products, which are fast in float64 where convolutions are not."""
    a, b = a.double(), b.double()
    h, w = a.shape[-2:]
    window = min(window, h, w)
    rows = _blur_matrix(h, window, sigma).to(a.device)
    cols = _blur_matrix(w, window, sigma).to(a.device)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b, aa, bb, ab = rows @ torch.stack([a, b, a * a, b * b, a * b]) @ cols.T
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(1)


def code_histogram(codes: torch.Tensor, n_codes: int) -> torch.Tensor:
    return torch.bincount(codes.flatten().long(), minlength=n_codes)


def codebook_usage(codes: torch.Tensor, n_codes: int) -> float:
    """Fraction of the K codes that occur at least once."""
    return float((code_histogram(codes, n_codes) > 0).sum()) / n_codes


def code_entropy_bits(codes: torch.Tensor, n_codes: int) -> float:
    """Entropy (bits) of the empirical distribution of codes over all positions."""
    p = code_histogram(codes, n_codes).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log2()).sum())


def code_perplexity(codes: torch.Tensor, n_codes: int) -> float:
    """2**entropy: the number of equally used codes that would give the same entropy (K at best)."""
    return 2 ** code_entropy_bits(codes, n_codes)


def bits_per_image(grid_positions: int, n_codes: int) -> float:
    """Fixed-length size of a code grid: positions * log2(K). The entropy-coded size under the
    codes' marginal distribution is positions * code_entropy_bits (reported alongside)."""
    return grid_positions * math.log2(n_codes)


def evaluate_tokenizer(model: VQGAN, images: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """Reconstruction quality and codebook health on held-out uint8 images (hard codes).

    psnr pools the error over the set (see image_psnr); ssim is the mean per image;
    bits_per_image is the fixed-length grid size, entropy_bits_per_image the size under the
    codes' marginal distribution.
    """
    codes, recon = reconstruct(model, images, batch_size)
    k, positions = model.n_codes, model.grid * model.grid
    entropy = code_entropy_bits(codes, k)
    return {
        "psnr": float(psnr(images, recon)),
        "ssim": float(ssim(images, recon).mean()),
        "codebook_usage": codebook_usage(codes, k),
        "codes_used": int((code_histogram(codes, k) > 0).sum()),
        "perplexity": code_perplexity(codes, k),
        "bits_per_image": bits_per_image(positions, k),
        "entropy_bits_per_image": positions * entropy,
        "n_images": len(images),
    }


def reconstruction_grid(model: VQGAN, images: torch.Tensor, pad: int = 2) -> Image.Image:
    """A PNG-ready sheet: the uint8 images in the top row, their reconstructions below,
    separated by ``pad`` white pixels. Size: (n*W + (n+1)*pad) x (2*H + 3*pad)."""
    _, recon = reconstruct(model, images, len(images) or 1)
    n, _, h, w = images.shape
    sheet = np.full((2 * h + 3 * pad, n * w + (n + 1) * pad, 3), 255, dtype=np.uint8)
    for row, batch in enumerate((images, recon)):
        for i, image in enumerate(batch):
            y, x = pad + row * (h + pad), pad + i * (w + pad)
            sheet[y:y + h, x:x + w] = image.permute(1, 2, 0).numpy()
    return Image.fromarray(sheet, "RGB")
