"""Build image files of every kind ingest must handle, good and broken, in memory."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def pattern(width: int = 48, height: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header(width: int, height: int, depth: int) -> bytes:
    return PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0))


def png_rgb16(width: int = 20, height: int = 16) -> bytes:
    """A 48-bit RGB PNG written by hand (Pillow cannot write one)."""
    values = (np.arange(width * height * 3, dtype=np.uint16).reshape(height, width, 3) * 97).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in values)
    return _png_header(width, height, 16) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>photo.jpg</title></head><body><p>Not found</p></body></html>\n"


def good_files() -> dict[str, bytes]:
    """Distinct valid images covering formats and colour modes."""
    rgb = [Image.fromarray(pattern(seed=i)) for i in range(6)]
    grey16 = Image.fromarray((np.arange(40 * 48).reshape(40, 48) * 30).astype(np.uint16))
    palette = Image.fromarray(pattern(seed=7)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    rgba = Image.fromarray(np.dstack([pattern(seed=8), np.full((40, 48), 128, np.uint8)]), "RGBA")
    return {
        "a.png": encode(rgb[0], "PNG"),
        "b.jpg": encode(rgb[1], "JPEG", quality=95),
        "nested/deeper/c.webp": encode(rgb[2], "WEBP", lossless=True),
        "d.bmp": encode(rgb[3], "BMP"),
        "e.tiff": encode(rgb[4], "TIFF"),
        "f.gif": encode(rgb[5], "GIF"),
        "grey.png": encode(Image.fromarray(pattern(seed=9)[..., 0]), "PNG"),
        "grey16.png": encode(grey16, "PNG"),
        "rgb16.png": png_rgb16(),
        "palette.png": encode(palette, "PNG", transparency=0),
        "rgba.png": encode(rgba, "PNG"),
        "cmyk.jpg": encode(Image.fromarray(pattern(seed=10)).convert("CMYK"), "JPEG", quality=95),
    }


def broken_files() -> dict[str, tuple[bytes, str]]:
    """Files ingest must skip, with the reason it must give."""
    jpeg = encode(Image.fromarray(pattern(64, 64, seed=11)), "JPEG", quality=95)
    png = encode(Image.fromarray(pattern(64, 64, seed=12)), "PNG")
    return {
        "empty.png": (b"", "empty_file"),
        "notes.txt": (b"not an image at all", "not_an_image"),
        "garbage.jpg": (bytes(range(256)) * 4, "not_an_image"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "corrupt.png": (png[:100] + bytes(b ^ 0xFF for b in png[100:300]) + png[300:], "corrupt"),
        "copy-of-a.bmp": (encode(Image.fromarray(pattern(seed=0)), "BMP"), "duplicate"),
        "saved-page.jpg": (HTML_PAGE, "not_an_image"),
        "header-only.png": (_png_header(64, 64, 8), "corrupt"),  # signature and IHDR, then nothing
    }
