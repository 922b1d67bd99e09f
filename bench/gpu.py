"""GPU smoke test and benchmark at paper scale, in under 5 minutes on one GPU.

Why: the CPU benchmarks (bench/report.py) say nothing about the GPU runs of the paper-scale
presets. This runs each GPU path once, at conf/preset/ffhq256.yaml's sizes with random
weights and data (they do not change the cost), and measures it:

1. the paper transformer's training step (the train stage's `train_step`) in bf16, eager and
   compiled: images/s, achieved TFLOP/s, MFU against the card's dense bf16 peak, peak memory;
2. the sampler's reverse step against diffusers' VQDiffusionScheduler (bench/sampler.py);
3. embedding with ViT-B/32 (random weights), images/s;
4. one-process NCCL data parallelism: the transformer in DistributedDataParallel, a few steps;
5. tokenizer training steps (GAN off and on) and encoding, images/s.

Each section is a Markdown table, printed and written under `## GPU: <device>` in
reports/bench.md (--out), in place of an earlier GPU section; the rest of the file, the CPU
sections bench/report.py writes, stays as it is. A failing row (a compile error, out of
memory) says what failed and the others still run; rows after the time budget are skipped.
Without a CUDA device it says so and writes nothing. --smoke-cpu runs every section on the
CPU at a tiny size (fp32, no compile, gloo), to test the code paths; its figures mean nothing.
The sampler comparison needs diffusers: pip install -e '.[bench]'.

Usage: python bench/gpu.py [--batch 64 [128 ...]] [--tokenizer-batch 16] [--budget-s 270] [--peak-tflops T]
                           [--out reports/bench.md] [--smoke-cpu] [--threads N] (--help: all flags)
       python bench/gpu.py --compose FILE   # here, with DVC: the preset's params, for
       python bench/gpu.py --params FILE    # there, on a GPU machine without DVC
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import os
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import open_clip
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from pipeline.clip.encoder import ClipEncoder, preprocess_images
from pipeline.core.atomic import write_bytes
from pipeline.core.params import Params, TokenizerParams, TrainParams, load_params
from pipeline.core.training import Prefetcher, batch_indices
from pipeline.diffusion.train import model_config, train_step
from pipeline.diffusion.transformer import TransformerConfig, flops_per_step
from pipeline.tokenizer.model import downsampling_factor
from pipeline.tokenizer.train import _build_trainer, _step, build_vqgan

# the other benchmarks: bench/ is sys.path[0] when this script runs
from embed import bare_seconds
from tokenizer import encoding_rate
from train import matmul_peak, random_training

REPO = Path(__file__).resolve().parents[1]
PRESET = "ffhq256"
GPU_HEADING = "## GPU: "
SECTION_END = re.compile(r"#{1,2} ")  # a heading at the GPU section's level or above ends it

# Dense (no sparsity) bf16 tensor-core peaks of the data sheets, TFLOP/s, by a pattern of
# torch.cuda.get_device_name(); the first match counts. None: no bf16 tensor cores.
BF16_PEAK_TFLOPS: tuple[tuple[str, float | None], ...] = (
    (r"H100 PCIe", 756.0),
    (r"H[12]00 NVL", 835.0),
    (r"H100|H200", 989.0),
    (r"A100", 312.0),
    (r"L40S", 362.0),
    (r"\bA10\b", 125.0),
    (r"RTX 4090", 165.0),  # with fp32 accumulation, as autocast runs
    (r"V100", None),
)
TARGET_MFU = 0.40  # the acceptance figures
TARGET_SPEEDUP, TARGET_GAP = 5.0, 1e-5

SIZES = {  # the size flags: (default, default with --smoke-cpu, what it sets)
    "batch": (64, 4, "the paper transformer's training batch; several give a row each (the first also for DDP)"),
    "tokenizer_batch": (16, 4, "the tokenizer's training batch (the preset's is 64 over 8 GPUs)"),
    "steps": (10, 2, "timed steps of each training measurement; the median counts"),
    "warmup": (3, 1, "untimed steps before them, where compilation happens"),
    "repeats": (3, 2, "timed runs of the other measurements; the best counts"),
    "points": (10, 3, "timesteps of each sampler sweep"),
}


@dataclass(frozen=True)
class Peak:
    flops: float | None  # FLOP/s that MFU is a fraction of; None: no MFU
    source: str  # where the figure comes from, or why there is none

    def mfu(self, flops: float) -> str:
        return f"{flops / self.flops:.1%}" if self.flops else "n/a"


def card_peak(name: str, given_tflops: float | None) -> Peak:
    """The dense bf16 peak of the card called ``name``, or ``given_tflops`` when given."""
    if given_tflops:
        return Peak(given_tflops * 1e12, f"{given_tflops:g} TFLOP/s (--peak-tflops)")
    for pattern, tflops in BF16_PEAK_TFLOPS:
        if re.search(pattern, name):
            if tflops is None:
                return Peak(None, f"none: {name} has no bf16 tensor cores, so MFU is n/a")
            return Peak(tflops * 1e12, f"{tflops:g} TFLOP/s, the dense bf16 peak of the {name} data sheet")
    return Peak(None, f"unknown for {name!r}, so MFU is n/a (give it with --peak-tflops)")


class Budget:
    """Wall-clock seconds for the measurements, counted from their start (after the imports)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self) -> bool:
        return self.elapsed() >= self.seconds


