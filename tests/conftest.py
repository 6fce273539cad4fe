"""Shared fixtures. Chapters are executed once per test session and reused (bounds, rendered book).

One execution serves two checks. Each chapter runs the way a reader runs it (a fresh kernel, top to
bottom, no injected parameters, ``SIZE="auto"`` resolved to smoke through ``$ECHOBOOK_SIZE``), and its
glued numbers are then held to bounds. Running nbval over the same notebooks would execute every chapter a
second time for no new check (``make nbval`` still does, on demand).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

# Every chapter (left at SIZE="auto", as stored) runs at smoke size in the tests.
os.environ.setdefault("ECHOBOOK_SIZE", "smoke")

ROOT = Path(__file__).resolve().parent.parent
BOUNDS_DIR = Path(__file__).resolve().parent / "bounds"
DEFAULT_TIMEOUT_S = 300


def chapter_bounds(stem: str) -> dict:
    """A chapter's declared test bounds (tests/bounds/<stem>.yml)."""
    path = BOUNDS_DIR / f"{stem}.yml"
    if not path.is_file():
        return {"timeout_s": DEFAULT_TIMEOUT_S, "glue": {}, "missing": True}
    spec = yaml.safe_load(path.read_text()) or {}
    return {"timeout_s": spec.get("timeout_s", DEFAULT_TIMEOUT_S), "glue": spec.get("glue") or {}}


class ChapterRuns:
    """Each chapter executed by papermill, as a reader runs it, at most once per session."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.results = {}
        self.retried: list[str] = []

    def get(self, notebook: Path):
        from echobook.runner import run_chapter

        if notebook not in self.results:
            timeout_s = chapter_bounds(notebook.stem)["timeout_s"]
            # no parameters: papermill injects no cell, so the notebook runs exactly as stored
            result = run_chapter(notebook, self.out_dir / notebook.name, None, cell_timeout_s=timeout_s)
            if is_cell_timeout(result):
                # nbclient can miss the reply of a cell that opens widget comms and wait out the whole cell
                # timeout though the kernel answered (jupyter/nbclient#312, open); a real hang times out twice
                self.retried.append(f"{notebook.stem}: {result.error.splitlines()[0]} (run again once)")
                result = run_chapter(notebook, self.out_dir / f"{notebook.stem}-again.ipynb", None,
                                     cell_timeout_s=timeout_s)
            self.results[notebook] = result
        return self.results[notebook]


def is_cell_timeout(result) -> bool:
    """A failure of the client's wait for a cell, not an error raised by the chapter's code."""
    return not result.ok and ("CellTimeoutError" in result.error or "timed out" in result.error)


_SESSION_RUNS: list[ChapterRuns] = []  # for the timing summary at the end


@pytest.fixture(scope="session")
def chapter_runs(tmp_path_factory) -> ChapterRuns:
    runs = ChapterRuns(tmp_path_factory.mktemp("executed"))
    _SESSION_RUNS.append(runs)
    return runs


def pytest_terminal_summary(terminalreporter):
    """Each chapter's share of the suite's time, printed where CI's log shows it (README, "Test budget")."""
    results = [r for runs in _SESSION_RUNS for r in runs.results.values()]
    if not results:
        return
    terminalreporter.section("chapter wall times (papermill, smoke)")
    for result in results:
        terminalreporter.write_line(f"{result.chapter:<28} {result.wall_s:7.1f} s  {result.status}")
    terminalreporter.write_line(f"{'all chapters':<28} {sum(r.wall_s for r in results):7.1f} s")
    for line in (line for runs in _SESSION_RUNS for line in runs.retried):
        terminalreporter.write_line(f"cell timeout, chapter run again: {line}")
