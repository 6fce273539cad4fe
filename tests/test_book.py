"""The rendered book, as a reader with no network sees it.

The book is built from the notebooks that tests/test_chapters.py already executed
(no chapter runs twice), then every page is opened in headless Chromium with the
network cut off: a page must not be blank, every plotly figure must have drawn,
saved widget states and equations must have rendered, all from scripts the book serves itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from bs4 import BeautifulSoup

from conftest import ROOT
from echobook.runner import toc_chapters

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # every request outside the machine goes to a closed port: the network is off for the page
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    "--virtual-time-budget=15000", "--window-size=1280,1600",
]
MIN_INK_FRACTION = 0.01  # share of the screenshot's pixels that are not background


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if shutil.which(name):
            return shutil.which(name)
    return None


def offline_prefix() -> list[str]:
    """Run in a network namespace of its own where the kernel allows it: no network at all."""
    try:
        subprocess.run(["unshare", "--net", "true"], check=True, capture_output=True, timeout=10)
        return ["unshare", "--net"]
    except (OSError, subprocess.SubprocessError):
        return []


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return path


def build_book(chapter_runs, site: Path) -> Path:
    """A copy of the book whose notebooks are the executed ones, built without executing again."""
    for name in ("_toc.yml", "_vendor", "book"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, site / name)
    failed = []
    for notebook in toc_chapters(ROOT):
        result = chapter_runs.get(notebook)
        if not result.ok:
            failed.append(notebook.stem)
        shutil.copy(result.output, site / "book" / notebook.name)
    assert not failed, f"chapters failed to execute: {failed} (see tests/test_chapters.py)"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (site / "_config.yml").write_text(yaml.safe_dump(config))
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    build = subprocess.run([str(jupyter_book), "build", str(site), "--builder", "html"],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"jupyter-book build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    return site / "_build" / "html"


@pytest.fixture(scope="module")
def html_dir(chapter_runs, tmp_path_factory):
    return build_book(chapter_runs, tmp_path_factory.mktemp("site"))


def open_page(chromium: str, page: Path, screenshot: Path) -> BeautifulSoup:
    """The page's DOM after its scripts ran, and a screenshot, both taken with the network off."""
    profile = screenshot.with_suffix(".profile")
    common = [*offline_prefix(), chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    url = page.resolve().as_uri()
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, f"chromium could not open {page}: {dom.stderr[-2000:]}"
    shot = subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, text=True,
                          timeout=180)
    assert shot.returncode == 0 and screenshot.is_file(), f"no screenshot of {page}: {shot.stderr[-2000:]}"
    return BeautifulSoup(dom.stdout, "html.parser")


def ink_fraction(png: Path) -> float:
    image = cv2.imread(str(png))
    background = np.median(image.reshape(-1, 3), axis=0)
    return float((np.abs(image.astype(int) - background).sum(axis=2) > 30).mean())


def pages(html_dir: Path) -> list[Path]:
    return [html_dir / "index.html"] + [html_dir / "book" / f"{nb.stem}.html" for nb in toc_chapters(ROOT)]


@pytest.mark.slow
def test_every_page_renders_offline_with_its_figures_and_widgets(chromium, html_dir, tmp_path):
    for page in pages(html_dir):
        assert page.is_file(), f"{page.name} was not built"
        soup = open_page(chromium, page, tmp_path / f"{page.stem}.png")
        name = page.relative_to(html_dir)
        assert ink_fraction(tmp_path / f"{page.stem}.png") > MIN_INK_FRACTION, f"{name} looks blank"
        assert soup.find("h1") is not None, f"{name} has no title"
        for script in soup.find_all("script", src=True):
            assert not script["src"].startswith(("http:", "https:", "//")) or "plotly" not in script["src"], \
                f"{name} loads plotly from the network: {script['src']}"
        figures = soup.select("div.plotly-graph-div")
        undrawn = [f.get("id") for f in figures if f.select_one("svg.main-svg") is None]
        assert not undrawn, f"{name}: plotly figures did not draw offline: {undrawn}"
        if soup.select(".math"):
            assert soup.select("mjx-container"), f"{name}: equations did not render offline (MathJax)"
        saved_views = soup.select('script[type="application/vnd.jupyter.widget-view+json"]')
        if saved_views:
            assert soup.select(".widget-output, .jupyter-widgets, [class*='widget-']"), \
                f"{name}: saved widgets did not render offline"


@pytest.mark.slow
def test_the_preface_draws_its_figure(chromium, html_dir, tmp_path):
    soup = open_page(chromium, html_dir / "book" / "00_preface.html", tmp_path / "preface.png")
    assert soup.select("div.plotly-graph-div svg.main-svg"), "the preface's plotly figure did not draw"
    assert "Preface and set-up" in soup.find("h1").get_text()
