"""`dvc repro` of the whole pipeline in a temporary copy of the repo, on a micro config."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, default_raw_params, with_overrides

MICRO = {
    "shapes.n_images": 240,
    "ingest.shard_size": 100,
}

pytestmark = pytest.mark.slow


def sh(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def stages_run(output):
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A copy of the repo's tracked and new files, as a fresh clone would have them."""
    root = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(with_overrides(default_raw_params(), MICRO), sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    sh(["git", "init", "-q"], root, env)
    return root, env


def test_repro_runs_every_stage_then_is_up_to_date(workdir):
    root, env = workdir
    output = sh(["dvc", "repro"], root, env)
    assert stages_run(output) == set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    report = yaml.safe_load((root / "reports/ingest.json").read_text())
    assert report["kept"] == MICRO["shapes.n_images"]
    assert len(list((root / "data/ingest").glob("part-*.parquet"))) == 3
    again = sh(["dvc", "repro"], root, env)
    assert stages_run(again) == set()
    assert "up to date" in again
    status = sh(["dvc", "status"], root, env)
    assert "up to date" in status


def test_changing_one_section_reruns_only_its_stage_and_downstream(workdir):
    root, env = workdir
    sh(["dvc", "repro"], root, env)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["ingest"]["val_fraction"] = 0.25
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    output = sh(["dvc", "repro"], root, env)
    assert "shapes" not in stages_run(output)
    assert "ingest" in stages_run(output)
