"""The comparison table of `t2i compare`: per generator, its scorecard figures beside its size,
training time and sampling speed, measured on the same caches, prompts and scorer, and one line
each on where the ranking agrees with the one CLIP-VQDiffusion's paper reports."""

from __future__ import annotations

import html
import json
from pathlib import Path

from pipeline.core.atomic import write_bytes
from pipeline.evaluate.report import CSS, embedded_png, metrics_table
from pipeline.evaluate.variants import cell

GENERATORS = ("vqdiffusion", "lafite", "clipgen")
TITLES = {"vqdiffusion": "VQ-Diffusion (CLIP-VQDiffusion)", "lafite": "LAFITE (StyleGAN2)",
          "clipgen": "CLIP-GEN (autoregressive)"}
SCORES = ("align_seen_all", "align_heldout_all", "align_new_wording_all", "align_partial_named", "fd_eval_clip",
          "clipscore_hessel_mean", "clipscore_hessel_best_of_n")
ATTRIBUTE_SCORES = ("align_gender", "align_age", "align_race")  # faces: the held-out prompts, per attribute


def score_keys(table: dict) -> list[str]:
    """The table's columns of figures: SCORES, then the per-attribute ones every generator's card has."""
    rows = table["generators"].values()
    return [*SCORES, *(key for key in ATTRIBUTE_SCORES if all(key in row for row in rows))]


def run_figures(folder: Path) -> dict[str, float | int | None]:
    """Size, training time and sampling speed of one variant folder (its train log and sample report)."""
    train = json.loads((folder / "train/metrics.json").read_text())
    sample = json.loads((folder / "sample.json").read_text())
    return {"parameters": sample["sampler"]["parameters"], "train_steps": train["steps"],
            "train_images_seen": train["images_seen"], "train_seconds": train["wall_seconds"],
            "sampling_images_per_second": sample["fast"]["images_per_second"]}


def comparison_json(cards: dict[str, dict], figures: dict[str, dict], samples: int, world: str) -> dict:
    """``{"generators": {name: scorecard + figures}, "random_real_floor_all": ..., "world": ...}``."""
    any_card = next(iter(cards.values()))
    return {"world": world,
            "generators": {name: {**cards[name], **figures[name], "samples_per_prompt": samples} for name in cards},
            "random_real_floor_all": any_card.get("floor_align_seen_all"),
            "scored_by_alignment": any_card.get("scored_by_alignment"),
            "scored_by_clip": any_card.get("scored_by_clip")}


def _ranked(table: dict, key: str) -> list[str]:
    return sorted(table["generators"], key=lambda name: -table["generators"][name][key])


def _separated(a: dict, b: dict, key: str) -> bool:
    """Whether two generators' figures differ by more than their 95% half-widths together."""
    return abs(a[key] - b[key]) > (a.get(f"ci95_{key}") or 0) + (b.get(f"ci95_{key}") or 0)


def ranking_lines(table: dict) -> list[str]:
    """One line per generator on whether our ranking agrees with the paper's (CLIP-VQDiffusion above
    the others), with the measured facts a difference may come from."""
    rows = table["generators"]
    by_alignment, by_clipscore = _ranked(table, "align_seen_all"), _ranked(table, "clipscore_hessel_mean")
    reference = rows.get("vqdiffusion")
    lines = []
    for name, row in rows.items():
        if name == "vqdiffusion":
            claim = "the paper puts it first (CLIPScore +4.4% over the best earlier language-free method, FFHQ)"
            others = [other for other in rows if other != name]
            beaten = [other for other in others if rows[other]["align_seen_all"] > row["align_seen_all"]
                      and _separated(rows[other], row, "align_seen_all")]
            tied = [other for other in others if not _separated(rows[other], row, "align_seen_all")]
            verdict = ("disagrees" if beaten else "agrees" if not tied
                       else f"cannot tell it from {', '.join(TITLES[t] for t in tied)} within the 95% intervals")
        else:
            claim = "the paper puts it below CLIP-VQDiffusion"
            if reference is None:
                verdict = "cannot say (no vqdiffusion row)"
            elif not _separated(row, reference, "align_seen_all"):
                verdict = "cannot tell it from VQ-Diffusion within the 95% intervals"
            else:
                verdict = "agrees" if row["align_seen_all"] < reference["align_seen_all"] else "disagrees"
        lines.append(
            f"- **{TITLES[name]}**: {verdict}: {claim}; here it ranks {by_alignment.index(name) + 1} of "
            f"{len(by_alignment)} by seen alignment ({cell(row, 'align_seen_all')}) and "
            f"{by_clipscore.index(name) + 1} by CLIPScore. Here: {row['parameters'] / 1e6:.2f}M parameters, "
            f"{row['train_steps']:,} steps ({row['train_images_seen']:,} images seen) in "
            f"{row['train_seconds'] / 60:.1f} min on this CPU at the world's resolution; the paper's models are "
            "100-1000x larger, trained for days on GPUs at 256 px and scored by OpenAI's CLIP.")
    return lines


