"""Decode one image file into a clean, square RGB array, or say why it must be skipped."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
              b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


class SkipImage(Exception):
    """The file cannot be used; ``reason`` is one of the report's skip categories."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Pickle both fields: the default would rebuild it from the one joined message and fail."""
        return SkipImage, (self.reason, self.detail)


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (resolution, resolution, 3) uint8
    sha256: str  # of the full decoded RGB pixels and their size: identical pictures share it
    width: int
    height: int


def _high_depth_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float greyscale ('I;16', 'I', 'F') scaled to 8 bits, not clipped."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 1.0 if values.size and values.max() <= 1.0 else 255.0
    else:
        scale = 65535.0 if image.mode.startswith("I;16") or (values.size and values.max() > 255) else 255.0
    return Image.fromarray(np.clip(np.rint(values / scale * 255.0), 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited onto ``background``."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _high_depth_to_8bit(image)
    if image.mode == "P" or (image.mode in ("L", "RGB") and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def centre_square(image: Image.Image, resolution: int) -> Image.Image:
    """Centre-crop to a square and resize to ``resolution`` with Lanczos filtering."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    if side == resolution:
        return square
    return square.resize((resolution, resolution), Image.Resampling.LANCZOS)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise SkipImage("empty_file", "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SkipImage("too_large", str(error)) from error
    except UnidentifiedImageError as error:
        raise _unidentified(data) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SkipImage("corrupt", f"{type(error).__name__}: {error}") from error
    width, height = image.size
    if width * height > max_pixels:
        raise SkipImage("too_large", f"{width}x{height} pixels is over max_pixels={max_pixels}")
    if width == 0 or height == 0:
        raise SkipImage("corrupt", f"empty {width}x{height} image")
    return image


def _unidentified(data: bytes) -> SkipImage:
    """A file that starts like an image but cannot be opened is damaged, not a non-image."""
    kind = next((name for magic, name in SIGNATURES.items() if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "WebP"
    if kind is None:
        return SkipImage("not_an_image", "not a format Pillow can read")
    return SkipImage("corrupt", f"starts like a {kind} file, but its header cannot be read (cut short or damaged)")


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except EOFError as error:
        raise SkipImage("truncated", f"ends early: {error}") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        message = f"{type(error).__name__}: {error}"
        reason = "truncated" if "truncat" in str(error).lower() else "corrupt"
        raise SkipImage(reason, message) from error


def decode_image(data: bytes, resolution: int, background: tuple[int, int, int], max_pixels: int) -> DecodedImage:
    """Decode, orient (EXIF), convert to RGB and fit to a ``resolution`` square."""
    image = _open(data, max_pixels)
    _load(image)
    try:
        image = ImageOps.exif_transpose(image)
        rgb = to_rgb(image, background)
    except (OSError, ValueError, SyntaxError) as error:
        raise SkipImage("corrupt", f"{type(error).__name__}: {error}") from error
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()
    pixels = np.asarray(centre_square(rgb, resolution), dtype=np.uint8)
    return DecodedImage(pixels=pixels, sha256=digest, width=image.width, height=image.height)


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
