"""Data-parallel training over the processes torchrun starts (torch.distributed + DDP).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process; `process_group` joins them,
and without torchrun everything here is a no-op for one process, so the trainers have one
code path. The recipe that makes N processes train the same model as one process with the
same global batch (up to float rounding):
- every rank computes the same global batch indices (a pure function of seed and step) and
  draws the same noise for the whole batch, then runs the network on its own contiguous
  slice (`rows`): that is DistributedSampler's job, done by a function with no state to
  keep in step or to checkpoint;
- DDP averages the gradients, which for equal slices is the gradient of the global mean;
- whatever feeds back into training (the t-sampler's loss history) is gathered from every
  rank, and logged figures are averaged, so all ranks and the logs see the global batch;
- only rank 0 writes; a checkpoint holds global state only, so a run can resume with a
  different number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce as all_reduce_with_grad
from torch.nn.parallel import DistributedDataParallel

from pipeline.core.errors import UserError

Backend = Literal["auto", "nccl", "gloo"]


def launched() -> tuple[int, int]:
    """(rank, world size) that torchrun gave this process; (0, 1) when it was started plainly."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@contextmanager
def process_group(backend: Backend) -> Iterator[None]:
    """Join torchrun's process group for the duration (nothing to join for a plain process).

    auto: nccl on CUDA, gloo on CPU. Each process drives the GPU numbered by its LOCAL_RANK.
    """
    _, size = launched()
    if size == 1 or dist.is_initialized():
        yield
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints, models and reports."""
    return rank() == 0


def rows(batch: int) -> slice:
    """This rank's contiguous share of a global batch of ``batch`` examples."""
    if batch % world():
        raise UserError(f"batch_size {batch} must be divisible by the number of processes ({world()})")
    share = batch // world()
    return slice(rank() * share, (rank() + 1) * share)


def wrap(model: nn.Module) -> nn.Module:
    """DDP around the model when there are several processes, the model itself otherwise."""
    if world() == 1:
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _comm_device() -> torch.device:
    """Where collectives run: NCCL needs the process's GPU, gloo takes CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean(x: torch.Tensor) -> torch.Tensor:
    """The average of ``x`` over the ranks (a new tensor; ``x`` itself is unchanged)."""
    if world() == 1:
        return x.detach().clone()
    total = x.detach().to(_comm_device(), copy=True)
    dist.all_reduce(total)
    return (total / world()).to(x.device)


def mean_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The average of ``x`` over the ranks, differentiable: the gradient of a loss of it reaches
    every rank's own ``x``, and after DDP's averaging equals one process's on the global batch.
    For losses of a batch statistic, such as the tokenizer's code usage."""
    if world() == 1:
        return x
    return (all_reduce_with_grad(x.to(_comm_device())) / world()).to(x.device)


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order: the global batch's values."""
    if world() == 1:
        return x.detach()
    local = x.detach().to(_comm_device()).contiguous()
    parts = [torch.empty_like(local) for _ in range(world())]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(x.device)


def any_rank(flags: torch.Tensor) -> torch.Tensor:
    """Element-wise OR of a bool tensor over the ranks."""
    if world() == 1:
        return flags
    x = flags.to(_comm_device(), torch.uint8)
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x.bool().to(flags.device)


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def check_same(value: int, what: str) -> None:
    """Raise unless every rank holds the same ``value`` (e.g. the checkpoint step it found)."""
    if world() == 1:
        return
    low = torch.tensor([value], device=_comm_device())
    high = low.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if low.item() != high.item():
        raise UserError(f"{what} differs between processes ({low.item()} vs {high.item()})")
