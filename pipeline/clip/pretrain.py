"""The clip and scorer stages' work: pretrain an in-project CLIP on its world's own renders
(or note the pretrained one in use) and measure it on renders it never trained on.

Two CLIPs are pretrained this way from different render streams: ``clip`` conditions the
generator, ``scorer`` only scores its samples, so no figure is scored by the model the
generator learned to please.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from pipeline.clip.encoder import ClipEncoder
from pipeline.clip.train import evaluate_clip, save_clip, train_clip
from pipeline.clip.weights import TRAINED_CLIP
from pipeline.core.atomic import atomic_dir, write_json
from pipeline.core.checksum import sha256_file
from pipeline.core.errors import UserError
from pipeline.core.live import TrainingLog
from pipeline.core.params import ClipParams
from pipeline.worlds.base import World
from pipeline.worlds.registry import WORLDS


def renderable_world(name: str, key: str) -> World:
    """The world ``name`` (params key ``key``), which must have a renderer to pretrain a CLIP on."""
    world = WORLDS.get(name)
    if world is None:
        raise UserError(f"{key} = {name!r}: no such world; known: {sorted(WORLDS)}")
    if world.render is None:
        raise UserError(f"{key} = {name!r}: this world cannot render a CLIP's own images; "
                        "set pretrained to a CLIP checkpoint instead")
    return world


def pretrain_clip(params: ClipParams, section: str, out: Path, report: Path, live: Path) -> dict:
    """Train (or note the pretrained) CLIP of params section ``section`` into ``out``, logging the
    training to the DVCLive folder ``live``, and write its figures to ``report``: retrieval, the
    modality gap and zero-shot accuracy on the ``eval_images`` renders that follow its training
    renders in the same stream."""
    log = TrainingLog(live, {section: dataclasses.asdict(params)})
    with atomic_dir(out) as tmp:
        if params.pretrained is not None:
            (tmp / "PRETRAINED").write_text(f"{params.model} {params.pretrained}\n")
            figures = {"model": params.model, "pretrained": params.pretrained, "trained_here": False}
            log.begin(0, [])
            log.end()
            write_json(report, figures)
            return figures
        train = params.train
        world = renderable_world(train.world, f"{section}.train.world")
        size = ClipEncoder.input_size(params.model)
        images, attributes = world.render(train.render_seed, 0, train.images, size)
        started = time.perf_counter()
        model, losses = train_clip(params.model, torch.from_numpy(images), attributes, world, train, params.device, log)
        seconds = time.perf_counter() - started
        save_clip(model, tmp / TRAINED_CLIP)
        encoder = ClipEncoder(model, params.model, sha256_file(tmp / TRAINED_CLIP), params.batch_size)
        val_images, val_attributes = world.render(train.render_seed, train.images, params.eval_images, size)
        figures = evaluate_clip(encoder, torch.from_numpy(val_images), [world.caption(a) for a in val_attributes],
                                val_attributes, world)
    figures |= {"role": section, "trained_here": True, "world": world.name, "render_seed": train.render_seed,
                "train_images": train.images, "eval_images": params.eval_images, "steps": train.steps,
                "wall_seconds": round(seconds, 1), "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)}
    log.end({key: figures[key] for key in ("wall_seconds", "final_loss")})
    write_json(report, figures)
    return figures