def _columns(row: dict, keys: list[str], floor: float) -> list[str]:
    return ([f"{row['parameters'] / 1e6:.2f}M", f"{row['train_seconds'] / 60:.1f}",
             f"{row['sampling_images_per_second']:.1f}"] + [cell(row, key) for key in keys]
            + [f"{row['align_seen_all'] - floor:+.3f}"])


def _header(keys: list[str]) -> list[str]:
    return ["generator", "parameters", "train min", "sampling img/s", *keys, "seen_all over floor"]


def _floors(row: dict, keys: list[str]) -> str:
    """The random-real floors of the per-attribute columns (a real val image's chance of matching)."""
    floors = [f"{key} {row[f'floor_{key}']:.3f}" for key in keys
              if key in ATTRIBUTE_SCORES and row.get(f"floor_{key}") is not None]
    return f"; of {', '.join(floors)}" if floors else ""


def comparison_markdown(table: dict, out: Path = Path("reports")) -> str:
    """The table, the Frechet floors and the lines on the paper's ranking; ``out``: where the
    json and the contact sheets are, as the text names them."""
    rows = table["generators"]
    keys = score_keys(table)
    header = _header(keys)
    any_row = next(iter(rows.values()))
    samples = any_row["samples_per_prompt"]
    steps = ", ".join(f"{name} {row['train_steps']:,}" for name, row in rows.items())
    floor = table["random_real_floor_all"]
    lines = [
        f"# Three language-free generators compared ({table['world']} world)",
        "",
        f"Written by `t2i compare`: each generator trains on the same caches (code grids or images, CLIP image "
        f"embeddings) with the default pseudo-text setting and seed (training steps: {steps}), samples {samples} "
        f"images per evaluation prompt from the prompts' CLIP text embeddings and is scored by the same judges: "
        f"alignment by {table['scored_by_alignment']} (95% Wilson half-widths), the Frechet distance and "
        f"CLIPScore (Hessel: 2.5 max(cos, 0)) by the independent scoring CLIP, never by the conditioning one. "
        f"Random-real floor of align_seen_all: {floor:.3f}{_floors(any_row, keys)}. Every figure of each "
        f"generator: {out / 'comparison.json'}; contact sheets: {out / 'comparison'}/<generator>.png.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for name, row in rows.items():
        lines.append(f"| {TITLES[name]} | " + " | ".join(_columns(row, keys, floor)) + " |")
    lines += ["", f"Frechet floors (scoring CLIP, N = {any_row.get('fd_n')}): real vs real "
              f"{any_row.get('fd_floor_real', float('nan')):.4f}, tokenizer reconstructions "
              f"{any_row.get('fd_floor_recon', float('nan')):.4f}, scrambled codes "
              f"{any_row.get('fd_scrambled', float('nan')):.4f}.", "",
              "## Against the paper's ranking", "", *ranking_lines(table)]
    return "\n".join(lines) + "\n"


def comparison_page(out_path: Path, table: dict, markdown: str, sheets: dict[str, bytes]) -> None:
    """reports/comparison.html: the table, the generators' contact sheets side by side, the lines on
    the paper's ranking and every figure; one self-contained file like the main report."""
    floor, keys = table["random_real_floor_all"], score_keys(table)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header(keys))
    body = "".join(f"<tr><td>{html.escape(TITLES[name])}</td>"
                   + "".join(f'<td class="value">{html.escape(c)}</td>' for c in _columns(row, keys, floor))
                   + "</tr>"
                   for name, row in table["generators"].items())
    intro = markdown.split("\n\n")[1]
    ranking = markdown.split("## Against the paper's ranking\n\n")[1].strip().splitlines()
    parts = ["<h1>Three language-free generators compared</h1>", f"<p>{html.escape(intro)}</p>",
             f'<table class="metrics"><tr>{head}</tr>{body}</table>',
             "<h2>Samples (the same prompts and seeds)</h2>",
             "".join(embedded_png(data, TITLES[name]) for name, data in sheets.items()),
             "<h2>Against the paper's ranking</h2><ul>",
             "".join(f"<li>{html.escape(line[2:].replace('**', ''))}</li>" for line in ranking), "</ul>",
             f"<details><summary>Every figure</summary>{metrics_table(table)}</details>"]
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Generators compared</title>'
            f'<style>{CSS}</style></head><body>{"".join(parts)}</body></html>\n')
    write_bytes(out_path, page.encode("utf-8"))
