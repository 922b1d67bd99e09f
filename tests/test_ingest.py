import csv
import io
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.core.errors import UserError
from pipeline.data.imagefile import SkipImage
from pipeline.data.ingest import decode_items, ingest, split_of
from pipeline.data.shards import decode_pngs, load_images, read_table
from pipeline.data.sources import SourceItem
from pipeline.worlds.shapes.render import generate
from tests.conftest import REPO, make_params
from tests.image_fixtures import broken_files, encode, good_files, pattern
from tests.pool_decoders import DiesOnceDecoder, SabotagedDecoder, UnloadableDecoder


def write_folder(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def run(source, tmp_path, **overrides):
    settings = {"ingest__source": str(source), "ingest__labels": None, "ingest__workers": 1, **overrides}
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    return ingest(make_params(**settings).ingest, out), out


def shard_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


WORKERS = pytest.mark.parametrize("workers", [1, 2])  # in this process, and through the process pool


def write_special_entries(root):
    """Links and a FIFO that ingest must skip unopened and unfollowed: name -> (reason, part of the detail)."""
    (root / "nested").mkdir(parents=True, exist_ok=True)
    os.symlink("missing.png", root / "dangling.png")
    os.symlink("looped.png", root / "looped.png")
    os.symlink("..", root / "nested" / "up.png")  # following a link to a folder above it would loop
    os.mkfifo(root / "pipe.png")  # opening it would block forever
    return {"dangling.png": ("unreadable", "link to a missing target 'missing.png'"),
            "looped.png": ("unreadable", "link to a missing target"),
            "nested/up.png": ("unreadable", "link to a folder, not followed"),
            "pipe.png": ("unreadable", "not a regular file (FIFO)")}


@pytest.mark.timeout(120)
@WORKERS
def test_broken_files_are_skipped_with_reasons(tmp_path, workers):
    good = good_files()
    broken = broken_files()
    big = encode(Image.fromarray(pattern(300, 300, seed=1)), "PNG")
    wide = encode(Image.new("RGB", (500, 100)), "PNG")
    src = write_folder(tmp_path / "src", good | {name: data for name, (data, _) in broken.items()}
                       | {"big.png": big, "wide.png": wide})
    special = write_special_entries(src)
    expected = ({name: reason for name, (_, reason) in broken.items()}
                | {name: reason for name, (reason, _) in special.items()}
                | {"big.png": "too_large", "wide.png": "too_large"})
    result, out = run(src, tmp_path, ingest__workers=workers, ingest__max_file_mb=len(big) / 2**20 - 1e-6,
                      ingest__max_pixels=40_000)
    assert {path: reason for path, reason, _ in result.skipped} == expected
    details = {path: detail for path, _, detail in result.skipped}
    assert "max_file_mb" in details["big.png"] and "max_pixels" in details["wide.png"]
    assert all(part in details[name] for name, (_, part) in special.items()), details
    summary = result.summary
    assert summary["read"] == len(good) + len(expected) == summary["kept"] + summary["skipped"]
    assert summary["kept"] == len(good)
    assert sum(summary["skipped_by_reason"].values()) == len(expected)
    assert sorted(read_table(out)["source"].to_pylist()) == sorted(good)


@WORKERS
@pytest.mark.parametrize("how", ["permission", "io_error"])
def test_unreadable_file_is_skipped(tmp_path, workers, how):
    src = write_folder(tmp_path / "src", {"a.png": good_files()["a.png"]})
    if how == "permission":
        if os.geteuid() == 0:
            pytest.skip("root reads a chmod 000 file; the io_error case covers a read that fails")
        (src / "locked.png").write_bytes(good_files()["b.jpg"])
        (src / "locked.png").chmod(0)
    else:
        if not os.path.exists("/proc/self/mem"):
            pytest.skip("needs Linux /proc")
        os.symlink("/proc/self/mem", src / "locked.png")  # reading at offset 0 fails with EIO, even for root
    result, _ = run(src, tmp_path, ingest__workers=workers)
    assert [(path, reason) for path, reason, _ in result.skipped] == [("locked.png", "unreadable")]
    assert result.summary["read"] == 2 == result.summary["kept"] + result.summary["skipped"]


def test_unlistable_folder_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root lists a chmod 000 folder")
    src = write_folder(tmp_path / "src", {"a.png": good_files()["a.png"], "hidden/b.jpg": good_files()["b.jpg"]})
    (src / "hidden").chmod(0)
    try:
        with pytest.raises(UserError, match="cannot list .*hidden"):
            run(src, tmp_path)
    finally:
        (src / "hidden").chmod(0o755)


def tar_member(archive, name, kind=tarfile.REGTYPE, link="", data=b""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    archive.addfile(info, io.BytesIO(data))


@pytest.mark.timeout(120)
@WORKERS
def test_tar_links_and_special_members_are_accounted_for(tmp_path, workers):
    good = good_files()
    with tarfile.open(tmp_path / "images.tar", "w") as archive:
        tar_member(archive, "a.png", data=good["a.png"])
        tar_member(archive, "raw", tarfile.DIRTYPE)  # a folder is not an entry
        tar_member(archive, "raw/b.dat", data=good["b.jpg"])  # images only through the links below
        tar_member(archive, "raw/d.dat", data=good["d.bmp"])
        tar_member(archive, "b.jpg", tarfile.SYMTYPE, "raw/b.dat")
        tar_member(archive, "d.bmp", tarfile.LNKTYPE, "raw/d.dat")
        tar_member(archive, "dangling.png", tarfile.SYMTYPE, "missing.png")
        tar_member(archive, "hard-dangling.png", tarfile.LNKTYPE, "missing.png")
        tar_member(archive, "looped.png", tarfile.SYMTYPE, "looped.png")
        tar_member(archive, "folder.png", tarfile.SYMTYPE, "raw")
        tar_member(archive, "pipe.png", tarfile.FIFOTYPE)
        tar_member(archive, "device.png", tarfile.CHRTYPE)
    result, out = run(tmp_path / "images.tar", tmp_path, ingest__workers=workers)
    assert sorted(read_table(out)["source"].to_pylist()) == ["a.png", "b.jpg", "d.bmp"]
    details = {path: (reason, detail) for path, reason, detail in result.skipped}
    assert details == {
        "raw/b.dat": ("not_an_image", "extension '.dat' is not an image type"),
        "raw/d.dat": ("not_an_image", "extension '.dat' is not an image type"),
        "dangling.png": ("unreadable", "link to a missing member 'missing.png'"),
        "hard-dangling.png": ("unreadable", "link to a missing member 'missing.png'"),
        "looped.png": ("unreadable", "link loop through 'looped.png'"),
        "folder.png": ("unreadable", "link to 'raw', not a regular file"),
        "pipe.png": ("unreadable", "not a regular file (FIFO)"),
        "device.png": ("unreadable", "not a regular file (character device)"),
    }
    assert result.summary["read"] == 11 == result.summary["kept"] + result.summary["skipped"]


def test_skip_image_survives_pickling():
    skip = pickle.loads(pickle.dumps(SkipImage("corrupt", "bad CRC")))
    assert (skip.reason, skip.detail, str(skip)) == ("corrupt", "bad CRC", "corrupt: bad CRC")


def numbered_items(count, renamed=None):
    """Small fake items in order; ``renamed`` gives some positions a name a test decoder reacts to."""
    names = {i: f"{i:03d}.png" for i in range(count)} | (renamed or {})
    return [SourceItem(names[i], b"%d" % i) for i in range(count)]


@pytest.mark.timeout(120)
@WORKERS
def test_unexpected_decoder_error_names_the_file(workers):
    items = numbered_items(100, {50: "raises.png"})
    with pytest.raises(UserError, match=r"decoding raises\.png raised RuntimeError: decoder bug"):
        list(decode_items(iter(items), SabotagedDecoder(raises_on="raises.png"), workers))


@pytest.mark.timeout(120)
def test_dead_worker_names_the_file():
    items = numbered_items(100, {50: "dies.png"})
    decoded = []
    with pytest.raises(UserError, match=r"decoding dies\.png kills the decoding process \(exit code 3\)"):
        decoded.extend(name for name, _ in decode_items(iter(items), SabotagedDecoder(dies_on="dies.png"), 2))
    assert decoded == [item.name for item in items[:len(decoded)]] and len(decoded) <= 50


@pytest.mark.timeout(120)
def test_death_that_no_file_repeats_names_the_range(tmp_path):
    items = numbered_items(6)
    with pytest.raises(UserError, match=r"one of 000\.png \.\. 005\.png \(6 files\).*ingest\.workers: 1"):
        list(decode_items(iter(items), DiesOnceDecoder(str(tmp_path / "died")), 2))


@pytest.mark.timeout(120)
def test_worker_that_cannot_start_blames_no_file():
    with pytest.raises(UserError, match=r"a fresh decoding process dies before decoding anything \(exit code 5\)"):
        list(decode_items(iter(numbered_items(3)), UnloadableDecoder(), 2))


def archive_sources(tmp_path, files):
    folder = write_folder(tmp_path / "folder", files)
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    for suffix, mode in ((".tar", "w"), (".tar.gz", "w:gz")):
        with tarfile.open(tmp_path / f"images{suffix}", mode) as archive:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    names = [n for n in files if n != "labels.csv"]
    table = pa.table({"image": pa.array([files[n] for n in names], pa.binary()), "file_name": names})
    pq.write_table(table, tmp_path / "images.parquet")
    return [folder, tmp_path / "images.zip", tmp_path / "images.tar", tmp_path / "images.tar.gz",
            tmp_path / "images.parquet"]


def test_every_source_kind_accounts_for_every_entry(tmp_path):
    files = good_files() | {name: data for name, (data, _) in broken_files().items()}
    summaries = [run(source, tmp_path)[0].summary for source in archive_sources(tmp_path, files)]
    for summary in summaries:
        assert summary["read"] == len(files) == summary["kept"] + summary["skipped"], summary["source"]
        assert summary["skipped_by_reason"] == summaries[0]["skipped_by_reason"], summary["source"]


def test_every_source_kind_gives_the_same_images(tmp_path):
    sources = archive_sources(tmp_path, good_files())
    contents = []
    for source in sources:
        result, out = run(source, tmp_path)
        assert result.summary["kept"] == len(good_files()), source
        table = read_table(out)
        contents.append(dict(zip(table["id"].to_pylist(), table["image"].to_pylist())))
    assert all(c == contents[0] for c in contents[1:])


def test_labels_are_carried_from_csv_and_parquet(tmp_path):
    files = good_files()
    rows = [{"file": name, "kind": name.split(".")[-1], "number": i} for i, name in enumerate(files)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["file", "kind", "number"])
    writer.writeheader()
    writer.writerows(rows[:-1])  # the last image has no label row
    sources = archive_sources(tmp_path, files | {"labels.csv": text.getvalue().encode()})
    for source in sources[:4]:
        result, out = run(source, tmp_path, ingest__labels="labels.csv")
        table = read_table(out)
        assert result.summary["unlabelled"] == 1
        assert result.summary["label_columns"] == ["kind", "number"]
        by_source = dict(zip(table["source"].to_pylist(), table["kind"].to_pylist()))
        assert by_source["b.jpg"] == "jpg" and by_source[rows[-1]["file"]] is None
    result, out = run(sources[4], tmp_path)
    table = read_table(out)
    assert table["file_name"].to_pylist()[0] == list(files)[0]


def test_missing_source_and_labels_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        run(tmp_path / "nowhere", tmp_path)
    write_folder(tmp_path / "src", {"a.png": good_files()["a.png"]})
    with pytest.raises(UserError, match="ingest.labels: null"):
        run(tmp_path / "src", tmp_path, ingest__labels="labels.csv")


def test_colour_modes_become_rgb(tmp_path):
    files = good_files()
    write_folder(tmp_path / "src", files)
    _, out = run(tmp_path / "src", tmp_path, ingest__resolution=16, ingest__background=[0, 0, 255])
    table = read_table(out)
    images = dict(zip(table["source"].to_pylist(), table["image"].to_pylist()))
    pixels = {name: np.asarray(Image.open(io.BytesIO(data))) for name, data in images.items()}
    assert all(p.shape == (16, 16, 3) and p.dtype == np.uint8 for p in pixels.values())
    # half-transparent RGBA over a blue background: blue channel is lifted, red is halved
    assert pixels["rgba.png"][..., 2].mean() > 180 and pixels["rgba.png"][..., 0].mean() < 80
    # 16-bit greyscale is scaled (a gradient), not clipped to white
    grey = pixels["grey16.png"]
    assert grey.min() < 50 and grey.max() > 200 and np.all(grey[..., 0] == grey[..., 2])
    # CMYK JPEG decodes to colours close to the RGB it came from
    original = np.asarray(Image.fromarray(pattern(seed=10)).crop((4, 0, 44, 40)).resize((16, 16), Image.LANCZOS))
    assert np.abs(pixels["cmyk.jpg"].astype(int) - original).mean() < 25


def test_duplicates_keep_the_first_in_order(tmp_path):
    a = good_files()["a.png"]
    write_folder(tmp_path / "src", {"1.png": a, "2/copy.png": a, "3.bmp": broken_files()["copy-of-a.bmp"][0]})
    result, out = run(tmp_path / "src", tmp_path)
    assert read_table(out)["source"].to_pylist() == ["1.png"]
    assert [(p, r) for p, r, _ in result.skipped] == [("2/copy.png", "duplicate"), ("3.bmp", "duplicate")]


def test_split_is_deterministic_and_follows_the_fraction():
    ids = [f"{i:016x}" for i in range(20000)]
    splits = [split_of(i, "salt", 0.1) for i in ids]
    assert splits == [split_of(i, "salt", 0.1) for i in ids]
    assert 0.09 < splits.count("val") / len(ids) < 0.11
    assert splits != [split_of(i, "other", 0.1) for i in ids]
    assert all(split_of(i, "salt", 0.0) == "train" for i in ids[:100])


def test_shards_do_not_depend_on_worker_count(tmp_path):
    generate(tmp_path / "world", 300, 32, seed=1)
    _, one = run(tmp_path / "world", tmp_path, ingest__labels="labels.csv", ingest__shard_size=70)
    _, two = run(tmp_path / "world", tmp_path, ingest__labels="labels.csv", ingest__shard_size=70, ingest__workers=2)
    assert len(shard_bytes(one)) == 5
    assert shard_bytes(one) == shard_bytes(two)
    ids, images = load_images(one, split="val")
    assert images.shape == (len(ids), 3, 32, 32) and 0 < len(ids) < 100


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_png_decoding_gives_pils_rgb_pixels(mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8))
    image = rgb.convert(mode) if mode != "P" else rgb.quantize(16)
    decoded = decode_pngs([encode(image, "PNG"), encode(image, "PNG")])
    expected = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    assert decoded.shape == (2, 3, 9, 7) and (decoded.numpy() == expected).all()


def test_killed_run_then_rerun_equals_uninterrupted(tmp_path, params_file):
    generate(tmp_path / "world", 3000, 64, seed=2)
    params = params_file({"ingest.source": str(tmp_path / "world"), "ingest.resolution": 64,
                          "ingest.shard_size": 100, "ingest.workers": 1})

    def command(out):
        return [sys.executable, "-m", "stages", "ingest", "--params", str(params), "--out", str(out),
                "--report", str(tmp_path / f"{out.name}.json"), "--skipped", str(tmp_path / f"{out.name}.csv")]

    subprocess.run(command(tmp_path / "clean"), check=True, capture_output=True, cwd=REPO)
    target = tmp_path / "killed"
    target.mkdir()
    (target / "part-00000.parquet").write_bytes(b"an older, complete output")
    process = subprocess.Popen(command(target), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".killed.tmp-*/part-00003.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    # the killed run changed nothing a rerun (or DVC) would trust
    assert [p.name for p in target.iterdir()] == ["part-00000.parquet"]
    assert (target / "part-00000.parquet").read_bytes() == b"an older, complete output"
    subprocess.run(command(target), check=True, capture_output=True, cwd=REPO)
    assert shard_bytes(target) == shard_bytes(tmp_path / "clean")
    assert not list(tmp_path.glob(".killed.tmp-*"))
