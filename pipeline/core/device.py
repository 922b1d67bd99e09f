"""Device, CPU threads and mixed precision: fp32 on CPU (bf16 is ~300x slower on this kind
of CPU), bf16 autocast on CUDA unless a stage asks for fp32."""

from __future__ import annotations

import contextlib
import os
from typing import Literal

import torch

from pipeline.core.cpus import available_cpus

Precision = Literal["bf16", "fp32"]


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without it is an error, not a fallback.

    Under torchrun each process takes the GPU numbered by its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA device; set device: auto or cpu")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def use_threads(requested: int) -> int:
    """Set torch's CPU threads to ``requested``, or for 0 to this process's share of the CPUs it
    may use (under torchrun, split among the node's processes); return the count.

    More threads than free cores is the costly mistake: OpenMP's spin-waiting threads then
    slow a stage 10-20x, so a stage sharing the machine with other work wants fewer."""
    share = available_cpus() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = requested or max(1, share)
    torch.set_num_threads(threads)
    return threads


def autocast(device: torch.device, precision: Precision = "bf16") -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (unless precision is fp32), a no-op elsewhere."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
