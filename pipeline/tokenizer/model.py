"""Gumbel-softmax VQGAN: the visual tokenizer that turns images into a grid of K codes.

Images inside the model are float in [-1, 1], NCHW. The encoder downsamples by
f = 2**(len(ch_mult)-1); each grid position gets logits over K codes. Training mixes the
codebook with a soft Gumbel sample (differentiable, no straight-through); inference takes
the argmax, so the code grid the diffusion model sees is exactly what the decoder gets.
Its losses and training live beside it (losses.py, train.py); this file is all that
inference needs: the model, its file IO, and batched encode/decode of uint8 images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.core.atomic import atomic_file
from pipeline.core.errors import UserError
from pipeline.core.rng import exponential
from pipeline.core.torch_files import load_tensors
from pipeline.core.codes import book_size, code_digits, joint_logits


def downsampling_factor(ch_mult: list[int]) -> int:
    """f: every level after the first halves the resolution, so a side of S pixels has S / f codes."""
    return 2 ** (len(ch_mult) - 1)


def gumbel_noise(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel(0, 1) samples -log(E), E ~ Exp(1), on ``device``."""
    return -exponential(shape, device, generator).log()


Norm = Literal["group", "none"]


def norm_layer(channels: int, kind: Norm = "group") -> nn.Module:
    """GroupNorm as in VQGAN, or none. At the small widths of a CPU-sized model each group holds
    one or two channels, so GroupNorm wipes each channel's per-image mean and scale (the flat
    background tone, say) and reconstructions learn several times slower; "none" keeps them."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6) if kind == "group" else nn.Identity()


class ResBlock(nn.Module):
    """Pre-activation residual block: GN-SiLU-conv twice, 1x1 skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, norm: Norm = "group") -> None:
        super().__init__()
        self.norm1, self.conv1 = norm_layer(c_in, norm), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = norm_layer(c_out, norm), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions of a feature map."""

    def __init__(self, channels: int, norm: Norm = "group") -> None:
        super().__init__()
        self.norm = norm_layer(channels, norm)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, hw, c)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def _level(c_in: int, c_out: int, n_blocks: int, attn: bool, norm: Norm) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for _ in range(n_blocks):
        layers.append(ResBlock(c_in, c_out, norm))
        c_in = c_out
        if attn:
            layers.append(AttnBlock(c_out, norm))
    return nn.Sequential(*layers), c_out


def _mid(channels: int, attn: bool, norm: Norm) -> nn.Sequential:
    return nn.Sequential(ResBlock(channels, channels, norm), *([AttnBlock(channels, norm)] if attn else []),
                         ResBlock(channels, channels, norm))


class Encoder(nn.Module):
    """Image (B,3,H,W) -> features (B, ch*ch_mult[-1], H/f, W/f)."""

    def __init__(self, ch: int, ch_mult: list[int], num_res_blocks: int, attn_resolutions: list[int],
                 resolution: int, norm: Norm = "group") -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        layers: list[nn.Module] = []
        c, res = ch, resolution
        for i, mult in enumerate(ch_mult):
            level, c = _level(c, ch * mult, num_res_blocks, res in attn_resolutions, norm)
            layers.append(level)
            if i < len(ch_mult) - 1:
                layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                res //= 2
        self.down = nn.Sequential(*layers)
        self.mid = _mid(c, res in attn_resolutions, norm)
        self.norm_out = norm_layer(c, norm)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm_out(self.mid(self.down(self.conv_in(x)))))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """Code vectors (B, code_dim, h, w) -> image (B, 3, h*f, w*f), mirror of the encoder."""

    def __init__(self, code_dim: int, ch: int, ch_mult: list[int], num_res_blocks: int,
                 attn_resolutions: list[int], resolution: int, norm: Norm = "group") -> None:
        super().__init__()
        res = resolution // downsampling_factor(ch_mult)
        c = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(code_dim, c, 3, padding=1)
        self.mid = _mid(c, res in attn_resolutions, norm)
        layers: list[nn.Module] = []
        for i in reversed(range(len(ch_mult))):
            level, c = _level(c, ch * ch_mult[i], num_res_blocks, res in attn_resolutions, norm)
            layers.append(level)
            if i > 0:
                layers.append(Upsample(c))
                res *= 2
        self.up = nn.Sequential(*layers)
        self.norm_out = norm_layer(c, norm)
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.up(self.mid(self.conv_in(z))))))


class Quantizer(nn.Module):
    """Features -> logits over K codes per position -> code vectors: what both quantisers share.
    Subclasses say how the logits are made (``logits``) and each code's vector (``table``)."""
    n_codes: int

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) encoder features -> (B, K, h, w) logits."""
        raise NotImplementedError

    def table(self) -> torch.Tensor:
        """(K, code_dim): each code's vector."""
        raise NotImplementedError

    def soft_one_hot(self, logits: torch.Tensor, tau: float | torch.Tensor,
                     noise: torch.Tensor | None = None) -> torch.Tensor:
        """Relaxed one-hot (B, K, h, w): softmax((logits + noise) / tau) over the codes, with
        Gumbel(0, 1) noise shaped like the logits (drawn here when not given); each position
        sums to 1 and it approaches the argmax as tau -> 0."""
        if noise is None:
            noise = gumbel_noise(logits.shape, logits.device)
        return ((logits + noise) / tau).softmax(1)

    def mix(self, one_hot: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bkhw,kd->bdhw", one_hot, self.table())

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.table()).permute(0, 3, 1, 2)  # (B, h, w) -> (B, D, h, w)

    def kl_to_uniform(self, logits: torch.Tensor) -> torch.Tensor:
        """Mean over positions of KL(softmax(logits) || uniform over K); 0 when uniform."""
        log_q = F.log_softmax(logits, dim=1)
        return (log_q.exp() * (log_q + math.log(self.n_codes))).sum(1).mean()

    def code_mean(self, logits: torch.Tensor) -> torch.Tensor:
        """The batch's average soft assignment over the K codes, (K,): see usage_deficit."""
        return F.softmax(logits, dim=1).mean((0, 2, 3))


