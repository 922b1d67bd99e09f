"""The training utilities every trainer shares (pipeline/core/training.py)."""

from __future__ import annotations

import copy

import torch

from pipeline.core.params import OptimParams
from pipeline.core.training import make_adamw


def test_adamw_on_the_cpu_computes_the_per_tensor_loops_weights_bit_for_bit():
    """make_adamw picks the foreach kernel on the CPU for speed; the committed runs' weights were
    made by torch's per-tensor loop, and a resumed or rerun stage must make the same ones."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))
    optim = OptimParams(lr=1e-2, betas=[0.9, 0.98], weight_decay=0.1, warmup_steps=0, grad_clip=1.0)
    fast, loop_model = make_adamw(model, optim), copy.deepcopy(model)
    assert fast.defaults["foreach"]
    loop = make_adamw(loop_model, optim)
    for group in loop.param_groups:
        group["foreach"] = False
    for step in range(20):
        x = torch.randn(32, 7, generator=torch.Generator().manual_seed(step))
        for m, optimizer in ((model, fast), (loop_model, loop)):
            optimizer.zero_grad()
            m(x).square().mean().backward()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), loop_model.parameters()))
