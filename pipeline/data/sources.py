"""Image sources for ingest: a folder tree, a .zip or .tar archive, or a Parquet file.

Each source yields ``SourceItem``s in a fixed order (sorted paths for folders, archive
order for archives, row order for Parquet) so a rerun sees the same sequence, and
carries optional label columns keyed by the item's name.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import UserError
from pipeline.data.imagefile import IMAGE_SUFFIXES

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
RESERVED_COLUMNS = {"id", "image", "source", "sha256", "width", "height", "split"}


@dataclass(frozen=True)
class SourceItem:
    name: str  # path inside the source (or "row:N" for Parquet)
    data: bytes | None  # None when skipped before reading
    skip_reason: str | None = None
    skip_detail: str = ""


@dataclass
class Source:
    description: str
    count: int
    items: Iterator[SourceItem]
    labels: pd.DataFrame | None  # indexed by item name


def _precheck(name: str, size: int, max_bytes: int) -> tuple[str, str] | None:
    """Skip by name or size without reading the bytes (a huge file is never loaded)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return "not_an_image", f"extension {suffix or '(none)'!r} is not an image type"
    if size > max_bytes:
        return "too_large", f"{size} bytes is over max_file_mb"
    return None


def _item(name: str, size: int, max_bytes: int, read) -> SourceItem:
    skip = _precheck(name, size, max_bytes)
    if skip:
        return SourceItem(name, None, *skip)
    try:
        return SourceItem(name, read())
    except OSError as error:
        return SourceItem(name, None, "unreadable", f"{type(error).__name__}: {error}")


