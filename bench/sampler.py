"""Reverse-step cost against diffusers' VQDiffusionScheduler (the same VQ-Diffusion posterior),
and sampling throughput.

1. One reverse step without the network: our `posterior_step` (posterior, then the draw)
   against diffusers' `VQDiffusionScheduler.step` on the same log p(x0) and x_t, each in its
   own layout ((B, N, K) here, (B, K, N) there, converted before the clock starts), at
   --points timesteps spread over T..1 with x_t drawn from q(x_t | x0) at each; one-step
   posteriors only, as diffusers has no skip steps. Both run the same number of sweeps,
   interleaved, and the best sweep of each is compared (the best case is what a shared,
   busy machine distorts least). `max abs dp` is the largest difference between the two
   posteriors' probabilities over those inputs.
2. Sampling images/s of `generate_images` (network, guidance, truncation, decoding) at all T
   steps and at sample.steps, with the sample: settings of params.yaml and randomly
   initialised default-size models (the weights do not change the cost); best of the repeats.

Usage: python bench/sampler.py [--repeats 3] [--points 10] [--prompts 2] [--threads N]
Needs diffusers: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import VQDiffusionScheduler

from pipeline.core.device import resolve_device
from pipeline.core.params import Params, load_params
from pipeline.diffusion.generate import DiffusionGenerator
from pipeline.diffusion.model import noise_schedule
from pipeline.diffusion.process import LOG_ZERO, Schedule, log_posterior, q_sample
from pipeline.diffusion.sampler import posterior_step
from pipeline.diffusion.train import model_config
from pipeline.diffusion.transformer import Transformer
from pipeline.generator.conditioning import Conditioning
from pipeline.generator.sampling import generate_images, settings_from
from pipeline.tokenizer.model import decode_all, downsampling_factor
from pipeline.tokenizer.train import build_vqgan

CLIP_DIM = 128  # the shapes CLIP's embedding width; it barely changes the cost


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(run: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - start


def step_cost(n_codes: int, grid: int, batch: int, steps: int, points: int, repeats: int,
              device: torch.device) -> dict[str, float]:
    """Best seconds per reverse step, ours and diffusers', and the largest probability gap."""
    schedule = Schedule(n_codes, steps)
    peer = VQDiffusionScheduler(num_vec_classes=n_codes + 1, num_train_timesteps=steps)
    peer.set_timesteps(steps, device)
    g = torch.Generator(device).manual_seed(0)
    x0 = torch.randint(0, n_codes, (batch, grid * grid), device=device, generator=g)
    logits = 3 * torch.randn(batch, grid * grid, n_codes, device=device, generator=g)
    log_x0 = F.log_softmax(logits, -1).clamp(LOG_ZERO, 0.0)
    log_x0_peer = log_x0.transpose(1, 2).contiguous()
    ts = torch.linspace(steps, 1, points).round().long().unique().tolist()
    x_ts = {t: q_sample(x0, torch.full((batch,), t, device=device), schedule, g) for t in ts}

    gap = 0.0
    for t in ts:
        if t == 1:
            continue  # the last step draws from p(x0) itself in both
        tt = torch.full((batch,), t, device=device)
        ours = log_posterior(log_x0, x_ts[t], tt, tt - 1, schedule).exp()
        theirs = peer.q_posterior(log_x0_peer, x_ts[t], t - 1).exp().transpose(1, 2)
        gap = max(gap, float((ours - theirs).abs().max()))

    def ours() -> None:
        for t in ts:
            posterior_step(x_ts[t], log_x0, t, t - 1, schedule, g)

    def theirs() -> None:
        for t in ts:
            peer.step(log_x0_peer, t - 1, x_ts[t], g)

    ours(), theirs()  # warm-up
    times: dict[str, list[float]] = {"ours": [], "diffusers": []}
    for _ in range(repeats):
        times["ours"].append(seconds(ours, device) / len(ts))
        times["diffusers"].append(seconds(theirs, device) / len(ts))
    return {name: min(values) for name, values in times.items()} | {"gap": gap}


def default_sizes(params: Params) -> tuple[int, int]:
    """(K, grid side) of the default experiment: tokenizer codes over the ingest resolution."""
    return params.tokenizer.n_codes, params.ingest.resolution // downsampling_factor(params.tokenizer.ch_mult)


def sampling_rate(params: Params, prompts: int, repeats: int, device: torch.device) -> list[tuple[str, int, float]]:
    """(steps label, images, images/s) at all T steps and at sample.steps."""
    n_codes, grid = default_sizes(params)
    train, sample = params.train, params.sample
    torch.manual_seed(0)
    model = Transformer(model_config(train, n_codes, grid, grid, CLIP_DIM)).to(device).eval()
    vqgan = build_vqgan(params.tokenizer, params.ingest.resolution).to(device).eval()
    schedule = noise_schedule(n_codes, train.diffusion_steps, train.abar_range, train.gbar_range)
    conditions = F.normalize(torch.randn(prompts, CLIP_DIM, device=device), dim=-1)
    generator = DiffusionGenerator(model, schedule, lambda codes: decode_all(vqgan, codes, 256),
                                   Conditioning("none", 0.0, None))

    def run(n_prompts: int, per_prompt: int, steps: int | None) -> None:
        generate_images(generator, conditions[:n_prompts], per_prompt, settings_from(sample, steps), sample.seed,
                        desc=f"sample, {steps or 'all'} steps")

    run(1, 1, 2)  # warm-up
    images = prompts * sample.samples_per_prompt
    return [(str(steps or train.diffusion_steps), images,
             images / min(seconds(lambda: run(prompts, sample.samples_per_prompt, steps), device)
                          for _ in range(repeats)))
            for steps in (None, sample.steps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (best counts)")
    parser.add_argument("--points", type=int, default=10, help="timesteps per sweep, spread over T..1")
    parser.add_argument("--prompts", type=int, default=2, help="prompts for the sampling rate")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    device = resolve_device(params.sample.device)
    n_codes, grid = default_sizes(params)
    T = params.train.diffusion_steps
    print(f"device: {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}\n")
    print("Reverse step without the network (posterior + draw), best of "
          f"{args.repeats} sweeps of {args.points} timesteps, T={T}:\n")
    print("| config | K | grid | batch | ours ms/step | diffusers ms/step | diffusers / ours | max abs dp |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, k, g in (("paper scale", 4096, 16), ("default", n_codes, grid)):
        cost = step_cost(k, g, args.batch, T, args.points, args.repeats, device)
        print(f"| {name} | {k} | {g}x{g} | {args.batch} | {cost['ours'] * 1e3:.2f} | {cost['diffusers'] * 1e3:.2f} "
              f"| {cost['diffusers'] / cost['ours']:.2f}x | {cost['gap']:.1e} |")
    sample = params.sample
    print(f"\nSampling with the default-size models (guidance {sample.guidance}, truncation {sample.truncation}, "
          f"purity {sample.purity}; network and decoding included; best of {args.repeats}):\n")
    print("| reverse steps | images | images/s |")
    print("| ---: | ---: | ---: |")
    for steps, images, rate in sampling_rate(params, args.prompts, args.repeats, device):
        print(f"| {steps} | {images} | {rate:.3g} |")


if __name__ == "__main__":
    main()
