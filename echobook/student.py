"""The student edition: every chapter with its solutions removed and a checked stub per exercise.

In the book each exercise has a *check cell*, tagged ``exercise-check`` (and ``hide-cell``, so the
rendered book folds it like the solutions)::

    # Exercise 5.2, checked
    from echobook.exercises import check_exercise

    answer = NoStopGradient          <- the answer lines: the book's solution
    check_exercise("5.2", answer)

``echobook student OUT`` writes each chapter of ``_toc.yml`` to ``OUT`` with the ``<details>``
solutions cut from the markdown, the solution code cells (``# Solution N``) dropped, and each check
cell split in two: the answer cell, whose lines become the exercise's stub
(:data:`echobook.exercises.EXERCISES`), and the check cell, which the student runs. With
``--nbgrader`` it writes nbgrader's *source* notebooks instead: the book's answer lines between
``### BEGIN SOLUTION`` / ``### END SOLUTION`` in a solution cell (the ``# Solution N`` code cells
too, since an answer may use what they define) and the check as a graded, locked test cell, so
``nbgrader generate_assignment`` makes the student version and ``nbgrader autograde`` grades it.

Exercises are found generically: a chapter's numbered items under ``## Exercises`` must each have a
check cell and a registered check; :func:`missing_checks` names what lacks one.
"""
from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

CHECK_TAG = "exercise-check"
IMPORT_LINE = "from echobook.exercises import check_exercise"
CHECK_CALL = re.compile(r'^check_exercise\("(?P<key>\d+\.\d+)", answer\)$')
SOLUTION_DETAILS = re.compile(r"\n*<details>\s*<summary>\s*Solution[^<]*</summary>.*?</details>", re.S)
SOLUTION_CELL = re.compile(r"^# Solution \d+")
EXERCISES_HEADING = re.compile(r"^## Exercises\s*$", re.M)
STUDENT_NOTE = ("\n\n*Student edition: the solutions are not here. Below, each exercise has an answer cell "
                "(`answer = ...`, with what to give) and a check cell: write your answer, then run the check; "
                "it says right, or wrong with a hint.*")
POINTS = 1  # nbgrader points per exercise
COMMENT_WIDTH = 100  # the answer cell's comment, wrapped as the book's code is


class BadCheckCell(ValueError):
    """A check cell that does not have the expected shape (header, import, answer lines, call)."""


# --------------------------------------------------------------------------------------------- reading

def chapter_number(notebook: Path) -> int:
    return int(Path(notebook).stem.split("_")[0])


def exercise_numbers(notebook) -> list[int]:
    """The numbers of the items of the chapter's ``## Exercises`` list (before its first solution)."""
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        heading = EXERCISES_HEADING.search(cell.source)
        if heading:
            section = re.split(r"^<details>|^## ", cell.source[heading.end():], maxsplit=1, flags=re.M)[0]
            return [int(n) for n in re.findall(r"^(\d+)\. ", section, re.M)]
    return []


def check_cells(notebook) -> list:
    return [cell for cell in notebook.cells if CHECK_TAG in cell.metadata.get("tags", [])]


def split_check_cell(cell) -> tuple[str, list[str]]:
    """``(key, answer lines)`` of a check cell."""
    lines = cell.source.rstrip().splitlines()
    call = CHECK_CALL.match(lines[-1].strip()) if lines else None
    if call is None or IMPORT_LINE not in lines:
        raise BadCheckCell(f"a check cell must import check_exercise and end with check_exercise(\"N.k\", answer):"
                           f"\n{cell.source}")
    start = lines.index(IMPORT_LINE) + 1
    return call["key"], "\n".join(lines[start:-1]).strip().splitlines()


def check_key(cell) -> str:
    return split_check_cell(cell)[0]


def missing_checks(notebook, chapter: int) -> list[str]:
    """Exercises of the chapter with no check cell or no registered check, and check cells of no exercise."""
    from echobook.exercises import EXERCISES

    wanted = {f"{chapter}.{n}" for n in exercise_numbers(notebook)}
    cells = {check_key(cell) for cell in check_cells(notebook)}
    problems = [f"exercise {key} has no check cell" for key in sorted(wanted - cells)]
    problems += [f"exercise {key} has no check in echobook.exercises" for key in sorted(wanted - set(EXERCISES))]
    problems += [f"check cell {key} belongs to no exercise of the list" for key in sorted(cells - wanted)]
    return problems


# --------------------------------------------------------------------------------------------- writing

def without_solutions(markdown: str) -> str:
    return SOLUTION_DETAILS.sub("", markdown)


