"""Diffusion training throughput and model FLOPs utilisation (MFU) against a measured fp32
matmul peak, for the default config and a paper-sized one (24 layers, width 512, 16x16).

It times pipeline/diffusion/train.py's train_step, the step the train stage runs, with the
train: settings of params.yaml (optimiser, precision, compile, EMA) on random codes.

Usage: python bench/train.py [--steps 5] [--paper-batch 4] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from pipeline.core.device import resolve_device
from pipeline.core.params import TrainParams, load_params
from pipeline.core.training import Prefetcher, batch_indices
from pipeline.generator.pseudo_text import ConditionMeans
from pipeline.diffusion.train import Trainer, build_trainer, model_config, train_step
from pipeline.diffusion.transformer import Transformer, TransformerConfig, flops_per_step
from pipeline.tokenizer.model import downsampling_factor

CLIP_DIM = 128  # the shapes CLIP's embedding width (pipeline/clip/configs)


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 10,
                dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of the fastest of ``repeats`` matmuls in ``dtype`` (the best case, robust to a busy machine)."""
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def random_training(params: TrainParams, cfg: TransformerConfig, device: torch.device) -> tuple[Trainer, Prefetcher]:
    """The train stage's trainer for ``cfg`` and a loader of ``params.batch_size`` images a step,
    drawn from four batches' worth of random codes and unit embeddings."""
    batch = params.batch_size
    codes = torch.randint(0, cfg.n_codes, (4 * batch, cfg.grid_h, cfg.grid_w))
    embeddings = torch.nn.functional.normalize(torch.randn(4 * batch, cfg.clip_dim), dim=-1)
    loader = Prefetcher([codes, embeddings], lambda step: batch_indices(len(codes), batch, step, params.seed), device)
    text = torch.nn.functional.normalize(torch.randn(cfg.clip_dim), dim=0)  # C3's text mean, when params ask for C3
    return build_trainer(params, cfg, device, ConditionMeans(image=embeddings.mean(0), text=text)), loader


def bench(params: TrainParams, cfg: TransformerConfig, steps: int, device: torch.device) -> tuple[float, float]:
    """(images/s, achieved FLOP/s) of full training steps (noise, forward, backward, AdamW, EMA)
    of ``params.batch_size`` images drawn from four batches' worth of random codes."""
    batch = params.batch_size
    trainer, loader = random_training(params, cfg, device)
    train_step(trainer, loader, 0, params)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        train_step(trainer, loader, step, params)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return batch * steps / seconds, 3 * flops_per_step(cfg, batch) * steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--paper-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    train = params.train
    k, grid = params.tokenizer.n_codes, params.ingest.resolution // downsampling_factor(params.tokenizer.ch_mult)
    device = resolve_device(train.device)
    peak = matmul_peak(device)
    default = model_config(train, k, grid, grid, CLIP_DIM)
    paper = dataclasses.replace(default, n_codes=4096, grid_h=16, grid_w=16, clip_dim=512, depth=24, width=512,
                                heads=16, mlp="conv")
    print(f"device: {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
          f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s\n")
    print(f"Training steps (train_step: noise, forward, backward, AdamW, EMA), {args.steps} timed after one warm-up:\n")
    print("| config | params | batch | images/s | GFLOP/s | MFU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, cfg, batch in ((f"default ({grid}x{grid}, K={k})", default, train.batch_size),
                             ("paper (24x512, 16x16, conv)", paper, args.paper_batch)):
        rate, flops = bench(dataclasses.replace(train, batch_size=batch), cfg, args.steps, device)
        n_params = Transformer(cfg).num_params()
        print(f"| {name} | {n_params / 1e6:.1f}M | {batch} | {rate:.3g} | {flops / 1e9:.1f} | {flops / peak:.1%} |")


if __name__ == "__main__":
    main()
