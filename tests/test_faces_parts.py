"""The faces world stage: the seeded split of a UTKFace archive into the CLIP's, the scorer's and
the generator's parts (pipeline/worlds/faces/parts.py) and `t2i world` on it, on the stand-in
archive of tests/face_fixtures.py (and a check of the real archive where ../shared/data has it)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.core.errors import UserError
from pipeline.data.imagefile import decode_image
from pipeline.data.labelled import load_labelled
from pipeline.worlds.faces.labels import AGES, RACES, age_bucket
from pipeline.worlds.faces.parts import PARTS, held_out_pairs, part_of, read_archive_labels, write_parts
from stages.cli import app
from tests.conftest import SHARED_DATA, default_raw_params
from tests.face_fixtures import fake_faces_archive

PART_COLUMNS = ["file", "age", "gender", "race", "age_years"]


def tar_with(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def pixel_id(data: bytes) -> str:
    """ingest's image id: the hash of the decoded pixels, as write_parts computes it."""
    return decode_image(data, 8, (255, 255, 255), 10**8).sha256[:16]


def grid_labels(counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    return pd.DataFrame([{"age": a, "race": r} for (a, r), k in counts.items() for _ in range(k)],
                        columns=["age", "race"])


# --- part_of ---------------------------------------------------------------------------------------

def test_part_of_is_deterministic_seeded_and_near_its_shares():
    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(20000)]
    parts = [part_of(i, 0, 0.25, 0.25) for i in ids]
    assert parts == [part_of(i, 0, 0.25, 0.25) for i in ids]
    assert set(parts) == set(PARTS)
    shares = Counter(parts)
    for part, want in {"clip": 0.25, "scorer": 0.25, "generator": 0.5}.items():
        assert abs(shares[part] / len(ids) - want) < 0.015, shares
    other_seed = [part_of(i, 1, 0.25, 0.25) for i in ids]
    moved = sum(a != b for a, b in zip(parts, other_seed)) / len(ids)
    assert 0.5 < moved < 0.75  # independent draws would move 1 - (.25² + .25² + .5²) = 62.5%
    uneven = Counter(part_of(i, 3, 0.1, 0.6) for i in ids)
    assert abs(uneven["clip"] / len(ids) - 0.1) < 0.015 and abs(uneven["scorer"] / len(ids) - 0.6) < 0.015


# --- read_archive_labels ---------------------------------------------------------------------------

def test_read_archive_labels_buckets_ages(tmp_path):
    years = [0, 2, 3, 12, 13, 19, 20, 39, 40, 59, 60, 116]
    rows = "".join(f"faces/{y}_0_0_2017010100000{i:04d}.jpg,{y},male,white\n" for i, y in enumerate(reversed(years)))
    archive = tar_with(tmp_path / "a.tar", {"labels.csv": b"file,age,gender,race\n" + rows.encode()})
    labels = read_archive_labels(archive)
    assert list(labels.columns) == ["file", "age", "age_years", "gender", "race"]
    assert labels["file"].is_monotonic_increasing
    by_years = dict(zip(labels["age_years"], labels["age"]))
    assert [by_years[y] for y in years] == ["baby", "baby", "child", "child", "teenager", "teenager",
                                            "young adult", "young adult", "middle-aged", "middle-aged",
                                            "elderly", "elderly"]


def test_read_archive_labels_of_the_fixture(tmp_path):
    truth = fake_faces_archive(tmp_path / "faces.tar", n=60, duplicates=0)
    labels = read_archive_labels(tmp_path / "faces.tar")
    assert labels["file"].tolist() == truth["file"].tolist()
    assert labels["age_years"].tolist() == truth["age"].tolist()
    assert labels["age"].tolist() == [age_bucket(y) for y in truth["age"]]
    assert set(labels["age"]) == set(AGES) and set(labels["race"]) == set(RACES)


def test_read_archive_labels_without_labels_csv_names_the_file(tmp_path):
    archive = tar_with(tmp_path / "bare.tar", {"faces/1_0_0_20170101000000000.jpg": b"x"})
    with pytest.raises(UserError, match=r"bare\.tar.*labels\.csv"):
        read_archive_labels(archive)