def answer_and_check_cells(cell, nbgrader: bool) -> list:
    """The check cell as two cells: the answer (a stub, or for nbgrader the solution between its markers)
    and the check the student runs (for nbgrader: a graded, locked test cell)."""
    import nbformat

    from echobook.exercises import EXERCISES

    key, answer_lines = split_check_cell(cell)
    slug = key.replace(".", "-")
    if nbgrader:
        answer = "\n".join(["### BEGIN SOLUTION", *answer_lines, "### END SOLUTION"])
    else:
        answer = EXERCISES[key].stub
    asks_for = textwrap.fill(EXERCISES[key].asks_for, COMMENT_WIDTH, initial_indent=f"# Exercise {key}: ",
                             subsequent_indent="#   ")
    answer_cell = nbformat.v4.new_code_cell(f"{asks_for}\n{answer}")
    check_cell = nbformat.v4.new_code_cell(f"# Exercise {key}: run this cell to check your answer\n{IMPORT_LINE}\n\n"
                                           f"check_exercise(\"{key}\", answer)")
    answer_cell.id, check_cell.id = f"answer-{slug}", f"check-{slug}"  # the same ids at every run
    if nbgrader:
        common = {"schema_version": 3, "task": False}
        answer_cell.metadata["nbgrader"] = {**common, "grade": False, "solution": True, "locked": False,
                                            "grade_id": f"answer-{slug}"}
        check_cell.metadata["nbgrader"] = {**common, "grade": True, "solution": False, "locked": True,
                                           "grade_id": f"check-{slug}", "points": POINTS}
    return [answer_cell, check_cell]


def nbgrader_solution_cell(cell):
    """A solution code cell as nbgrader's solution cell: all of it between the markers, so
    ``nbgrader generate_assignment`` removes it from the students' copy."""
    cell.source = "\n".join(["### BEGIN SOLUTION", cell.source, "### END SOLUTION"])
    cell.metadata["nbgrader"] = {"schema_version": 3, "task": False, "grade": False, "solution": True,
                                 "locked": False, "grade_id": f"solution-{cell.id}"}
    return cell


def student_notebook(notebook, nbgrader: bool = False):
    """A copy of ``notebook`` with its solutions removed and each check cell turned into answer + check."""
    import copy

    edition = copy.deepcopy(notebook)
    cells = []
    for cell in edition.cells:
        if cell.cell_type == "code" and SOLUTION_CELL.match(cell.source):
            if nbgrader:  # kept for the instructor: an answer may use what it defines
                cells.append(nbgrader_solution_cell(cell))
            continue  # a solution run as code
        if CHECK_TAG in cell.metadata.get("tags", []):
            cells += answer_and_check_cells(cell, nbgrader)
            continue
        if cell.cell_type == "markdown" and "<summary>Solution" in cell.source:
            cell.source = without_solutions(cell.source)
            if EXERCISES_HEADING.search(cell.source) and not nbgrader:
                cell.source += STUDENT_NOTE
        cells.append(cell)
    edition.cells = cells
    return edition


def write_student_edition(out_dir, root: Path | None = None, nbgrader: bool = False) -> tuple[list[Path], list[str]]:
    """Every chapter of ``_toc.yml`` as its student edition in ``out_dir``; returns the files written and,
    per chapter, what lacks a check (that chapter is still written, without stubs for those)."""
    import nbformat

    from echobook.runner import book_root, toc_chapters

    root = Path(root) if root is not None else book_root()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, problems = [], []
    for chapter in toc_chapters(root):
        notebook = nbformat.read(chapter, as_version=4)
        problems += [f"{chapter.stem}: {p}" for p in missing_checks(notebook, chapter_number(chapter))]
        target = out_dir / chapter.name
        nbformat.write(student_notebook(notebook, nbgrader), target)
        written.append(target)
    return written, problems


# --------------------------------------------------------------------------------------------- command

def add_student_parser(subparsers) -> None:
    student = subparsers.add_parser(
        "student", help="write the student edition: solutions removed, a checked stub per exercise",
        description="Write every chapter of _toc.yml to OUT with the solutions removed and, for each exercise, "
                    "an answer stub and a check that says right or wrong with a hint. --nbgrader writes "
                    "nbgrader source notebooks instead (solutions between BEGIN/END SOLUTION, graded checks).")
    student.add_argument("out", metavar="OUT", help="folder for the student notebooks")
    student.add_argument("--nbgrader", action="store_true", help="write nbgrader source notebooks")
    student.add_argument("--root", default=None, help="the book's folder (default: found from here)")
    student.set_defaults(func=_student)


def _student(args) -> int:
    written, problems = write_student_edition(args.out, args.root, nbgrader=args.nbgrader)
    for path in written:
        print(path)
    for problem in problems:
        print(f"echobook student: {problem}", file=sys.stderr)
    return 1 if problems else 0
