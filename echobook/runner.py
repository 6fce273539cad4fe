"""Run chapters in batch with papermill and collect what they glued.

The same runner serves ``echobook run`` and the test suite: each run writes one
executed notebook, and :func:`run_chapters` appends one row per run to
``runs.csv`` (chapter, parameters, status, wall time, every glued value).
A failed run is reported with its cell and traceback; the others go on.
"""
from __future__ import annotations

import ast
import csv
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


def _free_path(path: Path) -> Path:
    """``path`` if nothing is there, else ``stem-2``, ``stem-3``...: earlier runs are never overwritten."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


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
    if output.exists():
        result.glued = read_glued(output)
    return result


def append_runs_csv(results: list[RunResult], path: Path) -> Path:
    """Add the runs to ``path``, keeping earlier rows; columns are the union of all glued names."""
    path = Path(path)
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
    """Run each chapter once with the same parameters; return the results and the CSV's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for ref in refs:
        try:
            notebook = find_chapter(str(ref), root)
        except FileNotFoundError as error:
            results.append(RunResult(chapter=str(ref), output=Path(""), parameters=dict(parameters or {}),
                                     status="failed", error=str(error)))
            continue
        output = _free_path(out_dir / notebook.name)
        results.append(run_chapter(notebook, output, parameters, cell_timeout_s=cell_timeout_s))
    return results, append_runs_csv(results, out_dir / RUNS_CSV)


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