@dataclass(frozen=True)
class Setup:
    """What every section measures with: the preset's params (shrunk for --smoke-cpu) and the sizes."""
    params: Params
    device: torch.device
    peak: Peak
    budget: Budget
    batches: tuple[int, ...]  # the transformer's training batches, a row each
    tokenizer_batch: int
    steps: int  # timed steps of each training measurement (the median counts)
    warmup: int  # untimed steps before them (compilation happens there)
    repeats: int  # timed runs of the other measurements (the best counts)
    points: int  # timesteps of each sampler sweep

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


@dataclass
class Table:
    """A Markdown table with a title and notes; the first column labels the rows."""
    title: str
    columns: list[str]
    notes: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def measure(self, label: str, row: Callable[[], list[str]], setup: Setup) -> None:
        """Add ``label`` with the cells ``row`` measures, or say why there are none."""
        if setup.budget.spent():
            self.note(label, f"skipped: the {setup.budget.seconds:g} s budget is spent")
            return
        try:
            fresh_memory(setup.device)
            self.rows.append([label, *row()])
        except Exception as error:  # reported in the table; the other rows still run
            traceback.print_exc()
            self.note(label, f"failed: {summary(error)}")

    def note(self, label: str, text: str) -> None:
        """A row of ``label`` and ``text`` instead of figures."""
        self.rows.append([label, text, *["-"] * (len(self.columns) - 2)])

    def markdown(self) -> str:
        def line(cells: list[str]) -> str:
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        align = ["---", *["---:"] * (len(self.columns) - 1)]
        return "\n".join([f"### {self.title}", "", *self.notes, "", line(self.columns), line(align),
                          *map(line, self.rows)])


def summary(error: Exception) -> str:
    """The error's type and the first line of its message, at most 200 characters."""
    message = str(error).strip()
    return f"{type(error).__name__}: {message.splitlines()[0][:200]}" if message else type(error).__name__


