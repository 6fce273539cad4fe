"""Shared fixtures. Chapters are executed once per test session and reused (papermill runs, book build)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

# The reader's path (nbval) and every chapter left at SIZE="auto" run at smoke size in the tests.
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
    """Each chapter executed by papermill at SIZE=smoke at most once per session."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.results = {}

    def get(self, notebook: Path):
        from echobook.runner import run_chapter

        if notebook not in self.results:
            timeout_s = chapter_bounds(notebook.stem)["timeout_s"]
            self.results[notebook] = run_chapter(notebook, self.out_dir / notebook.name, {"SIZE": "smoke"},
                                                 cell_timeout_s=timeout_s)
        return self.results[notebook]


@pytest.fixture(scope="session")
def chapter_runs(tmp_path_factory) -> ChapterRuns:
    return ChapterRuns(tmp_path_factory.mktemp("executed"))
