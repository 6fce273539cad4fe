"""The widgets as a reader uses them: JupyterLab in headless Chromium, every control clicked.

The unit tests (tests/test_interpret.py) drive the widgets' callbacks in Python, so they cannot see a
control that the browser never wires to the kernel (plotly's FigureWidget without anywidget: clicks
that select nothing, colour buttons that recolour nothing). This test starts JupyterLab on 127.0.0.1
(a random port and token), opens a small notebook that builds chapter 6's widgets (the embedding
explorer; heatmap players in tabs) from tiny fake clips, runs it all, then clicks a point, switches the
colouring, moves sliders, changes the tab, picks a layer and presses play, and checks each by what
changed on the page; the browser console must stay free of errors.

Playwright for Python drives Debian's Chromium (``executable_path``): no browser is downloaded.
Screenshots of both widgets go to ``$ECHOBOOK_SCREENSHOTS`` when it is set.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from test_book import chromium  # noqa: F401 (the fixture: Chromium's path, or a skip/fail saying why)

SERVER_START_S = 60
NOTEBOOK_RUN_MS = 120_000
CHANGE_MS = 15_000  # a control's round trip through the kernel and back

SETUP = '''\
import ipywidgets as widgets
import numpy as np
from IPython.display import display

from echobook.interpret.widgets import EmbeddingExplorer, HeatmapPlayer

FRAMES, SIDE = 8, 24


def fake_clip(index):
    """Point i's clip: brightness that tells points apart, a moving bright band; a CAM on the band."""
    frames = np.full((FRAMES, SIDE, SIDE), 30 + 15 * index, dtype=np.uint8)
    cam = np.zeros((FRAMES, SIDE, SIDE), dtype=np.float32)
    for t in range(FRAMES):
        frames[t, :, 2 * t:2 * t + 4] = 220
        cam[t, :, 2 * t:2 * t + 4] = 1.0
    return frames, cam
'''

EXPLORER = '''\
rng = np.random.default_rng(0)
ef_true = rng.uniform(20, 75, 12)
ef_pred = ef_true + rng.normal(0, 8, 12)
projection = np.column_stack([ef_true / 10, np.sin(ef_true / 10)])  # far-apart points, easy to click
explorer = EmbeddingExplorer(projection, ef_true, ef_pred, clip_source=fake_clip,
                             names=[f"video {i}" for i in range(12)])
explorer.select(0)
explorer.widget.add_class("test-explorer")
explorer.frame_slider.add_class("test-frame")
explorer.opacity_slider.add_class("test-opacity")
display(explorer)
'''

PLAYERS = '''\
frames, cam = fake_clip(3)
players = {}
for label, shift in (("first", 0), ("second", 6)):
    cams = {"model A": {"stage 2": cam, "stage 3": np.roll(cam, shift, axis=2)},
            "model B": {"stage 2": np.roll(cam, 3, axis=2), "stage 3": cam}}
    players[label] = HeatmapPlayer(frames, cams, captions={"model A": "(EF 51.2 % predicted, 48.0 % true)"})
    players[label].widget.add_class(f"test-player-{label}")
    players[label].frame_slider.add_class("test-frame")
tabs = widgets.Tab(children=[p.widget for p in players.values()], titles=list(players))
tabs.add_class("test-tabs")
display(tabs)
print("all cells ran")
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_notebook(folder: Path) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in (SETUP, EXPLORER, PLAYERS)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    path = folder / "widgets.ipynb"
    nbformat.write(notebook, path)
    return path


