"""Every chapter of _toc.yml executed by papermill at SIZE=smoke: the book's regression test.

A chapter passes when it runs top to bottom and every value it glues lies within the
bounds declared in tests/bounds/<chapter>.yml.
"""
import pytest

from conftest import ROOT, chapter_bounds
from echobook.runner import check_glued, toc_chapters

CHAPTERS = toc_chapters(ROOT)


@pytest.mark.slow
@pytest.mark.parametrize(
    "notebook",
    [pytest.param(nb, id=nb.stem, marks=pytest.mark.timeout(3 * chapter_bounds(nb.stem)["timeout_s"]))
     for nb in CHAPTERS],
)
def test_chapter_runs_and_glues_within_bounds(notebook, chapter_runs):
    bounds = chapter_bounds(notebook.stem)
    assert not bounds.get("missing"), f"{notebook.stem}: declare its bounds in tests/bounds/{notebook.stem}.yml"
    result = chapter_runs.get(notebook)
    assert result.ok, f"chapter {notebook.stem} failed:\n{result.describe()}"
    problems = check_glued(result.glued, bounds["glue"])
    assert not problems, f"chapter {notebook.stem}: " + "; ".join(problems)
