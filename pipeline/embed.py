"""Which CLIP weights the pipeline uses, and the cache of prompt text embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.atomic import atomic_file
from pipeline.clip import ClipEncoder
from pipeline.errors import UserError
from pipeline.params import ClipParams

TRAINED_CLIP = "clip.pt"  # inside the clip stage's output folder


def clip_weights(params: ClipParams, clip_dir: Path) -> str:
    """The pretrained tag or file in params, else the CLIP the clip stage trained."""
    if params.pretrained is not None:
        return params.pretrained
    path = Path(clip_dir) / TRAINED_CLIP
    if not path.is_file():
        raise UserError(f"{path}: no in-project CLIP; run the clip stage, or set clip.pretrained")
    return str(path)


def load_encoder(params: ClipParams, clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(params.model, clip_weights(params, clip_dir), params.precision, params.batch_size,
                            params.device)


def write_prompt_embeddings(path: Path, prompts: pd.DataFrame, embeddings: np.ndarray, metadata: dict) -> None:
    table = pa.Table.from_pandas(prompts.reset_index(drop=True), preserve_index=False)
    flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1))
    table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]))
    table = table.replace_schema_metadata({f"t2i.{k}": str(v) for k, v in metadata.items()})
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_prompt_embeddings(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The prompts (with their label columns) and their (P, D) unit text embeddings."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no prompt embeddings; run the embed stage")
    table = pq.read_table(path)
    column = table["embedding"].combine_chunks()
    embeddings = column.flatten().to_numpy().reshape(len(table), column.type.list_size)
    return table.drop(["embedding"]).to_pandas(), embeddings
