"""bench/gpu.py: a plain "no CUDA device" exit without a GPU, and with --smoke-cpu every section's
code path on the CPU at a tiny size, written into a report whose other sections it keeps."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pipeline.core.params import load_params
from tests.conftest import REPO

SECTIONS = ("Paper transformer: training step", "Reverse step: ours against diffusers'", "Embed: CLIP",
            "Data parallelism: one-process DistributedDataParallel", "Tokenizer: training steps and encoding")
CPU_PART = """# Benchmarks

Written by `python bench/report.py` on a CPU.

## Reverse diffusion: our sampler step against diffusers' VQDiffusionScheduler

| config | ours ms/step |
| --- | ---: |
| paper scale | 421.54 |
"""
OLD_GPU_PART = """## GPU: NVIDIA A100-SXM4-80GB

### Paper transformer: training step, eager and compiled

| run | images/s |
| --- | ---: |
| eager | 1234 |
"""
LAST_CPU_PART = """## Diffusion training: throughput and model FLOPs utilisation

| config | images/s |
| --- | ---: |
| default | 5.5 |
"""


# bench/gpu.py run as a script with `import dvc` failing, as on a GPU machine without DVC
WITHOUT_DVC = ("import runpy, sys; sys.modules['dvc'] = None; sys.path.insert(0, 'bench'); "
               "sys.argv = ['bench/gpu.py', *sys.argv[1:]]; runpy.run_path('bench/gpu.py', run_name='__main__')")


def bench_gpu(*args: str, dvc: bool = True) -> subprocess.CompletedProcess:
    """bench/gpu.py with ``args`` and no CUDA device visible (``dvc`` False: with DVC unimportable)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    script = ["bench/gpu.py"] if dvc else ["-c", WITHOUT_DVC]
    return subprocess.run([sys.executable, *script, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def table_rows(text: str, title: str) -> list[str]:
    """The data rows of the table under the heading that starts with ``title``."""
    section = text.split(f"### {title}", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(rows) >= 3, f"no table under {title!r}:\n{section}"
    assert re.fullmatch(r"\| ---( \| ---:)* \|", rows[1]), rows[1]
    return rows[2:]


def test_without_cuda_it_says_so_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    run = bench_gpu("--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "no CUDA device: bench/gpu.py measures GPUs only" in run.stdout
    assert "nothing written" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert not out.exists()


def test_smoke_cpu_runs_every_section_and_replaces_only_the_gpu_part(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    out.write_text("\n".join([CPU_PART, OLD_GPU_PART, LAST_CPU_PART]))

    run = bench_gpu("--smoke-cpu", "--threads", "1", "--out", str(out))
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert text.startswith(CPU_PART) and text.endswith(LAST_CPU_PART)
    assert "A100" not in text and text.count("## GPU: ") == 1 and "## GPU: none (CPU smoke run" in text
    for title in SECTIONS:
        assert text.count(f"### {title}") == 1 and title in run.stdout
        for row in table_rows(text, title):
            assert "failed:" not in row, row
            assert "skipped:" not in row or row.startswith(("| torch.compile |", "| K=")), row
    (sampler,) = table_rows(text, SECTIONS[1])
    if importlib.util.find_spec("diffusers") is None:  # optional: the comparison says it is skipped
        assert "skipped: No module named 'diffusers'" in sampler
    else:
        assert re.search(r"\| [0-9.]+x \| [0-9.e+-]+ \| (yes|no) \|$", sampler), sampler
    eager, *_ = table_rows(text, SECTIONS[0])
    assert eager.startswith("| eager |") and re.search(r"\| [0-9.]+% \|", eager)

    # a failing row says so and the others still run; a rerun replaces its section
    run = bench_gpu("--smoke-cpu", "--threads", "1", "--batch", "0", "--out", str(out))
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert text.startswith(CPU_PART) and text.endswith(LAST_CPU_PART) and text.count("## GPU: ") == 1
    assert table_rows(text, SECTIONS[0])[0].startswith("| eager | failed: ZeroDivisionError")
    assert table_rows(text, SECTIONS[3])[0].startswith("| gloo | failed: ")
    assert all("failed:" not in row for row in table_rows(text, SECTIONS[4]))

    # past the time budget every row is skipped
    run = bench_gpu("--smoke-cpu", "--budget-s", "0", "--out", str(out))
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert text.count("## GPU: ") == 1 and text.endswith(LAST_CPU_PART)
    for title in SECTIONS:
        for row in table_rows(text, title):
            assert "skipped:" in row, row


def test_a_preset_composed_here_runs_where_dvc_is_not(tmp_path: Path) -> None:
    """--compose writes the preset as DVC composes it; --params reads it back with DVC unimportable (a GPU
    machine may lack it), and several --batch values give a row each."""
    preset = tmp_path / "ffhq256.yaml"
    run = bench_gpu("--compose", str(preset))
    assert run.returncode == 0, run.stderr
    params = load_params(preset)
    assert (params.train.depth, params.train.width, params.tokenizer.n_codes, params.ingest.resolution) == (
        24, 512, 4096, 256)
    out = tmp_path / "bench.md"
    run = bench_gpu("--smoke-cpu", "--threads", "1", "--params", str(preset), "--batch", "2", "3", "--out", str(out),
                    dvc=False)
    assert run.returncode == 0, run.stderr
    rows = table_rows(out.read_text(), SECTIONS[0])
    assert [row.split(" | ")[:3] for row in rows[:4]] == [
        ["| eager", "1M", "2"], ["| torch.compile", "skipped: build_trainer compiles on CUDA only", "-"],
        ["| eager", "1M", "3"], ["| torch.compile", "skipped: build_trainer compiles on CUDA only", "-"]]


@pytest.fixture
def gpu_script() -> Iterator[ModuleType]:
    """bench/gpu.py imported as a module, with its sibling scripts; all of them forgotten afterwards."""
    names = ("gpu", "embed", "tokenizer", "train")
    assert not any(name in sys.modules for name in names), "a module would shadow a bench script"
    sys.path.insert(0, str(REPO / "bench"))
    try:
        yield importlib.import_module("gpu")
    finally:
        sys.path.remove(str(REPO / "bench"))
        for name in names:
            sys.modules.pop(name, None)


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA H200", 989), ("NVIDIA H200 NVL", 835),
    ("NVIDIA A100-SXM4-80GB", 312), ("NVIDIA A100-PCIE-40GB", 312), ("NVIDIA A10", 125), ("NVIDIA L40S", 362),
    ("NVIDIA GeForce RTX 4090", 165)])
def test_dense_bf16_peaks_by_card_name(gpu_script: ModuleType, name: str, tflops: float) -> None:
    peak = gpu_script.card_peak(name, None)
    assert peak.flops == tflops * 1e12 and name in peak.source
    assert peak.mfu(0.4 * tflops * 1e12) == "40.0%"


def test_unknown_peaks_give_no_mfu_and_say_why(gpu_script: ModuleType) -> None:
    for name, why in (("Tesla V100-SXM2-16GB", "no bf16 tensor cores"), ("NVIDIA A10G", "--peak-tflops")):
        peak = gpu_script.card_peak(name, None)
        assert peak.flops is None and why in peak.source and peak.mfu(1e12) == "n/a"
    given = gpu_script.card_peak("NVIDIA A10G", 70.0)
    assert given.flops == 70e12 and "--peak-tflops" in given.source


def test_a_cpu_report_rewritten_keeps_the_gpu_part(gpu_script: ModuleType) -> None:
    """What bench/report.py does with the file it rewrites: bench/gpu.py's section stays."""
    old = "\n".join([CPU_PART, OLD_GPU_PART, LAST_CPU_PART])
    gpu = gpu_script.split_gpu_part(old)[2]
    assert gpu == OLD_GPU_PART.strip("\n")
    assert gpu_script.split_gpu_part(CPU_PART)[2] == ""
    rewritten = gpu_script.with_gpu_part("# Benchmarks\n\nA new CPU run.\n", gpu)
    assert rewritten == "# Benchmarks\n\nA new CPU run.\n\n" + OLD_GPU_PART
