"""The one rule every dataset writer follows before it writes: nothing lost that it did not write.

A writer may replace a non-empty folder only when asked (``overwrite``) and only when the folder carries the
mark a writer leaves (:data:`WRITTEN_MARK`, written first, so an interrupted write is marked too); then it
removes only the paths it writes itself. A downloaded dataset has no mark, so ``--overwrite`` can never
delete a real EchoNet, CAMUS or HMC-QU folder.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

WRITTEN_MARK = ".echobook-written"


def prepare_output_folder(out_dir: str | Path, overwrite: bool, written: Sequence[str], layout: str) -> Path:
    """Make ``out_dir`` ready for a writer of ``layout`` that writes the paths ``written`` (files, folders or
    glob patterns relative to it); raises FileExistsError, naming the folder and why, instead of deleting
    anything it should not. Leaves the writer's mark in the folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir}: folder is not empty; pass overwrite=True (--overwrite) to replace "
                                  f"its {layout} files ({', '.join(written)})")
        if not (out_dir / WRITTEN_MARK).is_file():
            raise FileExistsError(f"{out_dir}: holds files echobook did not write (no {WRITTEN_MARK}); "
                                  "--overwrite only replaces a folder a synth command made: choose an empty folder")
        for pattern in written:
            for path in sorted(out_dir.glob(pattern)):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / WRITTEN_MARK).write_text(json.dumps({"layout": layout}) + "\n")
    return out_dir