def wait_for_server(url: str, token: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer on {url} within {SERVER_START_S} s")


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 with a random port and token, serving a folder with the widget notebook;
    its config, data and runtime folders are fresh, so no user setting or extension of this machine
    changes what the reader sees."""
    root = tmp_path_factory.mktemp("lab")
    write_notebook(root)
    home = tmp_path_factory.mktemp("jupyter-home")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about Jupyter news?" toast over the widgets
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",  # CI's container runs as root
               # nothing that reaches outside the machine: no news feed, update check or extension index
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    log_path = home / "server.log"
    log = log_path.open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(url, token, server, log_path)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def page(chromium, jupyterlab):
    """The notebook open in JupyterLab after Run All, with the console's errors collected."""
    from playwright.sync_api import sync_playwright

    url, token = jupyterlab
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            # every request beyond 127.0.0.1 goes to a closed port: a widget that needs the network fails here
            "--proxy-server=127.0.0.1:9"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.console_errors = []
        page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
        page.on("pageerror", lambda error: page.console_errors.append(f"uncaught: {error}"))
        page.goto(f"{url}/lab/tree/widgets.ipynb?token={token}")
        # Run All once the kernel is up: the status bar reads "Python 3 (ipykernel) | Idle"
        page.locator("#jp-main-statusbar", has_text=re.compile(r"\| Idle")).wait_for(timeout=NOTEBOOK_RUN_MS)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        page.locator(".jp-OutputArea-output", has_text="all cells ran").wait_for(timeout=NOTEBOOK_RUN_MS)
        yield page
        browser.close()


def image_source(widget) -> str:
    return widget.locator("img").first.get_attribute("src")


def wait_until_changed(read, before, what: str):
    """Poll ``read()`` until it differs from ``before``; fail naming ``what`` did not change."""
    deadline = time.monotonic() + CHANGE_MS / 1000
    while time.monotonic() < deadline:
        now = read()
        if now != before:
            return now
        time.sleep(0.2)
    raise AssertionError(f"{what} did not change within {CHANGE_MS / 1000:.0f} s")


def slider_value(slider) -> str:
    return slider.locator(".widget-readout").inner_text()


def nudge(slider, presses: int = 2) -> None:
    """Move a slider the way a keyboard user does: focus its handle, press the right arrow."""
    slider.locator(".noUi-handle").click()
    for _ in range(presses):
        slider.locator(".noUi-handle").press("ArrowRight")


def point_colours(explorer) -> list[str]:
    return explorer.locator(".scatterlayer .trace").first.locator("path.point").evaluate_all(
        "points => points.map(p => p.style.fill)")


@pytest.mark.slow
def test_explorer_point_click_colouring_and_sliders_work_in_jupyterlab(page, tmp_path):
    explorer = page.locator(".test-explorer")
    info = explorer.locator(".widget-html", has_text="EF true")  # the chosen point's details
    info.get_by_text("(point 0)").wait_for(timeout=CHANGE_MS)  # the widgets are drawn
    notices = explorer.locator(".widget-html-content small")  # why the scatter is not live, if it is not
    assert not notices.count(), f"the explorer fell back to a plain figure: {notices.all_inner_texts()}"
    points = explorer.locator(".js-plotly-plot .scatterlayer .trace").first.locator("path.point")
    points.nth(11).wait_for(timeout=CHANGE_MS)
    assert points.count() == 12, "the live scatter did not draw its 12 points"
    first_info = info.inner_text()

    box = points.nth(11).bounding_box()  # plotly draws the points in data order: this is point 11
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    clicked = wait_until_changed(info.inner_text, first_info, "the chosen point's details after a click")
    assert "(point 11)" in clicked, f"clicking point 11 chose another: {clicked}"

    colours = point_colours(explorer)
    explorer.locator(".widget-toggle-buttons button", has_text=re.compile(r"^error$")).click()
    wait_until_changed(lambda: point_colours(explorer), colours, "the points' colours after 'colour by error'")

    frame, shown = explorer.locator(".test-frame"), image_source(explorer)
    nudge(frame)
    assert wait_until_changed(lambda: slider_value(frame), "0", "the frame slider's value") != "0"
    shown = wait_until_changed(lambda: image_source(explorer), shown, "the clip's picture after the frame slider")
    nudge(explorer.locator(".test-opacity"))
    wait_until_changed(lambda: image_source(explorer), shown, "the clip's picture after the opacity slider")

    explorer.screenshot(path=str(tmp_path / "explorer-jupyterlab.png"))
    save_screenshot(tmp_path / "explorer-jupyterlab.png")
    assert not page.console_errors, f"errors in the browser console: {page.console_errors}"


@pytest.mark.slow
def test_player_tabs_layer_menu_sliders_and_play_work_in_jupyterlab(page, tmp_path):
    tabs = page.locator(".test-tabs")
    second = page.locator(".test-player-second")
    assert not second.is_visible(), "the second tab's player shows before its tab is chosen"
    tabs.locator(".lm-TabBar-tab", has_text="second").click()
    second.wait_for(state="visible", timeout=CHANGE_MS)
    assert not page.locator(".test-player-first").is_visible()

    shown = image_source(second)
    second.locator("select").select_option("stage 2")
    shown = wait_until_changed(lambda: image_source(second), shown, "the picture after choosing layer stage 2")

    frame = second.locator(".test-frame")
    second.locator(".widget-play button").first.click()  # play
    wait_until_changed(lambda: slider_value(frame), "0", "the frame slider while playing")
    wait_until_changed(lambda: image_source(second), shown, "the picture while playing")
    second.locator(".widget-play button").nth(1).click()  # stop
    for label in ("CAM opacity", "frame", "layer"):
        assert not is_cut(second.locator(".widget-label", has_text=label).first), f"the label {label!r} is cut"

    second.screenshot(path=str(tmp_path / "player-jupyterlab.png"))
    save_screenshot(tmp_path / "player-jupyterlab.png")
    assert not page.console_errors, f"errors in the browser console: {page.console_errors}"


def is_cut(element) -> bool:
    """Whether the element's text is wider than its box (shown with an ellipsis or clipped)."""
    return element.evaluate("e => e.scrollWidth > e.clientWidth + 1")


def save_screenshot(png: Path) -> None:
    folder = os.environ.get("ECHOBOOK_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / png.name).write_bytes(png.read_bytes())
