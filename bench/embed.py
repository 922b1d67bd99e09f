"""Embed-stage throughput against a bare open_clip `encode_image` loop, same model and batch.

The bare loop gets open_clip-preprocessed pixels that are already in memory and only runs the
network; the stage path reads the ingest shards, decodes the PNGs, preprocesses, embeds,
normalises and writes the Parquet cache. The difference is the stage's I/O overhead.
Weights do not change the cost, so the model is randomly initialised (no download).
``--limit N`` runs both paths on the first N images (one temporary ingest shard), which keeps
a large model such as ViT-B-32-quickgelu affordable on a CPU.

Usage: python bench/embed.py [--ingest data/ingest] [--model shapes-clip-tiny] [--batch-size 256] [--limit N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import open_clip
import pyarrow.parquet as pq
import torch

from pipeline.clip.encoder import ClipEncoder, preprocess_images
from pipeline.core.device import resolve_device
from pipeline.data.shards import SHARD_PATTERN, load_images, read_table
from pipeline.data.vectors import cache_ingest_shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ingest", type=Path, default=Path("data/ingest"))
    parser.add_argument("--model", default="shapes-clip-tiny")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = parser.parse_args()
    device = resolve_device(args.device)
    encoder = ClipEncoder.load(args.model, None, batch_size=args.batch_size, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        ingest = args.ingest
        if args.limit is not None:
            ingest = Path(tmp) / "ingest"
            ingest.mkdir()
            pq.write_table(read_table(args.ingest).slice(0, args.limit), ingest / SHARD_PATTERN.format(0))
        run(encoder, ingest, args, device, Path(tmp))


@torch.inference_mode()
def bare_seconds(encoder: ClipEncoder, pixels: torch.Tensor, device: torch.device) -> float:
    """Seconds of a bare `encode_image` loop over preprocessed ``pixels`` in memory, in the
    encoder's batches and input dtype, after a one-batch warm-up."""
    batch = encoder.batch_size
    encoder.model.encode_image(pixels[:batch].to(device, encoder.input_dtype))  # warm-up
    start = time.perf_counter()
    for i in range(0, len(pixels), batch):
        encoder.model.encode_image(pixels[i:i + batch].to(device, encoder.input_dtype))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(encoder: ClipEncoder, ingest: Path, args: argparse.Namespace, device: torch.device, tmp: Path) -> None:
    _, images = load_images(ingest)
    bare = bare_seconds(encoder, preprocess_images(encoder.model, images), device)

    start = time.perf_counter()
    rows = cache_ingest_shards(ingest, tmp / "embeddings", "embedding", encoder.embed_images,
                               {"model": args.model}, desc="embed")
    stage = time.perf_counter() - start

    print(f"\nembed of {rows} images, {args.model}, batch {args.batch_size}, {device} "
          f"(torch {torch.__version__}, open_clip {open_clip.__version__}, {torch.get_num_threads()} threads)")
    print(f"{'path':<34} {'seconds':>8} {'images/s':>9}")
    print(f"{'bare open_clip encode_image':<34} {bare:>8.1f} {rows / bare:>9.0f}")
    print(f"{'embed stage (read+decode+write)':<34} {stage:>8.1f} {rows / stage:>9.0f}")
    print(f"stage overhead: {100 * (stage / bare - 1):.1f}% of the bare loop's time")


if __name__ == "__main__":
    main()
