"""Data-parallel training for real: two processes on the gloo backend (torchrun) train the
same models as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from pipeline.core import distributed
from pipeline.core.errors import UserError
from pipeline.core.training import list_checkpoints
from pipeline.diffusion.train import train_diffusion
from pipeline.generator.data import load_training_data
from pipeline.tokenizer.model import gumbel_noise, to_model_range
from pipeline.tokenizer.train import build_vqgan, train_tokenizer
from tests.conftest import REPO
from tests.ddp_worker import tokenizer_params, train_params
from tests.test_diffusion_train import write_caches
from tests.test_tokenizer_train import images


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a
                                        if not k.endswith(skip))


def same_tokenizer(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Same weights and the same output. Conv biases are left out of the weights: in front of
    the tiny model's per-channel GroupNorms they get no gradient at all, so Adam turns float
    noise into arbitrary steps on them, which the norms then remove again."""
    outputs = []
    for state in (a, b):
        model = build_vqgan(tokenizer_params(), 16)
        model.load_state_dict(state)
        x = to_model_range(images(4, seed=2))
        noise = gumbel_noise((4, model.n_codes, model.grid, model.grid), torch.device("cpu"),
                             torch.Generator().manual_seed(0))
        with torch.no_grad():
            outputs.append(model(x, 0.5, noise).recon)
    return close(a, b, skip=("bias",)) and torch.allclose(*outputs, atol=1e-5)


def test_rows_split_a_batch_into_equal_contiguous_shares(monkeypatch) -> None:
    assert distributed.rows(8) == slice(0, 8)  # one process: the whole batch
    monkeypatch.setattr(distributed, "world", lambda: 4)
    shares = []
    for r in range(4):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shares += list(range(12))[distributed.rows(12)]
    assert shares == list(range(12))
    with pytest.raises(UserError, match="divisible"):
        distributed.rows(10)


def test_two_processes_train_the_models_one_process_trains(tmp_path) -> None:
    torch.set_num_threads(1)
    # one process: the references, and a tokenizer run killed after step 3 (checkpoint at 2)
    tokenizer_whole = train_tokenizer(tokenizer_params(), images(20), tmp_path / "tokenizer-whole", log_every=1,
                                      progress=False)
    train_tokenizer(tokenizer_params(), images(20), tmp_path / "tokenizer-resumed", log_every=1, progress=False,
                    stop_at=3)
    assert [p.name for p in list_checkpoints(tmp_path / "tokenizer-resumed")] == ["step-00000002.pt"]
    data = load_training_data(write_caches(tmp_path / "caches") / "tokens", tmp_path / "caches" / "embeddings")
    diffusion_whole = train_diffusion(train_params(), data, tmp_path / "diffusion-whole")

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "tests.ddp_worker", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    ddp = torch.load(tmp_path / "ddp.pt")
    assert ddp["world"] == 2

    # the tokenizer resumed a one-process checkpoint with two processes and ends where one process does
    assert same_tokenizer(ddp["tokenizer"], tokenizer_whole.model.state_dict())
    assert [row["step"] for row in ddp["tokenizer_history"]] == list(range(1, 7))
    for ddp_row, reference in zip(ddp["tokenizer_history"], tokenizer_whole.history):
        assert ddp_row["usage"] == reference["usage"]
        assert ddp_row["loss"] == pytest.approx(reference["loss"], rel=1e-4)
    # the diffusion model trained by two processes matches, and the logs are global-batch figures
    assert close(ddp["diffusion"], diffusion_whole.model.state_dict())
    for ddp_row, reference in zip(ddp["diffusion_history"], diffusion_whole.history, strict=True):
        assert ddp_row["loss"] == pytest.approx(reference["loss"], rel=1e-4)
        assert ddp_row["vlb"] == pytest.approx(reference["vlb"], rel=1e-4)
