"""Tokenizer throughput at the params.yaml config: training images/s and encode images/s.

Random pixels cost what real images cost, so no data is needed. Training steps are the
stage's own (`train_tokenizer`: soft Gumbel path, backward, AdamW); encoding is the hard
argmax path the token cache uses.

Usage: python bench/tokenizer.py [--steps 30] [--encode 2048] [--resolution 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from pipeline.core.device import resolve_device
from pipeline.core.params import load_params
from pipeline.tokenizer.model import VQGAN, encode_all
from pipeline.tokenizer.train import build_vqgan, train_tokenizer


def encoding_rate(model: VQGAN, images: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Images/s of the token cache's hard (argmax) path, `encode_all`, after a one-batch warm-up."""
    encode_all(model, images[:batch_size], batch_size)  # warm-up
    start = time.perf_counter()
    encode_all(model, images, batch_size)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--encode", type=int, default=2048, help="images to encode")
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args()
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml").tokenizer
    device = resolve_device(params.device)
    images = torch.randint(0, 256, (max(params.batch_size * 4, args.encode), 3, args.resolution, args.resolution),
                           dtype=torch.uint8)

    warm = dataclasses.replace(params, steps=2, checkpoint_every=10**9)
    timed = dataclasses.replace(params, steps=2 + args.steps, checkpoint_every=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        train_tokenizer(warm, images, Path(tmp) / "warm", progress=False)
        start = time.perf_counter()
        result = train_tokenizer(timed, images, Path(tmp) / "timed", progress=False)
        seconds = time.perf_counter() - start
    train_rate = (2 + args.steps) * params.batch_size / seconds

    model = build_vqgan(params, args.resolution).to(device)
    encode_rate = encoding_rate(model, images[:args.encode], params.encode_batch_size, device)

    parameters = sum(p.numel() for p in result.model.parameters())
    print(f"\ntokenizer at {args.resolution} px, grid {result.model.grid}x{result.model.grid}, K={params.n_codes}, "
          f"ch={params.ch} ch_mult={params.ch_mult}, {parameters / 1e6:.2f} M parameters, {device} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"{'path':<34} {'batch':>6} {'images/s':>9}")
    print(f"{'train step (soft Gumbel + AdamW)':<34} {params.batch_size:>6} {train_rate:>9.0f}")
    print(f"{'encode (hard argmax)':<34} {params.encode_batch_size:>6} {encode_rate:>9.0f}")
    print(f"default run of {params.steps} steps: about {params.steps * params.batch_size / train_rate / 60:.1f} min")


if __name__ == "__main__":
    main()
