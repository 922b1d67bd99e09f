"""Run the benchmarks and write their tables, with the machine they ran on, to reports/bench.md.

Each script also runs alone and prints the same tables; this only collects them. Runs on
CPU or CUDA unchanged (each script prints the device it used). On a CPU that other jobs
share, --threads 1 gives steadier figures: several threads then wait on each other at
every operation.

A `## GPU: <device>` section that bench/gpu.py wrote into the file is kept.

Usage: python bench/report.py [--out reports/bench.md] [--threads N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from gpu import split_gpu_part, with_gpu_part  # bench/ is sys.path[0] when this script runs
from pipeline.core.atomic import write_bytes

REPO = Path(__file__).resolve().parents[1]
SECTIONS = (  # (title, command line): a few minutes on a 2-core CPU
    ("Reverse diffusion: our sampler step against diffusers' VQDiffusionScheduler, and sampling speed",
     ["bench/sampler.py"]),
    ("Diffusion training: throughput and model FLOPs utilisation", ["bench/train.py", "--steps", "3"]),
)


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> list[str]:
    lines = [f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores",
             f"- GPU: {', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))}"
             if torch.cuda.is_available() else "- GPU: none (CPU run)",
             f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.platform()}"]
    if hasattr(os, "getloadavg"):
        lines.append("- load average when the run started (other jobs share the machine when it is above 0): "
                     + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench.md")
    parser.add_argument("--threads", type=int, help="passed on to each script")
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    itself = "python bench/report.py" + (f" --threads {args.threads}" if args.threads else "")
    parts = ["# Benchmarks", "", f"Written by `{itself}` on {stamp}.", "", *machine(), ""]
    for title, command in SECTIONS:
        command = [*command, *(["--threads", str(args.threads)] if args.threads else [])]
        shown = " ".join(["python", *command])
        print(f"running {shown}", file=sys.stderr)
        run = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"{shown} failed:\n{run.stderr}")
        parts += [f"## {title}", "", f"`{shown}`", "", run.stdout.strip(), ""]
    text = "\n".join(parts)
    gpu = split_gpu_part(args.out.read_text())[2] if args.out.exists() else ""
    write_bytes(args.out, (with_gpu_part(text, gpu) if gpu else text).encode())  # bench/gpu.py's part stays
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
