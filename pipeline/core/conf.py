"""conf/ composed as `dvc exp run -S ...` composes it (Hydra), then validated: how tests and
benchmarks read a world or a preset without touching params.yaml."""

from __future__ import annotations

import tempfile
from pathlib import Path

from dvc.utils.hydra import compose_and_dump

from pipeline.core.params import Params, load_params


def compose(conf_dir: Path, *overrides: str) -> Params:
    """The params that `dvc exp run -S <override> ...` would write to params.yaml, validated."""
    with tempfile.TemporaryDirectory() as tmp:
        return compose_to(Path(tmp) / "params.yaml", conf_dir, *overrides)


def compose_to(out: Path, conf_dir: Path, *overrides: str) -> Params:
    """Write to ``out`` what `dvc exp run -S <override> ...` would write to params.yaml; return it validated."""
    compose_and_dump(Path(out), str(Path(conf_dir).resolve()), None, "config", "", list(overrides))
    return load_params(out)
