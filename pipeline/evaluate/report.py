"""A self-contained HTML report (reports/index.html) that reads like a results section.

In order: the scorecard (each headline figure with its interval, floor or baseline, target
and scorer), the samples of each prompt set with their prompts, the alignment-vs-Frechet
trade-off, the training curves (the stages' DVCLive logs), the tokenizer's reconstructions,
and every metric folded away at the end. One file that opens offline: images are base64 data
URIs, CSS is inline, charts are inline SVG drawn here (no JavaScript, no CDN, no matplotlib).
A missing input becomes a note on the page, not a crash, so a partial pipeline still gets a
report.
"""

from __future__ import annotations

import base64
import csv
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.core.atomic import write_bytes
from pipeline.core.live import metric_files
from pipeline.evaluate.scorecard import Headline

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table.metrics { border-collapse: collapse; font-size: .9em; }
table.metrics td, table.metrics th { border: 1px solid #ddd; padding: .25em .7em; text-align: left; }
table.metrics td.value { font-family: monospace; text-align: right; }
figure { display: inline-block; margin: .5em; vertical-align: top; }
figure img { image-rendering: pixelated; max-width: 100%; border: 1px solid #ccc; }
figcaption { font-size: .8em; color: #555; max-width: 40em; }
.note { color: #a33; font-style: italic; }
table#scorecard { border-collapse: collapse; margin: .5em 0 1em; }
table#scorecard th { background: #dbe9f6; }
table#scorecard td, table#scorecard th { border: 1px solid #bcd; padding: .3em .7em; text-align: left;
  overflow-wrap: anywhere; }
table#scorecard td.value { font-weight: bold; font-family: monospace; }
td.met { color: #176317; } td.missed { color: #a33; font-weight: bold; }
details > summary { cursor: pointer; font-weight: bold; margin: 1em 0; }
svg.chart { border: 1px solid #ddd; margin: .3em; background: #fff; }
svg.chart text { font: 11px sans-serif; fill: #444; }
"""
CHART_W, CHART_H, MARGIN = 360, 200, 52
MAX_POINTS = 1000  # per line; longer curves are thinned evenly
SMALL_IMAGE_PX = 512  # narrower images are shown enlarged (integer factor) towards this width
MAX_ENLARGE = 4


def flatten(metrics: Mapping, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are indexed the same way."""
    out: dict[str, object] = {}
    items = metrics.items() if isinstance(metrics, Mapping) else enumerate(metrics)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and value):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def metrics_table(metrics: Mapping) -> str:
    rows = flatten(metrics)
    if not rows:
        return _note("no metrics given")
    body = "".join(f"<tr><td>{html.escape(k)}</td><td class=\"value\">{html.escape(_format(v))}</td></tr>"
                   for k, v in rows.items())
    return f'<table class="metrics" id="metrics"><tr><th>metric</th><th>value</th></tr>{body}</table>'


def embedded_image(path: str | Path, caption: str | None = None) -> str:
    """A <figure> with the PNG file inlined, or a note when the file is missing or not a PNG."""
    path = Path(path)
    if not path.is_file():
        return _note(f"missing image: {path}")
    return embedded_png(path.read_bytes(), caption if caption is not None else path.stem, str(path))


def embedded_png(data: bytes, caption: str, where: str = "image") -> str:
    """A <figure> with PNG bytes inlined (a note for bytes that are not a PNG)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _note(f"not a PNG file: {where}")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    text = html.escape(caption)
    width = int.from_bytes(data[16:20], "big")  # IHDR; small sheets are shown enlarged
    scale = min(MAX_ENLARGE, max(1, SMALL_IMAGE_PX // max(width, 1)))
    return (f'<figure><img src="{uri}" alt="{text}" width="{width * scale}">'
            f'<figcaption>{text}</figcaption></figure>')


def read_curve(path: str | Path) -> tuple[str, dict[str, list[tuple[float, float]]]]:
    """(step column name, {column: [(step, value), ...]}) from a CSV or TSV with a header.

    The step is the ``step`` column when there is one, else the first; empty and
    non-numeric cells are skipped, so sparse logs (e.g. validation every N steps) work.
    """
    path = Path(path)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    if not rows:
        return "step", {}
    columns = list(rows[0])
    step = "step" if "step" in columns else columns[0]
    series: dict[str, list[tuple[float, float]]] = {c: [] for c in columns if c != step}
    for row in rows:
        x = _number(row.get(step))
        for column in series:
            y = _number(row.get(column))
            if x is not None and y is not None:
                series[column].append((x, y))
    return step, {c: points for c, points in series.items() if points}


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def svg_chart(title: str, points: Sequence[tuple[float, float]], x_label: str = "step") -> str:
    """One line chart; a log y axis when the values are positive and span over 100x."""
    points = sorted(points)
    if len(points) > MAX_POINTS:
        stride = math.ceil(len(points) / MAX_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    xs = [p[0] for p in points]
    log = min(p[1] for p in points) > 0 and max(p[1] for p in points) / min(p[1] for p in points) > 100
    ys = [math.log10(p[1]) if log else p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    plot_w, plot_h = CHART_W - 2 * MARGIN, CHART_H - 2 * MARGIN

    def sx(x: float) -> float:
        return MARGIN + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return CHART_H - MARGIN - (y - y0) / (y1 - y0) * plot_h

    def tick(y: float) -> str:
        return _format(10**y if log else y)

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
    name = html.escape(title + (" (log scale)" if log else ""))
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" '
        f'role="img" aria-label="{name}"><title>{name}</title>'
        f'<text x="{CHART_W / 2}" y="16" text-anchor="middle">{name}</text>'
        f'<rect x="{MARGIN}" y="{MARGIN}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>'
        f'<text x="{MARGIN - 4}" y="{MARGIN + 4}" text-anchor="end">{html.escape(tick(y1))}</text>'
        f'<text x="{MARGIN - 4}" y="{CHART_H - MARGIN}" text-anchor="end">{html.escape(tick(y0))}</text>'
        f'<text x="{MARGIN}" y="{CHART_H - MARGIN + 14}" text-anchor="middle">{html.escape(_format(x0))}</text>'
        f'<text x="{CHART_W - MARGIN}" y="{CHART_H - MARGIN + 14}" text-anchor="middle">'
        f'{html.escape(_format(x1))}</text>'
        f'<text x="{CHART_W / 2}" y="{CHART_H - 10}" text-anchor="middle">{html.escape(x_label)}</text></svg>'
    )


def curves_section(path: str | Path) -> str:
    """One small chart per value column of a curves file, or per metric of a DVCLive log
    folder (``plots/metrics/*.tsv``): metrics differ in scale."""
    path = Path(path)
    files = metric_files(path) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return _note(f"missing curves: {path}")
    charts = []
    for file in files:
        step, series = read_curve(file)
        charts += [svg_chart(column, points, step) for column, points in series.items()]
    return "".join(charts) if charts else _note(f"no numeric rows in {path}")


def scorecard_table(headlines: Sequence[Headline]) -> str:
    if not headlines:
        return _note("no scorecard given")
    head = "".join(f"<th>{h}</th>" for h in ("figure", "value", "95% interval", "floor / baseline", "target",
                                             "scored by"))
    rows = []
    for h in headlines:
        verdict = "" if h.met is None else " (met)" if h.met else " (missed)"
        css = "" if h.met is None else ' class="met"' if h.met else ' class="missed"'
        cells = (f"<td>{html.escape(h.figure)}</td><td class=\"value\">{html.escape(h.value)}</td>"
                 f"<td>{html.escape(h.interval)}</td><td>{html.escape(h.floor)}</td>"
                 f"<td{css}>{html.escape(h.target + verdict)}</td><td>{html.escape(h.scored_by)}</td>")
        rows.append(f"<tr>{cells}</tr>")
    return f'<table id="scorecard"><tr>{head}</tr>{"".join(rows)}</table>'


def samples_section(sets: Mapping[str, tuple[Sequence[str], Sequence[tuple[str, bytes]]]]) -> str:
    """Per prompt set, its contact sheets (caption, PNG bytes) and the prompts they show."""
    if not sets:
        return _note("no samples given")
    parts = []
    for name, (prompts, sheets) in sets.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        parts.extend(embedded_png(data, caption) for caption, data in sheets)
        if not sheets:
            parts.append(_note("no sheets in this set"))
        items = "".join(f"<li>{html.escape(p)}</li>" for p in prompts)
        parts.append(f"<details><summary>its {len(prompts)} prompts, top row first</summary><ol>{items}</ol>"
                     "</details>")
    return "".join(parts)


def read_tradeoff(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def svg_tradeoff(rows: Sequence[Mapping[str, str]], x: str, y: str, low: str, high: str, floor: float | None,
                 x_label: str, y_label: str) -> str:
    """Alignment (y, with its interval) against Frechet distance (x), one line per sweep
    (guidance, truncation), each point labelled with its setting; the real-vs-real floor as a
    dashed vertical line."""
    points = [(float(r[x]), float(r[y]), float(r[low]), float(r[high]), r) for r in rows]
    xs = [p[0] for p in points] + ([floor] if floor is not None else [])
    pad = 0.05 * (max(xs) - min(xs)) if xs and max(xs) > min(xs) else 1.0
    x0, x1 = (min(xs) - pad, max(xs) + pad) if xs else (0.0, 1.0)
    width, height, margin = 2 * CHART_W, 2 * CHART_H, 56
    plot_w, plot_h = width - 2 * margin, height - 2 * margin

    def sx(value: float) -> float:
        return margin + (value - x0) / (x1 - x0) * plot_w

    def sy(value: float) -> float:
        return height - margin - value * plot_h  # alignment is a share: 0..1

    colours = {"guidance": "#1f77b4", "truncation": "#d62728"}
    parts = [f'<rect x="{margin}" y="{margin}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>']
    for sweep in dict.fromkeys(p[4]["sweep"] for p in points):
        colour = colours.get(sweep, "#555")
        line = [p for p in points if p[4]["sweep"] == sweep]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                     f'points="{" ".join(f"{sx(p[0]):.1f},{sy(p[1]):.1f}" for p in line)}"/>')
        for fd, align, lo, hi, row in line:
            label = f"g {float(row['guidance']):g}" if sweep == "guidance" else f"r {float(row['truncation']):g}"
            parts.append(f'<line x1="{sx(fd):.1f}" x2="{sx(fd):.1f}" y1="{sy(lo):.1f}" y2="{sy(hi):.1f}" '
                         f'stroke="{colour}"/><circle cx="{sx(fd):.1f}" cy="{sy(align):.1f}" r="3" fill="{colour}"/>'
                         f'<text x="{sx(fd) + 5:.1f}" y="{sy(align) - 4:.1f}">{html.escape(label)}</text>')
        parts.append(f'<text x="{width - margin - 4}" y="{margin + 14 + 14 * list(colours).index(sweep)}" '
                     f'text-anchor="end" fill="{colour}">{html.escape(sweep)}</text>' if sweep in colours else "")
    if floor is not None:
        parts.append(f'<line x1="{sx(floor):.1f}" x2="{sx(floor):.1f}" y1="{margin}" y2="{height - margin}" '
                     f'stroke="#888" stroke-dasharray="4 3"/><text x="{sx(floor) + 4:.1f}" y="{height - margin - 6}">'
                     "real vs real</text>")
    axes = (f'<text x="{margin - 4}" y="{margin + 4}" text-anchor="end">1</text>'
            f'<text x="{margin - 4}" y="{height - margin}" text-anchor="end">0</text>'
            f'<text x="{margin}" y="{height - margin + 14}" text-anchor="middle">{_format(x0)}</text>'
            f'<text x="{width - margin}" y="{height - margin + 14}" text-anchor="middle">{_format(x1)}</text>'
            f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">{html.escape(x_label)}</text>'
            f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">'
            f"{html.escape(y_label)}</text>")
    title = html.escape(f"{y_label} against {x_label}")
    return (f'<svg class="chart" id="tradeoff" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="{title}"><title>{title}</title>{"".join(parts)}{axes}</svg>')


def tradeoff_table(rows: Sequence[Mapping[str, str]], x: str, y: str, low: str, high: str) -> str:
    """The trade-off's points as numbers, beside the chart where they crowd."""
    body = "".join(
        f"<tr><td>{html.escape(r['sweep'])}</td><td>{float(r['guidance']):g}</td><td>{float(r['truncation']):g}</td>"
        f"<td class=\"value\">{float(r[y]):.2f} [{float(r[low]):.2f}, {float(r[high]):.2f}]</td>"
        f"<td class=\"value\">{float(r[x]):.4g}</td></tr>" for r in rows)
    return ('<table class="metrics"><tr><th>line</th><th>guidance</th><th>truncation</th><th>alignment [95%]</th>'
            f"<th>Frechet distance</th></tr>{body}</table>")


def build_report(out_path: str | Path, headlines: Sequence[Headline],
                 samples: Mapping[str, tuple[Sequence[str], Sequence[tuple[str, bytes]]]],
                 tradeoff: str | None, curves: Mapping[str, str | Path], reconstruction_grid: str | Path | None,
                 metrics: Mapping, intro: str = "",
                 title: str = "Language-free text-to-image: results") -> str:
    """Write the page atomically to ``out_path`` and return its HTML.

    ``samples`` maps a prompt-set name to (its prompts, its contact sheets as (caption, PNG
    bytes)); ``tradeoff`` is the trade-off chart's SVG (svg_tradeoff) or None; ``curves`` maps
    a chart group name (e.g. "train") to a DVCLive log folder or a CSV/TSV of step + values.
    """
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    parts += ["<h2>Scorecard</h2>", scorecard_table(headlines), "<h2>Samples</h2>", samples_section(samples),
              "<h2>Trade-off: alignment against Frechet distance</h2>",
              tradeoff if tradeoff is not None else _note("no trade-off sweep given (dvc repro tradeoff)"),
              "<h2>Training curves</h2>"]
    if not curves:
        parts.append(_note("no training curves given"))
    for name, path in curves.items():
        parts.append(f"<h3>{html.escape(name)}</h3><div>{curves_section(path)}</div>")
    parts.append("<h2>Tokenizer reconstructions</h2>")
    parts.append(embedded_image(reconstruction_grid, "top row: originals, bottom row: reconstructions")
                 if reconstruction_grid is not None else _note("no reconstruction grid given"))
    parts.append(f"<details><summary>Every metric ({len(flatten(metrics))})</summary>{metrics_table(metrics)}"
                 "</details>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body>{"".join(parts)}</body></html>\n')
    write_bytes(out_path, page.encode("utf-8"))
    return page
