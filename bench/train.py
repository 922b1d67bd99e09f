"""Diffusion training throughput and model FLOPs utilisation (MFU) against a measured fp32
matmul peak, for the default config and a paper-sized one (24 layers, width 512, 16x16).

Usage: python bench/train.py [--steps 5] [--paper-batch 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pipeline.device import resolve_device
from pipeline.diffusion import Schedule, TimestepSampler, training_loss
from pipeline.params import load_params
from pipeline.pseudo_text import pseudo_text
from pipeline.training import make_adamw
from pipeline.transformer import Transformer, TransformerConfig, flops_per_step


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def bench(cfg: TransformerConfig, batch: int, steps: int, device: torch.device) -> tuple[float, float]:
    """(images/s, achieved FLOP/s) of full training steps (forward, backward, AdamW)."""
    model = Transformer(cfg).to(device)
    optimizer = make_adamw(model, 1e-4, (0.9, 0.96), 0.0)
    schedule, sampler = Schedule(cfg.n_codes, cfg.steps), TimestepSampler(cfg.steps)
    codes = torch.randint(0, cfg.n_codes, (batch, cfg.grid_h, cfg.grid_w), device=device)
    clip = torch.nn.functional.normalize(torch.randn(batch, cfg.clip_dim, device=device), dim=-1)

    def step() -> None:
        cond, drop = pseudo_text(clip, "clipvq", 0.5, 0.1)
        loss = training_loss(model, codes, cond, drop, schedule, sampler, 5e-4).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return batch * steps / seconds, 3 * flops_per_step(cfg, batch) * steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--paper-batch", type=int, default=4)
    args = parser.parse_args()
    train = load_params(Path(__file__).resolve().parents[1] / "params.yaml").train
    device = resolve_device(train.device)
    peak = matmul_peak(device)
    default = TransformerConfig(n_codes=512, grid_h=8, grid_w=8, steps=train.diffusion_steps, clip_dim=256,
                                depth=train.depth, width=train.width, heads=train.heads, mlp_ratio=train.mlp_ratio,
                                mlp=train.mlp)
    paper = TransformerConfig(n_codes=4096, grid_h=16, grid_w=16, steps=100, clip_dim=512, depth=24, width=512,
                              heads=16, mlp="conv")
    print(f"\ndevice: {device} ({torch.get_num_threads()} threads), fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'config':<28} {'params':>8} {'batch':>6} {'images/s':>9} {'GFLOP/s':>8} {'MFU':>6}")
    for name, cfg, batch in (("default (8x8, K=512)", default, train.batch_size),
                             ("paper (24x512, 16x16, conv)", paper, args.paper_batch)):
        rate, flops = bench(cfg, batch, args.steps, device)
        params = Transformer(cfg).num_params()
        print(f"{name:<28} {params / 1e6:>7.1f}M {batch:>6} {rate:>9.1f} {flops / 1e9:>8.1f} {flops / peak:>6.1%}")


if __name__ == "__main__":
    main()
