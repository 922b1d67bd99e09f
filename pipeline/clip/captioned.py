"""The captioned images the in-project CLIP trains and is scored on: a world's ingest shards,
which carry its captions and attribute columns (the text-to-image model never sees them)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import torch

from pipeline.core.errors import UserError
from pipeline.data.shards import decode_pngs, ingest_shards, read_table
from pipeline.worlds.base import World
from pipeline.worlds.registry import WORLDS, world_of


def captioned_world(ingest: Path) -> World:
    """The shards' world: the in-project CLIP trains on its captions and attribute columns."""
    present = set(pq.read_schema(ingest_shards(ingest)[0]).names)
    world = world_of(present)
    if world is None or not {"image", "caption"} <= present:
        missing = {name: sorted({"image", "caption", *w.attributes} - present) for name, w in WORLDS.items()}
        raise UserError(f"{ingest}: the in-project CLIP trains on a world's captions and attribute columns "
                        f"(missing: {missing}); set clip.pretrained to a CLIP checkpoint instead")
    return world


def captioned_split(ingest: Path, world: World, split: str,
                    limit: int | None = None) -> tuple[torch.Tensor, list[str], list[dict[str, str]]]:
    """uint8 images, their captions and their attributes, of one split (the first ``limit``)."""
    table = read_table(ingest, ["image", "caption", *world.attributes], split)
    if limit is not None:
        table = table.slice(0, limit)
    rows = table.drop(["image"]).to_pylist()
    attributes = [{name: row[name] for name in world.attributes} for row in rows]
    return decode_pngs(table["image"].to_pylist()), [row["caption"] for row in rows], attributes
