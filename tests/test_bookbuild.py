"""`echobook book-execute`: chapters run in parallel into Jupyter Book's cache, needs first, failures stop the build."""
from pathlib import Path

import nbformat
import pytest
from jupyter_cache import get_cache
from nbformat.v4 import new_code_cell, new_notebook

from conftest import ROOT
from echobook import bookbuild, cli
from echobook.runner import toc_chapters


def write_chapter(path: Path, body: str) -> None:
    nb = new_notebook(cells=[new_code_cell(body)],
                      metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    nbformat.write(nb, path)


def make_book(root: Path, chapters: dict[str, str]) -> Path:
    (root / "book").mkdir(parents=True)
    for stem, body in chapters.items():
        write_chapter(root / "book" / f"{stem}.ipynb", body)
    stems = list(chapters)
    toc = f"format: jb-book\nroot: book/{stems[0]}\nchapters:\n" + "".join(f"- file: book/{s}\n" for s in stems[1:])
    (root / "_toc.yml").write_text(toc)
    return root


def test_every_need_is_a_chapter_of_the_book():
    stems = {path.stem for path in toc_chapters(ROOT)}
    for chapter, needs in bookbuild.CHAPTER_NEEDS.items():
        assert chapter in stems and set(needs) <= stems
        assert all(stems_order(need) < stems_order(chapter) for need in needs)  # a need comes earlier in the book


def stems_order(stem: str) -> int:
    return [path.stem for path in toc_chapters(ROOT)].index(stem)


def test_a_chapter_waits_for_its_needs_and_the_most_needed_goes_first(monkeypatch):
    monkeypatch.setattr(bookbuild, "CHAPTER_NEEDS", {"c": ("b",), "d": ("c", "a")})
    paths = [Path(f"{stem}.ipynb") for stem in "abcd"]
    assert [p.stem for p in bookbuild.ready_order(paths, set())] == ["b", "a"]  # b: c and d wait; a: d only
    assert bookbuild.dependents_count("b") == 2 and bookbuild.dependents_count("d") == 0
    assert [p.stem for p in bookbuild.ready_order(paths[2:], {"a", "b"})] == ["c"]


def test_executed_chapters_are_cached_as_myst_nb_finds_them(tmp_path, monkeypatch):
    # chapter b reads the file chapter a writes: it must start only after a has finished
    root = make_book(tmp_path, {"a": "import time; time.sleep(1); open('from_a.txt', 'w').write('7')",
                                "b": "print(int(open('from_a.txt').read()) * 6)", "c": "print('c')"})
    monkeypatch.setattr(bookbuild, "CHAPTER_NEEDS", {"b": ("a",)})
    results = bookbuild.execute_book(root, jobs=2, cell_timeout_s=60, log=lambda *_: None)
    assert sorted(r.path.stem for r in results) == ["a", "b", "c"]
    cache = get_cache(str(root / bookbuild.CACHE_FOLDER))
    for stem in "abc":  # the lookup myst-nb does before it would execute a chapter
        cache.match_cache_notebook(nbformat.read(root / "book" / f"{stem}.ipynb", as_version=4))
    _, merged = cache.merge_match_into_notebook(nbformat.read(root / "book" / "b.ipynb", as_version=4))
    assert merged.cells[0].outputs[0]["text"] == "42\n"
    assert (root / bookbuild.TIMES_FILE).read_text().count("\n") == 4
    # a second run finds everything cached and runs nothing
    assert bookbuild.execute_book(root, jobs=2, log=lambda *_: None) == []


def test_a_failed_chapter_stops_the_build_and_names_the_file(tmp_path, monkeypatch, capsys):
    root = make_book(tmp_path, {"a": "print('fine')", "b": "raise RuntimeError('the heart stopped')",
                                "c": "print('after')"})
    monkeypatch.setattr(bookbuild, "CHAPTER_NEEDS", {"c": ("b",)})
    with pytest.raises(bookbuild.ChapterFailed, match=r"b\.ipynb.*\n.*the heart stopped|b\.ipynb"):
        bookbuild.execute_book(root, jobs=2, cell_timeout_s=60, log=lambda *_: None)
    cache = get_cache(str(root / bookbuild.CACHE_FOLDER))
    cache.match_cache_notebook(nbformat.read(root / "book" / "a.ipynb", as_version=4))  # a finished and is kept
    for stem in "bc":  # b failed, c never started: neither is cached
        with pytest.raises(KeyError):
            cache.match_cache_notebook(nbformat.read(root / "book" / f"{stem}.ipynb", as_version=4))
    assert cli.main(["book-execute", "--root", str(root), "--jobs", "1", "--timeout", "60"]) == 1
    assert "the heart stopped" in capsys.readouterr().err


def test_the_simulated_schedule_runs_a_chapter_after_its_needs():
    from echobook.bookbuild import simulated_seconds

    # 09 waits for 08: one lane runs 08 then 09 (10 + 10), the other the 30-second chapter alongside
    assert simulated_seconds({"08_echofm_pretraining": 10, "09_echofm_downstream": 10, "05_coreecho": 30}) == 30
    assert simulated_seconds({"08_echofm_pretraining": 10, "09_echofm_downstream": 10, "05_coreecho": 30},
                             jobs=1) == 50
    # 11 needs 05, 09 and 10; 09 and 10 are not in this book, so only 05 holds it back
    assert simulated_seconds({"05_coreecho": 20, "11_side_by_side": 5, "02_baseline": 1}) == 25
