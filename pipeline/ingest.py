"""Ingest: any image source -> de-duplicated, split, sharded Parquet of square PNGs.

Decoding runs in a process pool, in bounded chunks (an archive of large photos is never
all in memory), and results come back in source order, so the shards are identical for
any number of workers. The id is the content hash, so the train/val split follows the
pictures, not their file names or order.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.atomic import atomic_dir
from pipeline.imagefile import SkipImage, decode_image, encode_png
from pipeline.params import IngestParams
from pipeline.sources import SourceItem, open_source

SKIP_REASONS = ("empty_file", "not_an_image", "corrupt", "truncated", "too_large", "unreadable", "duplicate")
SHARD_PATTERN = "part-{:05d}.parquet"
CHUNK_PER_WORKER = 256


def split_of(image_id: str, salt: str, val_fraction: float) -> str:
    """'val' for a fixed, salt-dependent fraction of ids; stable across runs and machines."""
    digest = hashlib.sha256(f"{salt}:{image_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


@dataclass
class _Decoder:
    resolution: int
    background: tuple[int, int, int]
    max_pixels: int

    def __call__(self, item: SourceItem) -> tuple[str, Any]:
        if item.skip_reason:
            return item.name, SkipImage(item.skip_reason, item.skip_detail)
        try:
            decoded = decode_image(item.data, self.resolution, self.background, self.max_pixels)
        except SkipImage as skip:
            return item.name, skip
        return item.name, (encode_png(decoded.pixels), decoded.sha256, decoded.width, decoded.height)


@dataclass
class IngestResult:
    summary: dict[str, Any]
    skipped: list[tuple[str, str, str]]  # (path, reason, detail), sorted by path


@dataclass
class _ShardWriter:
    folder: Path
    shard_size: int
    label_schema: pa.Schema | None
    metadata: dict[bytes, bytes]
    rows: list[dict[str, Any]] = field(default_factory=list)
    written: int = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        columns = {
            "id": pa.array([r["id"] for r in self.rows], pa.string()),
            "image": pa.array([r["image"] for r in self.rows], pa.binary()),
            "source": pa.array([r["source"] for r in self.rows], pa.string()),
            "sha256": pa.array([r["sha256"] for r in self.rows], pa.string()),
            "width": pa.array([r["width"] for r in self.rows], pa.int32()),
            "height": pa.array([r["height"] for r in self.rows], pa.int32()),
            "split": pa.array([r["split"] for r in self.rows], pa.string()),
        }
        for label in self.label_schema or []:
            columns[label.name] = pa.array([r["labels"].get(label.name) for r in self.rows], label.type)
        table = pa.table(columns).replace_schema_metadata(self.metadata)
        pq.write_table(table, self.folder / SHARD_PATTERN.format(self.written), compression="zstd")
        self.written += 1
        self.rows = []


def _worker_count(requested: int) -> int:
    return requested or os.cpu_count() or 1


def ingest(params: IngestParams, out_dir: Path) -> IngestResult:
    """Read ``params.source`` and write ``out_dir/part-*.parquet`` atomically."""
    source = open_source(params.source, params.labels, params.image_column, int(params.max_file_mb * 2**20))
    labels = source.labels
    label_schema = None
    if labels is not None:
        label_schema = pa.Schema.from_pandas(labels.reset_index(drop=True), preserve_index=False)
        label_schema = label_schema.remove_metadata()
    label_rows = labels.to_dict("index") if labels is not None else {}
    decoder = _Decoder(params.resolution, tuple(params.background), params.max_pixels)
    workers = _worker_count(params.workers)
    metadata = {b"t2i.resolution": str(params.resolution).encode(), b"t2i.source": source.description.encode()}

    skipped: list[tuple[str, str, str]] = []
    first_seen: dict[str, str] = {}
    counts = {"read": 0, "train": 0, "val": 0, "unlabelled": 0}
    with atomic_dir(out_dir) as tmp:
        writer = _ShardWriter(tmp, params.shard_size, label_schema, metadata)
        pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
        try:
            results = _decode_all(source.items, decoder, pool, workers)
            for name, result in tqdm(results, total=source.count, desc="ingest", unit="img"):
                counts["read"] += 1
                if isinstance(result, SkipImage):
                    skipped.append((name, result.reason, result.detail))
                    continue
                png, digest, width, height = result
                if digest in first_seen:
                    skipped.append((name, "duplicate", f"same pixels as {first_seen[digest]}"))
                    continue
                first_seen[digest] = name
                image_id = digest[:16]
                split = split_of(image_id, params.split_salt, params.val_fraction)
                counts[split] += 1
                row_labels = label_rows.get(name)
                if labels is not None and row_labels is None:
                    counts["unlabelled"] += 1
                writer.add({"id": image_id, "image": png, "source": name, "sha256": digest, "width": width,
                            "height": height, "split": split, "labels": row_labels or {}})
            writer.flush()
        finally:
            if pool is not None:
                pool.terminate()
    skipped.sort()
    by_reason = {reason: sum(1 for s in skipped if s[1] == reason) for reason in SKIP_REASONS}
    summary = {
        "source": source.description,
        "resolution": params.resolution,
        "read": counts["read"],
        "kept": counts["train"] + counts["val"],
        "train": counts["train"],
        "val": counts["val"],
        "skipped": len(skipped),
        "skipped_by_reason": by_reason,
        "unlabelled": counts["unlabelled"],
        "label_columns": label_schema.names if label_schema is not None else [],
        "shards": writer.written,
    }
    return IngestResult(summary, skipped)


def _decode_all(items, decoder: _Decoder, pool, workers: int):
    """Decode in source order; feed the pool in bounded chunks to cap memory."""
    if pool is None:
        yield from map(decoder, items)
        return
    chunk = CHUNK_PER_WORKER * workers
    while batch := list(itertools.islice(items, chunk)):
        yield from pool.imap(decoder, batch, chunksize=16)
