"""The clip and scorer stages' work: pretrain an in-project CLIP on its world's own renders or,
for a world of photos, its own labelled part of them (or note the pretrained one in use), and
measure it on images it never trained on.

Two CLIPs are pretrained this way from different render streams: ``clip`` conditions the
generator, ``scorer`` only scores its samples, so no figure is scored by the model the
generator learned to please.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from pipeline.core.params import ClipParams, ClipTrainParams
from pipeline.data.labelled import load_labelled
from pipeline.worlds.base import Attributes, World
from pipeline.worlds.registry import WORLDS


def trainable_world(name: str, data: str | None, key: str) -> World:
    """The world ``name`` (params key ``key``), which must render a CLIP's images when no
    labelled folder ``data`` is given."""
    world = WORLDS.get(name)
    if world is None:
        raise UserError(f"{key} = {name!r}: no such world; known: {sorted(WORLDS)}")
    if world.render is None and data is None:
        raise UserError(f"{key} = {name!r}: this world cannot render a CLIP's own images; set its train.data to "
                        "a labelled folder of the world's photos, or pretrained to a CLIP checkpoint")
    return world


Labelled = tuple[torch.Tensor, list[Attributes]]


def clip_images(world: World, train: ClipTrainParams, eval_images: int, size: int) -> tuple[Labelled, Labelled]:
    """(training, evaluation) images and attributes: from the world's render stream, training
    first and evaluation after it; or from the labelled folder ``train.data``, evaluation the
    first ``eval_images`` in a seeded hash order of the file names (not their order: UTKFace's
    names begin with the age), training up to ``train.images`` of the rest."""
    if train.data is None:
        images, attributes = world.render(train.render_seed, 0, train.images, size)
        val_images, val_attributes = world.render(train.render_seed, train.images, eval_images, size)
        return (torch.from_numpy(images), attributes), (torch.from_numpy(val_images), val_attributes)
    images, labels = load_labelled(train.data, list(world.attributes), size)
    if len(labels) <= eval_images:
        raise UserError(f"{train.data}: {len(labels)} images, not enough for eval_images = {eval_images} and a "
                        "training set; lower eval_images")
    order = sorted(range(len(labels)),
                   key=lambda i: hashlib.sha256(f"{train.seed}:{labels['file'][i]}".encode()).digest())
    attributes = labels[list(world.attributes)].to_dict("records")
    val, fit = order[:eval_images], order[eval_images:eval_images + train.images]
    return (images[fit], [attributes[i] for i in fit]), (images[val], [attributes[i] for i in val])


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
        world = trainable_world(train.world, train.data, f"{section}.train.world")
        (images, attributes), (val_images, val_attributes) = clip_images(
            world, train, params.eval_images, ClipEncoder.input_size(params.model))
        started = time.perf_counter()
        model, losses = train_clip(params.model, images, attributes, world, train, params.device, log)
        seconds = time.perf_counter() - started
        save_clip(model, tmp / TRAINED_CLIP)
        encoder = ClipEncoder(model, params.model, sha256_file(tmp / TRAINED_CLIP), params.batch_size)
        figures = evaluate_clip(encoder, val_images, [world.caption(a) for a in val_attributes], val_attributes, world)
    source = {"data": train.data} if train.data is not None else {"render_seed": train.render_seed}
    figures |= {"role": section, "trained_here": True, "world": world.name, **source,
                "train_images": len(images), "eval_images": len(val_images), "steps": train.steps,
                "wall_seconds": round(seconds, 1), "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)}
    log.end({key: figures[key] for key in ("wall_seconds", "final_loss")})
    write_json(report, figures)
    return figures
