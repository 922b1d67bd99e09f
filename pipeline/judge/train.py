"""Train the judge CNN on a labelled folder's images.

Same resume contract as the tokenizer (pipeline/core/training.py): batch order, flips and
shifts are pure functions of (seed, step), the learning rate is computed from the step, and a
checkpoint is resumed only by a run of the same settings and data, so a killed run picks up
at its last checkpoint and ends bit-identical (CPU) to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.core.device import resolve_device
from pipeline.core.errors import UserError
from pipeline.core.live import TrainingLog
from pipeline.core.params import JudgeParams
from pipeline.core.rng import seed_everything, step_generator
from pipeline.core.training import (
    batch_indices,
    clip_gradients,
    lr_at,
    make_adamw,
    resume_state,
    run_fingerprint,
    save_checkpoint,
    set_lr,
)
from pipeline.data.ingest import split_of
from pipeline.judge.checker import judge_accuracy
from pipeline.judge.model import Judge

SPLIT_SALT = "judge"
LOG_EVERY = 25
SHIFT = 1 / 16  # the largest random translation, as a share of the image side (4 px at 64)


def split_rows(labels: pd.DataFrame, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of the train and val images, by a hash of each image id (its file stem):
    stable across runs, and the same photo always lands on the same side."""
    sides = [split_of(Path(name).stem, SPLIT_SALT, val_fraction) for name in labels["file"]]
    rows = {side: torch.tensor([i for i, s in enumerate(sides) if s == side], dtype=torch.long)
            for side in ("train", "val")}
    if not len(rows["train"]) or not len(rows["val"]):
        raise UserError(f"judge.val_fraction = {val_fraction}: {len(rows['train'])} train and {len(rows['val'])} val "
                        f"images of {len(labels)}; the judge needs both")
    return rows["train"], rows["val"]


def encode_labels(labels: pd.DataFrame, attributes: Mapping[str, Sequence[str]]) -> dict[str, torch.Tensor]:
    """Each attribute's values as class indices into ``attributes[name]``."""
    targets = {}
    for name, values in attributes.items():
        unknown = sorted(set(labels[name]) - set(values))
        if unknown:
            raise UserError(f"labels: {name} takes {unknown}, not among its values {list(values)}")
        index = {value: i for i, value in enumerate(values)}
        targets[name] = torch.tensor([index[v] for v in labels[name]], dtype=torch.long)
    return targets


def class_weights(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse-frequency ("balanced") weights, mean 1 over the training images.

    The evaluation prompts ask for every value about equally often, while the photos are
    skewed (UTKFace: white and young adults dominate), so an unweighted judge trades the rare
    values' recall for the common ones' and scores prompts for rare values unfairly low."""
    counts = torch.bincount(targets, minlength=n_classes).float()
    return len(targets) / (n_classes * counts.clamp(min=1))


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to SHIFT of the side (edges replicated), drawn
    on the CPU from ``generator`` so a resumed run draws the same ones on any device.

    Flips assume mirror-symmetric attributes (true of faces; not of a left/right position)."""
    n, _, size, _ = images.shape
    pad = max(1, round(size * SHIFT))
    flips = torch.rand(n, generator=generator) < 0.5
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    x = torch.where(flips.to(images.device)[:, None, None, None], images.flip(-1), images)
    x = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate")
    span = torch.arange(size)
    rows = (offsets[:, 0, None] + span).to(images.device)
    cols = (offsets[:, 1, None] + span).to(images.device)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).to(torch.uint8)


def _fingerprint(params: JudgeParams, images: torch.Tensor, labels: pd.DataFrame,
                 attributes: Mapping[str, Sequence[str]]) -> str:
    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels[["file", *attributes]].to_csv(index=False).encode())
    return run_fingerprint(params, {"shape": list(images.shape), "sha256": digest.hexdigest(),
                                    "attributes": {k: list(v) for k, v in attributes.items()}})


def _val_row(step: int, figures: dict, names: Sequence[str]) -> dict[str, float]:
    return {"step": step, **{f"val_{name}": figures[name] for name in names}}


