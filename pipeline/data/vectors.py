"""Parquet files of fixed-size vectors: caches keyed by image id (CLIP embeddings, code grids)
and the prompts' text embeddings.

Vectors are stored as a fixed-size list column, so reading them back into an array is one
memory-mapped, zero-copy view of the Arrow buffer: no per-row Python loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from pipeline.core.atomic import atomic_dir, atomic_file
from pipeline.core.errors import UserError
from pipeline.data.shards import SHARD_PATTERN, decode_pngs, ingest_shards, shard_files


@dataclass
class VectorCache:
    ids: list[str]
    splits: np.ndarray  # object array of "train"/"val"
    vectors: np.ndarray  # (N, D)
    metadata: dict[str, str]


def vector_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) rows as a fixed-size list column over one flat buffer."""
    vectors = np.ascontiguousarray(vectors)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def column_vectors(table: pa.Table, column: str) -> np.ndarray:
    """A fixed-size list column back as an (N, D) array, zero-copy where Arrow allows."""
    vectors = table[column].combine_chunks()
    values = vectors.flatten().to_numpy(zero_copy_only=vectors.null_count == 0 and vectors.offset == 0)
    return values.reshape(len(table), vectors.type.list_size)


def with_metadata(table: pa.Table, metadata: dict) -> pa.Table:
    return table.replace_schema_metadata({f"t2i.{k}": str(v) for k, v in metadata.items()})


def vectors_table(ids: list[str], splits: list[str], vectors: np.ndarray, column: str,
                  metadata: dict[str, str]) -> pa.Table:
    table = pa.table({
        "id": pa.array(ids, pa.string()),
        "split": pa.array(splits, pa.string()),
        column: vector_column(vectors),
    })
    return with_metadata(table, metadata)


def write_table(path: Path, table: pa.Table) -> None:
    """Atomic Parquet write; no statistics or dictionaries for the vector bytes."""
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=["id", "split"],
                       write_statistics=["id", "split"])


def read_vectors(folder: str | Path, column: str, split: str | None = None) -> VectorCache:
    """Every shard of ``folder`` (or one file) as ids, splits and an (N, D) array.

    A folder whose shards disagree on their metadata (written by different runs) or that
    lacks some of the parts its shards count (a sharded run not finished) is refused.
    """
    folder = Path(folder)
    shards = [folder] if folder.is_file() else shard_files(folder)
    if not shards:
        raise UserError(f"{folder}: no cache shards; run the stage that writes it (`dvc repro`)")
    tables = [pq.read_table(s, memory_map=True) for s in shards]
    metadata = _metadata(tables[0])
    odd = next((s for s, t in zip(shards, tables) if _metadata(t) != metadata), None)
    if odd is not None:
        raise UserError(f"{folder}: {odd.name} was written by another run than {shards[0].name}; "
                        "rerun the stage that writes the cache")
    if folder.is_dir() and "parts" in metadata and int(metadata["parts"]) != len(shards):
        raise UserError(f"{folder}: {len(shards)} of its {metadata['parts']} parts are there; "
                        "a sharded run has not finished (or one of its workers failed)")
    table = pa.concat_tables(tables)
    if split is not None:
        table = table.filter(pc.equal(table["split"], split))
    return VectorCache(
        ids=table["id"].to_pylist(),
        splits=table["split"].to_numpy(zero_copy_only=False),
        vectors=column_vectors(table, column),
        metadata=metadata,
    )


def _metadata(table: pa.Table) -> dict[str, str]:
    return {k.decode()[4:]: v.decode() for k, v in (table.schema.metadata or {}).items() if k.startswith(b"t2i.")}


def cache_ingest_shards(ingest_dir: str | Path, out_dir: str | Path, column: str,
                        compute: Callable[[torch.Tensor], np.ndarray], metadata: dict[str, str], desc: str,
                        shard: tuple[int, int] = (0, 1)) -> int:
    """One cache part per ingest shard: ``compute`` maps uint8 images (B,3,H,W) to (B, D).
    Returns the number of rows written.

    Alone (``shard`` (0, 1)) the folder is written atomically, so a killed run leaves no part
    a rerun would trust. As worker i of N (``shard`` (i, N), e.g. one process per GPU) it
    writes the parts of ingest shards i, i+N, ... into the folder, each file atomically, and
    worker 0 removes parts beyond the ingest's count: N workers into one folder write exactly
    the files one run writes. Every part records how many parts the cache has, so
    read_vectors refuses a folder a worker has not finished.
    """
    shards = ingest_shards(ingest_dir)
    worker, workers = shard
    if not 0 <= worker < workers:
        raise ValueError(f"shard {worker}/{workers}: need 0 <= i < N")
    metadata = {**metadata, "parts": len(shards)}
    names = [SHARD_PATTERN.format(i) for i in range(len(shards))]

    def write(folder: Path) -> int:
        rows = 0
        for name, source in tqdm(list(zip(names, shards))[worker::workers], desc=desc, unit="shard"):
            table = pq.read_table(source, columns=["id", "split", "image"], memory_map=True)
            vectors = compute(decode_pngs(table["image"].to_pylist()))
            write_table(folder / name,
                        vectors_table(table["id"].to_pylist(), table["split"].to_pylist(), vectors, column, metadata))
            rows += table.num_rows
        return rows

    if workers == 1:
        with atomic_dir(out_dir) as tmp:
            return write(tmp)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if worker == 0:
        for stale in set(shard_files(out_dir)) - {out_dir / name for name in names}:
            stale.unlink()
    return write(out_dir)


def write_prompt_embeddings(path: Path, prompts: pd.DataFrame, embeddings: np.ndarray, metadata: dict) -> None:
    """The prompts with their label columns and an ``embedding`` column of their text embeddings."""
    table = pa.Table.from_pandas(prompts.reset_index(drop=True), preserve_index=False)
    table = table.append_column("embedding", vector_column(embeddings.astype(np.float32, copy=False)))
    with atomic_file(path) as tmp:
        pq.write_table(with_metadata(table, metadata), tmp, compression="zstd")


def read_prompt_embeddings(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The prompts (with their label columns) and their (P, D) unit text embeddings."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no prompt embeddings; run the embed stage")
    table = pq.read_table(path)
    return table.drop(["embedding"]).to_pandas(), column_vectors(table, "embedding")
