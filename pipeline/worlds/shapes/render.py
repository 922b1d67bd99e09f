"""The offline "shapes" world: seeded, procedurally rendered images with captions.

No pretrained CLIP or face data set can be had offline, so the default experiment runs
on this world. Each image holds one object with four attributes (shape, colour, size,
position) on a desaturated, varied background, so colour names stay unambiguous. The
captions train only the small in-project CLIP and score the results; the text-to-image
model never sees them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from pipeline.core.atomic import atomic_dir

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 30),
    "purple": (135, 50, 185),
    "orange": (245, 130, 20),
}
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "centre")
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": SIZES,
    "position": POSITIONS,
}

# Geometry as fractions of the image side; the checker of generated images relies on it.
POSITION_CENTRES = {
    "left": (0.28, 0.5),
    "right": (0.72, 0.5),
    "top": (0.5, 0.28),
    "bottom": (0.5, 0.72),
    "centre": (0.5, 0.5),
}
SIZE_HALF_EXTENTS = {"small": (0.11, 0.14), "large": (0.21, 0.25)}
CENTRE_JITTER = 0.04
COLOUR_JITTER = 18
SUPERSAMPLE = 4
LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str
    size: str
    position: str


def caption(spec: ShapeSpec) -> str:
    """The canonical caption, e.g. 'a large red circle on the left'."""
    return f"a {spec.size} {spec.colour} {spec.shape} {POSITION_PHRASES[spec.position]}"


Pair = tuple[str, str]  # (shape, colour)


def held_out_pairs(count: int, seed: int) -> list[Pair]:
    """``count`` seeded (shape, colour) pairs, no shape or colour in two of them.

    The generator's world never shows them; the CLIP's world and the evaluation prompts do,
    so held-out prompts ask for combinations of words the generator met only apart.
    """
    if not 0 <= count <= min(len(SHAPES), len(COLOURS)):
        raise ValueError(f"at most {min(len(SHAPES), len(COLOURS))} held-out pairs, each shape and colour in one")
    rng = np.random.default_rng([seed, 0x5EED])
    shapes = rng.permutation(SHAPES)[:count]
    colours = rng.permutation(list(COLOURS))[:count]
    return sorted((str(s), str(c)) for s, c in zip(shapes, colours))


def sample_spec(rng: np.random.Generator, exclude: frozenset[Pair] = frozenset()) -> ShapeSpec:
    """Uniform attributes, drawn again while (shape, colour) is an excluded pair."""
    while True:
        spec = ShapeSpec(**{name: values[rng.integers(len(values))] for name, values in ATTRIBUTES.items()})
        if (spec.shape, spec.colour) not in exclude:
            return spec


def _background(rng: np.random.Generator, resolution: int) -> np.ndarray:
    """A flat, gradient or noisy backdrop in low-saturation tones (float32, HxWx3)."""

    def tone() -> np.ndarray:
        grey = rng.uniform(45, 215)
        return np.clip(grey + rng.uniform(-14, 14, size=3), 0, 255)

    kind = rng.integers(3)
    first = tone()
    if kind == 0:
        image = np.broadcast_to(first, (resolution, resolution, 3)).copy()
    elif kind == 1:
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:resolution, 0:resolution] / max(resolution - 1, 1)
        ramp = (np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5)) + 0.5
        ramp = np.clip(ramp, 0, 1)[..., None]
        image = first * (1 - ramp) + tone() * ramp
    else:
        image = first + rng.normal(0, 10, size=(resolution, resolution, 1))
    return image.astype(np.float32)


def _object_mask(spec: ShapeSpec, rng: np.random.Generator, resolution: int) -> np.ndarray:
    """Anti-aliased coverage of the object in [0, 1], drawn supersampled and reduced."""
    big = resolution * SUPERSAMPLE
    cx, cy = POSITION_CENTRES[spec.position]
    cx = (cx + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER)) * big
    cy = (cy + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER)) * big
    r = rng.uniform(*SIZE_HALF_EXTENTS[spec.size]) * big
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if spec.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif spec.shape == "square":
        half = r * 0.88  # about the area of the circle
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=255)
    else:
        draw.polygon([(cx, cy - r * 1.05), (cx + r * 1.1, cy + r * 0.85), (cx - r * 1.1, cy + r * 0.85)], fill=255)
    small = mask.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)[..., None] / 255.0


def render(spec: ShapeSpec, resolution: int, rng: np.random.Generator) -> Image.Image:
    """Render one object on a random background; all randomness comes from ``rng``."""
    background = _background(rng, resolution)
    colour = np.clip(np.array(COLOURS[spec.colour]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255)
    alpha = _object_mask(spec, rng, resolution)
    pixels = background * (1 - alpha) + colour.astype(np.float32) * alpha
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def image_rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per image, so any subset renders identically."""
    return np.random.default_rng([seed, index])


def render_example(seed: int, index: int, resolution: int,
                   exclude: frozenset[Pair] = frozenset()) -> tuple[ShapeSpec, Image.Image]:
    rng = image_rng(seed, index)
    spec = sample_spec(rng, exclude)
    return spec, render(spec, resolution, rng)


def render_set(seed: int, start: int, count: int, resolution: int) -> tuple[np.ndarray, list[dict[str, str]]]:
    """Images ``start`` to ``start + count`` of the stream ``seed`` as uint8 (N, 3, H, W), with
    their attributes: the in-project CLIPs' own worlds, which hold every combination."""
    examples = [render_example(seed, i, resolution) for i in range(start, start + count)]
    pixels = np.zeros((count, resolution, resolution, 3), np.uint8)
    for row, (_, image) in enumerate(examples):
        pixels[row] = np.asarray(image)
    # A view, channels-last in memory: the CLIPs' pretraining sees this layout (and float rounding
    # in the convolutions depends on it; a contiguous copy trains a slightly different CLIP).
    return pixels.transpose(0, 3, 1, 2), [asdict(spec) for spec, _ in examples]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def generate(out_dir: Path, n_images: int, resolution: int, seed: int,
             exclude: frozenset[Pair] = frozenset()) -> None:
    """Write ``images/NNNNNN.png`` and ``labels.csv`` under ``out_dir``, atomically; no image
    shows an ``exclude`` (shape, colour) pair."""
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        rows = []
        for index in tqdm(range(n_images), desc="shapes", unit="img"):
            spec, image = render_example(seed, index, resolution, exclude)
            name = f"images/{index:06d}.png"
            (tmp / name).write_bytes(png_bytes(image))
            rows.append({"file": name, "caption": caption(spec), **asdict(spec)})
        with open(tmp / LABELS_FILE, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["file", "caption", *ATTRIBUTES])
            writer.writeheader()
            writer.writerows(rows)
