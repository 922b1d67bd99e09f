"""Variants of the default run, each trained, sampled and scored in a folder of its own by the train,
sample and evaluate commands under its own params file (params.yaml with a few keys overridden):
what `t2i ablation` (pseudo-text settings) and `t2i compare` (generators) run.

Every variant reads the pipeline's caches, so variants differ by their overrides alone. With
unchanged params and caches (their versions head the params file) a scored variant is kept and a
sampled one is only scored (delete its scorecard.json to score it again); a killed training
resumes from its checkpoints.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.atomic import write_bytes
from pipeline.core.errors import UserError

# What every variant reads besides its params; a variant made from other versions of them is redone.
CACHES = ("data/ingest", "data/tokens", "data/embeddings", "data/prompt_embeddings.parquet", "models/tokenizer.pt",
          "models/clip", "models/scorer", "reports/clip.json")


def overridden(raw: dict, overrides: dict[str, dict[str, Any]]) -> dict:
    """A deep copy of the raw params with ``{section: {key: value}}`` replaced."""
    raw = json.loads(json.dumps(raw))
    for section, keys in overrides.items():
        raw[section] |= keys
    return raw


def cache_versions(lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """The hash DVC recorded for each of CACHES, from dvc.lock ("" where it has none)."""
    found = dict.fromkeys(CACHES, "")
    if lock.is_file():
        for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
            for out in stage.get("outs", []):  # metrics files are outs in dvc.lock
                if out.get("path") in found:
                    found[out["path"]] = out.get("md5", "")
    return found


def run_child(command: list[str]) -> int:
    """Run ``command`` to its end; its exit status. A SIGTERM to this process (``kill``) ends the
    child too: left running, a killed run's training would go on writing into the folders of the
    next one."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # subprocess.run kills its child on the way out

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return subprocess.run(command).returncode
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_stage(label: str, args: list[str]) -> None:
    """``t2i <args>`` in a fresh process, its output passed through; an error names the command."""
    print(f"{label}: " + " ".join(args), flush=True)
    if run_child([sys.executable, "-m", "stages", *args]) != 0:
        raise UserError(f"{label}: `t2i {' '.join(args)}` failed (its error is above)")


def run_variant(raw: dict, overrides: dict[str, dict[str, Any]], folder: Path, label: str,
                checkpoints: Path | None = None) -> dict:
    """Train, sample and evaluate one variant into ``folder``; its scorecard. ``checkpoints``: where
    training checkpoints (default: in ``folder``); the train stage's own folder lets a variant
    that trains exactly as the DVC run did reload its finished model instead of training again
    (a checkpoint is resumed only when its settings and data match)."""
    params_file = folder / "params.yaml"
    caches = "".join(f"# {path}: {version}\n" for path, version in cache_versions().items())
    wanted = caches + yaml.safe_dump(overridden(raw, overrides), sort_keys=False)
    card, sampled = folder / "scorecard.json", folder / "sample.json"
    if params_file.is_file() and params_file.read_text() == wanted:
        if card.is_file():
            print(f"{label}: {folder.name} done before with these params; kept", flush=True)
            return json.loads(card.read_text())
    else:
        folder.mkdir(parents=True, exist_ok=True)
        card.unlink(missing_ok=True)
        sampled.unlink(missing_ok=True)
        write_bytes(params_file, wanted.encode())
    p = ["--params", str(params_file)]
    if not sampled.is_file():  # the sample stage writes its report last
        run_stage(label, ["train", *p, "--out", str(folder / "generator.pt"),
                          "--work", str(checkpoints or folder / "checkpoints"), "--live", str(folder / "train")])
        run_stage(label, ["sample", *p, "--model", str(folder / "generator.pt"), "--out", str(folder / "samples"),
                          "--report", str(sampled)])
    run_stage(label, ["evaluate", *p, "--samples", str(folder / "samples"), "--sample-report", str(sampled),
                      "--metrics", str(folder / "metrics.json"), "--scorecard", str(card),
                      "--html", str(folder / "index.html"), "--sheet", str(folder / "samples.png")])
    return json.loads(card.read_text())


def cell(card: dict, key: str, digits: int = 3) -> str:
    """A figure with its 95% half-width when the card has one; '-' when it has no such figure."""
    if card.get(key) is None:
        return "-"
    ci = card.get(f"ci95_{key}")
    return f"{card[key]:.{digits}f}" + (f" +- {ci:.{digits}f}" if ci is not None else "")
