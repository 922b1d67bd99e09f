import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cache import SHARD_PATTERN, read_vectors, vectors_table, write_table


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
