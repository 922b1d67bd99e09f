"""CLIP-GEN's generator (Wang et al. 2022): a GPT over the raster-ordered code grid whose first
token is the CLIP embedding, and its model file (pipeline/generator/files.py).

The sequence is [c, code_0, ..., code_{L-2}] and position i predicts code_i, so one causal
pass scores a whole grid (teacher forcing) and sampling extends it a code at a time, keeping
each block's keys and values (the cache) instead of recomputing the prefix. The learnable
null embedding for classifier-free guidance lives here, so a checkpoint carries it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.generator.conditioning import Conditioning
from pipeline.generator.files import save_generator_file

Cache = list[list[Tensor]]  # per block: [keys, values] of the positions already run, empty at first


@dataclass(frozen=True)
class ClipgenConfig:
    n_codes: int        # K: the tokenizer's codebook size
    grid_h: int
    grid_w: int
    clip_dim: int = 512
    depth: int = 8
    width: int = 256
    heads: int = 8
    mlp_ratio: float = 4.0

    @property
    def length(self) -> int:
        """Codes per image, and positions in the sequence: code_{L-1} is only predicted, never fed in."""
        return self.grid_h * self.grid_w


class CausalSelfAttention(nn.Module):
    """Multi-head attention in which a position sees itself and the positions before it."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, cache: list[Tensor] | None = None) -> Tensor:
        """x: (B, N, C), the N positions after those in ``cache``, which gains their keys and values."""
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        past = k.shape[2] - N
        # with a cached prefix the queries are the last N keys: query i sees keys 0..past+i
        mask = torch.ones(N, past + N, dtype=torch.bool, device=x.device).tril(past) if past else None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=not past)
        return self.proj(y.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ClipgenConfig) -> None:
        super().__init__()
        hidden = int(cfg.width * cfg.mlp_ratio)
        self.norm_attn = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg.width, cfg.heads)
        self.norm_mlp = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, hidden), nn.GELU(), nn.Linear(hidden, cfg.width))

    def forward(self, x: Tensor, cache: list[Tensor] | None = None) -> Tensor:
        x = x + self.attn(self.norm_attn(x), cache)
        return x + self.mlp(self.norm_mlp(x))


class ClipGPT(nn.Module):
    def __init__(self, cfg: ClipgenConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.cond_proj = nn.Linear(cfg.clip_dim, cfg.width)
        self.null = nn.Parameter(torch.zeros(cfg.clip_dim))
        self.tok_emb = nn.Embedding(cfg.n_codes, cfg.width)
        self.pos_emb = nn.Parameter(torch.zeros(cfg.length, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.n_codes)
        self.apply(self._init)
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.null, std=cfg.clip_dim ** -0.5)  # about unit norm, like a CLIP vector
        for block in self.blocks:  # GPT-2: residual branches scaled down so depth does not grow the stream
            for proj in (block.attn.proj, block.mlp[-1]):
                nn.init.normal_(proj.weight, std=0.02 / (2 * cfg.depth) ** 0.5)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def condition(self, cond: Tensor, drop: Tensor | None = None) -> Tensor:
        """The first token (B, 1, width) from (B, clip_dim) embeddings; the null embedding where drop is True."""
        if drop is not None:
            cond = torch.where(drop[:, None], self.null.to(cond.dtype), cond)
        return self.cond_proj(cond)[:, None]

    def run(self, x: Tensor, start: int = 0, cache: Cache | None = None) -> Tensor:
        """Logits (B, N, K) for token embeddings x (B, N, width) at positions start..start+N-1,
        after the ``start`` positions whose keys and values ``cache`` holds (then extended)."""
        x = x + self.pos_emb[start:start + x.shape[1]]
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[i])
        return self.head(self.norm(x))

    def new_cache(self) -> Cache:
        return [[] for _ in self.blocks]

    def forward(self, codes: Tensor, cond: Tensor, drop: Tensor | None = None) -> Tensor:
        """codes: (B, L) long with L <= h*w (or (B, h, w)); cond: (B, clip_dim); drop: (B,) bool,
        True = the null embedding. Returns logits (B, L, K): position i predicts codes[:, i]."""
        codes = codes.flatten(1)
        if codes.shape[1] > self.cfg.length:
            raise ValueError(f"at most {self.cfg.length} codes ({self.cfg.grid_h}x{self.cfg.grid_w}), "
                             f"got {codes.shape[1]}")
        x = torch.cat([self.condition(cond, drop), self.tok_emb(codes[:, :-1])], 1)
        return self.run(x)


def save_model(path: Path, model: ClipGPT, config: ClipgenConfig, sources: dict[str, str],
               conditioning: Conditioning) -> None:
    """The trained (EMA) weights with the config that rebuilds them, the caches they came from
    and the pseudo-text setting that decides how prompts are fed to them."""
    save_generator_file(path, "clipgen", {"config": dataclasses.asdict(config), "state_dict": model.state_dict()},
                        sources, conditioning)


def model_from_file(payload: dict[str, Any], device: torch.device | str = "cpu") -> ClipGPT:
    """The network (eval mode) of a read model file (pipeline.generator.files.read_generator_file)."""
    model = ClipGPT(ClipgenConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
