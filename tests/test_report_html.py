import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.evaluate.report import build_report, flatten, read_curve

VOID = {"meta", "img", "br", "hr", "link", "input"}
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
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


@pytest.fixture
def report(tmp_path):
    sheets = [png(tmp_path / "prompt_000.png", 0), png(tmp_path / "prompt_001.png", 1)]
    grid = png(tmp_path / "recon.png", 2, (70, 200))
    (tmp_path / "tokenizer.csv").write_text("step,loss,psnr\n0,5.0,\n100,0.5,20.5\n200,0.004,24.0\nbad,1,1\n")
    (tmp_path / "diffusion.tsv").write_text("step\tloss\n" + "".join(f"{i}\t{3 - i / 1000}\n" for i in range(2500)))
    out = tmp_path / "reports" / "index.html"
    page = build_report(out, METRICS, {"shapes": sheets + [tmp_path / "gone.png"], "faces": []}, grid,
                        {"tokenizer": tmp_path / "tokenizer.csv", "diffusion": tmp_path / "diffusion.tsv",
                         "clip": tmp_path / "absent.tsv"})
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


def test_page_holds_metrics_charts_and_notes(report):
    _, page, _ = report
    for key, value in [("fid.fd_clip", "1.235"), ("fid.n_generated", "960"), ("fid.reference_split", "val"),
                       ("alignment.by_wording.new.all", "0.25")]:
        assert re.search(rf"<td>{re.escape(key)}</td><td class=\"value\">{re.escape(value)}</td>", page)
    assert page.count("<svg") == 3  # tokenizer loss + psnr, diffusion loss
    assert "loss (log scale)" in page
    for missing in ("gone.png", "absent.tsv", "no sheets in this set"):
        assert re.search(rf'class="note">[^<]*{re.escape(missing)}', page)


def test_missing_everything_still_writes_a_page(tmp_path):
    page = build_report(tmp_path / "index.html", {}, {}, None, {})
    assert page.count('class="note"') == 4 and (tmp_path / "index.html").is_file()


def test_flatten_and_read_curve(tmp_path):
    assert flatten({"a": {"b": 1, "c": [2, 3]}, "d": "x", "e": []}) == {"a.b": 1, "a.c.0": 2, "a.c.1": 3,
                                                                        "d": "x", "e": []}
    (tmp_path / "c.csv").write_text("epoch,acc,note\n1,0.5,x\n2,,y\n3,0.7,z\n")
    step, series = read_curve(tmp_path / "c.csv")
    assert step == "epoch" and series == {"acc": [(1.0, 0.5), (3.0, 0.7)]}


def chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_chromium_renders_the_page(report, tmp_path):
    out, _, _ = report
    dom = chromium("--dump-dom", out.as_uri(), tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="metrics"' in dom.stdout and "fid.fd_clip" in dom.stdout and "<svg" in dom.stdout
    shot = tmp_path / "shot.png"
    result = chromium("--window-size=1000,1400", f"--screenshot={shot}", out.as_uri(), tmp_path=tmp_path)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (1400, 1000)
    assert (pixels < 250).any(axis=2).mean() > 0.05  # text, tables and images drawn, not a blank page
