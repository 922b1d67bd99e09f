from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from pipeline.core.params import Params, parse_params

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (pyproject's addopts run one worker per CPU) each worker keeps to a CPU of
    its own, with one torch thread, and so do the commands it starts (the stages size their
    threads by the affinity mask): two workers on two cores never spin against each other,
    which slows torch 10-20x."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    if worker is None or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[int(worker.removeprefix("gw")) % len(cpus)]})
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end modules first, so that a worker is not left alone with one at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def default_raw_params() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def with_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with dotted keys replaced, e.g. {"ingest.workers": 1}."""
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        *path, last = dotted.split(".")
        node = raw
        for key in path:
            node = node[key]
        node[last] = value
    return raw


def make_params(**overrides: Any) -> Params:
    """Default params with overrides given as section__key=value."""
    dotted = {key.replace("__", "."): value for key, value in overrides.items()}
    return parse_params(with_overrides(default_raw_params(), dotted))


@pytest.fixture
def params_file(tmp_path: Path):
    """Write default params with dotted overrides to a file and return its path."""

    def write(overrides: dict[str, Any] | None = None) -> Path:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(with_overrides(default_raw_params(), overrides or {})))
        return path

    return write


@pytest.fixture
def one_thread():
    """Tiny models run far faster on one thread, above all on a shared, loaded CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
