"""Model cards: a trained model saved with what it is, how it was made and how to feed it.

Every method saves its trained weights the same way (chapters, ``echobook train``), so that ``echobook
predict`` and later chapters can load any of them and say where it came from:

- ``<folder>/model.pth``: ``{"model": state_dict, "card": card}``, written atomically and read back with
  ``weights_only=True`` (:func:`echobook.training.read_checkpoint`);
- ``<folder>/card.json``: the same card for people (method, variant, size, seed, git commit, date, the
  preprocessing the model expects, the training data's counts and fingerprint, metrics).

A card is a plain dict (JSON types only), so it survives ``weights_only`` loading and any version of the
package; :func:`new_card` fills the fields every card has.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

MODEL_FILE = "model.pth"
CARD_FILE = "card.json"
CARD_FIELDS = ("method", "variant", "size", "seed", "git_commit", "created", "echobook_version")


def model_folder(method: str, size: str, seed: int, data_seed: int | None = None) -> Path:
    """Where a chapter keeps a trained model of a size and seed: ``<cache>/models/<method>-<size>-seed<seed>``,
    beside the synthetic sets (``$ECHOBOOK_CACHE``, else ``echobook-cache`` in the temporary folder).

    A model trained on another synthetic set (``DATA_SEED`` apart from ``SEED``) gets ``-data<data_seed>``
    after the seed, so that runs of the same seed on two sets (``echobook ledger --data-seed``) never
    overwrite or load each other's models; ``data_seed`` None or equal to ``seed`` is the plain folder."""
    from echobook.data.synthetic.cache import default_cache_dir

    own_set = "" if data_seed is None or int(data_seed) == int(seed) else f"-data{int(data_seed)}"
    return default_cache_dir() / "models" / f"{method}-{size}-seed{int(seed)}{own_set}"


def git_commit(root: str | os.PathLike | None = None) -> str:
    """The package checkout's commit (``-dirty`` when tracked files differ from it), or ``unknown``
    outside a git checkout (an installed wheel, Colab without the repository)."""
    root = Path(root) if root else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _jsonable(value):
    """Card values as JSON types: NumPy and torch scalars become numbers, tuples lists, paths strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a 0-d tensor
        return value.item()
    return value


def new_card(*, method: str, variant: str, size: str, seed: int, **fields) -> dict:
    """A card with the fields every card has (commit, date, package version) and the method's own ``fields``
    (e.g. ``preprocessing``, ``data``, ``metrics``, ``config``)."""
    from echobook import __version__

    card = {"method": method, "variant": variant, "size": size, "seed": int(seed), "git_commit": git_commit(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "echobook_version": __version__}
    card.update(fields)
    return _jsonable(card)


def ef_preprocessing(preset, mean: float, std: float, fps: float | None) -> dict:
    """What a clip model expects (a card's ``preprocessing``): gray frames resized to ``image_size``,
    ``clip_frames`` frames ``clip_stride`` apart at about ``fps`` frames per second (None: as recorded),
    normalised by ``(x - mean) / std``; ``eval_clips`` clips per video at test time."""
    return {"image_size": int(preset.crop_size), "clip_frames": int(preset.clip_frames),
            "clip_stride": int(preset.clip_stride), "eval_clips": int(preset.eval_clips),
            "mean": float(mean), "std": float(std), "fps": None if fps is None else float(fps)}


def data_fingerprint(names, ef_percent=None, splits=None) -> dict:
    """Counts per split and a digest of the training data's names (and EF labels, and splits): two cards trained
    on the same videos with the same labels have the same ``digest``."""
    names = [str(n) for n in names]
    parts = [names, [] if ef_percent is None else [f"{float(v):.4f}" for v in ef_percent],
             [] if splits is None else [str(s) for s in splits]]
    digest = hashlib.blake2b("\n".join("\t".join(p) for p in parts).encode(), digest_size=12).hexdigest()
    counts = {"videos": len(names)}
    if splits is not None:
        values, numbers = np.unique(np.asarray(splits, dtype=str), return_counts=True)
        counts.update({str(v): int(n) for v, n in zip(values, numbers)})
    return {"counts": counts, "digest": digest}


def _atomic_write_text(text: str, path: Path) -> None:
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def save_with_card(folder: str | os.PathLike, state_dict: dict, card: dict, model_file: str = MODEL_FILE) -> Path:
    """Write ``model_file`` (weights and card) and ``card.json`` in ``folder``, each atomically; returns the
    weights' path. The card must name its method and variant (:data:`CARD_FIELDS`)."""
    from echobook.training import atomic_save

    missing = [name for name in CARD_FIELDS if name not in card]
    if missing:
        raise ValueError(f"a model card needs {', '.join(missing)} (make it with echobook.cards.new_card)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = _jsonable(card)
    path = atomic_save({"model": state_dict, "card": card}, folder / model_file)
    _atomic_write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", folder / CARD_FILE)
    return path


def read_with_card(path: str | os.PathLike, model_file: str = MODEL_FILE) -> tuple[dict, dict]:
    """``(checkpoint, card)`` of a saved model: ``path`` is the weights file or the folder holding it.

    Raises :class:`echobook.training.CheckpointError` naming the file when it holds no card.
    """
    from echobook.training import CheckpointError, read_checkpoint

    path = Path(path)
    if path.is_dir():
        path = path / model_file
    checkpoint = read_checkpoint(path)
    card = checkpoint.get("card")
    if not isinstance(card, dict) or any(name not in card for name in ("method", "variant")):
        raise CheckpointError(f"{path}: holds no model card (method, variant): was it saved by "
                              "echobook.cards.save_with_card?")
    return checkpoint, card
