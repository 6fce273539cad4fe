"""The batch runner behind `echobook run` and the chapter tests, on tiny notebooks made here."""
import csv
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from echobook import cli
from echobook.runner import check_glued, find_chapter, parse_parameters, read_glued, run_chapters, toc_chapters


def write_notebook(path, body):
    cells = [new_code_cell('SIZE = "auto"\nSEED = 0', metadata={"tags": ["parameters"]}),
             new_code_cell("from myst_nb import glue"), new_code_cell(body)]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                      "display_name": "Python 3"}}), path)
    return path


@pytest.fixture
def tiny_book(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    write_notebook(book / "00_first.ipynb", 'glue("double_seed", SEED * 2)\nglue("size", SIZE, display=False)')
    write_notebook(book / "01_broken.ipynb", 'x = 1\nraise RuntimeError("the heart stopped")')
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/00_first\nchapters:\n- file: book/01_broken\n")
    return tmp_path


def test_parameters_are_read_as_yaml():
    assert parse_parameters([("SEED", "3"), ("LR", "0.1"), ("SIZE", "smoke"), ("DATA_DIR", "")]) == \
        {"SEED": 3, "LR": 0.1, "SIZE": "smoke", "DATA_DIR": ""}


def test_chapters_are_found_by_number_stem_and_path(tiny_book):
    first = tiny_book / "book" / "00_first.ipynb"
    assert find_chapter("0", tiny_book) == first
    assert find_chapter("01_broken", tiny_book).name == "01_broken.ipynb"
    assert find_chapter(str(first), tiny_book) == first
    with pytest.raises(FileNotFoundError, match="no chapter '7'.*00_first"):
        find_chapter("7", tiny_book)
    assert [p.name for p in toc_chapters(tiny_book)] == ["00_first.ipynb", "01_broken.ipynb"]


@pytest.mark.slow
def test_a_failure_is_reported_and_the_other_runs_go_on(tiny_book):
    out = tiny_book / "runs"
    results, csv_path = run_chapters(["1", "0", "42"], out, {"SEED": 5, "SIZE": "smoke"}, root=tiny_book)
    broken, first, missing = results
    assert first.ok and first.glued == {"double_seed": 10, "size": "smoke"}
    assert not broken.ok and broken.failed_cell is not None
    assert "RuntimeError: the heart stopped" in broken.error and "raise RuntimeError" in broken.failed_source
    assert "the heart stopped" in broken.traceback and "\x1b[" not in broken.traceback
    assert "01_broken" in broken.describe() and "failing cell" in broken.describe()
    assert not missing.ok and "no chapter '42'" in missing.error
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["status"] for r in rows] == ["failed", "ok", "failed"]
    assert rows[1]["glue.double_seed"] == "10" and json.loads(rows[1]["parameters"])["SEED"] == 5
    assert float(rows[1]["wall_s"]) > 0

    # a second batch keeps the first: new notebook names, rows appended
    results, csv_path = run_chapters(["0"], out, {"SEED": 6}, root=tiny_book)
    assert results[0].output.name == "00_first-2.ipynb" and (out / "00_first.ipynb").exists()
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 4 and rows[-1]["glue.double_seed"] == "12"
    assert read_glued(out / "00_first.ipynb")["double_seed"] == 10


@pytest.mark.slow
def test_cli_run_exits_nonzero_when_a_chapter_fails(tiny_book, monkeypatch, capsys):
    monkeypatch.chdir(tiny_book)
    assert cli.main(["run", "0", "--size", "smoke", "-p", "SEED", "2", "--out", "out"]) == 0
    assert "00_first: ok" in capsys.readouterr().out
    assert cli.main(["run", "0", "1", "--out", "out"]) == 1
    assert "the heart stopped" in capsys.readouterr().out


def test_glued_values_are_checked_against_bounds():
    glued = {"mae": 4.2, "size": "smoke", "label": "x"}
    assert check_glued(glued, {"mae": {"min": 0, "max": 5}, "size": {"equals": "smoke"}}) == []
    problems = check_glued(glued, {"mae": {"max": 4}, "size": {"equals": "full"}, "r2": {"min": 0},
                                   "label": {"min": 1}})
    assert len(problems) == 4
    assert any("mae = 4.2 is outside the bound max 4" in p for p in problems)
    assert any("r2: not glued" in p for p in problems)
    assert any("not a number" in p for p in problems)
