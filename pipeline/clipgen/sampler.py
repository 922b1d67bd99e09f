"""CLIP-GEN's generator behind the sampling interface: codes drawn one at a time in raster order,
then the tokenizer's decoder.

Each position's logits may be guided (classifier-free: uncond + g * (cond - uncond), the
unconditional rows using the null embedding) and truncated to the top k codes and then to
the smallest set reaching probability p (top-p), before one multinomial draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.clipgen.model import ClipGPT, model_from_file
from pipeline.core.device import autocast
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.sampling import Decode, SamplingSettings


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Logits (B, K) with the codes outside the top k (0 = all), and then outside the smallest
    most probable set whose probability reaches top_p (1 = all), set to -inf. The likeliest
    code always stays, so a tiny top_p is greedy decoding."""
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top-p must be in (0, 1], got {top_p}")
    logits = logits.float()
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p < 1.0:
        probs, order = F.softmax(logits, -1).sort(-1, descending=True)
        above = probs.cumsum(-1) - probs  # probability of the codes ranked before each
        drop = torch.zeros_like(above, dtype=torch.bool).scatter(-1, order, above >= top_p)
        logits = logits.masked_fill(drop, -torch.inf)
    return logits


@torch.no_grad()
def sample(model: ClipGPT, cond: Tensor | None, *, n: int | None = None, guidance: float = 1.0, top_k: int = 0,
           top_p: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Code grids (B, h, w) long. cond: (B, clip_dim) CLIP embeddings, or None for unconditional
    samples (then B = n). Guidance 1 is the plain conditional model, 0 the unconditional one;
    the same generator seed on the same device gives the same codes."""
    cfg = model.cfg
    device = next(model.parameters()).device
    conditional = cond is not None and guidance != 0.0
    B = cond.shape[0] if cond is not None else n
    cond = torch.zeros(B, cfg.clip_dim, device=device) if cond is None else cond.to(device, torch.float32)
    guided = conditional and guidance != 1.0
    if guided:  # conditional rows, then the same rows unconditional: one batched pass per code
        cond = cond.repeat(2, 1)
        drop = torch.arange(2 * B, device=device) >= B
    else:
        drop = torch.full((B,), not conditional, device=device)
    cache = model.new_cache()
    codes = torch.empty(B, cfg.length, dtype=torch.long, device=device)
    with autocast(device):
        x = model.condition(cond, drop)
        for i in range(cfg.length):
            logits = model.run(x, i, cache)[:, -1].float()
            if guided:
                logits = logits[B:] + guidance * (logits[:B] - logits[B:])
            probs = F.softmax(filter_logits(logits, top_k, top_p), -1)
            codes[:, i] = torch.multinomial(probs, 1, generator=generator)[:, 0]
            x = model.tok_emb(codes[:, i].repeat(2 if guided else 1))[:, None]
    return codes.view(B, cfg.grid_h, cfg.grid_w)


@dataclass
class ClipgenGenerator:
    """A trained CLIP-GEN transformer and the tokenizer's decoder (pipeline.generator.sampling.Generator)."""
    model: ClipGPT
    decode: Decode
    conditioning: Conditioning
    kind: str = "clipgen"
    uses_guidance: bool = True
    full_steps: None = None  # no steps setting: one code per position

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_params(self) -> int:
        return self.model.num_params()

    def images(self, cond: Tensor | None, n: int, settings: SamplingSettings,
               generator: torch.Generator) -> Tensor:
        codes = sample(self.model, cond, n=n, guidance=settings.guidance, top_k=settings.top_k,
                       top_p=settings.truncation, generator=generator)
        return self.decode(codes).cpu()


def clipgen_generator(payload: dict[str, Any], decode: Decode, device: torch.device | str) -> ClipgenGenerator:
    """The generator of a read model file (pipeline.generator.files.read_generator_file)."""
    return ClipgenGenerator(model_from_file(payload, device), decode, Conditioning.from_file(payload["conditioning"]))
