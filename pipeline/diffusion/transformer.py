"""The CLIP-VQDiffusion denoiser: predicts p_theta(x_0 | x_t, t, c) over the K codes.

Tokens (K codes + [MASK]) plus a learned 2-D position embedding go through blocks of
AdaLN(t) -> bidirectional self-attention -> AdaLN(c) -> MLP. The CLIP embedding c is a single
vector, so it conditions through AdaLN; with ``cond_tokens`` = k > 0 it is also projected into
k tokens that every block cross-attends to, so each grid position can read its own part of c
rather than one modulation shared by the whole grid. The learnable null embedding for
classifier-free guidance lives here, so a checkpoint carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.core.codes import book_size, code_digits, joint_logits


@dataclass(frozen=True)
class TransformerConfig:
    n_codes: int          # K; inputs take K+1 values ([MASK] = K), outputs K logits
    grid_h: int
    grid_w: int
    steps: int            # T: timestep embeddings for t = 0..T
    clip_dim: int = 512
    depth: int = 8
    width: int = 256
    heads: int = 8
    mlp_ratio: float = 4.0
    mlp: Literal["linear", "conv"] = "linear"  # "conv": the paper's two 3x3 convolutions
    cond_tokens: int = 0  # k > 0: c is also projected into k tokens that each block cross-attends to
    code_books: int = 1   # m > 1: the codes are products of m books (pipeline/core/codes.py), read and
                          # predicted book by book (FactoredEmbedding, FactoredHead)

    @property
    def hidden(self) -> int:
        return int(self.width * self.mlp_ratio)


class AdaLN(nn.Module):
    """LN(x) * (1 + scale) + shift with (scale, shift) = Linear(SiLU(Linear(e))).

    The last Linear starts at zero so every block starts as a plain pre-LN block."""

    def __init__(self, width: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.embed = nn.Linear(cond_dim, width)
        self.to_scale_shift = nn.Linear(width, 2 * width)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        scale, shift = self.to_scale_shift(F.silu(self.embed(e)))[:, None].chunk(2, -1)
        return self.norm(x) * (1 + scale) + shift


def _attend(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """Multi-head attention of (B, N, C) queries over (B, M, C) keys and values: split into
    heads, attend, merge back to (B, N, C)."""
    def split(x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)
    y = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return y.transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    """Non-causal multi-head attention: every position sees the whole grid."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, -1)
        return self.proj(_attend(q, k, v, self.heads))


