"""Picklable decoders for the process-pool tests: spawned workers import them from here by module path."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from pipeline.data.ingest import Decoded
from pipeline.data.sources import SourceItem


def _fake_image(item: SourceItem) -> Decoded:
    return Decoded(b"", hashlib.sha256(item.data).hexdigest(), 1, 1)


@dataclass(frozen=True)
class SabotagedDecoder:
    """Kills its process on one file and raises an unexpected error on another, as a decoder bug would."""

    dies_on: str = ""
    raises_on: str = ""

    def __call__(self, item: SourceItem) -> Decoded:
        if item.name == self.dies_on:
            os._exit(3)
        if item.name == self.raises_on:
            raise RuntimeError("decoder bug")
        return _fake_image(item)


@dataclass(frozen=True)
class DiesOnceDecoder:
    """Kills only the first process to decode anything: a death that no single file reproduces."""

    marker: str  # created by the one process that dies

    def __call__(self, item: SourceItem) -> Decoded:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return _fake_image(item)
        os._exit(3)


class UnloadableDecoder:
    """Kills any process that loads it, as a decoder whose module cannot be imported there would."""

    def __reduce__(self) -> tuple:
        return os._exit, (5,)

    def __call__(self, item: SourceItem) -> Decoded:
        return _fake_image(item)