def test_read_archive_labels_missing_columns_names_the_file_and_columns(tmp_path):
    archive = tar_with(tmp_path / "partial.tar", {"labels.csv": b"file,age\nfaces/a.jpg,3\n"})
    with pytest.raises(UserError, match=r"partial\.tar.*labels\.csv.*\['gender', 'race'\]"):
        read_archive_labels(archive)


# --- held_out_pairs --------------------------------------------------------------------------------

def test_held_out_pairs_are_disjoint_seeded_and_well_populated():
    # (baby, *) and (*, other) have too few photos; the rest are eligible
    counts = {(a, r): 1 if a == "baby" or r == "other" else 5 for a in AGES for r in RACES}
    labels = grid_labels(counts)
    results = set()
    for seed in range(12):
        pairs = held_out_pairs(labels, 3, seed, min_images=5)
        assert pairs == held_out_pairs(labels, 3, seed, min_images=5) == sorted(pairs)
        assert len(pairs) == 3
        assert len({a for a, _ in pairs}) == 3 and len({r for _, r in pairs}) == 3
        assert all(counts[p] >= 5 for p in pairs)
        results.add(tuple(pairs))
    assert len(results) > 1  # the seed matters
    assert all(len(held_out_pairs(labels, 4, seed, min_images=5)) == 4 for seed in range(5))


def test_held_out_pairs_raises_when_impossible():
    labels = grid_labels({("child", "asian"): 10, ("teenager", "asian"): 10, ("elderly", "black"): 3})
    assert held_out_pairs(labels, 1, 0, 10) in ([("child", "asian")], [("teenager", "asian")])
    with pytest.raises(UserError, match="heldout_pairs = 2"):
        held_out_pairs(labels, 2, 0, 10)  # both eligible pairs share the race
    assert len(held_out_pairs(labels, 2, 0, 3)) == 2
    with pytest.raises(UserError, match="heldout_pairs = 6"):
        held_out_pairs(grid_labels({(a, r): 1 for a in AGES for r in RACES}), 6, 0, 1)  # only 5 races


def test_no_held_out_pairs():
    assert held_out_pairs(grid_labels({(a, r): 1 for a in AGES for r in RACES}), 0, 0, 1) == []


# --- write_parts -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("archive") / "faces.tar"
    truth = fake_faces_archive(path, n=240, seed=0, duplicates=2)
    return path, truth


def test_fixture_is_like_the_real_archive(archive, tmp_path):
    path, truth = archive
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        data = {m.name: tar.extractfile(m).read() for m in members}
    names = [m.name for m in members]
    assert names[-1] == "labels.csv" and sorted(names[:-1]) == names[:-1] == truth["file"].tolist()
    assert all(n.startswith("faces/") and n.endswith(".jpg") and n.count("_") == 3 for n in names[:-1])
    assert pd.read_csv(io.BytesIO(data["labels.csv"])).equals(truth)
    assert list(truth.columns) == ["file", "age", "gender", "race"] and truth["age"].dtype.kind == "i"
    assert set(truth["gender"]) == {"male", "female"} and set(truth["race"]) == set(RACES)
    pairs = Counter((age_bucket(y), r) for y, r in zip(truth["age"], truth["race"]))
    assert len(pairs) == len(AGES) * len(RACES) and min(pairs.values()) >= 5
    ids = Counter(pixel_id(data[n]) for n in names[:-1])
    assert len(ids) == 238 and sorted(ids.values())[-3:] == [1, 2, 2]  # only the 2 copies share pixels
    for copy, original in truth.attrs["duplicates"].items():
        assert data[copy] == data[original] and copy != original
    image = decode_image(data[names[0]], 64, (255, 255, 255), 10**8)
    assert (image.width, image.height) == (64, 64)
    again = fake_faces_archive(tmp_path / "again.tar", n=240, seed=0, duplicates=2)
    assert (tmp_path / "again.tar").read_bytes() == path.read_bytes() and again.equals(truth)
    other = fake_faces_archive(tmp_path / "other.tar", n=240, seed=1, duplicates=2)
    assert not other["file"].equals(truth["file"])


@pytest.fixture(scope="module")
def parts(archive, tmp_path_factory):
    path, truth = archive
    heldout = held_out_pairs(read_archive_labels(path), 2, 0, 1)
    out = tmp_path_factory.mktemp("world") / "faces"
    sizes = write_parts(path, out, 0, 0.25, 0.25, heldout)
    labels = {part: pd.read_csv(out / part / "labels.csv", keep_default_na=False) for part in PARTS}
    return out, sizes, heldout, labels