class CrossAttention(nn.Module):
    """Multi-head attention from the grid to the k condition tokens. Its output projection
    starts at zero, so a block starts as it would without it."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        k, v = self.kv(context).chunk(2, -1)
        return self.proj(_attend(self.q(self.norm(x)), k, v, self.heads))


class LinearMLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.width, cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.width)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class ConvMLP(nn.Module):
    """Two 3x3 convolutions over the token grid: local mixing the paper found useful."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.h, self.w = cfg.grid_h, cfg.grid_w
        self.fc = nn.Conv2d(cfg.width, cfg.hidden, 3, padding=1)
        self.proj = nn.Conv2d(cfg.hidden, cfg.width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        y = x.transpose(1, 2).reshape(B, C, self.h, self.w)
        y = self.proj(F.gelu(self.fc(y)))
        return y.flatten(2).transpose(1, 2)


class FactoredEmbedding(nn.Module):
    """A joint code's embedding as the sum of its books' (each book with its own [MASK] row), so a
    joint code never seen in training is read from books that were."""

    def __init__(self, n_codes: int, books: int, width: int) -> None:
        super().__init__()
        digits = code_digits(n_codes, books)  # checks K = k ** m
        k = book_size(n_codes, books)
        mask = torch.full((1, books), k)  # input K, [MASK], is row k of every book
        self.register_buffer("digits", torch.cat([digits, mask]), persistent=False)
        self.books = nn.ModuleList(nn.Embedding(k + 1, width) for _ in range(books))

    def forward(self, x: Tensor) -> Tensor:
        digits = self.digits[x]  # (..., m)
        return sum(book(digits[..., i]) for i, book in enumerate(self.books))


class FactoredHead(nn.Module):
    """Logits over the K = k ** m joint codes as the sum of m per-book logits: the prediction is a
    product of per-book distributions, so it can put mass on joint codes it never saw."""

    def __init__(self, width: int, n_codes: int, books: int) -> None:
        super().__init__()
        self.n_books = books
        self.proj = nn.Linear(width, books * book_size(n_codes, books))

    def forward(self, x: Tensor) -> Tensor:
        return joint_logits(self.proj(x), self.n_books)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.norm_t = AdaLN(cfg.width, cfg.width)
        self.attn = SelfAttention(cfg.width, cfg.heads)
        self.cross = CrossAttention(cfg.width, cfg.heads) if cfg.cond_tokens else None
        self.norm_c = AdaLN(cfg.width, cfg.clip_dim)
        self.mlp = ConvMLP(cfg) if cfg.mlp == "conv" else LinearMLP(cfg)

    def forward(self, x: Tensor, t_emb: Tensor, c: Tensor, context: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm_t(x, t_emb))
        if self.cross is not None:
            x = x + self.cross(x, context)
        return x + self.mlp(self.norm_c(x, c))


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        if cfg.mlp not in ("linear", "conv"):
            raise ValueError(f"mlp must be 'linear' or 'conv', got {cfg.mlp!r}")
        if cfg.cond_tokens < 0:
            raise ValueError(f"cond_tokens must be >= 0, got {cfg.cond_tokens}")
        self.cfg = cfg
        self.tok_emb = (nn.Embedding(cfg.n_codes + 1, cfg.width) if cfg.code_books == 1 else
                        FactoredEmbedding(cfg.n_codes, cfg.code_books, cfg.width))
        self.row_emb = nn.Parameter(torch.zeros(cfg.grid_h, 1, cfg.width))
        self.col_emb = nn.Parameter(torch.zeros(1, cfg.grid_w, cfg.width))
        self.t_emb = nn.Embedding(cfg.steps + 1, cfg.width)
        self.null = nn.Parameter(torch.zeros(cfg.clip_dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.head = (nn.Linear(cfg.width, cfg.n_codes) if cfg.code_books == 1 else
                     FactoredHead(cfg.width, cfg.n_codes, cfg.code_books))
        if cfg.cond_tokens:  # after the existing modules, so k = 0 draws the same initial weights as before
            self.to_context = nn.Linear(cfg.clip_dim, cfg.cond_tokens * cfg.width)
            self.context_norm = nn.LayerNorm(cfg.width)
        self.apply(self._init)
        for m in self.modules():
            if isinstance(m, AdaLN):
                nn.init.zeros_(m.to_scale_shift.weight)
                nn.init.zeros_(m.to_scale_shift.bias)
            if isinstance(m, CrossAttention):
                nn.init.zeros_(m.proj.weight)
        for p in (self.row_emb, self.col_emb):
            nn.init.normal_(p, std=0.02)
        nn.init.normal_(self.null, std=cfg.clip_dim ** -0.5)  # about unit norm, like a CLIP vector

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor, drop: Tensor | None = None) -> Tensor:
        """x_t: (B, h*w) or (B, h, w) tokens in 0..K; t: (B,) in 0..T; cond: (B, clip_dim);
        drop: (B,) bool, True = use the learned null embedding. Returns logits (B, h*w, K)."""
        cfg = self.cfg
        x_t = x_t.flatten(1)
        if x_t.shape[1] != cfg.grid_h * cfg.grid_w:
            raise ValueError(f"expected {cfg.grid_h}x{cfg.grid_w} tokens, got {x_t.shape[1]}")
        if drop is not None:
            cond = torch.where(drop[:, None], self.null.to(cond.dtype), cond)
        pos = (self.row_emb + self.col_emb).flatten(0, 1)
        x = self.tok_emb(x_t) + pos
        t_emb = self.t_emb(t)
        context = None
        if cfg.cond_tokens:
            context = self.context_norm(self.to_context(cond).view(len(cond), cfg.cond_tokens, cfg.width))
        for block in self.blocks:
            x = block(x, t_emb, cond, context)
        return self.head(self.norm(x))


def flops_per_step(cfg: TransformerConfig, batch: int = 1) -> int:
    """Forward FLOPs (2 per multiply-add) of one denoising step; training is about 3x.

    Counts the matmuls, convolutions and attention; norms, activations and embeddings
    lookups are a few percent and left out."""
    N, C, H = cfg.grid_h * cfg.grid_w, cfg.width, cfg.hidden
    mlp = (9 if cfg.mlp == "conv" else 1) * 2 * C * H
    per_token = 4 * C * C + mlp + 2 * N * C  # qkv+proj, MLP, scores and weighted sum
    per_sample = (C * C + 2 * C * C) + (cfg.clip_dim * C + 2 * C * C)  # the two AdaLN MLPs
    k = cfg.cond_tokens
    per_token += (2 * C * C + 2 * k * C) if k else 0  # cross-attention: q and out projections, scores and sum
    per_sample += 2 * k * C * C  # its keys and values
    per_block = N * per_token + per_sample
    total = cfg.depth * per_block + N * C * cfg.n_codes + k * cfg.clip_dim * C
    return 2 * batch * total