class GumbelQuantizer(Quantizer):
    """One plain (K, code_dim) codebook."""

    def __init__(self, in_channels: int, n_codes: int, code_dim: int) -> None:
        super().__init__()
        self.n_codes = n_codes
        self.proj = nn.Conv2d(in_channels, n_codes, 1)
        self.codebook = nn.Embedding(n_codes, code_dim)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)

    def table(self) -> torch.Tensor:
        return self.codebook.weight


class ProductQuantizer(Quantizer):
    """K = k ** m joint codes from m books of k codes (pipeline/core/codes.py): each book has
    its own logits and code_dim / m wide vectors; a joint code's logit is the sum of its books'
    (so a sample over joint codes draws each book independently) and its vector the concatenation
    of theirs. The argmax code is each book's argmax."""

    def __init__(self, in_channels: int, n_codes: int, code_dim: int, books: int) -> None:
        super().__init__()
        if code_dim % books:
            raise ValueError(f"code_dim {code_dim} is not divisible by {books} books")
        self.n_codes, self.books = n_codes, books
        self.register_buffer("digits", code_digits(n_codes, books), persistent=False)  # checks K = k ** m
        k = book_size(n_codes, books)
        self.proj = nn.Conv2d(in_channels, books * k, 1)
        self.codebooks = nn.ModuleList(nn.Embedding(k, code_dim // books) for _ in range(books))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        per_book = self.proj(features).movedim(1, -1)  # (B, h, w, m * k)
        return joint_logits(per_book, self.books).movedim(-1, 1)  # (B, K, h, w)

    def table(self) -> torch.Tensor:
        return torch.cat([book(self.digits[:, i]) for i, book in enumerate(self.codebooks)], -1)


@dataclass
class VQOutput:
    recon: torch.Tensor  # (B, 3, H, W) in about [-1, 1]
    kl: torch.Tensor  # scalar KL to the uniform prior (unweighted)
    code_mean: torch.Tensor  # (K,) the batch's average soft code assignment, see usage_deficit
    codes: torch.Tensor  # (B, h, w) argmax codes, for usage statistics


class VQGAN(nn.Module):
    def __init__(self, n_codes: int, code_dim: int, ch: int, ch_mult: list[int], num_res_blocks: int,
                 attn_resolutions: list[int], resolution: int, norm: Norm = "group", code_books: int = 1) -> None:
        super().__init__()
        self.config = dict(n_codes=n_codes, code_dim=code_dim, ch=ch, ch_mult=list(ch_mult),
                           num_res_blocks=num_res_blocks, attn_resolutions=list(attn_resolutions),
                           resolution=resolution, norm=norm, code_books=code_books)
        factor = downsampling_factor(ch_mult)
        if resolution % factor:
            raise ValueError(f"resolution {resolution} is not divisible by the downsampling factor {factor}")
        self.n_codes, self.resolution, self.factor = n_codes, resolution, factor
        self.grid = resolution // factor
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, attn_resolutions, resolution, norm)
        self.code_books = code_books
        self.quantizer = (GumbelQuantizer(self.encoder.out_channels, n_codes, code_dim) if code_books == 1 else
                          ProductQuantizer(self.encoder.out_channels, n_codes, code_dim, code_books))
        self.decoder = Decoder(code_dim, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, norm)

    def forward(self, images: torch.Tensor, tau: float | torch.Tensor, noise: torch.Tensor | None = None) -> VQOutput:
        """Training path: soft Gumbel mixture of the codebook, so gradients reach the encoder.
        ``noise``: the Gumbel noise (B, K, h, w), when the caller draws it (see gumbel_noise)."""
        logits = self.quantizer.logits(self.encoder(images))
        z = self.quantizer.mix(self.quantizer.soft_one_hot(logits, tau, noise))
        return VQOutput(self.decoder(z), self.quantizer.kl_to_uniform(logits), self.quantizer.code_mean(logits),
                        logits.argmax(1))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> hard codes (B, h, w) long; deterministic (argmax, no noise)."""
        return self.quantizer.logits(self.encoder(images)).argmax(1)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> images in about [-1, 1] (clamp before display)."""
        return self.decoder(self.quantizer.lookup(codes))

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight


def save_vqgan(model: VQGAN, path: str | Path) -> None:
    """Weights plus the constructor arguments, so loading needs no params.yaml."""
    with atomic_file(path) as tmp:
        torch.save({"config": model.config, "state_dict": model.state_dict()}, tmp)


def load_vqgan(path: str | Path, device: torch.device | str = "cpu") -> VQGAN:
    if not Path(path).is_file():
        raise UserError(f"{path}: no trained tokenizer; run the tokenizer stage (`dvc repro tokenizer`)")
    saved = load_tensors(path, "tokenizer model")
    model = VQGAN(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded and clamped."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_all(model: VQGAN, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """uint8 images (N,3,H,W) -> hard codes (N,h,w), int16 when K fits, else int32; on the CPU.
    Runs in fp32 on every device so a code never flips with the precision."""
    model.eval()
    device = _model_device(model)
    dtype = torch.int16 if model.n_codes <= 2**15 else torch.int32
    out = [model.encode(to_model_range(images[i:i + batch_size].to(device))).to("cpu", dtype)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, model.grid, model.grid, dtype=dtype)


@torch.no_grad()
def decode_all(model: VQGAN, codes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Codes (N,h,w) of any integer dtype -> uint8 images (N,3,H,W) on the CPU."""
    model.eval()
    device = _model_device(model)
    out = [to_uint8(model.decode_codes(codes[i:i + batch_size].to(device).long())).cpu()
           for i in range(0, len(codes), batch_size)]
    size = model.resolution
    return torch.cat(out) if out else torch.empty(0, 3, size, size, dtype=torch.uint8)


def reconstruct(model: VQGAN, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, reconstructions) of uint8 images through the hard path."""
    codes = encode_all(model, images, batch_size)
    return codes, decode_all(model, codes, batch_size)
