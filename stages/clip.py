import time
from pathlib import Path
from typing import Annotated

import pyarrow.parquet as pq
import typer

from pipeline.atomic import atomic_dir, write_json
from pipeline.checksum import sha256_file
from pipeline.clip import ClipEncoder
from pipeline.clip_train import evaluate_clip, save_checkpoint, train_clip
from pipeline.dataset import decode_pngs, read_table
from pipeline.device import use_threads
from pipeline.embed import TRAINED_CLIP
from pipeline.errors import UserError
from pipeline.params import load_params
from pipeline.shapes import ATTRIBUTES
from stages.common import ParamsOption, user_errors


def _shard_columns(ingest: Path) -> list[str]:
    return pq.read_schema(sorted(ingest.glob("part-*.parquet"))[0]).names


def captioned_split(ingest: Path, split: str, limit: int | None = None):
    columns = ["image", "caption", *ATTRIBUTES]
    read_table(ingest, ["id"])  # a clear error when ingest has not run
    missing = set(columns) - set(_shard_columns(ingest))
    if missing:
        raise UserError(f"{ingest}: the in-project CLIP trains on the shapes captions and attribute columns "
                        f"(missing: {sorted(missing)}); set clip.pretrained to a CLIP checkpoint instead")
    table = read_table(ingest, columns, split)
    if limit is not None:
        table = table.slice(0, limit)
    rows = table.drop(["image"]).to_pylist()
    attributes = [{name: row[name] for name in ATTRIBUTES} for row in rows]
    return decode_pngs(table["image"].to_pylist()), [row["caption"] for row in rows], attributes


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    ingest: Annotated[Path, typer.Option(help="Ingest shards with captions.")] = Path("data/ingest"),
    out: Annotated[Path, typer.Option(help="Folder for the trained CLIP checkpoint.")] = Path("models/clip"),
    report: Annotated[Path, typer.Option(help="Held-out retrieval and zero-shot figures.")] = Path("reports/clip.json"),
) -> None:
    """Train the small offline CLIP on the shapes captions (a no-op with a pretrained CLIP)."""
    clip = load_params(params).clip
    use_threads(clip.threads)
    with atomic_dir(out) as tmp:
        if clip.pretrained is not None:
            (tmp / "PRETRAINED").write_text(f"{clip.model} {clip.pretrained}\n")
            write_json(report, {"model": clip.model, "pretrained": clip.pretrained, "trained_here": False})
            typer.echo(f"clip: using pretrained {clip.model} / {clip.pretrained}; nothing to train")
            return
        images, captions, attributes = captioned_split(ingest, "train")
        started = time.perf_counter()
        model, losses = train_clip(clip.model, images, captions, attributes, clip.train, clip.device)
        seconds = time.perf_counter() - started
        save_checkpoint(model, tmp / TRAINED_CLIP)
        encoder = ClipEncoder(model, clip.model, sha256_file(tmp / TRAINED_CLIP), clip.batch_size)
        val_images, val_captions, val_attributes = captioned_split(ingest, "val", clip.eval_images)
        figures = evaluate_clip(encoder, val_images, val_captions, val_attributes)
    write_json(report, {**figures, "trained_here": True, "steps": clip.train.steps, "train_images": len(images),
                        "wall_seconds": round(seconds, 1),
                        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)})
