"""`t2i ablation`: the pseudo-text ablation, one command (not a DVC stage: it trains six models).

For each pseudo-text setting (pipeline/generator/pseudo_text.py: ABLATION) it trains the
generator on the pipeline's own caches, samples the evaluation prompts and scores them with
the train, sample and evaluate stages' commands, each under its own params file (params.yaml
with the setting, the steps and the samples per prompt overridden) and output folder under
data/ablation/. Every setting shares the caches, the seed and the scorer, so only the setting
differs. A finished setting is kept when rerun with the same params; a killed one resumes.
"""

from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.atomic import write_bytes, write_json
from pipeline.core.errors import UserError
from pipeline.core.params import load_raw, parse_params
from pipeline.evaluate.variants import cell, run_variant
from pipeline.generator.pseudo_text import ABLATION, setting_name
from stages.common import ParamsOption, user_errors

HEADLINE = ("align_seen_all", "align_heldout_all", "align_new_wording_all", "align_partial_named", "fd_eval_clip",
            "clipscore_hessel_mean")


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
        lines.append(f"| {name} | " + " | ".join(cell(card, key) for key in HEADLINE) + f" | {delta} |")
    return "\n".join(lines) + "\n"


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    steps: Annotated[int, typer.Option(help="Training steps of every setting.")] = 1000,
    samples: Annotated[int, typer.Option(help="Samples per evaluation prompt.")] = 16,
    only: Annotated[list[str] | None, typer.Option("--setting", help="Only these settings, named as in the table "
                                                   "(repeat the option); default: all.")] = None,
    work: Annotated[Path, typer.Option(help="Per-setting params, models, samples and scores.")] = Path(
        "data/ablation"),
    out: Annotated[Path, typer.Option(help="Folder for ablation.md and ablation.json.")] = Path("reports"),
) -> None:
    """Train, sample and score every pseudo-text setting; write reports/ablation.{md,json}. Needs the
    pipeline's caches (`dvc repro embed tokenizer scorer`) first."""
    raw = load_raw(params)
    parse_params(raw, str(params))  # fail on a bad params file before anything trains
    names = {setting_name(mode, scale): (mode, scale) for mode, scale in ABLATION}
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise UserError(f"--setting {unknown[0]!r}: not an ablation setting; choose from {', '.join(names)}")
    cards = {}
    for name, (mode, scale) in names.items():
        if only and name not in only:
            continue
        overrides = {"train": {"pseudo_text": mode, "pseudo_scale": scale, "steps": steps},
                     "sample": {"samples_per_prompt": samples, "full_steps_prompts": 0}}
        cards[name] = run_variant(raw, overrides, work / name, "ablation")
    write_json(out / "ablation.json", {name: {**card, "train_steps": steps, "samples_per_prompt": samples}
                                       for name, card in cards.items()})
    write_bytes(out / "ablation.md", ablation_markdown(cards, steps, samples).encode())
    typer.echo(f"ablation: wrote {out / 'ablation.md'} and {out / 'ablation.json'}")