def fresh_memory(device: torch.device) -> None:
    """Free what earlier rows left and restart the peak-memory count."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}" if device.type == "cuda" else "n/a (CPU)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_step(step: Callable[[int], object], setup: Setup) -> float:
    """Median seconds of ``step(i)`` over ``setup.steps`` calls after ``setup.warmup`` untimed ones."""
    for i in range(setup.warmup):
        step(i)
    times = []
    for i in range(setup.warmup, setup.warmup + setup.steps):
        sync(setup.device)
        start = time.perf_counter()
        step(i)
        sync(setup.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def best_run(run: Callable[[], object], setup: Setup) -> float:
    """Fewest seconds of ``setup.repeats`` runs after an untimed one."""
    run()
    times = []
    for _ in range(setup.repeats):
        sync(setup.device)
        start = time.perf_counter()
        run()
        sync(setup.device)
        times.append(time.perf_counter() - start)
    return min(times)


def on_off(flag: bool) -> str:
    return "on" if flag else "off"


def grid_side(params: Params) -> int:
    return params.ingest.resolution // downsampling_factor(params.tokenizer.ch_mult)


def transformer_config(params: Params) -> TransformerConfig:
    """The train stage's transformer for the preset's tokenizer grid and CLIP width."""
    clip_dim = open_clip.get_model_config(params.clip.model)["embed_dim"]
    return model_config(params.train, params.tokenizer.n_codes, grid_side(params), grid_side(params), clip_dim)


def precision(setup: Setup, on_cuda: str) -> str:
    """How a section runs: ``on_cuda`` on CUDA; fp32 on the CPU, as the stages run there."""
    return on_cuda if setup.cuda else "fp32 (CPU)"


# the transformer's training step


def training_row(params: TrainParams, cfg: TransformerConfig, setup: Setup) -> list[str]:
    trainer, loader = random_training(params, cfg, setup.device)
    seconds = median_step(lambda step: train_step(trainer, loader, step, params), setup)
    flops = 3 * flops_per_step(cfg, params.batch_size) / seconds  # backward is about twice the forward
    return [f"{trainer.model.num_params() / 1e6:.0f}M", str(params.batch_size), f"{seconds * 1e3:.1f}",
            f"{params.batch_size / seconds:.1f}", f"{flops / 1e12:.3g}", setup.peak.mfu(flops),
            peak_memory(setup.device)]


def reference_matmul(setup: Setup) -> tuple[int, torch.dtype]:
    """(side, dtype) of the square matmul beside the training rows: bf16 on CUDA, a small fp32 one on CPU."""
    return (8192, torch.bfloat16) if setup.cuda else (512, torch.float32)


def matmul_row(setup: Setup) -> list[str]:
    size, dtype = reference_matmul(setup)
    flops = matmul_peak(setup.device, size, setup.repeats + 2, dtype)
    return ["-", "-", f"{2 * size**3 / flops * 1e3:.2f}", "-", f"{flops / 1e12:.3g}", setup.peak.mfu(flops),
            peak_memory(setup.device)]


def transformer_section(setup: Setup) -> Table:
    cfg = transformer_config(setup.params)
    trains = [dataclasses.replace(setup.params.train, batch_size=batch) for batch in setup.batches]
    table = Table("Paper transformer: training step, eager and compiled",
                  ["run", "parameters", "batch", "step ms", "images/s", "TFLOP/s", "MFU",
                   "peak memory GiB"],
                  [f"{cfg.depth} x {cfg.width}, {cfg.heads} heads, {cfg.mlp} MLP, K={cfg.n_codes}, "
                   f"{cfg.grid_h}x{cfg.grid_w} grid, CLIP width {cfg.clip_dim}, T={cfg.steps}; "
                   f"{precision(setup, f'{trains[0].precision} autocast')}. The train stage's `train_step` (noise, "
                   "forward, backward, clipping, AdamW, EMA) on random codes; median of "
                   f"{setup.steps} steps (after {setup.warmup} warm-up). FLOPs are 3x `flops_per_step`.",
                   "",
                   f"MFU is of the peak: {setup.peak.source}. Target: MFU >= {TARGET_MFU:.0%} at a batch that "
                   "fits. The matmul row is the reference: one square matmul, best of "
                   f"{setup.repeats + 2}."])
    for train in trains:
        table.measure("eager", lambda: training_row(dataclasses.replace(train, compile=False), cfg, setup), setup)
        if setup.cuda:
            table.measure("torch.compile",
                          lambda: training_row(dataclasses.replace(train, compile=True), cfg, setup), setup)
        else:
            table.note("torch.compile", "skipped: build_trainer compiles on CUDA only")
    size, dtype = reference_matmul(setup)
    table.measure(f"reference: {str(dtype).removeprefix('torch.')} matmul {size}x{size}", lambda: matmul_row(setup),
                  setup)
    return table


# the sampler's reverse step against diffusers'


def sampler_section(setup: Setup) -> Table:
    params = setup.params
    n_codes, grid, batch, steps = (params.tokenizer.n_codes, grid_side(params), params.sample.samples_per_prompt,
                                   params.train.diffusion_steps)
    table = Table("Reverse step: ours against diffusers' VQDiffusionScheduler",
                  ["config", "ours ms/step", "diffusers ms/step", "diffusers / ours", "max abs dp",
                   f">= {TARGET_SPEEDUP:g}x at <= {TARGET_GAP:g}"],
                  ["bench/sampler.py's `step_cost`: one reverse step without the network (posterior and draw), "
                   f"best of {setup.repeats} sweeps of {setup.points} timesteps over T..1, both on the same inputs; "
                   "max abs dp is the largest gap between the two posteriors' probabilities. The batch is "
                   "sample.samples_per_prompt, one prompt's samples."])
    label = f"K={n_codes}, {grid}x{grid} grid, batch {batch}, T={steps}"
    try:
        from sampler import step_cost  # bench/sampler.py, which imports diffusers, an optional dependency
    except ImportError as error:
        table.note(label, f"skipped: {error} (pip install -e '.[bench]')")
        return table

    def row() -> list[str]:
        cost = step_cost(n_codes, grid, batch, steps, setup.points, setup.repeats, setup.device)
        speedup = cost["diffusers"] / cost["ours"]
        meets = speedup >= TARGET_SPEEDUP and cost["gap"] <= TARGET_GAP
        return [f"{cost['ours'] * 1e3:.3f}", f"{cost['diffusers'] * 1e3:.3f}", f"{speedup:.2f}x",
                f"{cost['gap']:.1e}", "yes" if meets else "no"]

    table.measure(label, row, setup)
    return table


# the embed stage's CLIP


def embed_section(setup: Setup) -> Table:
    clip = setup.params.clip
    size = ClipEncoder.input_size(clip.model)
    images = torch.randint(0, 256, (4 * clip.batch_size, 3, size, size), dtype=torch.uint8)
    table = Table("Embed: CLIP image embeddings",
                  ["path", "batch", "images/s"],
                  [f"{clip.model} at {size} px with random weights (no download; the weights do not change the "
                   f"cost), {precision(setup, f'{clip.precision} weights')}, {len(images)} images, best of "
                   f"{setup.repeats}, CPU threads: {torch.get_num_threads()}. `embed_images` is the stage's call on "
                   "uint8 images (preprocessing, transfer, encoding, normalised rows back on the CPU) without its file "
                   "I/O; "
                   "the bare loop only runs `encode_image` on preprocessed pixels in memory (bench/embed.py)."])

    def encoder() -> ClipEncoder:
        return ClipEncoder.load(clip.model, None, clip.precision, clip.batch_size, setup.device.type)

    def stage_row() -> list[str]:
        model = encoder()
        return [str(clip.batch_size), f"{len(images) / best_run(lambda: model.embed_images(images), setup):.0f}"]

    def bare_row() -> list[str]:
        model = encoder()
        pixels = preprocess_images(model.model, images)
        seconds = min(bare_seconds(model, pixels, setup.device) for _ in range(setup.repeats))
        return [str(clip.batch_size), f"{len(images) / seconds:.0f}"]

    table.measure("embed_images (the stage's call)", stage_row, setup)
    table.measure("bare encode_image loop", bare_row, setup)
    return table


# data parallelism


@contextmanager
def lone_process_group(backend: str) -> Iterator[None]:
    """A process group of this process alone (rank 0 of 1), met through a file in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group(backend, init_method=f"file://{tmp}/rendezvous", rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


def ddp_row(params: TrainParams, cfg: TransformerConfig, backend: str, setup: Setup) -> list[str]:
    with lone_process_group(backend):
        trainer, loader = random_training(params, cfg, setup.device)
        trainer.net = DistributedDataParallel(trainer.model, device_ids=[setup.device] if setup.cuda else None)
        losses = []
        seconds = median_step(lambda step: losses.append(train_step(trainer, loader, step, params)[0].loss), setup)
        finite = all(bool(torch.isfinite(loss.detach())) for loss in losses)
    return ["1", f"{trainer.model.num_params() / 1e6:.0f}M", str(params.batch_size), f"{seconds * 1e3:.1f}",
            f"{params.batch_size / seconds:.1f}", "yes" if finite else "no", peak_memory(setup.device)]


def ddp_section(setup: Setup) -> Table:
    backend = "nccl" if setup.cuda else "gloo"
    cfg = transformer_config(setup.params)
    train = dataclasses.replace(setup.params.train, batch_size=setup.batches[0], compile=False)
    table = Table("Data parallelism: one-process DistributedDataParallel step",
                  ["backend", "world size", "parameters", "batch", "step ms", "images/s", "losses finite",
                   "peak memory GiB"],
                  [f"The paper transformer (eager, {precision(setup, f'{train.precision} autocast')}) in "
                   f"DistributedDataParallel over a {backend} process group of world size 1 (file:// rendezvous), "
                   f"`train_step` as in the eager row above; median of {setup.steps} steps (after {setup.warmup} "
                   "warm-up). It checks the collective path runs; with one process the all-reduce moves "
                   "no data between GPUs."])
    table.measure(backend, lambda: ddp_row(train, cfg, backend, setup), setup)
    return table


# the tokenizer


def tokenizer_step_row(params: TokenizerParams, images: torch.Tensor, setup: Setup) -> list[str]:
    """The tokenizer stage's own training step, timed without its loop's logging and checkpoints."""
    trainer = _build_trainer(params, images.shape[-1], setup.device, None)
    loader = Prefetcher([images], lambda step: batch_indices(len(images), params.batch_size, step, params.seed),
                        setup.device)
    seconds = median_step(lambda step: _step(trainer, loader, step, params), setup)
    return [str(params.batch_size), f"{seconds * 1e3:.1f}", f"{params.batch_size / seconds:.1f}",
            peak_memory(setup.device)]


def encode_row(params: TokenizerParams, images: torch.Tensor, setup: Setup) -> list[str]:
    model = build_vqgan(params, images.shape[-1]).to(setup.device)
    rate = max(encoding_rate(model, images, params.encode_batch_size, setup.device) for _ in range(setup.repeats))
    return [str(params.encode_batch_size), f"{params.encode_batch_size / rate * 1e3:.1f}", f"{rate:.1f}",
            peak_memory(setup.device)]


def tokenizer_section(setup: Setup) -> Table:
    params = dataclasses.replace(setup.params.tokenizer, batch_size=setup.tokenizer_batch)
    size = setup.params.ingest.resolution
    images = torch.randint(0, 256, (4 * max(params.batch_size, params.encode_batch_size), 3, size, size),
                           dtype=torch.uint8)
    grid = grid_side(setup.params)
    table = Table("Tokenizer: training steps and encoding",
                  ["path", "batch", "step ms", "images/s", "peak memory GiB"],
                  [f"Gumbel VQGAN at {size} px: K={params.n_codes}, {grid}x{grid} grid, ch {params.ch}, ch_mult "
                   f"{list(params.ch_mult)}, attention at {list(params.attn_resolutions)}. Training is the stage's "
                   f"`_step` (soft Gumbel path, backward, AdamW; with the GAN, the patch discriminator, its step and "
                   f"the adaptive weight), {precision(setup, f'{params.precision} autocast')}, torch.compile "
                   f"{on_off(params.compile and setup.cuda)}, channels_last "
                   f"{on_off(params.channels_last and setup.cuda)}; "
                   f"median of {setup.steps} steps (after {setup.warmup} warm-up). Encoding is the token cache's "
                   f"`encode_all` (hard argmax, fp32) of {len(images)} images, best of {setup.repeats}."])
    table.measure(f"train step before disc_start ({params.disc_start})",
                  lambda: tokenizer_step_row(params, images, setup), setup)
    table.measure("train step with the GAN",
                  lambda: tokenizer_step_row(dataclasses.replace(params, disc_start=0), images, setup), setup)
    table.measure("encode", lambda: encode_row(params, images, setup), setup)
    return table


# the costly tokenizer (its compilation) last, so that a tight budget skips it before the others
SECTIONS = (transformer_section, sampler_section, embed_section, ddp_section, tokenizer_section)


# the report


def shrunk(params: Params) -> Params:
    """The preset at a size a CPU runs in seconds (--smoke-cpu): the code paths, not the figures."""
    tokenizer = dataclasses.replace(params.tokenizer, n_codes=64, code_dim=16, ch=8, num_res_blocks=1,
                                    encode_batch_size=8)
    return dataclasses.replace(
        params, ingest=dataclasses.replace(params.ingest, resolution=32), tokenizer=tokenizer,
        train=dataclasses.replace(params.train, depth=2, width=64, heads=4),
        clip=dataclasses.replace(params.clip, model="shapes-clip-tiny", batch_size=8),
        sample=dataclasses.replace(params.sample, samples_per_prompt=4))


def preset_params(out: Path | None = None) -> Params:
    """The preset composed from conf/ as `dvc exp run -S preset=...` composes it, also written to ``out``
    when given (needs DVC, so imported here; --params does without)."""
    from pipeline.core.conf import compose, compose_to
    conf, override = REPO / "conf", f"preset={PRESET}"
    return compose_to(out, conf, override) if out else compose(conf, override)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU smoke run, --smoke-cpu)"


