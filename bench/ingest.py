"""Ingest throughput on the shapes world: images/s with one worker and with every core.

Usage: python bench/ingest.py [--n-images 20000] [--resolution 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from pipeline.core.params import load_params
from pipeline.data.ingest import ingest
from pipeline.worlds.shapes.render import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-images", type=int, default=20000)
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args()
    base = load_params(Path(__file__).resolve().parents[1] / "params.yaml").ingest
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        generate(world, args.n_images, args.resolution, seed=0)
        rows = []
        for workers in sorted({1, os.cpu_count() or 1}):
            params = dataclasses.replace(base, source=str(world), resolution=args.resolution, workers=workers)
            start = time.perf_counter()
            result = ingest(params, Path(tmp) / f"out-{workers}")
            seconds = time.perf_counter() - start
            rows.append((workers, result.summary["kept"], seconds, result.summary["read"] / seconds))
    print(f"\ningest of {args.n_images} shapes images at {args.resolution} px, {os.cpu_count()} cores")
    print(f"{'workers':>8} {'kept':>8} {'seconds':>9} {'images/s':>10}")
    for workers, kept, seconds, rate in rows:
        print(f"{workers:>8} {kept:>8} {seconds:>9.1f} {rate:>10.0f}")


if __name__ == "__main__":
    main()
