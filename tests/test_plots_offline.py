"""`dvc plots show` draws its charts with no network: `.dvc/config` names an HTML template
(plots.html_template) that inlines Vega, Vega-Lite and Vega-Embed from `.dvc/plots/vendor/`."""

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dvc_render.html import PAGE_HTML
from PIL import Image

from tests.browser import NO_NETWORK, chromium, needs_chromium
from tests.conftest import REPO

LINE = np.array([148, 93, 214])  # #945dd6, the colour dvc-render gives the first curve


def dvc(*args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A git repo with this repo's `.dvc` as a clone has it (config and plots/), and a curve to plot."""
    root = tmp_path_factory.mktemp("clone")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(REPO / ".dvc" / name, root / ".dvc" / name)
    shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots")
    (root / "curves.csv").write_text("step,loss\n" + "".join(f"{i},{3 / (1 + i)}\n" for i in range(50)))
    return root


def plots_show(root: Path, out: str, *args: str) -> str:
    dvc("plots", "show", "curves.csv", "-o", out, *args, cwd=root)
    return (root / out / "index.html").read_text()


def render(page: Path, tmp_path: Path) -> tuple[str, np.ndarray]:
    """The DOM and a screenshot of ``page`` in headless Chromium, every request failing."""
    budget = "--virtual-time-budget=5000"  # lets Vega's asynchronous rendering finish before the dump
    dom = chromium(*NO_NETWORK, budget, "--dump-dom", page.as_uri(), tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    result = chromium(*NO_NETWORK, budget, "--window-size=800,600", f"--screenshot={shot}", page.as_uri(),
                      tmp_path=tmp_path)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    return dom.stdout, np.asarray(Image.open(shot).convert("RGB"), dtype=np.int32)


def line_pixels(pixels: np.ndarray) -> int:
    return int((np.abs(pixels - LINE).max(axis=2) < 40).sum())


def test_config_names_the_template_built_from_the_vendored_files(tmp_path):
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    template = REPO / ".dvc" / config["plots"]["html_template"]  # DVC resolves it against .dvc/
    assert template == REPO / ".dvc" / "plots" / "offline.html"
    built = tmp_path / "offline.html"
    result = subprocess.run(["bash", str(REPO / "scripts" / "vendor_vega.sh"), "--build"], capture_output=True,
                            text=True, env={**os.environ, "TEMPLATE": str(built)}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert built.read_bytes() == template.read_bytes(), "rebuild it: scripts/vendor_vega.sh --build"
    text = template.read_text()
    assert "{plot_divs}" in text and "{scripts}" not in text  # dvc-render would put its CDN tags there
    for package in ("vega", "vega-lite", "vega-embed"):
        assert (REPO / ".dvc" / "plots" / "vendor" / package / "LICENSE").read_text().startswith("Copyright")


@needs_chromium
def test_plots_show_draws_its_charts_offline(clone, tmp_path):
    page = plots_show(clone, "offline")
    assert "<link" not in page and not [tag for tag in re.findall(r"<script\b[^>]*>", page) if "src" in tag]
    ids = re.findall(r'<div id = "([^"]+)">', page)
    assert len(ids) == 1
    dom, pixels = render(clone / "offline" / "index.html", tmp_path)
    # vega-embed filled the plot's div, and Vega drew into a canvas there
    chart = re.search(rf'<div id="{ids[0]}" class="vega-embed[^"]*">(.*?)</div>', dom, re.S)
    assert chart, dom[-3000:]
    size = re.search(r'<canvas width="(\d+)" height="(\d+)" class="marks">', chart[1])
    assert size and min(map(int, size.groups())) > 100
    assert line_pixels(pixels) > 300  # the curve itself, in its colour


@needs_chromium
def test_without_the_template_the_page_needs_the_network(clone, tmp_path):
    """The control: dvc-render's own page loads Vega from a CDN, and draws nothing here."""
    (clone / "cdn.html").write_text(PAGE_HTML)
    page = plots_show(clone, "cdn", "--html-template", "cdn.html")
    assert '<script src="https://cdn.jsdelivr.net/npm/vega@' in page
    dom, pixels = render(clone / "cdn" / "index.html", tmp_path)
    assert 'class="marks"' not in dom and line_pixels(pixels) == 0