def gpu_part(tables: list[Table], setup: Setup, command: str, stamp: str) -> str:
    """The `## GPU: <device>` section: where and how it ran, then the tables so far."""
    cuda = f"CUDA {torch.version.cuda}" if setup.cuda else "no CUDA"
    lines = [f"{GPU_HEADING}{device_name(setup.device)}", "",
             f"`{command}` on {stamp}: torch {torch.__version__}, {cuda}, {os.cpu_count()} CPU cores; "
             f"{len(tables)} of {len(SECTIONS)} sections in {setup.budget.elapsed():.0f} s "
             f"(budget {setup.budget.seconds:g} s). Sizes of conf/preset/{PRESET}.yaml"
             + (" shrunk to a few channels: the figures test the code, they measure nothing." if not setup.cuda
                else "; random weights and data.")]
    for table in tables:
        lines += ["", table.markdown()]
    return "\n".join(lines)


def split_gpu_part(text: str) -> tuple[list[str], int | None, str]:
    """``text``'s lines outside its GPU sections, where the first GPU section was (None: none),
    and the GPU sections' text."""
    kept: list[str] = []
    gpu: list[str] = []
    position, inside = None, False
    for line in text.splitlines():
        if SECTION_END.match(line):
            inside = line.startswith(GPU_HEADING)
            if inside and position is None:
                position = len(kept)
        (gpu if inside else kept).append(line)
    return kept, position, "\n".join(gpu).strip("\n")