def train_judge(images: torch.Tensor, labels: pd.DataFrame, attributes: Mapping[str, Sequence[str]],
                params: JudgeParams, work_dir: str | Path, log: TrainingLog | None = None,
                progress: bool = True) -> tuple[Judge, dict[str, Any]]:
    """Train (or resume, or reload when finished) the judge on uint8 ``images`` (N, 3, R, R)
    whose ``labels`` hold a ``file`` column and one column per attribute.

    The folder is split into train and val by a hash of the file stem (params.val_fraction).
    The loss is the class-weighted cross-entropy summed over the heads (``class_weights``).
    Checkpoints go to ``work_dir`` every checkpoint_every steps and at the end, with the val
    accuracy per attribute; rows of loss and lr every LOG_EVERY steps go to ``log``.
    Returns the model (eval mode) and its figures: val accuracy per attribute with 95%
    intervals, chance (the val share of the training split's most common value), n_train,
    n_val, wall_seconds.
    """
    device = resolve_device(params.device)
    names = list(attributes)
    train_rows, val_rows = split_rows(labels, params.val_fraction)
    targets = encode_labels(labels, attributes)
    train_x = images[train_rows].to(device)
    train_y = {name: t[train_rows].to(device) for name, t in targets.items()}
    weights = {name: class_weights(t[train_rows], len(attributes[name])).to(device) for name, t in targets.items()}
    val_images, val_labels = images[val_rows], labels.iloc[val_rows.tolist()].reset_index(drop=True)

    fingerprint = _fingerprint(params, images, labels, attributes)
    state = resume_state(Path(work_dir), fingerprint, "judge")
    seed_everything(params.seed)
    model = Judge(attributes, params.width, images.shape[-1]).to(device)
    optimizer = make_adamw(model, params.optim)
    step, seconds, history, (window, count) = 0, 0.0, [], (0.0, 0)  # window: loss sum and steps since the last row
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, seconds, history, (window, count) = state["step"], state["seconds"], state["history"], state["window"]
    if log is not None:
        log.begin(step, history)

    model.train()
    window = torch.tensor(window, device=device)
    bar = tqdm(total=params.steps, initial=step, desc="judge", unit="step", disable=not progress)
    started = time.perf_counter()
    while step < params.steps:
        index = batch_indices(len(train_rows), params.batch_size, step, params.seed).to(device)
        x = augment(train_x[index], step_generator(params.seed, step, torch.device("cpu")))
        lr = lr_at(step, params.optim.lr, params.optim.warmup_steps, params.steps, cosine=True)
        set_lr(optimizer, lr)
        logits = model(x)
        loss = sum(F.cross_entropy(logits[name], train_y[name][index], weight=weights[name]) for name in names)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model, params.optim.grad_clip)
        optimizer.step()
        step += 1
        bar.update(1)
        window, count = window + loss.detach(), count + 1
        if step % LOG_EVERY == 0 or step == params.steps:
            history.append({"step": step, "loss": float(window) / count, "lr": lr})
            if log is not None:
                log.row(history[-1])
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", refresh=False)
            window, count = torch.zeros((), device=device), 0
        if step % params.checkpoint_every == 0 or step == params.steps:
            seconds += time.perf_counter() - started
            history.append(_val_row(step, judge_accuracy(model.classify, names, val_images, val_labels), names))
            if log is not None:
                log.row(history[-1])
            save_checkpoint(Path(work_dir), step, {"fingerprint": fingerprint, "model": model.state_dict(),
                                                   "optimizer": optimizer.state_dict(), "history": history,
                                                   "seconds": seconds, "window": (float(window), count)})
            started = time.perf_counter()
    bar.close()
    model.eval()

    figures = _figures(judge_accuracy(model.classify, names, val_images, val_labels), names, labels.iloc[train_rows.tolist()],
                       val_labels)
    return model, figures | {"steps": params.steps, "wall_seconds": round(seconds, 1)}


def _figures(accuracy: dict, names: Sequence[str], train_labels: pd.DataFrame,
             val_labels: pd.DataFrame) -> dict[str, Any]:
    """Val accuracy per attribute with its interval, balanced accuracy and chance: the val
    share of the training split's most common value (what a judge that ignores the image gets)."""
    figures: dict[str, Any] = {}
    for name in names:
        majority = train_labels[name].value_counts().index[0]
        figures |= {name: accuracy[name], f"{name}_ci95": accuracy[f"{name}_ci95"],
                    f"{name}_balanced": accuracy[f"{name}_balanced"],
                    f"{name}_chance": float((val_labels[name] == majority).mean())}
    return figures | {"all": accuracy["all"], "all_ci95": accuracy["all_ci95"], "n_train": len(train_labels),
                      "n_val": len(val_labels)}