def test_every_photo_lands_in_exactly_one_part(archive, parts):
    path, truth = archive
    out, sizes, heldout, labels = parts
    with tarfile.open(path) as tar:
        data = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name != "labels.csv"}
    placed = {part: {f"faces/{Path(f).name}" for f in labels[part]["file"]} for part in PARTS}
    for a, b in [("clip", "scorer"), ("clip", "generator"), ("scorer", "generator")]:
        assert not placed[a] & placed[b]
    # the copies of a picture: only the first by name is kept, in the part its pixels hash to
    seen, copies, dropped = set(), set(), set()
    truth_by_file = truth.set_index("file")
    for name in sorted(data):
        image_id = pixel_id(data[name])
        if image_id in seen:
            copies.add(name)
            continue
        seen.add(image_id)
        part = part_of(image_id, 0, 0.25, 0.25)
        row = truth_by_file.loc[name]
        if part == "generator" and (age_bucket(row["age"]), row["race"]) in heldout:
            dropped.add(name)
        else:
            assert name in placed[part], name
    assert len(copies) == 2 and copies <= set(truth.attrs["duplicates"]) | set(truth.attrs["duplicates"].values())
    everything = placed["clip"] | placed["scorer"] | placed["generator"]
    assert not everything & (copies | dropped) and not copies & dropped
    assert everything | copies | dropped == set(data) == set(truth["file"])
    assert sizes["photos"] == len(truth) == sum(sizes[p] for p in PARTS) + sizes["duplicates_dropped"] + \
        sizes["generator_heldout_dropped"]
    assert (sizes["duplicates_dropped"], sizes["generator_heldout_dropped"], sizes["unreadable"]) == \
        (2, len(dropped), 0)
    assert dropped  # the held-out pairs did have generator photos to drop


def test_duplicates_are_kept_once(parts):
    out, sizes, heldout, labels = parts
    written = [(out / part / f).read_bytes() for part in PARTS for f in labels[part]["file"]]
    assert len({pixel_id(d) for d in written}) == len(written)


def test_generator_never_shows_the_held_out_pairs(archive, parts):
    path, truth = archive
    out, sizes, heldout, labels = parts
    assert len(heldout) == 2
    shown = {part: Counter(zip(labels[part]["age"], labels[part]["race"])) for part in PARTS}
    assert not set(shown["generator"]) & set(heldout)
    assert len(shown["generator"]) == len(AGES) * len(RACES) - 2  # every other pair is still there
    # the CLIP's and the scorer's parts keep every held-out photo that hashes to them (~8 per pair
    # here, so one of the two parts may by chance hold none of a pair; the real archive has 200+)
    with tarfile.open(path) as tar:
        data = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name != "labels.csv"}
    kept = truth[~truth["file"].isin(set(truth.attrs["duplicates"]))]  # copies sort after their originals here
    hashed = Counter((part_of(pixel_id(data[f]), 0, 0.25, 0.25), age_bucket(y), r)
                     for f, y, r in zip(kept["file"], kept["age"], kept["race"]))
    for pair in heldout:
        assert shown["clip"][pair] + shown["scorer"][pair] > 0
        for part in ("clip", "scorer"):
            assert shown[part][pair] == hashed[(part, *pair)]


def test_part_folders_are_labelled_folders(archive, parts):
    path, truth = archive
    out, sizes, heldout, labels = parts
    truth_by_name = truth.assign(name=[Path(f).name for f in truth["file"]]).set_index("name")
    for part in PARTS:
        table = labels[part]
        assert list(table.columns) == PART_COLUMNS and len(table) == sizes[part] > 0
        assert all(f.startswith("images/") and (out / part / f).is_file() for f in table["file"])
        assert sorted(p.name for p in (out / part / "images").iterdir()) == sorted(Path(f).name for f in table["file"])
        for row in table.itertuples():
            original = truth_by_name.loc[Path(row.file).name]
            assert (row.age_years, row.gender, row.race) == (original["age"], original["gender"], original["race"])
            assert row.age == age_bucket(row.age_years)
    images, read = load_labelled(out / "scorer", ["age", "gender", "race"], 64)
    assert tuple(images.shape) == (sizes["scorer"], 3, 64, 64) and len(read) == sizes["scorer"]


