"""A self-contained HTML report (reports/index.html): one file that opens offline.

Images are embedded as base64 data URIs, CSS is inline, charts are inline SVG drawn here
(no JavaScript, no CDN, no matplotlib). A missing input becomes a note on the page, not a
crash, so a partial pipeline still gets a report.
"""

from __future__ import annotations

import base64
import csv
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.core.atomic import write_bytes

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
svg.chart { border: 1px solid #ddd; margin: .3em; background: #fff; }
svg.chart text { font: 11px sans-serif; fill: #444; }
"""
CHART_W, CHART_H, MARGIN = 360, 200, 44
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
    """One small chart per value column of a curves file: columns differ in scale."""
    path = Path(path)
    if not path.is_file():
        return _note(f"missing curves file: {path}")
    step, series = read_curve(path)
    if not series:
        return _note(f"no numeric rows in {path}")
    return "".join(svg_chart(column, points, step) for column, points in series.items())


def build_report(out_path: str | Path, metrics: Mapping,
                 contact_sheets: Mapping[str, Sequence[str | Path | tuple[str, bytes]]],
                 reconstruction_grid: str | Path | None, curves: Mapping[str, str | Path],
                 title: str = "Language-free text-to-image: evaluation report") -> str:
    """Write the page atomically to ``out_path`` and return its HTML.

    ``contact_sheets`` maps a prompt-set name to its sheets: PNG files (captioned by file stem)
    or (caption, PNG bytes) pairs;
    ``curves`` maps a chart group name (e.g. "tokenizer") to a CSV/TSV of step + values.
    """
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Metrics</h2>", metrics_table(metrics)]
    parts.append("<h2>Samples</h2>")
    if not contact_sheets:
        parts.append(_note("no contact sheets given"))
    for name, sheets in contact_sheets.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        if sheets:
            parts.extend(embedded_png(p[1], p[0]) if isinstance(p, tuple) else embedded_image(p) for p in sheets)
        else:
            parts.append(_note("no sheets in this set"))
    parts.append("<h2>Tokenizer reconstructions</h2>")
    parts.append(embedded_image(reconstruction_grid, "top row: originals, bottom row: reconstructions")
                 if reconstruction_grid is not None else _note("no reconstruction grid given"))
    parts.append("<h2>Training curves</h2>")
    if not curves:
        parts.append(_note("no training curves given"))
    for name, path in curves.items():
        parts.append(f"<h3>{html.escape(name)}</h3><div>{curves_section(path)}</div>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body>{"".join(parts)}</body></html>\n')
    write_bytes(out_path, page.encode("utf-8"))
    return page
