import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.core.live import TrainingLog
from pipeline.evaluate.report import build_report, flatten, read_curve, svg_tradeoff
from pipeline.evaluate.scorecard import Headline
from tests.browser import NO_NETWORK, chromium, needs_chromium

SCORECARD_HEADER = (0xDB, 0xE9, 0xF6)  # report.CSS: table#scorecard th
VOID = {"meta", "img", "br", "hr", "link", "input"}
METRICS = {"fid": {"fd_clip": 1.234567, "n_generated": 960, "reference_split": "val"},
           "alignment": {"shape": 0.5, "by_wording": {"new": {"all": 0.25}}}}


class StructureCheck(HTMLParser):
    """Tag nesting, and every URL the page would load."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.urls, self.tags = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value is not None]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def png(path: Path, seed: int, size=(48, 32)) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


HEADLINES = [Headline("alignment, seen prompts, all four", "0.90", "[0.88, 0.92]", "random real 0.007",
                      ">= 0.75 (shape)", True, "CLIP-free checker"),
             Headline("alignment, held-out pairs, all four", "0.24", "[0.22, 0.27]", "random real 0.000", ">= 0.5",
                      False, "CLIP-free checker"),
             Headline("Frechet distance", "0.0106", "-", "real vs real 0.0011", "", None, "scorer CLIP")]
TRADEOFF = [{"sweep": "guidance", "guidance": g, "truncation": 0.9, "align_all": a, "align_low": a - 0.05,
             "align_high": a + 0.05, "fd": f} for g, a, f in [(1, 0.5, 0.02), (2, 0.8, 0.01), (5, 0.85, 0.03)]]
TRADEOFF += [{"sweep": "truncation", "guidance": 2, "truncation": r, "align_all": a, "align_low": a - 0.05,
              "align_high": a + 0.05, "fd": f} for r, a, f in [(0.8, 0.82, 0.015), (1.0, 0.7, 0.012)]]


@pytest.fixture
def report(tmp_path):
    sheets = [png(tmp_path / "prompt_000.png", 0), png(tmp_path / "prompt_001.png", 1)]
    grid = png(tmp_path / "recon.png", 2, (70, 200))
    (tmp_path / "tokenizer.csv").write_text("step,loss,psnr\n0,5.0,\n100,0.5,20.5\n200,0.004,24.0\nbad,1,1\n")
    log = TrainingLog(tmp_path / "live-train", {"train": {"steps": 2500}})  # a DVCLive log, as the train stage's
    log.begin(0, [])
    for i in range(0, 2500, 5):
        log.row({"step": i, "loss": 3 - i / 1000})
    log.end()
    out = tmp_path / "reports" / "index.html"
    samples = {"seen": (["a red circle", "a blue square"], [("2 samples per prompt", sheets[0].read_bytes())]),
               "held-out": (["a green circle"], [("best first", sheets[1].read_bytes())]), "partial": (["a red"], [])}
    chart = svg_tradeoff(TRADEOFF, "fd", "align_all", "align_low", "align_high", 0.001, "Frechet distance",
                         "alignment")
    page = build_report(out, HEADLINES, samples, chart,
                        {"tokenizer": tmp_path / "tokenizer.csv", "train": tmp_path / "live-train",
                         "clip": tmp_path / "absent"}, grid, METRICS, intro="Scored by the scorer CLIP.")
    return out, page, sheets + [grid]


def test_page_is_self_contained_html(report):
    out, page, images = report
    assert out.read_text() == page and page.startswith("<!DOCTYPE html>")
    check = StructureCheck()
    check.feed(page)
    check.close()
    assert not check.errors and not check.stack
    assert "script" not in check.tags and "link" not in check.tags
    assert check.urls and all(url.startswith("data:image/png;base64,") for url in check.urls)
    embedded = [base64.b64decode(url.split(",", 1)[1]) for url in check.urls]
    assert embedded == [p.read_bytes() for p in images]
    assert not list(out.parent.glob(".*tmp*"))  # written atomically, nothing left beside it


def test_page_reads_like_a_results_section(report):
    _, page, _ = report
    sections = re.findall(r"<h2>([^<]*)</h2>", page)
    assert sections == ["Scorecard", "Samples", "Trade-off: alignment against Frechet distance", "Training curves",
                        "Tokenizer reconstructions"]
    assert page.index('id="scorecard"') < page.index("<img") < page.index('id="tradeoff"') < page.index('id="metrics"')
    assert re.search(r'<td class="missed">&gt;= 0.5 \(missed\)</td>', page)
    assert re.search(r'<td class="met">&gt;= 0.75 \(shape\) \(met\)</td>', page)
    assert "<li>a green circle</li>" in page
    assert page.count('<circle') == 5 and page.count("<polyline") >= 2  # the sweep's points and lines
    full_table = page[page.index("<details><summary>Every metric"):]
    for key, value in [("fid.fd_clip", "1.235"), ("fid.n_generated", "960"), ("alignment.by_wording.new.all", "0.25")]:
        assert re.search(rf"<td>{re.escape(key)}</td><td class=\"value\">{re.escape(value)}</td>", full_table)
    assert page.count('<svg class="chart"') == 4  # trade-off, tokenizer loss + psnr, the DVCLive log's loss
    assert "loss (log scale)" in page
    for missing in ("absent", "no sheets in this set"):
        assert re.search(rf'class="note">[^<]*{re.escape(missing)}', page)


def test_missing_everything_still_writes_a_page(tmp_path):
    page = build_report(tmp_path / "index.html", [], {}, None, {}, None, {})
    assert page.count('class="note"') == 6 and (tmp_path / "index.html").is_file()


def test_flatten_and_read_curve(tmp_path):
    assert flatten({"a": {"b": 1, "c": [2, 3]}, "d": "x", "e": []}) == {"a.b": 1, "a.c.0": 2, "a.c.1": 3,
                                                                        "d": "x", "e": []}
    (tmp_path / "c.csv").write_text("epoch,acc,note\n1,0.5,x\n2,,y\n3,0.7,z\n")
    step, series = read_curve(tmp_path / "c.csv")
    assert step == "epoch" and series == {"acc": [(1.0, 0.5), (3.0, 0.7)]}


@needs_chromium
def test_chromium_shows_the_scorecard_first(report, tmp_path):
    out, _, _ = report
    dom = chromium(*NO_NETWORK, "--dump-dom", out.as_uri(), tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="scorecard"' in dom.stdout and 'id="tradeoff"' in dom.stdout and "fid.fd_clip" in dom.stdout
    shot = tmp_path / "shot.png"
    result = chromium(*NO_NETWORK, "--window-size=1000,700", f"--screenshot={shot}", out.as_uri(),
                      tmp_path=tmp_path)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (700, 1000)
    header = (np.abs(pixels - SCORECARD_HEADER).sum(axis=2) <= 6)  # the scorecard's header cells
    assert header.sum() > 2000, "no scorecard on the first screen"
    vivid = (pixels.max(axis=2) - pixels.min(axis=2) > 150).sum(axis=1) > 20  # rows of the (random) sample images
    assert vivid.any() and np.flatnonzero(vivid)[0] > np.flatnonzero(header.any(axis=1))[-1]  # samples below it
