import csv
import io
import os
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

from pipeline.dataset import decode_pngs, load_images, read_table
from pipeline.errors import UserError
from pipeline.ingest import ingest, split_of
from pipeline.shapes import generate
from tests.conftest import REPO, make_params
from tests.image_fixtures import broken_files, encode, good_files, pattern


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


def test_broken_files_are_skipped_with_reasons(tmp_path):
    good = good_files()
    broken = broken_files()
    write_folder(tmp_path / "src", good | {name: data for name, (data, _) in broken.items()})
    result, out = run(tmp_path / "src", tmp_path)
    assert result.summary["read"] == len(good) + len(broken)
    assert result.summary["kept"] == len(good)
    assert {path: reason for path, reason, _ in result.skipped} == {n: r for n, (_, r) in broken.items()}
    assert sum(result.summary["skipped_by_reason"].values()) == len(broken)
    table = read_table(out)
    assert sorted(table["source"].to_pylist()) == sorted(good)
    assert table.num_rows == len(good)


def test_over_size_files_are_skipped(tmp_path):
    big = encode(Image.fromarray(pattern(300, 300, seed=1)), "PNG")
    wide = encode(Image.new("RGB", (500, 100)), "PNG")
    write_folder(tmp_path / "src", {"big.png": big, "wide.png": wide, "ok.png": good_files()["a.png"]})
    result, _ = run(tmp_path / "src", tmp_path, ingest__max_file_mb=len(big) / 2**20 - 1e-6,
                    ingest__max_pixels=40_000)
    assert {p: r for p, r, _ in result.skipped} == {"big.png": "too_large", "wide.png": "too_large"}
    assert result.summary["kept"] == 1


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
