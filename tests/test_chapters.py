"""Every chapter of _toc.yml executed by papermill on the reader's path: the book's regression test.

A chapter passes when it runs top to bottom as stored (a fresh kernel, no injected parameters, its
``SIZE="auto"`` resolved to smoke by ``$ECHOBOOK_SIZE``) and every value it glues lies within the bounds
declared in tests/bounds/<chapter>.yml.
"""
import pytest

from conftest import ROOT, chapter_bounds
from echobook.runner import check_glued, toc_chapters

CHAPTERS = toc_chapters(ROOT)


def injected_cells(executed_notebook) -> list:
    import nbformat

    nb = nbformat.read(str(executed_notebook), as_version=4)
    return [cell for cell in nb.cells if "injected-parameters" in cell.metadata.get("tags", [])]


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
    assert not injected_cells(result.output), "the reader's path: papermill must not inject parameters"
    problems = check_glued(result.glued, bounds["glue"])
    assert not problems, f"chapter {notebook.stem}: " + "; ".join(problems)
