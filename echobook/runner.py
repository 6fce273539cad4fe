"""Run chapters in batch with papermill and collect what they glued.

The same runner serves ``echobook run`` and the test suite: each run writes one
executed notebook, and :func:`run_chapters` appends one row per run to
``runs.csv`` (chapter, parameters, status, wall time, every glued value).
A failed run is reported with its cell and traceback; the others go on.
"""
from __future__ import annotations

import ast
import contextlib
import csv
import difflib
import fcntl
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PACKAGE_PARENT = Path(__file__).resolve().parent.parent  # the repository, when installed editable
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
GLUE_PREFIX = "application/papermill.record/"
RUNS_CSV = "runs.csv"


@dataclass
class RunResult:
    chapter: str
    output: Path
    parameters: dict
    status: str = "ok"
    wall_s: float = 0.0
    glued: dict = field(default_factory=dict)
    error: str = ""
    failed_cell: int | None = None
    failed_source: str = ""
    traceback: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        line = f"{self.chapter}: {self.status} in {self.wall_s:.1f} s -> {self.output}"
        if not self.ok:
            line += f"\n  {self.error}"
            if self.failed_cell is not None:
                line += f"\n  failing cell {self.failed_cell}:\n    " + self.failed_source.replace("\n", "\n    ")
            if self.traceback:
                line += "\n" + self.traceback
        return line

    def row(self) -> dict:
        return {"chapter": self.chapter, "status": self.status, "wall_s": round(self.wall_s, 2),
                "parameters": json.dumps(self.parameters, sort_keys=True), "output": str(self.output),
                "error": self.error, **{f"glue.{k}": v for k, v in self.glued.items()}}


def parse_parameters(pairs) -> dict:
    """``[("SEED", "3"), ("SIZE", "smoke")]`` -> ``{"SEED": 3, "SIZE": "smoke"}`` (values read as YAML)."""
    parameters = {}
    for name, raw in pairs or []:
        value = yaml.safe_load(raw) if raw.strip() else ""
        parameters[name] = "" if value is None else value
    return parameters


def book_root(start: Path | None = None) -> Path:
    """The folder holding ``_toc.yml``: the working folder or one above it, else the package's checkout."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    return PACKAGE_PARENT


def toc_chapters(root: Path | None = None) -> list[Path]:
    """The notebooks of ``_toc.yml`` in reading order (root first)."""
    root = root or book_root()
    toc_path = Path(root) / "_toc.yml"
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []):
                walk(part.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [Path(root) / (f if f.endswith(".ipynb") else f + ".ipynb") for f in files]


def find_chapter(ref: str, root: Path | None = None) -> Path:
    """A chapter by path, by file stem (``01_echo_data``) or by number (``1``)."""
    root = root or book_root()
    path = Path(ref)
    if path.suffix == ".ipynb":
        if not path.is_file():
            raise FileNotFoundError(f"chapter notebook {ref!r} does not exist")
        return path
    chapters = sorted((Path(root) / "book").glob("*.ipynb"))
    for chapter in chapters:
        if chapter.stem == ref or (ref.isdigit() and chapter.stem.split("_")[0].isdigit()
                                   and int(chapter.stem.split("_")[0]) == int(ref)):
            return chapter
    names = ", ".join(c.stem for c in chapters)
    raise FileNotFoundError(f"no chapter {ref!r} in {Path(root) / 'book'} (there are: {names})")


def _glued_value(data: dict):
    text = data.get("text/plain", data.get(GLUE_PREFIX + "text/plain"))
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip("'\"")


def read_glued(notebook) -> dict:
    """Every value glued with ``myst_nb.glue`` in an executed notebook (a path or a NotebookNode)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    glued = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                glued[name] = _glued_value(output.get("data", {}))
    return glued


class UnknownParameterError(ValueError):
    """A parameter that a chapter does not declare (papermill would run with the default, silently)."""


