"""The faces world stage's work: split a UTKFace archive (JPEGs plus labels.csv with file, age,
gender, race) into three disjoint labelled folders by a seeded hash of the image id.

- ``clip``: the conditioning CLIP pretrains on it, as a real CLIP has seen photos and words;
- ``scorer``: the scoring CLIP and the CLIP-free judge train on it;
- ``generator``: what ingest reads (the tokenizer and the generator), without its held-out
  (age, race) pairs, which the evaluation asks for as held-out prompts.

No photo lies in two parts, so no scoring model has seen an image the generator learned from:
the id hashed is ingest's own (the hash of the decoded pixels), so the archive's duplicate
pictures under other names share a part; only the first of them (by name) is kept.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.core.atomic import atomic_dir, write_json
from pipeline.core.errors import UserError
from pipeline.data.imagefile import SkipImage, decode_image
from pipeline.data.labelled import LABELS
from pipeline.worlds.faces.labels import AGES, RACES, age_bucket

PARTS = ("clip", "scorer", "generator")
Pair = tuple[str, str]  # (age, race)


def part_of(image_id: str, seed: int, clip_share: float, scorer_share: float) -> str:
    """Which part an image belongs to: stable across runs and machines, uniform over ids."""
    digest = hashlib.sha256(f"faces-{seed}:{image_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "clip" if u < clip_share else "scorer" if u < clip_share + scorer_share else "generator"


def read_archive_labels(archive: str | Path) -> pd.DataFrame:
    """labels.csv of the archive (``file``, ``age`` in years, ``gender``, ``race``), with the
    age bucket as ``age`` and the years as ``age_years``; rows sorted by file."""
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and Path(m.name).name == LABELS), None)
        if member is None:
            raise UserError(f"{archive}: no {LABELS} inside; the faces world needs UTKFace's labels "
                            "(file, age, gender, race)")
        labels = pd.read_csv(io.BytesIO(tar.extractfile(member).read()), keep_default_na=False)
    missing = sorted({"file", "age", "gender", "race"} - set(labels.columns))
    if missing:
        raise UserError(f"{archive}: {LABELS} lacks columns {missing}")
    labels = labels.rename(columns={"age": "age_years"}).sort_values("file", ignore_index=True)
    labels.insert(1, "age", [age_bucket(int(y)) for y in labels["age_years"]])
    return labels


def held_out_pairs(labels: pd.DataFrame, count: int, seed: int, min_images: int) -> list[Pair]:
    """``count`` seeded (age, race) pairs, each age and race in at most one, among the pairs
    with at least ``min_images`` photos in the archive (so the CLIPs and judge have seen them)."""
    if count == 0:
        return []
    counts = Counter(zip(labels["age"], labels["race"]))
    candidates = [(a, r) for a in AGES for r in RACES if counts[(a, r)] >= min_images]
    rng = np.random.default_rng(seed)
    chosen: list[Pair] = []
    for index in rng.permutation(len(candidates)):
        age, race = candidates[index]
        if all(age != a and race != r for a, r in chosen):
            chosen.append((age, race))
        if len(chosen) == count:
            return sorted(chosen)
    raise UserError(f"faces.heldout_pairs = {count}: only {len(chosen)} disjoint (age, race) pairs have "
                    f"{min_images}+ photos; lower faces.heldout_pairs or faces.heldout_min_images")


def write_parts(archive: str | Path, out_dir: str | Path, seed: int, clip_share: float, scorer_share: float,
                heldout: list[Pair]) -> dict:
    """Write ``<out>/<part>/images/*.jpg`` and ``<out>/<part>/labels.csv`` for each part, and
    ``<out>/parts.json`` with their sizes; atomically. Returns the sizes."""
    if clip_share + scorer_share >= 1:
        raise UserError(f"faces.clip_share + faces.scorer_share = {clip_share + scorer_share}: must leave the "
                        "generator a part (< 1)")
    labels = read_archive_labels(archive)
    by_file = labels.set_index("file")
    excluded = set(heldout)
    rows: dict[str, list[dict]] = {part: [] for part in PARTS}
    dropped, duplicates, unreadable, seen = 0, 0, 0, set()
    with atomic_dir(out_dir) as tmp, tarfile.open(archive) as tar:
        for part in PARTS:
            (tmp / part / "images").mkdir(parents=True)
        members = [m for m in tar.getmembers() if m.isfile() and m.name in by_file.index]
        for member in tqdm(sorted(members, key=lambda m: m.name), desc="faces", unit="img"):
            data = tar.extractfile(member).read()
            try:
                image_id = decode_image(data, 8, (255, 255, 255), 10**8).sha256[:16]
            except SkipImage:
                unreadable += 1
                continue
            if image_id in seen:
                duplicates += 1
                continue
            seen.add(image_id)
            row = by_file.loc[member.name]
            part = part_of(image_id, seed, clip_share, scorer_share)
            if part == "generator" and (row["age"], row["race"]) in excluded:
                dropped += 1
                continue
            name = f"images/{Path(member.name).name}"
            (tmp / part / name).write_bytes(data)
            rows[part].append({"file": name, "age": row["age"], "gender": row["gender"], "race": row["race"],
                               "age_years": int(row["age_years"])})
        for part in PARTS:
            pd.DataFrame(rows[part], columns=["file", "age", "gender", "race", "age_years"]).to_csv(
                tmp / part / LABELS, index=False)
        sizes = {"archive": str(archive), "photos": len(members), **{part: len(rows[part]) for part in PARTS},
                 "duplicates_dropped": duplicates, "unreadable": unreadable, "generator_heldout_dropped": dropped, "heldout_pairs": [list(p) for p in heldout],
                 "split_seed": seed, "shares": {"clip": clip_share, "scorer": scorer_share}}
        write_json(tmp / "parts.json", sizes)
    return sizes
