"""A CLIP-free text-alignment checker for the shapes world.

Scoring generated images with the same small CLIP that conditioned the generator would
reward fooling that CLIP. This checker instead reads the four attributes straight off the
pixels, using the renderer's known geometry (render.py beside it):

- the background is nearly grey (+-14 tint per channel, plus grey-only noise) and smooth, so
  an affine fit of the chroma of its low-chroma pixels, subtracted, leaves only the object;
- the object's coverage (alpha) is its chroma along its own colour direction, scaled so that
  fully covered pixels read 1, which also recovers the anti-aliased edges;
- shape from scale-free cumulants of alpha, which a Gaussian blur leaves unchanged: a
  triangle (apex up) is skewed in y, a circle and a square are not; 2*k22/(k40+k04) is 1/3
  for a disc and 0 for a square;
- size from the area and the shape's known area per half-extent squared;
- position from the centroid (a triangle's sits 0.218 r below its drawing centre);
- colour as the nearest palette colour to the interior pixels, in RGB: hue alone overlaps
  for orange and yellow under the renderer's +-18 colour jitter, their brightness does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.images import ImageBatch, as_uint8_nchw
from pipeline.worlds.shapes.render import (
    ATTRIBUTES,
    COLOURS,
    POSITION_CENTRES,
    SHAPES,
    SIZE_HALF_EXTENTS,
    render_example,
)

# Exact moments of the renderer's shapes for half-extent r: area / r^2 and the centroid's
# offset below the drawing centre / r (square: half side 0.88 r; triangle: apex 1.05 r up,
# base corners (+-1.1 r, 0.85 r)).
AREA_PER_R2 = {"circle": np.pi, "square": 1.76**2, "triangle": 2.2 * 1.9 / 2}
CENTROID_DROP = {"circle": 0.0, "square": 0.0, "triangle": (-1.05 + 0.85 + 0.85) / 3}
# Third central moment in y / area^1.5 of the triangle: its y-marginal is linear over the
# height 1.9 r, which gives -(1.9 r)^3 / 135; halved, as discs and squares give 0.
TRIANGLE_SKEW = -(1.9**3 / 135) / AREA_PER_R2["triangle"] ** 1.5 / 2
SQUARENESS = 1 / 6  # between the square's 0 and the disc's 1/3
SIZE_SPLIT = (SIZE_HALF_EXTENTS["small"][1] + SIZE_HALF_EXTENTS["large"][0]) / 2
# "No object found": too faint, too scattered (spread is 0.5-0.63 for a render, up to 0.86
# with sigma-8 pixel noise, 1.6-3.5 for noise images) or too small/large (renders cover
# 2.5% to 20% of the image).
MIN_CONTRAST = 40.0
MAX_SPREAD = 1.2
AREA_RANGE = (0.01, 0.4)
BACKGROUND_QUANTILE = 0.5  # the object covers at most ~20%, so half the pixels are background
FULL_QUANTILE = 0.99  # the smallest render covers ~2.5% of the image, its interior ~1%
ALPHA_FLOOR = 0.1  # below it, coverage is background-fit noise
# Farthest point of a render from its centroid / radius of the disc of equal area: 1.0 for the
# circle, 1.25 for the square, 1.55 for the triangle; plus a margin for anti-aliased edges.
WINDOW = 1.7
WINDOW_MARGIN_PX = 1.5
CHUNK = 256


@dataclass
class Measurements:
    """Per-image features; sizes and positions are fractions of the image side."""

    rgb: np.ndarray  # (N, 3) interior colour
    contrast: np.ndarray  # chroma of fully covered pixels above the background
    area: np.ndarray  # fraction of the image
    centre: np.ndarray  # (N, 2) centroid x, y
    skew_y: np.ndarray  # third cumulant in y / area^1.5: -0.0168 for a triangle, 0 for the others
    squareness: np.ndarray  # 2 k22 / (k40 + k04): 1/3 for a disc and a triangle, 0 for a square
    spread: np.ndarray  # pi * second moment / area: 0.50 disc, 0.52 square, 0.61 triangle


def _chroma(pixels: np.ndarray) -> np.ndarray:
    """Opponent-colour coordinates orthogonal to the grey axis: grey noise leaves them at 0."""
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return np.stack([r - (g + b) / 2, np.sqrt(3) / 2 * (g - b)], axis=-1)


def _background_chroma(chroma: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Affine fit of chroma over the image's lower-chroma half: flat and gradient backdrops."""
    n = chroma.shape[0]
    flat = chroma.reshape(n, len(coords), 2).astype(np.float64)
    magnitude = np.linalg.norm(flat, axis=-1)
    weight = (magnitude <= np.quantile(magnitude, BACKGROUND_QUANTILE, axis=1, keepdims=True)).astype(np.float64)
    gram = np.einsum("np,pi,pj->nij", weight, coords, coords) + 1e-6 * np.eye(3)
    coef = np.linalg.solve(gram, np.einsum("np,pi,npc->nic", weight, coords, flat))
    return np.einsum("pi,nic->npc", coords, coef).reshape(chroma.shape).astype(np.float32)


