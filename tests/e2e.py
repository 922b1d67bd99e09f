"""What the end-to-end tests share: a micro config, a copy of the repo to run it in, and the
commands' output."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from dvc.utils.hydra import compose_and_dump

from tests.conftest import REPO, with_overrides

MICRO = {
    "shapes.n_images": 240,
    "ingest.shard_size": 100,
    "tokenizer.n_codes": 36, "tokenizer.code_dim": 8, "tokenizer.ch": 8, "tokenizer.ch_mult": [1, 2, 2],
    "tokenizer.attn_resolutions": [], "tokenizer.steps": 20, "tokenizer.tau_steps": 20, "tokenizer.batch_size": 16,
    "tokenizer.optim.warmup_steps": 2, "tokenizer.checkpoint_every": 10,
    **{f"{clip}.{key}": value for clip in ("clip", "scorer") for key, value in {
        "eval_images": 40, "train.images": 200, "train.steps": 10, "train.batch_size": 16,
        "train.optim.warmup_steps": 2}.items()},
    "train.depth": 1, "train.width": 32, "train.heads": 2, "train.diffusion_steps": 10, "train.steps": 20,
    "train.batch_size": 16, "train.optim.warmup_steps": 2, "train.checkpoint_every": 10, "train.log_every": 5,
    "train.t_min_count": 2,
    "train.lafite.z_dim": 8, "train.lafite.w_dim": 16, "train.lafite.mapping_layers": 1,
    "train.lafite.channel_base": 64, "train.lafite.channel_max": 16, "train.lafite.r1_every": 2,
    "train.clipgen.depth": 1, "train.clipgen.width": 32, "train.clipgen.heads": 2,
    "sample.samples_per_prompt": 2, "sample.steps": 5, "sample.full_steps_prompts": 2,
    "evaluate.fd_images": 10, "evaluate.checker_images": 50, "evaluate.batch_size": 32,
    "evaluate.inception_weights": None,  # the CLIP-space distances online too: no Inception on CPU here
    "tradeoff.guidance": [1.0, 2.0], "tradeoff.truncation": [1.0], "tradeoff.samples_per_prompt": 1,
    "tradeoff.fd_images": 10,
}

LOG_INTERVAL = 600  # seconds between progress lines in a log: longer than any bar here lasts


def sh(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def stages_run(output):
    return set(re.findall(r"Running stage '([^']+)'", output))


def stages_changed(root: Path, env: dict[str, str]) -> set[str]:
    """The stages `dvc status` finds changed themselves (their own deps, params or outs), without
    running anything: what a change reruns first, before its outputs ripple downstream."""
    result = subprocess.run(["dvc", "status", "--json"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def micro_copy(root: Path) -> dict[str, str]:
    """Copy the repo's tracked and new files into ``root``, as a fresh clone would have them, with
    MICRO written into conf/ (what `dvc exp run` composes) and params.yaml (what `dvc repro` reads);
    returns the environment to run its commands in."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    conf = yaml.safe_load((root / "conf/config.yaml").read_text())
    (root / "conf/config.yaml").write_text(yaml.safe_dump(with_overrides(conf, MICRO), sort_keys=False))
    compose_and_dump(root / "params.yaml", str(root / "conf"), None, "config", "", [])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TQDM_MININTERVAL": str(LOG_INTERVAL)}
    sh(["git", "init", "-q"], root, env)
    return env


def commit(root: Path, env: dict[str, str], message: str) -> None:
    sh(["git", "add", "-A"], root, env)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message], root, env)


def progress_states(log: str) -> list[tuple[str, int, int]]:
    """(bar, n, total) of every progress line tqdm wrote into ``log`` (lines end in \\r or \\n)."""
    found = re.finditer(r"^([\w ]+): +\d+%\|[^|]*\| (\d+)/(\d+) ", log.replace("\r", "\n"), re.MULTILINE)
    return [(m[1], int(m[2]), int(m[3])) for m in found]


def set_param(root, dotted, value):
    """Change a setting as a user would: in conf/ (what `dvc exp run` composes) and params.yaml."""
    for name in ("conf/config.yaml", "params.yaml"):
        raw = yaml.safe_load((root / name).read_text())
        (root / name).write_text(yaml.safe_dump(with_overrides(raw, {dotted: value}), sort_keys=False))




def hydra_value(value) -> str:
    return "null" if value is None else json.dumps(value).replace(" ", "")
