"""The book's rules, checked on the stored notebooks without running them."""
import json
import re

import pytest
import yaml

from conftest import BOUNDS_DIR, ROOT
from echobook.runner import toc_chapters

CHAPTERS = toc_chapters(ROOT)
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
PARAMETERS = ("SIZE", "DATA_DIR", "SEED", "DEVICE")


def load(notebook):
    return json.loads(notebook.read_text())


def cells_of(notebook, kind):
    return ["".join(c["source"]) for c in load(notebook)["cells"] if c["cell_type"] == kind]


def test_every_chapter_is_in_the_toc_and_exists():
    assert set(NOTEBOOKS) == set(CHAPTERS), "book/*.ipynb and _toc.yml must list the same chapters"
    assert all(nb.is_file() for nb in CHAPTERS)


def test_chapters_are_numbered_in_toc_order():
    numbers = [int(nb.stem.split("_")[0]) for nb in CHAPTERS]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(notebook):
    for cell in load(notebook)["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, \
                f"{notebook.name}: strip outputs before committing"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_has_its_own_id(notebook):
    # nbformat 4.5 cells carry ids; a cell added without one makes papermill warn on every run (a future error)
    ids = [cell.get("id") for cell in load(notebook)["cells"]]
    assert None not in ids, f"{notebook.name}: cell {ids.index(None)} has no id"
    assert len(set(ids)) == len(ids), f"{notebook.name}: two cells share an id"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_has_one_parameters_cell_with_the_four_parameters(notebook):
    tagged = [c for c in load(notebook)["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: exactly one cell must be tagged 'parameters'"
    source = "".join(tagged[0]["source"])
    for name in PARAMETERS:
        assert re.search(rf"^{name} = ", source, re.M), f"{notebook.name}: parameters cell lacks {name}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_ends_with_exercises_solutions_and_summary(notebook):
    markdown = "\n".join(cells_of(notebook, "markdown"))
    assert re.search(r"^## Exercises", markdown, re.M), f"{notebook.name}: no '## Exercises' section"
    assert "<summary>Solution" in markdown, f"{notebook.name}: exercises need solutions in <details>"
    assert re.search(r"^## Summary", markdown, re.M), f"{notebook.name}: no '## Summary' section"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_glues_its_key_numbers_and_declares_bounds(notebook):
    code = "\n".join(cells_of(notebook, "code"))
    assert "glue(" in code, f"{notebook.name}: glue the chapter's key numbers"
    assert (BOUNDS_DIR / f"{notebook.stem}.yml").is_file(), f"tests/bounds/{notebook.stem}.yml is missing"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_install_cell_is_guarded_and_points_at_the_repository(notebook):
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    install = [s for s in cells_of(notebook, "code") if "pip install" in s]
    assert install, f"{notebook.name}: no Colab install cell"
    assert all('if "google.colab" in sys.modules' in s for s in install), "install only on Colab"
    assert all(f"git+{repository}" in s for s in install), f"install from {repository} (_config.yml)"


def test_preface_chapter_map_links_every_chapter():
    preface = "\n".join(cells_of(ROOT / "book" / "00_preface.ipynb", "markdown"))
    for notebook in CHAPTERS[1:]:
        assert f"({notebook.name})" in preface, f"link {notebook.name} from the preface's chapter map"
