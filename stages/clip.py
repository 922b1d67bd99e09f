import time
from pathlib import Path
from typing import Annotated

import typer

from pipeline.clip.captioned import captioned_split, captioned_world
from pipeline.clip.encoder import ClipEncoder
from pipeline.clip.train import evaluate_clip, save_clip, train_clip
from pipeline.clip.weights import TRAINED_CLIP
from pipeline.core.atomic import atomic_dir, write_json
from pipeline.core.checksum import sha256_file
from pipeline.core.device import use_threads
from pipeline.core.params import load_params
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    ingest: Annotated[Path, typer.Option(help="Ingest shards with captions.")] = Path("data/ingest"),
    out: Annotated[Path, typer.Option(help="Folder for the trained CLIP checkpoint.")] = Path("models/clip"),
    report: Annotated[Path, typer.Option(help="Held-out retrieval and zero-shot figures.")] = Path("reports/clip.json"),
) -> None:
    """Train the small offline CLIP on a world's captions (a no-op with a pretrained CLIP)."""
    clip = load_params(params).clip
    use_threads(clip.threads)
    with atomic_dir(out) as tmp:
        if clip.pretrained is not None:
            (tmp / "PRETRAINED").write_text(f"{clip.model} {clip.pretrained}\n")
            write_json(report, {"model": clip.model, "pretrained": clip.pretrained, "trained_here": False})
            typer.echo(f"clip: using pretrained {clip.model} / {clip.pretrained}; nothing to train")
            return
        world = captioned_world(ingest)
        images, captions, attributes = captioned_split(ingest, world, "train")
        started = time.perf_counter()
        model, losses = train_clip(clip.model, images, captions, attributes, clip.train, clip.device, world)
        seconds = time.perf_counter() - started
        save_clip(model, tmp / TRAINED_CLIP)
        encoder = ClipEncoder(model, clip.model, sha256_file(tmp / TRAINED_CLIP), clip.batch_size)
        val_images, val_captions, val_attributes = captioned_split(ingest, world, "val", clip.eval_images)
        figures = evaluate_clip(encoder, val_images, val_captions, val_attributes, world)
    write_json(report, {**figures, "trained_here": True, "steps": clip.train.steps, "train_images": len(images),
                        "wall_seconds": round(seconds, 1),
                        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)})
