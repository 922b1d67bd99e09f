import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.core.errors import UserError
from pipeline.data.shards import SHARD_PATTERN
from pipeline.data.vectors import cache_ingest_shards, read_vectors, vectors_table, write_table
from stages.common import parse_shard
from tests.image_fixtures import encode


def write_shards(folder, ids, splits, vectors, column, per_shard):
    for start in range(0, len(ids), per_shard):
        end = start + per_shard
        table = vectors_table(ids[start:end], splits[start:end], vectors[start:end], column, {"model": "m", "dim": 8})
        write_table(folder / SHARD_PATTERN.format(start // per_shard), table)


def test_round_trip_is_exact_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"{i:016x}" for i in range(250)]
    splits = ["val" if i % 7 == 0 else "train" for i in range(250)]
    for column, vectors in (("embedding", rng.standard_normal((250, 8)).astype(np.float32)),
                            ("codes", rng.integers(0, 4096, (250, 64)).astype(np.int16))):
        folder = tmp_path / column
        write_shards(folder, ids, splits, vectors, column, per_shard=100)
        cache = read_vectors(folder, column)
        assert cache.ids == ids and list(cache.splits) == splits
        assert cache.vectors.dtype == vectors.dtype and np.array_equal(cache.vectors, vectors)
        assert cache.metadata == {"model": "m", "dim": "8"}
        val = read_vectors(folder, column, split="val")
        assert np.array_equal(val.vectors, vectors[[s == "val" for s in splits]])


def test_vectors_are_a_fixed_size_list_column(tmp_path):
    table = vectors_table(["a"], ["train"], np.ones((1, 4), np.float32), "embedding", {})
    write_table(tmp_path / "x.parquet", table)
    schema = pq.read_schema(tmp_path / "x.parquet")
    field_type = schema.field("embedding").type
    assert pa.types.is_fixed_size_list(field_type) and field_type.list_size == 4
    assert field_type.value_type == pa.float32()


def test_same_inputs_give_the_same_bytes(tmp_path):
    vectors = np.arange(40, dtype=np.float32).reshape(5, 8)
    for name in ("a.parquet", "b.parquet"):
        write_table(tmp_path / name, vectors_table(list("abcde"), ["train"] * 5, vectors, "embedding", {"k": 1}))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def write_ingest(folder, n_shards=3, per_shard=4):
    """Ingest-like shards of tiny PNGs: id, split, image."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s in range(n_shards):
        ids = [f"{s:02d}{i:014x}" for i in range(per_shard)]
        pngs = [encode(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), "PNG") for _ in ids]
        table = pa.table({"id": ids, "split": ["train", "val"] * (per_shard // 2), "image": pa.array(pngs, pa.binary())})
        pq.write_table(table, folder / SHARD_PATTERN.format(s))
    return folder


def channel_means(images):
    return images.float().mean((2, 3)).numpy()


def test_sharded_workers_write_the_cache_one_run_writes(tmp_path):
    ingest = write_ingest(tmp_path / "ingest")
    assert cache_ingest_shards(ingest, tmp_path / "one", "embedding", channel_means, {"model": "m"}, "one") == 12
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / SHARD_PATTERN.format(7)).write_bytes(b"left over from a run on more ingest shards")
    rows = [cache_ingest_shards(ingest, sharded, "embedding", channel_means, {"model": "m"}, "w", shard=(i, 2))
            for i in (1, 0)]
    assert rows == [4, 8]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in sharded.iterdir()) == [SHARD_PATTERN.format(i) for i in range(3)]
    assert all((tmp_path / "one" / n).read_bytes() == (sharded / n).read_bytes() for n in names)
    assert read_vectors(sharded, "embedding").metadata == {"model": "m", "parts": "3"}


def test_a_cache_with_parts_missing_or_from_another_run_is_refused(tmp_path):
    ingest = write_ingest(tmp_path / "ingest")
    cache = tmp_path / "cache"
    cache_ingest_shards(ingest, cache, "embedding", channel_means, {"model": "m"}, "w", shard=(0, 2))
    with pytest.raises(UserError, match="2 of its 3 parts"):
        read_vectors(cache, "embedding")
    cache_ingest_shards(ingest, cache, "embedding", channel_means, {"model": "other"}, "w", shard=(1, 2))
    with pytest.raises(UserError, match="another run"):
        read_vectors(cache, "embedding")


@pytest.mark.parametrize("text,ok", [("0/1", (0, 1)), ("3/4", (3, 4)), ("4/4", None), ("1", None), ("a/b", None)])
def test_shard_option(text, ok):
    if ok:
        assert parse_shard(text) == ok
    else:
        with pytest.raises(UserError, match="i/N"):
            parse_shard(text)