def _parse_labels(data: bytes, where: str) -> pd.DataFrame:
    try:
        labels = pd.read_csv(io.BytesIO(data), keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as error:
        raise UserError(f"{where}: cannot read the labels CSV: {error}") from error
    return _check_labels(labels, where, key="file")


def _check_labels(labels: pd.DataFrame, where: str, key: str) -> pd.DataFrame:
    if key not in labels.columns:
        raise UserError(f"{where}: the labels need a '{key}' column naming each image's path")
    clash = sorted(RESERVED_COLUMNS & set(labels.columns))
    if clash:
        raise UserError(f"{where}: label columns {clash} clash with ingest's own columns; rename them")
    if labels[key].duplicated().any():
        dup = labels[key][labels[key].duplicated()].iloc[0]
        raise UserError(f"{where}: '{dup}' appears twice in the '{key}' column")
    return labels.set_index(key)


def _missing_labels(where: str) -> UserError:
    return UserError(f"{where}: labels file not found; set ingest.labels: null for a source without labels")


def _entries(folder: Path) -> Iterator[Path]:
    """Everything under ``folder`` but folders; a link to a folder is an entry, never followed (it may loop)."""
    try:
        with os.scandir(folder) as scan:
            listing = list(scan)
    except OSError as error:
        raise UserError(f"ingest.source: cannot list {folder} ({error.strerror}); fix its permissions or remove it, "
                        f"so that no image is left out unnoticed") from error
    for entry in listing:
        if entry.is_dir(follow_symlinks=False):
            yield from _entries(Path(entry.path))
        else:
            yield Path(entry.path)


def _not_a_file(mode: int) -> str:
    """Why a stat mode is not something to read; opening a FIFO would block forever."""
    if stat.S_ISDIR(mode):
        return "link to a folder, not followed"
    kinds = {stat.S_ISFIFO: "FIFO", stat.S_ISSOCK: "socket", stat.S_ISCHR: "character device",
             stat.S_ISBLK: "block device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "special file")
    return f"not a regular file ({kind})"


def _folder_item(path: Path, name: str, max_bytes: int) -> SourceItem:
    """Stat (following links) before opening, so links and special files are skipped with a reason."""
    try:
        info = path.stat()
    except OSError as error:
        if path.is_symlink():
            detail = f"link to a missing target {os.readlink(path)!r} ({error.strerror})"
        else:
            detail = f"{type(error).__name__}: {error}"
        return SourceItem(name, None, "unreadable", detail)
    if not stat.S_ISREG(info.st_mode):
        return SourceItem(name, None, "unreadable", _not_a_file(info.st_mode))
    return _item(name, info.st_size, max_bytes, path.read_bytes)


def _folder(root: Path, labels_name: str | None, max_bytes: int) -> Source:
    labels = None
    labels_path = root / labels_name if labels_name else None
    if labels_path:
        if not labels_path.is_file():
            raise _missing_labels(str(labels_path))
        labels = _parse_labels(labels_path.read_bytes(), str(labels_path))
    paths = sorted(p for p in _entries(root) if p != labels_path)

    def items() -> Iterator[SourceItem]:
        for path in paths:
            yield _folder_item(path, path.relative_to(root).as_posix(), max_bytes)

    return Source(f"folder {root}", len(paths), items(), labels)


def _zip(path: Path, labels_name: str | None, max_bytes: int) -> Source:
    archive = zipfile.ZipFile(path)
    members = [m for m in archive.infolist() if not m.is_dir() and m.filename != labels_name]
    labels = None
    if labels_name:
        if labels_name not in archive.namelist():
            raise _missing_labels(f"{path}:{labels_name}")
        labels = _parse_labels(archive.read(labels_name), f"{path}:{labels_name}")

    def items() -> Iterator[SourceItem]:
        with archive:
            for member in members:
                yield _item(member.filename, member.file_size, max_bytes, lambda m=member: archive.read(m))

    return Source(f"zip {path}", len(members), items(), labels)


def _tar_not_a_file(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return f"link to {member.linkname!r}, not a regular file"
    kinds = {tarfile.FIFOTYPE: "FIFO", tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device"}
    return f"not a regular file ({kinds.get(member.type, 'special member')})"


def _tar_item(archive: tarfile.TarFile, member: tarfile.TarInfo, max_bytes: int) -> SourceItem:
    """Read through extractfile, which resolves (hard and symbolic) links inside the archive."""
    try:
        handle = archive.extractfile(member)
    except KeyError:
        return SourceItem(member.name, None, "unreadable", f"link to a missing member {member.linkname!r}")
    except RecursionError:  # tarfile follows a symlink loop until the stack runs out
        return SourceItem(member.name, None, "unreadable", f"link loop through {member.linkname!r}")
    if handle is None:
        return SourceItem(member.name, None, "unreadable", _tar_not_a_file(member))
    with handle:
        size = handle.seek(0, io.SEEK_END)  # a link's own header says 0 bytes
        handle.seek(0)
        return _item(member.name, size, max_bytes, handle.read)


def _tar(path: Path, labels_name: str | None, max_bytes: int) -> Source:
    with tarfile.open(path) as archive:  # one pass for the index and the labels
        members = [m for m in archive.getmembers() if not m.isdir()]
        labels = None
        if labels_name:
            label_member = next((m for m in members if m.name == labels_name and m.isfile()), None)
            if label_member is None:
                raise _missing_labels(f"{path}:{labels_name}")
            labels = _parse_labels(archive.extractfile(label_member).read(), f"{path}:{labels_name}")
    members = [m for m in members if m.name != labels_name]

    def items() -> Iterator[SourceItem]:
        with tarfile.open(path) as archive:
            for member in members:
                yield _tar_item(archive, member, max_bytes)

    return Source(f"tar {path}", len(members), items(), labels)


def _parquet(path: Path, image_column: str, max_bytes: int) -> Source:
    file = pq.ParquetFile(path)
    schema = file.schema_arrow
    if image_column not in schema.names:
        raise UserError(f"{path}: no column '{image_column}'; set ingest.image_column to one of {schema.names}")
    column_type = schema.field(image_column).type
    if not (pa.types.is_binary(column_type) or pa.types.is_large_binary(column_type)):
        raise UserError(f"{path}: column '{image_column}' holds {column_type}, not image bytes")
    label_columns = [
        f.name for f in schema if f.name != image_column and
        (pa.types.is_string(f.type) or pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
         or pa.types.is_boolean(f.type) or pa.types.is_large_string(f.type))
    ]
    labels = None
    if label_columns:
        labels = file.read(columns=label_columns).to_pandas()
        labels.insert(0, "file", [f"row:{i}" for i in range(len(labels))])
        labels = _check_labels(labels, str(path), key="file")

    def items() -> Iterator[SourceItem]:
        row = 0
        for batch in file.iter_batches(columns=[image_column], batch_size=256):
            for value in batch.column(0).to_pylist():
                name = f"row:{row}"
                row += 1
                if value is None:
                    yield SourceItem(name, None, "empty_file", "null image value")
                elif len(value) > max_bytes:
                    yield SourceItem(name, None, "too_large", f"{len(value)} bytes is over max_file_mb")
                else:
                    yield SourceItem(name, value)

    return Source(f"parquet {path}", file.metadata.num_rows, items(), labels)


def open_source(source: str | Path, labels_name: str | None, image_column: str, max_bytes: int) -> Source:
    """Open ``source`` by its kind; errors name the path and what would work."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"ingest.source: {path} does not exist; point it at a folder, .zip, .tar or .parquet of images")
    if path.is_dir():
        return _folder(path, labels_name, max_bytes)
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            return _zip(path, labels_name, max_bytes)
        if name.endswith(TAR_SUFFIXES):
            return _tar(path, labels_name, max_bytes)
        if name.endswith(".parquet"):
            return _parquet(path, image_column, max_bytes)
    except (zipfile.BadZipFile, tarfile.TarError, pa.ArrowInvalid, EOFError) as error:
        raise UserError(f"ingest.source: {path} is not a readable archive: {error}") from error
    raise UserError(f"ingest.source: {path} is not a folder, .zip, .tar(.gz) or .parquet file")
