"""`t2i ablation`: the pseudo-text ablation, one command (not a DVC stage: it trains six models).

For each pseudo-text setting (pipeline/diffusion/pseudo_text.py: ABLATION) it trains the
generator on the pipeline's own caches, samples the evaluation prompts and scores them with
the train, sample and evaluate stages' commands, each under its own params file (params.yaml
with the setting, the steps and the samples per prompt overridden) and output folder under
data/ablation/. Every setting shares the caches, the seed and the scorer, so only the setting
differs. A finished setting is kept when rerun with the same params; a killed one resumes.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from pipeline.core.atomic import write_bytes, write_json
from pipeline.core.params import load_raw, parse_params
from pipeline.diffusion.pseudo_text import ABLATION, setting_name
from stages.common import ParamsOption, user_errors

# What every setting reads besides its params; a setting made from other versions of them is redone.
CACHES = ("data/tokens", "data/embeddings", "data/prompt_embeddings.parquet", "models/tokenizer.pt", "models/scorer",
          "reports/clip.json")
HEADLINE = ("align_seen_all", "align_heldout_all", "align_new_wording_all", "align_partial_named", "fd_eval_clip",
            "clipscore_hessel_mean")


def _overridden(raw: dict, mode: str, scale: float, steps: int, samples: int) -> dict:
    raw = json.loads(json.dumps(raw))  # a deep copy
    raw["train"] |= {"pseudo_text": mode, "pseudo_scale": scale, "steps": steps}
    raw["sample"] |= {"samples_per_prompt": samples, "full_steps_prompts": 0}
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


def _run(args: list[str]) -> None:
    typer.echo("ablation: " + " ".join(args))
    if subprocess.run([sys.executable, "-m", "stages", *args]).returncode != 0:
        raise typer.Exit(1)


def run_setting(raw: dict, mode: str, scale: float, steps: int, samples: int, folder: Path) -> dict:
    """Train, sample and evaluate one setting into ``folder``; its scorecard.

    With unchanged params and caches (their versions head the params file), a scored setting is
    kept and a sampled one is only scored (delete its scorecard.json to score it again);
    training resumes from its checkpoints.
    """
    params_file = folder / "params.yaml"
    caches = "".join(f"# {path}: {version}\n" for path, version in cache_versions().items())
    wanted = caches + yaml.safe_dump(_overridden(raw, mode, scale, steps, samples), sort_keys=False)
    card, sampled = folder / "scorecard.json", folder / "sample.json"
    if params_file.is_file() and params_file.read_text() == wanted:
        if card.is_file():
            typer.echo(f"ablation: {folder.name} done before with these params; kept")
            return json.loads(card.read_text())
    else:
        folder.mkdir(parents=True, exist_ok=True)
        card.unlink(missing_ok=True)
        sampled.unlink(missing_ok=True)
        write_bytes(params_file, wanted.encode())
    p = ["--params", str(params_file)]
    if not sampled.is_file():  # the sample stage writes its report last
        _run(["train", *p, "--out", str(folder / "diffusion.pt"), "--work", str(folder / "checkpoints"),
              "--live", str(folder / "train")])
        _run(["sample", *p, "--model", str(folder / "diffusion.pt"), "--out", str(folder / "samples"),
              "--report", str(sampled)])
    _run(["evaluate", *p, "--samples", str(folder / "samples"), "--sample-report", str(folder / "sample.json"),
          "--metrics", str(folder / "metrics.json"), "--scorecard", str(card), "--html", str(folder / "index.html"),
          "--sheet", str(folder / "samples.png")])
    return json.loads(card.read_text())


def _cell(card: dict, key: str) -> str:
    if key not in card:
        return "-"
    ci = card.get(f"ci95_{key}")
    return f"{card[key]:.3f}" + (f" +- {ci:.3f}" if ci is not None else "")


def ablation_markdown(cards: dict[str, dict], steps: int, samples: int) -> str:
    base = cards.get("none", {}).get("align_seen_all")
    lines = [
        "# Pseudo-text ablation",
        "",
        f"Written by `t2i ablation --steps {steps} --samples {samples}`: each setting trains the generator {steps} "
        f"steps on the same caches, seed and conditioning CLIP (the default run trains train.steps), samples "
        f"{samples} images per evaluation prompt and is scored by the CLIP-free checker (align_*, with 95% Wilson "
        "half-widths) and the independent scoring CLIP (fd_eval_clip on the seen prompts' samples, CLIPScore). "
        "Per-setting floors and every other figure: reports/ablation.json.",
        "",
        "| setting | " + " | ".join(HEADLINE) + " | seen_all vs none |",
        "| --- | " + " | ".join("---" for _ in HEADLINE) + " | --- |",
    ]
    for name, card in cards.items():
        delta = "-" if base is None else f"{card['align_seen_all'] - base:+.3f}"
        lines.append(f"| {name} | " + " | ".join(_cell(card, key) for key in HEADLINE) + f" | {delta} |")
    return "\n".join(lines) + "\n"


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    steps: Annotated[int, typer.Option(help="Training steps of every setting.")] = 1000,
    samples: Annotated[int, typer.Option(help="Samples per evaluation prompt.")] = 16,
    work: Annotated[Path, typer.Option(help="Per-setting params, models, samples and scores.")] = Path(
        "data/ablation"),
    out: Annotated[Path, typer.Option(help="Folder for ablation.md and ablation.json.")] = Path("reports"),
) -> None:
    """Train, sample and score every pseudo-text setting; write reports/ablation.{md,json}. Needs the
    pipeline's caches (`dvc repro embed tokenizer scorer`) first."""
    raw = load_raw(params)
    parse_params(raw, str(params))  # fail on a bad params file before anything trains
    cards = {}
    for mode, scale in ABLATION:
        name = setting_name(mode, scale)
        cards[name] = run_setting(raw, mode, scale, steps, samples, work / name)
    write_json(out / "ablation.json", {name: {**card, "train_steps": steps, "samples_per_prompt": samples}
                                       for name, card in cards.items()})
    write_bytes(out / "ablation.md", ablation_markdown(cards, steps, samples).encode())
    typer.echo(f"ablation: wrote {out / 'ablation.md'} and {out / 'ablation.json'}")
