"""The batch runner behind `echobook run` and the chapter tests, on tiny notebooks made here."""
import csv
from pathlib import Path
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


# ---------------------------------------------------------------- issue 16, finding 4: nothing lost or mixed
def test_unknown_or_miscased_parameters_are_refused_before_any_run(tiny_book):
    from echobook.runner import UnknownParameterError

    out = tiny_book / "runs"
    for bad in ({"NOSUCH": 3}, {"seed": 7}):
        with pytest.raises(UnknownParameterError, match=f"00_first.*{next(iter(bad))}.*SEED") as caught:
            run_chapters(["0"], out, bad, root=tiny_book)
        if "seed" in bad:
            assert "did you mean 'SEED'" in str(caught.value)
    assert not out.exists() or not any(out.iterdir())  # refused before anything was written


def test_cli_refuses_an_unknown_parameter_and_an_out_that_is_a_file(tiny_book, monkeypatch, capsys):
    monkeypatch.chdir(tiny_book)
    assert cli.main(["run", "0", "-p", "seed", "7"]) == 2
    assert "did you mean 'SEED'" in capsys.readouterr().err
    (tiny_book / "a_file").write_text("not a folder")
    assert cli.main(["run", "0", "--out", "a_file"]) == 2
    err = capsys.readouterr().err
    assert "a_file" in err and "not a folder" in err and "Traceback" not in err


def test_output_names_are_claimed_atomically(tmp_path):
    from echobook.runner import claim_output_path

    wanted = tmp_path / "01_echo_data.ipynb"
    claimed = [claim_output_path(wanted) for _ in range(3)]
    assert [p.name for p in claimed] == ["01_echo_data.ipynb", "01_echo_data-2.ipynb", "01_echo_data-3.ipynb"]
    assert all(p.exists() for p in claimed)  # claimed means created, so a concurrent run picks another


def _append_rows(args):
    from echobook.runner import RunResult, append_runs_csv

    path, index = args
    append_runs_csv([RunResult(chapter=f"c{index}", output=Path(f"c{index}.ipynb"), parameters={},
                               glued={f"value_{index % 3}": index})], path)


def test_concurrent_appends_to_runs_csv_keep_every_row(tmp_path):
    from multiprocessing import get_context

    path = tmp_path / "runs.csv"
    with get_context("fork").Pool(8) as pool:
        pool.map(_append_rows, [(path, i) for i in range(24)])
    rows = list(csv.DictReader(path.open()))
    assert sorted(r["chapter"] for r in rows) == sorted(f"c{i}" for i in range(24))
    assert not list(tmp_path.glob("*.tmp"))


def test_an_interrupted_batch_keeps_the_rows_of_the_chapters_that_finished(tiny_book, monkeypatch):
    from echobook import runner

    calls = []

    def fake_run_chapter(notebook, output, parameters=None, **kwargs):
        calls.append(notebook.stem)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return runner.RunResult(chapter=notebook.stem, output=output, parameters=dict(parameters or {}),
                                wall_s=1.0, glued={"double_seed": 0})

    monkeypatch.setattr(runner, "run_chapter", fake_run_chapter)
    out = tiny_book / "runs"
    with pytest.raises(KeyboardInterrupt):
        run_chapters(["0", "0"], out, {"SEED": 1}, root=tiny_book)
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [r["chapter"] for r in rows] == ["00_first"]