def with_gpu_part(text: str, part: str) -> str:
    """``text`` with its GPU sections replaced by ``part``, where the first was (else at the end)."""
    kept, position, _ = split_gpu_part(text)
    position = len(kept) if position is None else position
    before, after = "\n".join(kept[:position]).strip("\n"), "\n".join(kept[position:]).strip("\n")
    return "\n\n".join(piece for piece in (before, part.strip("\n"), after) if piece) + "\n"


def write_report(out: Path, part: str) -> None:
    old = out.read_text() if out.exists() else ""
    write_bytes(out, with_gpu_part(old, part).encode())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench.md")
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="seconds for the measurements (after imports); a row due later is skipped")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, when the table lacks it")
    parser.add_argument("--smoke-cpu", action="store_true", help="every section on CPU at a tiny size (for tests)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--params", type=Path,
                        help=f"the {PRESET} preset's params.yaml composed elsewhere (`python bench/gpu.py --compose FILE` "
                             "writes one), for a GPU machine without DVC; default: compose conf/ here")
    parser.add_argument("--compose", type=Path, metavar="FILE",
                        help=f"write the {PRESET} preset's composed params to FILE, then stop (needs DVC, not CUDA)")
    for name, (gpu, smoke, what) in SIZES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, nargs="+" if name == "batch" else None,
                            help=f"{what} (default {gpu}; {smoke} with --smoke-cpu)")
    args = parser.parse_args()
    for name, (gpu, smoke, _) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke_cpu else gpu)
    args.batch = [args.batch] if isinstance(args.batch, int) else args.batch
    return args


