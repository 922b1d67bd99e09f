"""Ingest: any image source -> de-duplicated, split, sharded Parquet of square PNGs.

Decoding runs in a process pool, a bounded window of chunks at a time (an archive of large
photos is never all in memory), and results come back in source order, so the shards are
identical for any number of workers. Workers send back plain data, never exceptions; a
decoder that fails or a worker that dies ends the stage with an error naming the file,
never a hang. The id is the content hash, so the train/val split follows the pictures,
not their file names or order.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.core.atomic import atomic_dir
from pipeline.core.cpus import available_cpus
from pipeline.core.errors import UserError
from pipeline.core.params import IngestParams
from pipeline.data.imagefile import SkipImage, decode_image, encode_png
from pipeline.data.shards import SHARD_PATTERN
from pipeline.data.sources import SourceItem, open_source

SKIP_REASONS = ("empty_file", "not_an_image", "corrupt", "truncated", "too_large", "unreadable", "duplicate")
CHUNK_SIZE = 16  # items per task sent to a worker
CHUNKS_IN_FLIGHT_PER_WORKER = 4  # bounds memory; enough queued work to keep every worker busy


def split_of(image_id: str, salt: str, val_fraction: float) -> str:
    """'val' for a fixed, salt-dependent fraction of ids; stable across runs and machines."""
    digest = hashlib.sha256(f"{salt}:{image_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


@dataclass(frozen=True)
class Decoded:
    png: bytes
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class Skipped:
    reason: str
    detail: str


@dataclass(frozen=True)
class _Failed:
    """An unexpected exception in the decoder, as text: it crosses the process boundary intact."""

    error: str  # "Type: message"
    traceback: str


Decode = Callable[[SourceItem], Decoded]  # raises SkipImage for a file it cannot use
Outcome = Decoded | Skipped


@dataclass(frozen=True)
class ImageDecoder:
    resolution: int
    background: tuple[int, int, int]
    max_pixels: int

    def __call__(self, item: SourceItem) -> Decoded:
        decoded = decode_image(item.data, self.resolution, self.background, self.max_pixels)
        return Decoded(encode_png(decoded.pixels), decoded.sha256, decoded.width, decoded.height)


def _outcome(decode: Decode, item: SourceItem) -> Outcome | _Failed:
    """Never raises (but for BaseException), so a worker always answers with data."""
    if item.skip_reason:
        return Skipped(item.skip_reason, item.skip_detail)
    try:
        return decode(item)
    except SkipImage as skip:
        return Skipped(skip.reason, skip.detail)
    except Exception as error:  # a decoder bug: decode_items reports it with the file's name
        return _Failed(f"{type(error).__name__}: {error}", traceback.format_exc())


def _decode_chunk(decode: Decode, chunk: list[SourceItem]) -> list[Outcome | _Failed]:
    return [_outcome(decode, item) for item in chunk]


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
    return requested or available_cpus()


def ingest(params: IngestParams, out_dir: Path) -> IngestResult:
    """Read ``params.source`` and write ``out_dir/part-*.parquet`` atomically."""
    source = open_source(params.source, params.labels, params.image_column, int(params.max_file_mb * 2**20))
    labels = source.labels
    label_schema = None
    if labels is not None:
        label_schema = pa.Schema.from_pandas(labels.reset_index(drop=True), preserve_index=False)
        label_schema = label_schema.remove_metadata()
    label_rows = labels.to_dict("index") if labels is not None else {}
    decoder = ImageDecoder(params.resolution, tuple(params.background), params.max_pixels)
    workers = _worker_count(params.workers)
    metadata = {b"t2i.resolution": str(params.resolution).encode(), b"t2i.source": source.description.encode()}

    skipped: list[tuple[str, str, str]] = []
    first_seen: dict[str, str] = {}
    counts = {"read": 0, "train": 0, "val": 0, "unlabelled": 0}
    with atomic_dir(out_dir) as tmp:
        writer = _ShardWriter(tmp, params.shard_size, label_schema, metadata)
        with closing(decode_items(source.items, decoder, workers)) as results:
            for name, result in tqdm(results, total=source.count, desc="ingest", unit="img"):
                counts["read"] += 1
                if isinstance(result, Skipped):
                    skipped.append((name, result.reason, result.detail))
                    continue
                if result.sha256 in first_seen:
                    skipped.append((name, "duplicate", f"same pixels as {first_seen[result.sha256]}"))
                    continue
                first_seen[result.sha256] = name
                image_id = result.sha256[:16]
                split = split_of(image_id, params.split_salt, params.val_fraction)
                counts[split] += 1
                row_labels = label_rows.get(name)
                if labels is not None and row_labels is None:
                    counts["unlabelled"] += 1
                writer.add({"id": image_id, "image": result.png, "source": name, "sha256": result.sha256,
                            "width": result.width, "height": result.height, "split": split,
                            "labels": row_labels or {}})
        writer.flush()
        # every entry of the source is accounted for, kept or skipped, before the output is trusted
        assert counts["read"] == source.count == counts["train"] + counts["val"] + len(skipped), counts
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


def decode_items(items: Iterable[SourceItem], decode: Decode, workers: int) -> Iterator[tuple[str, Outcome]]:
    """(name, outcome) in source order: in this process for one worker, else in spawned processes.

    ``decode`` must be picklable for ``workers > 1``. A decoder that raises something other
    than SkipImage, or a worker that dies, ends the stage with a UserError naming the file.
    """
    outcomes = _in_process(items, decode) if workers <= 1 else _pooled(items, decode, workers)
    with closing(outcomes):
        for name, outcome in outcomes:
            if isinstance(outcome, _Failed):
                raise UserError(f"ingest: decoding {name} raised {outcome.error}; this is a bug in the decoder "
                                f"(or a file it cannot handle): remove the file to go on, and report it.\n"
                                f"{outcome.traceback}")
            yield name, outcome


def _in_process(items: Iterable[SourceItem], decode: Decode) -> Iterator[tuple[str, Outcome | _Failed]]:
    for item in items:
        yield item.name, _outcome(decode, item)


Window = deque[tuple[list[SourceItem], Future]]


def _pooled(items: Iterable[SourceItem], decode: Decode, workers: int) -> Iterator[tuple[str, Outcome | _Failed]]:
    """A window of chunks in flight; the oldest comes back first, so order holds for any worker count.

    ProcessPoolExecutor, unlike multiprocessing.Pool, fails (BrokenProcessPool) rather than
    waiting forever when a worker dies; the executor is shut down without waiting on every path.
    """
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    window: Window = deque()
    try:
        for chunk in _chunks(items, CHUNK_SIZE):
            window.append((chunk, executor.submit(_decode_chunk, decode, chunk)))
            if len(window) >= CHUNKS_IN_FLIGHT_PER_WORKER * workers:
                yield from _take_oldest(window)
        while window:
            yield from _take_oldest(window)
    except BrokenProcessPool:
        raise _worker_death(decode, _unfinished(window)) from None
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _chunks(items: Iterable[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _take_oldest(window: Window) -> list[tuple[str, Outcome | _Failed]]:
    """Wait for the oldest chunk; it stays in the window if its worker died, to be examined."""
    chunk, future = window[0]
    outcomes = future.result()
    window.popleft()
    return [(item.name, outcome) for item, outcome in zip(chunk, outcomes)]


def _unfinished(window: Window) -> list[SourceItem]:
    """Items of the chunks that did not come back: one of them may have killed its worker."""
    return [item for chunk, future in window if not future.done() or future.exception() is not None
            for item in chunk]


def _worker_death(decode: Decode, suspects: list[SourceItem]) -> UserError:
    """Decode each suspect alone in a fresh process, in order, until one dies: that file is the cause."""
    code = _exit_code(decode, [])
    if code != 0:  # without this check, every file would be blamed for a process that cannot start
        return UserError(f"ingest: a fresh decoding process dies before decoding anything "
                         f"({_describe_exit(code)}); see any error it printed above")
    for item in tqdm(suspects, desc="ingest: finding the file that killed a decoding process", unit="img"):
        code = _exit_code(decode, [item])
        if code != 0:
            return UserError(f"ingest: decoding {item.name} kills the decoding process ({_describe_exit(code)}); "
                             f"remove or replace that file and rerun")
    where = f"one of {suspects[0].name} .. {suspects[-1].name} ({len(suspects)} files)" if suspects else "a file"
    return UserError(f"ingest: a decoding process died while decoding {where}, but none of them kills a process "
                     f"when decoded alone (out of memory?); rerun with ingest.workers: 1 to find out")


def _exit_code(decode: Decode, chunk: list[SourceItem]) -> int:
    """How a fresh process that decodes just ``chunk`` ends."""
    process = multiprocessing.get_context("spawn").Process(target=_decode_chunk, args=(decode, chunk), daemon=True)
    process.start()
    process.join()
    return process.exitcode


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code}, {signal.strsignal(-code) or 'unknown'}"
    return f"exit code {code}"
