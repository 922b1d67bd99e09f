"""A small synthetic stand-in for the UTKFace archive (../shared/data/utkface-64px.tar), laid out
exactly like it: ``faces/<age>_<gender>_<race>_<date>.jpg`` 64x64 JPEGs and a top-level
``labels.csv`` (file, age in years, gender, race). CI runs the faces world on it.

Each picture is a cartoon face whose looks follow its labels, so models trained on it have
something to learn:

- race: the skin tone of the face ellipse;
- age: the face's size (babies small, growing up to adults), forehead wrinkles from middle age,
  grey hair when elderly;
- gender: the hair, long and auburn (female) or a short black cap (male; grey when elderly).

Seeded noise, background and position make every picture's pixels unique, except for the
``duplicates`` deliberate byte-for-byte copies under other names (the real archive holds ~390).
"""

from __future__ import annotations

import io
import tarfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

SIZE = 64
# UTKFace's file-name codes: gender 0 male, 1 female; race 0 white, 1 black, 2 asian, 3 indian, 4 other.
GENDER_CODES = {"male": 0, "female": 1}
RACE_CODES = {"white": 0, "black": 1, "asian": 2, "indian": 3, "other": 4}
SKIN = {"white": (232, 196, 172), "black": (92, 58, 40), "asian": (226, 188, 140), "indian": (160, 112, 78),
        "other": (190, 142, 105)}
# Years of each age bucket (pipeline.worlds.faces.labels.AGES order), and the face's half-width in it.
AGE_YEARS = ((0, 2), (3, 12), (13, 19), (20, 39), (40, 59), (60, 100))
HALF_WIDTH = (12, 14, 16, 17, 17, 17)
HAIR = {"female": (140, 62, 32), "male": (32, 26, 24)}
GREY = (196, 196, 200)


def draw_face(rng: np.random.Generator, bucket: int, gender: str, race: str) -> np.ndarray:
    """One 64x64 RGB face for age bucket index ``bucket`` (0 baby .. 5 elderly)."""
    background = tuple(int(v) for v in rng.integers(40, 216, size=3))
    image = Image.new("RGB", (SIZE, SIZE), background)
    draw = ImageDraw.Draw(image)
    cx, cy = SIZE // 2 + int(rng.integers(-2, 3)), SIZE // 2 + 2 + int(rng.integers(-2, 3))
    half_w = HALF_WIDTH[bucket] + int(rng.integers(-1, 2))
    half_h = int(half_w * 1.3)
    hair = GREY if bucket == 5 else HAIR[gender]
    if gender == "female":  # long hair: behind the face, down past the chin
        draw.rounded_rectangle((cx - half_w - 5, cy - half_h - 4, cx + half_w + 5, min(SIZE - 1, cy + half_h + 6)),
                               radius=8, fill=hair)
    skin = tuple(int(np.clip(v + rng.integers(-8, 9), 0, 255)) for v in SKIN[race])
    draw.ellipse((cx - half_w, cy - half_h, cx + half_w, cy + half_h), fill=skin)
    # hair on top: a cap over the forehead (short for men, a fringe for women)
    draw.chord((cx - half_w - 1, cy - half_h - 3, cx + half_w + 1, cy + (half_h // 3 if gender == "male" else 0)),
               180, 360, fill=hair)
    eye_y, eye_dx = cy + half_h // 8, max(4, half_w // 2)
    for side in (-1, 1):
        draw.ellipse((cx + side * eye_dx - 2, eye_y - 2, cx + side * eye_dx + 2, eye_y + 2), fill=(20, 20, 30))
    mouth_y = cy + half_h // 2
    draw.line((cx - half_w // 3, mouth_y, cx + half_w // 3, mouth_y), fill=(150, 60, 60), width=2)
    lines = {4: 2, 5: 3}.get(bucket, 0)  # forehead wrinkles from middle age
    wrinkle = tuple(max(0, v - 45) for v in skin)
    for k in range(lines):
        y = cy - half_h // 3 + 3 * k - 2
        draw.line((cx - half_w // 2, y, cx + half_w // 2, y), fill=wrinkle, width=1)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, 5.0, size=(SIZE, SIZE, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def fake_faces_archive(path: Path, n: int = 240, seed: int = 0, duplicates: int = 2) -> pd.DataFrame:
    """Write a UTKFace-like tar of ``n`` photos at ``path``, ``duplicates`` of them exact byte copies
    of others under other names (same labels, another date), and return its labels.csv as a frame
    (file, age in years, gender, race; sorted by file). ``frame.attrs["duplicates"]`` maps each
    copy's file to its original's.

    Photo i of the n - duplicates distinct ones is in age bucket i % 6 with race (i // 6) % 5, so
    every (age bucket, race) pair is present about n / 30 times; years and gender are seeded.
    """
    distinct = n - duplicates
    if not 0 <= duplicates <= distinct:
        raise ValueError(f"duplicates={duplicates}: must be between 0 and half of n={n}")
    rng = np.random.default_rng([seed, 0xFACE])
    races = list(RACE_CODES)
    when = datetime(2017, 1, 1) + timedelta(milliseconds=int(rng.integers(0, 10**9)))
    rows, files = [], {}

    def name_for(years: int, gender: str, race: str) -> str:
        nonlocal when
        when += timedelta(milliseconds=int(rng.integers(1, 10**7)))
        stamp = when.strftime("%Y%m%d%H%M%S") + f"{when.microsecond // 1000:03d}"
        return f"faces/{years}_{GENDER_CODES[gender]}_{RACE_CODES[race]}_{stamp}.jpg"

    for i in range(distinct):
        bucket, race = i % len(AGE_YEARS), races[(i // len(AGE_YEARS)) % len(races)]
        years = int(rng.integers(AGE_YEARS[bucket][0], AGE_YEARS[bucket][1] + 1))
        gender = ("female", "male")[int(rng.integers(2))]
        file = name_for(years, gender, race)
        files[file] = _jpeg(draw_face(rng, bucket, gender, race))
        rows.append({"file": file, "age": years, "gender": gender, "race": race})
    copies = {}
    for index in sorted(rng.choice(distinct, size=duplicates, replace=False)):
        original = rows[index]
        file = name_for(original["age"], original["gender"], original["race"])
        files[file] = files[original["file"]]
        copies[file] = original["file"]
        rows.append({**original, "file": file})
    labels = pd.DataFrame(rows, columns=["file", "age", "gender", "race"]).sort_values("file", ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for file in sorted(files):
            _add(tar, file, files[file])
        _add(tar, "labels.csv", labels.to_csv(index=False).encode())
    labels.attrs["duplicates"] = copies
    return labels


def real_faces_subset(archive: Path, path: Path, n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """A tar of ``n`` seeded-random photos of the real archive with their labels.csv rows, laid
    out like it: the micro config's real data (research data, written only under a test's tmp)."""
    with tarfile.open(archive) as source:
        members = {m.name: m for m in source.getmembers() if m.isfile()}
        labels_name = next(name for name in members if Path(name).name == "labels.csv")
        labels = pd.read_csv(io.BytesIO(source.extractfile(members[labels_name]).read()), keep_default_na=False)
        chosen = labels.iloc[np.sort(np.random.default_rng(seed).choice(len(labels), n, replace=False))]
        with tarfile.open(path, "w") as tar:
            for name in chosen["file"]:
                _add(tar, name, source.extractfile(members[name]).read())
            _add(tar, "labels.csv", chosen.to_csv(index=False).encode())
    return chosen.reset_index(drop=True)