def main() -> None:
    args = parse_args()
    if args.compose:
        preset_params(args.compose)
        print(f"wrote the {PRESET} preset's params to {args.compose}")
        return
    budget = Budget(args.budget_s)
    if not args.smoke_cpu and not torch.cuda.is_available():
        print(f"no CUDA device: bench/gpu.py measures GPUs only (torch {torch.__version__}, CUDA not available); "
              "nothing written. --smoke-cpu runs its code paths on the CPU.")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params) if args.params else preset_params()
    if args.smoke_cpu:
        device = torch.device("cpu")
        params, peak = shrunk(params), Peak(matmul_peak(device, 512, 5), "an fp32 matmul measured on this CPU")
    else:
        device = torch.device("cuda", torch.cuda.current_device())
        peak = card_peak(torch.cuda.get_device_name(device), args.peak_tflops)
    setup = Setup(params, device, peak, budget, tuple(args.batch), args.tokenizer_batch, args.steps, args.warmup,
                  args.repeats, args.points)
    command = " ".join(["python bench/gpu.py", *sys.argv[1:]])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tables: list[Table] = []
    for section in SECTIONS:
        tables.append(section(setup))
        print(tables[-1].markdown() + "\n", flush=True)
        write_report(args.out, gpu_part(tables, setup, command, stamp))  # a killed run keeps what it measured
    print(f"wrote {args.out} in {budget.elapsed():.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
