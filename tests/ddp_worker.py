"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: both trainers on the
tiny settings below, gloo backend; rank 0 saves what they end with for the test to compare
against one process.

The tokenizer resumes a checkpoint a one-process run left behind (a changed world size);
the diffusion model trains from scratch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from pipeline.core import distributed
from pipeline.diffusion.train import train_diffusion
from pipeline.generator.data import load_training_data
from pipeline.tokenizer.train import train_tokenizer
from tests.test_diffusion_train import tiny_params as tiny_train_params
from tests.test_tokenizer_train import images
from tests.test_tokenizer_train import tiny_params as tiny_tokenizer_params

# exercises EMA, the GAN and its DDP, and the code-usage term, a loss of a global-batch statistic
TOKENIZER = {"ema_decay": 0.9, "disc_weight": 0.5, "disc_start": 1, "recon_loss": "mse", "usage_weight": 0.5}
TRAIN = {"train.steps": 30, "train.checkpoint_every": 100}


def tokenizer_params():
    return tiny_tokenizer_params(**TOKENIZER)


def train_params():
    return tiny_train_params(**TRAIN)


def main(root: Path) -> None:
    torch.set_num_threads(1)
    with distributed.process_group("gloo"):
        tokenizer = train_tokenizer(tokenizer_params(), images(20), root / "tokenizer-resumed", log_every=1,
                                    progress=False)
        data = load_training_data(root / "caches" / "tokens", root / "caches" / "embeddings")
        diffusion = train_diffusion(train_params(), data, root / "diffusion-ddp")
        if distributed.is_main():
            torch.save({"tokenizer": tokenizer.model.state_dict(), "tokenizer_history": tokenizer.history,
                        "diffusion": diffusion.model.state_dict(), "diffusion_history": diffusion.history,
                        "world": distributed.world()}, root / "ddp.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