def chapter_parameters(notebook: Path) -> list[str]:
    """The names its ``parameters`` cell declares, in order (papermill's own reading of the cell)."""
    import papermill as pm

    return list(pm.inspect_notebook(str(notebook)))


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Raise :class:`UnknownParameterError` for any name the chapter does not declare (case matters)."""
    declared = chapter_parameters(notebook)
    for name in parameters:
        if name in declared:
            continue
        close = [d for d in declared if d.lower() == str(name).lower()] or difflib.get_close_matches(str(name), declared, 1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownParameterError(f"{notebook.stem} has no parameter {name!r} (its parameters: "
                                    f"{', '.join(declared)}){hint}")


def claim_output_path(path: Path) -> Path:
    """Create and return ``path``, or ``stem-2``, ``stem-3``... if taken: earlier runs are never overwritten.

    The name is claimed by creating the file exclusively (``O_EXCL``), so two runs sharing a folder never
    pick the same one; papermill then writes over the empty claim.
    """
    candidate, n = path, 1
    while True:
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")


def prepare_out_dir(out_dir) -> Path:
    """``out_dir`` made if missing; a clear error if it is a file."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {str(out_dir)!r} is a file, not a folder: name a folder for the "
                                 "executed notebooks and runs.csv")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def run_chapter(notebook: Path, output: Path, parameters: dict | None = None, *,
                cell_timeout_s: float | None = None, kernel_name: str = "python3") -> RunResult:
    """Execute one chapter with papermill in its own folder; never raises for a failing cell."""
    import papermill as pm

    notebook, output = Path(notebook), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    result = RunResult(chapter=notebook.stem, output=output, parameters=dict(parameters or {}))
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=result.parameters,
                            kernel_name=kernel_name, cwd=str(notebook.parent),
                            execution_timeout=cell_timeout_s, progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as error:
        result.status = "failed"
        result.error = f"{error.ename}: {error.evalue}"
        result.failed_cell = error.cell_index
        result.failed_source = error.source
        result.traceback = ANSI_ESCAPE.sub("", "\n".join(error.traceback))
    except Exception as error:  # a kernel that died, a timeout, a notebook that cannot be read
        result.status = "failed"
        result.error = f"{type(error).__name__}: {ANSI_ESCAPE.sub('', str(error))}"
    result.wall_s = time.perf_counter() - start
    if output.exists() and output.stat().st_size:  # an empty file is only the claim on the name
        result.glued = read_glued(output)
    return result


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``.<name>.lock`` beside ``path``: concurrent batches append to one table in turn."""
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:  # hidden: it stays, empty, beside the table
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_runs_csv(results: list[RunResult], path: Path) -> Path:
    """Add the runs to ``path``, keeping earlier rows; columns are the union of all glued names."""
    path = Path(path)
    with _locked(path):  # read, add and replace under one lock, so no concurrent batch's rows are lost
        rows = []
        if path.exists():
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        rows += [result.row() for result in results]
        columns = list(dict.fromkeys(key for row in rows for key in row))
        # write beside and rename, so an interrupted write never leaves half a table
        with tempfile.NamedTemporaryFile("w", newline="", dir=path.parent, suffix=".tmp", delete=False) as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(handle.name, path)
    return path


def run_chapters(refs, out_dir="runs", parameters: dict | None = None, *,
                 cell_timeout_s: float | None = None, root: Path | None = None) -> tuple[list[RunResult], Path]:
    """Run each chapter once with the same parameters; return the results and the CSV's path.

    Every chapter's parameters are checked before the first run (:class:`UnknownParameterError`), and each
    run's row is added to ``runs.csv`` as soon as it ends, so an interrupted batch keeps what finished.
    """
    parameters = dict(parameters or {})
    notebooks = []
    for ref in refs:
        try:
            notebooks.append(find_chapter(str(ref), root))
        except FileNotFoundError as error:
            notebooks.append(error)
    for notebook in notebooks:
        if isinstance(notebook, Path):
            check_parameters(notebook, parameters)
    out_dir = prepare_out_dir(out_dir)
    csv_path, results = out_dir / RUNS_CSV, []
    for ref, notebook in zip(refs, notebooks):
        if isinstance(notebook, Path):
            output = claim_output_path(out_dir / notebook.name)
            result = run_chapter(notebook, output, parameters, cell_timeout_s=cell_timeout_s)
        else:
            result = RunResult(chapter=str(ref), output=Path(""), parameters=parameters, status="failed",
                               error=str(notebook))
        results.append(result)
        append_runs_csv([result], csv_path)
    return results, csv_path


def check_glued(glued: dict, bounds: dict) -> list[str]:
    """Compare glued values with declared bounds; return one line per violation.

    ``bounds`` maps a glued name to ``{min: x}``, ``{max: y}``, ``{equals: z}`` or
    ``{present: true}`` (any combination). A missing name is a violation.
    """
    problems = []
    for name, rule in bounds.items():
        if name not in glued:
            problems.append(f"{name}: not glued (the chapter glued {sorted(glued)})")
            continue
        value = glued[name]
        if "equals" in rule and value != rule["equals"]:
            problems.append(f"{name} = {value!r}, expected {rule['equals']!r}")
        for key, test in (("min", lambda v, b: v >= b), ("max", lambda v, b: v <= b)):
            if key not in rule:
                continue
            if not isinstance(value, (int, float)):
                problems.append(f"{name} = {value!r} is not a number (bound {key} {rule[key]})")
            elif not test(value, rule[key]):
                problems.append(f"{name} = {value!r} is outside the bound {key} {rule[key]}")
    return problems