def _centroid(alpha: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mass = np.maximum(alpha.sum((1, 2)), 1e-6)
    return mass, (alpha * xs).sum((1, 2)) / mass, (alpha * ys).sum((1, 2)) / mass


def _measure_chunk(pixels: np.ndarray) -> Measurements:
    n, h, w, _ = pixels.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs, ys = (xs + 0.5) / w, (ys + 0.5) / h
    coords = np.stack([np.ones(h * w), xs.ravel(), ys.ravel()], axis=1)
    chroma = _chroma(pixels)
    residual = chroma - _background_chroma(chroma, coords)

    # The object's colour direction: the squared weighting lets its saturated pixels dominate.
    strength = (residual**2).sum(-1, keepdims=True)
    direction = (residual * strength).sum((1, 2))
    direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-6)
    along = np.einsum("nhwc,nc->nhw", residual, direction)
    contrast = np.maximum(np.quantile(along.reshape(n, h * w), FULL_QUANTILE, axis=1), 0.0)
    alpha = np.maximum(along / np.maximum(contrast, 1e-6)[:, None, None], 0.0)
    alpha = np.where(alpha < ALPHA_FLOOR, 0.0, alpha)

    # Higher moments weight far pixels heavily, so stray background (noise, codec artefacts)
    # is cut off outside a disc around the core (alpha >= 0.5) that holds every render shape.
    core_mass, core_x, core_y = _centroid((alpha >= 0.5).astype(np.float32), xs, ys)
    radius = WINDOW * np.sqrt(core_mass / (h * w) / np.pi) + WINDOW_MARGIN_PX / min(h, w)
    inside = (xs - core_x[:, None, None]) ** 2 + (ys - core_y[:, None, None]) ** 2 <= radius[:, None, None] ** 2
    alpha = alpha * inside
    mass, cx, cy = _centroid(alpha, xs, ys)
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]

    def moment(p: int, q: int) -> np.ndarray:
        return (alpha * dx**p * dy**q).sum((1, 2)) / mass

    # Cumulants above the second are unchanged by a Gaussian blur, so decoder blur (which
    # rounds a small square's corners) leaves these two features where the geometry puts them.
    k40 = moment(4, 0) - 3 * moment(2, 0) ** 2
    k04 = moment(0, 4) - 3 * moment(0, 2) ** 2
    k22 = moment(2, 2) - moment(2, 0) * moment(0, 2) - 2 * moment(1, 1) ** 2
    area = mass / (h * w)
    interior = alpha**4
    rgb = (pixels * interior[..., None]).sum((1, 2)) / np.maximum(interior.sum((1, 2)), 1e-6)[:, None]
    return Measurements(
        rgb=rgb,
        contrast=contrast,
        area=area,
        centre=np.stack([cx, cy], axis=1),
        skew_y=moment(0, 3) / np.maximum(area, 1e-6) ** 1.5,
        squareness=2 * k22 / np.minimum(k40 + k04, -1e-18),
        spread=np.pi * (moment(2, 0) + moment(0, 2)) / np.maximum(area, 1e-6),
    )


def measure(images: ImageBatch) -> Measurements:
    """Features of every image, in chunks to bound memory."""
    pixels = as_uint8_nchw(images).permute(0, 2, 3, 1).numpy().astype(np.float32)
    parts = [_measure_chunk(pixels[i:i + CHUNK]) for i in range(0, max(len(pixels), 1), CHUNK)]
    return Measurements(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in Measurements.__annotations__})


def _nearest(points: np.ndarray, table: dict[str, tuple[float, ...]]) -> list[str]:
    names = list(table)
    centres = np.array([table[k] for k in names], dtype=np.float32)
    distance = np.linalg.norm(points[:, None, :] - centres[None], axis=-1)
    return [names[i] for i in distance.argmin(1)]


def classify(images: ImageBatch) -> dict[str, list]:
    """Attribute labels per image (``ATTRIBUTES`` keys) plus ``found``: False marks an image
    with no single compact coloured object; its labels are still the best guesses."""
    m = measure(images)
    shape_index = np.where(m.skew_y < TRIANGLE_SKEW, 2, np.where(m.squareness < SQUARENESS, 1, 0))
    shapes = [SHAPES[i] for i in shape_index]
    half_extent = np.sqrt(m.area / np.array([AREA_PER_R2[s] for s in shapes]))
    drop = np.array([CENTROID_DROP[s] for s in shapes]) * half_extent
    centre = m.centre - np.stack([np.zeros_like(drop), drop], axis=1)
    found = ((m.contrast >= MIN_CONTRAST) & (m.spread <= MAX_SPREAD)
             & (m.area >= AREA_RANGE[0]) & (m.area <= AREA_RANGE[1]))
    return {
        "shape": shapes,
        "colour": _nearest(m.rgb, COLOURS),
        "size": ["small" if r < SIZE_SPLIT else "large" for r in half_extent],
        "position": _nearest(centre, POSITION_CENTRES),
        "found": found.tolist(),
    }


def checker_accuracy(n: int, seed: int, resolution: int) -> dict[str, float | int]:
    """Accuracy per attribute (and all four at once) on ``n`` fresh renders: the checker's
    own error, to read beside the generator's alignment scores."""
    specs, images = zip(*(render_example(seed, i, resolution) for i in range(n)))
    predicted = classify(list(images))
    correct = np.array([[getattr(s, name) == predicted[name][i] for name in ATTRIBUTES] for i, s in enumerate(specs)])
    out: dict[str, float | int] = {name: float(correct[:, j].mean()) for j, name in enumerate(ATTRIBUTES)}
    out["all"] = float(correct.all(1).mean())
    out["found"] = float(np.mean(predicted["found"]))
    out.update(n=n, seed=seed, resolution=resolution)
    return out