def test_parts_json_holds_the_sizes(archive, parts):
    path, truth = archive
    out, sizes, heldout, labels = parts
    recorded = json.loads((out / "parts.json").read_text())
    assert recorded == json.loads(json.dumps(sizes))
    assert {p: recorded[p] for p in PARTS} == {p: len(labels[p]) for p in PARTS}
    assert recorded["photos"] == len(truth) and recorded["heldout_pairs"] == [list(p) for p in heldout]
    assert recorded["split_seed"] == 0 and recorded["shares"] == {"clip": 0.25, "scorer": 0.25}
    assert sorted(p.name for p in out.iterdir()) == ["clip", "generator", "parts.json", "scorer"]


def test_write_parts_refuses_shares_that_leave_the_generator_nothing(archive, tmp_path):
    path, _ = archive
    for clip, scorer in [(0.5, 0.5), (0.7, 0.4)]:
        with pytest.raises(UserError, match="clip_share \\+ faces.scorer_share"):
            write_parts(path, tmp_path / "faces", 0, clip, scorer, [])
    assert not (tmp_path / "faces").exists()


# --- t2i world -------------------------------------------------------------------------------------

def test_world_command_splits_the_faces_archive(archive, params_file, tmp_path):
    path, truth = archive
    out = tmp_path / "faces"
    params = params_file({"world.name": "faces", "world.source": str(path), "world.data": str(out),
                          "faces.heldout_min_images": 1})
    result = CliRunner().invoke(app, ["world", "--params", str(params), "--report", str(tmp_path / "world.json")])
    assert result.exit_code == 0, result.output
    sizes = json.loads((out / "parts.json").read_text())
    assert json.loads((tmp_path / "world.json").read_text()) == {"world": "faces", **sizes}
    assert sizes["photos"] == len(truth) and all(sizes[p] > 0 for p in PARTS)
    assert len(sizes["heldout_pairs"]) == default_raw_params()["faces"]["heldout_pairs"]
    assert f"world: {len(truth)} faces from {path}" in result.output
    for part in PARTS:
        assert len(pd.read_csv(out / part / "labels.csv")) == sizes[part]


def test_world_command_reports_an_impossible_held_out_count(archive, params_file, tmp_path):
    path, _ = archive
    params = params_file({"world.name": "faces", "world.source": str(path), "world.data": str(tmp_path / "faces"),
                          "faces.heldout_min_images": 1000})
    result = CliRunner().invoke(app, ["world", "--params", str(params), "--report", str(tmp_path / "world.json")])
    assert result.exit_code == 1 and "faces.heldout_min_images" in result.output
    assert not (tmp_path / "faces").exists()


def test_world_command_still_renders_shapes(params_file, tmp_path):
    out = tmp_path / "shapes"
    params = params_file({"world.name": "shapes", "world.data": str(out), "shapes.n_images": 12})
    result = CliRunner().invoke(app, ["world", "--params", str(params), "--report", str(tmp_path / "world.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "world.json").read_text())["images"] == 12
    labels = pd.read_csv(out / "labels.csv")
    assert len(labels) == 12 and all((out / f).is_file() for f in labels["file"])
    assert not (out / "parts.json").exists()


# --- the real archive ------------------------------------------------------------------------------

UTKFACE = SHARED_DATA / "utkface-64px.tar"


@pytest.mark.skipif(not UTKFACE.is_file(), reason=f"{UTKFACE} is absent (research data, not shipped)")
def test_the_real_archive_labels():
    labels = read_archive_labels(UTKFACE)
    assert len(labels) == 23702
    assert set(labels["age"]) == set(AGES) and set(labels["race"]) <= set(RACES)
    faces = default_raw_params()["faces"]
    pairs = held_out_pairs(labels, faces["heldout_pairs"], faces["heldout_seed"], faces["heldout_min_images"])
    assert len(pairs) == 2 == faces["heldout_pairs"]
    assert len({a for a, _ in pairs}) == 2 and len({r for _, r in pairs}) == 2
    counts = Counter(zip(labels["age"], labels["race"]))
    assert all(counts[p] >= faces["heldout_min_images"] for p in pairs)
