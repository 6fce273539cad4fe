"""The Colab cell: each chapter's first code cell installs echobook from the repository of _config.yml,
on Colab only.

The cell is run as IPython runs it (its ``%pip`` line turned into a ``run_line_magic`` call) with a
``get_ipython()`` that records the magic: outside Colab it must install nothing; on Colab it must ask
pip for ``echobook[notebook]`` from the repository. Then the same cell runs in a fresh virtual
environment with the install source pointed at this checkout, where pip resolves it (``--dry-run
--no-deps``: nothing is installed, nothing of torch's size is downloaded) and reports what it would
install: echobook with the ``notebook`` extra, whose requirements include anywidget (the live figures).
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import types

import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

from conftest import ROOT
from echobook.runner import toc_chapters

REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
VENV_S = 300


def colab_cell(notebook) -> str:
    return next(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")


def as_python(cell: str) -> str:
    """The cell as IPython executes it: magics become get_ipython() calls."""
    return TransformerManager().transform_cell(cell)


def magics_run(cell: str, on_colab: bool) -> list[tuple[str, str]]:
    """The line magics the cell runs, with or without a ``google.colab`` module loaded."""
    calls = []
    shell = types.SimpleNamespace(run_line_magic=lambda name, line, *rest: calls.append((name, line)))
    modules = dict(sys.modules)
    if on_colab:
        modules["google.colab"] = types.ModuleType("google.colab")
    fake_sys = types.SimpleNamespace(modules=modules)
    code = as_python(cell).replace("import sys\n", "", 1)  # the cell's `sys` is the fake one
    exec(code, {"get_ipython": lambda: shell, "sys": fake_sys})  # noqa: S102
    return calls


@pytest.mark.parametrize("notebook", toc_chapters(ROOT), ids=lambda p: p.stem)
def test_the_colab_cell_installs_from_the_repository_on_colab_only(notebook):
    cell = colab_cell(notebook)
    assert magics_run(cell, on_colab=False) == [], f"{notebook.name}: the cell installs outside Colab"
    (name, line), = magics_run(cell, on_colab=True)
    words = shlex.split(line)
    assert name == "pip" and words[0] == "install", f"{notebook.name}: {name} {line}"
    assert f"echobook[notebook] @ git+{REPOSITORY}" in words, \
        f"{notebook.name}: install echobook[notebook] from {REPOSITORY} (_config.yml); got {line!r}"


def local_source_cell(cell: str, report) -> str:
    """The cell with its source pointed at this checkout and pip told to resolve, not install."""
    cell = cell.replace(f"git+{REPOSITORY}", ROOT.resolve().as_uri())
    return cell.replace("%pip install", f"%pip install --dry-run --no-deps --report {report}", 1)


@pytest.mark.slow
def test_the_colab_cell_resolves_echobook_with_anywidget_in_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=VENV_S)
    python = venv / "bin" / "python"
    report = tmp_path / "report.json"
    code = as_python(local_source_cell(colab_cell(toc_chapters(ROOT)[0]), report))
    # a Colab kernel in the fresh environment: google.colab loaded, %pip runs this environment's pip
    runner = (
        "import shlex, subprocess, sys, types\n"
        "sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
        "class Shell:\n"
        "    def run_line_magic(self, name, line):\n"
        "        subprocess.run([sys.executable, '-m', name, *shlex.split(line)], check=True)\n"
        "get_ipython = Shell\n"
        f"exec({code!r})\n"
    )
    run = subprocess.run([str(python), "-c", runner], capture_output=True, text=True, timeout=VENV_S)
    assert run.returncode == 0, f"the Colab cell failed in a fresh venv:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    (install,) = json.loads(report.read_text())["install"]
    assert install["metadata"]["name"] == "echobook" and install["requested_extras"] == ["notebook"]
    assert install["download_info"]["url"] == ROOT.resolve().as_uri()
    assert any(r.startswith("anywidget") and 'extra == "notebook"' in r for r in install["metadata"]["requires_dist"])
