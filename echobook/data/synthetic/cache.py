"""A synthetic EchoNet folder made once and reused (:func:`cached_synthetic_echonet`), safe across processes.

Where a set lives: ``<cache>/echonet-<size>px-<frames>f-<videos>v-seed<seed>[-<device>]-<key>``. The key
is a digest of every source file that decides the set's bytes (:data:`KEY_SOURCES`), the config, the
count, the seed and the device, so a change to any of them names a fresh folder.

How it stays whole:

- a set is built in a fresh hidden temporary folder (``.<name>.<random>.tmp``), never in place;
- the last file written is a completion marker (``.complete``, JSON: the key, the video count and a
  manifest of every file's size and BLAKE2b digest), written atomically; a folder is reused only if its
  marker is there and every file still has its size and digest, so a folder without one (a crash, an
  older version) or with a damaged file is rebuilt, with a warning that says why, never reused;
- the finished folder is renamed into place, which is atomic; the check-and-swap holds a lock on the
  cache folder, so two builders of one set cannot interleave: the loser of the race keeps the winner's
  set and deletes its own copy;
- temporary folders of builders that died are never reused, and are deleted once untouched for
  :data:`STALE_AFTER_S`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path

from echobook.data import echonet
from echobook.data.synthetic.heart import SyntheticConfig
from echobook.data.synthetic.render import render_device
from echobook.data.synthetic.sets import synth_echonet

CACHE_ENV = "ECHOBOOK_CACHE"
MARKER_NAME = ".complete"
SET_PREFIX = "echonet-"
PARTIAL_SUFFIX = ".tmp"
STALE_AFTER_S = 6 * 3600  # a builder writes a video every few seconds at most; one silent this long is dead

_DATA_DIR = Path(__file__).resolve().parent.parent  # echobook/data
# Every source file whose code decides a cached set's bytes: the whole engine (each module of this package),
# the contour geometry its labels and tracings come from, the label values, the EchoNet writer and the
# video-table protocol the engine's long-video tables follow.
KEY_SOURCES: tuple[Path, ...] = (
    tuple(sorted(Path(__file__).resolve().parent.glob("*.py")))
    + tuple(_DATA_DIR / name for name in ("geometry.py", "labels.py", "echonet.py", "table.py"))
)


def default_cache_dir() -> Path:
    """``$ECHOBOOK_CACHE``, else ``echobook-cache`` in the system's temporary folder."""
    return Path(os.environ.get(CACHE_ENV, "") or Path(tempfile.gettempdir()) / "echobook-cache")


def library_versions(device=None) -> str:
    """The versions of the libraries whose code also decides a set's bytes: NumPy draws the random numbers
    and OpenCV resamples and encodes the videos (torch forms the images on a device)."""
    import cv2
    import numpy

    versions = f"numpy {numpy.__version__}; opencv {cv2.__version__}"
    if device is not None:
        import torch

        versions += f"; torch {torch.__version__}"
    return versions


def synthetic_set_key(videos: int, seed: int, config: SyntheticConfig, device=None) -> str:
    """A digest of everything that decides a set's bytes: :data:`KEY_SOURCES`, the versions of NumPy and
    OpenCV (and torch for a device's set), the config, the count, the seed and the device."""
    digest = hashlib.sha256()
    digest.update(library_versions(device).encode())
    for source in KEY_SOURCES:
        digest.update(f"{source.name}:".encode())
        digest.update(source.read_bytes())
    digest.update(f"{videos}:{seed}:{config!r}:{'numpy' if device is None else device}".encode())
    return digest.hexdigest()[:12]


def cached_synthetic_echonet(videos: int, seed: int, config: SyntheticConfig | None = None, *,
                             cache_dir: str | Path | None = None, workers: int = 1, progress: bool = False,
                             device=None) -> Path:
    """A synthetic EchoNet folder made once and reused: chapters that share a size and seed share it.

    The folder lives in ``cache_dir`` (default :func:`default_cache_dir`) and its name holds a digest
    of the engine's code, the config, the count, the seed and the device (see :func:`synthetic_set_key`),
    so a change anywhere makes a fresh one. It is reused only when its completion marker says it is
    whole; see this module's docstring for how concurrent and interrupted builds are handled.
    ``device`` (see :func:`~echobook.data.synthetic.sets.synth_echonet`) forms other pixels, so a
    device's set is named after it.
    """
    config = SyntheticConfig() if config is None else config
    device = render_device(device)
    key = synthetic_set_key(videos, seed, config, device)
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    on = "" if device is None else f"-{device.type}"
    final = base / f"{SET_PREFIX}{config.image_size}px-{config.frames}f-{videos}v-seed{seed}{on}-{key}"
    problem = set_problem(final, key, videos)
    if problem is None:
        return final
    if final.exists():
        warnings.warn(f"synthetic set {final}: {problem}; building it again", stacklevel=2)
    base.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(base)
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=PARTIAL_SUFFIX, dir=base))
    try:
        synth_echonet(partial, videos, seed, config, overwrite=True, progress=progress, workers=workers, device=device)
        write_marker(partial, key, videos)
        _install(partial, final, key, videos)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already when it was installed
    return final


# ---------------------------------------------------------------------------- the completion marker
def file_digest(path: Path) -> str:
    """BLAKE2b of a file's bytes (fast, read in 1 MiB blocks): a changed byte changes it."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _set_files(folder: Path) -> dict[str, dict]:
    """Size in bytes and digest of every file the EchoNet writer writes, by path relative to ``folder``."""
    paths = [folder / echonet.FILELIST_NAME, folder / echonet.TRACINGS_NAME,
             *sorted((folder / echonet.VIDEOS_DIR).glob(f"*{echonet.VIDEO_SUFFIX}"))]
    return {path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "blake2b": file_digest(path)}
            for path in paths}


def _filelist_rows(folder: Path) -> int:
    with open(folder / echonet.FILELIST_NAME, "rb") as handle:
        return sum(1 for line in handle if line.strip()) - 1  # less the header


def write_marker(folder: Path, key: str, videos: int) -> None:
    """Write ``folder``'s completion marker, atomically (a reader sees no marker or a whole one)."""
    marker = {"key": key, "videos": videos, "files": _set_files(folder)}
    scratch = folder / f"{MARKER_NAME}.{uuid.uuid4().hex}"
    scratch.write_text(json.dumps(marker, indent=1, sort_keys=True))
    os.replace(scratch, folder / MARKER_NAME)


def set_problem(folder: Path, key: str, videos: int) -> str | None:
    """Why ``folder`` is not the whole set ``key`` of ``videos`` videos, or None when it is: its marker must be
    there, name this key and count, and list every file with its size and digest (sizes are checked first,
    as they are cheap); FileList.csv must have a row per video."""
    if not folder.exists():
        return "not built yet"
    try:
        marker = json.loads((folder / MARKER_NAME).read_text())
        files = marker["files"]
        videos_listed = [name for name in files if name.startswith(f"{echonet.VIDEOS_DIR}/")]
        if marker["key"] != key or not marker["videos"] == videos == len(videos_listed):
            return "its completion marker names another set"
        wrong_size = [name for name, entry in files.items() if (folder / name).stat().st_size != entry["size"]]
        if wrong_size:
            return f"{wrong_size[0]} has another size than when it was written"
        changed = [name for name, entry in files.items() if file_digest(folder / name) != entry["blake2b"]]
        if changed:
            return f"{changed[0]} has other bytes than when it was written"
        if _filelist_rows(folder) != videos:
            return f"{echonet.FILELIST_NAME} does not list {videos} videos"
    except FileNotFoundError as error:
        return f"{Path(error.filename).name if error.filename else 'a file'} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unreadable or malformed: not whole
        return "its completion marker is unreadable (an interrupted build or an older version)"
    return None


def is_complete(folder: Path, key: str, videos: int) -> bool:
    """Whether ``folder`` holds the whole set ``key`` of ``videos`` videos (see :func:`set_problem`)."""
    return set_problem(folder, key, videos) is None


# ---------------------------------------------------------------------------- installing, cleaning up
@contextlib.contextmanager
def _cache_lock(base: Path):
    """An exclusive lock on the cache folder itself (no lock file to leave behind); the OS frees it if we die."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the renames stay atomic, only two swaps of one stale folder could interleave
        yield
        return
    fd = os.open(base, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _install(partial: Path, final: Path, key: str, videos: int) -> None:
    """Rename the complete ``partial`` to ``final``, unless another process installed a complete one first.

    A ``final`` without a valid marker is moved aside and deleted, so it is replaced, never reused.
    """
    with _cache_lock(final.parent):
        if is_complete(final, key, videos):
            return  # another builder won the race: keep its set (ours is deleted by the caller)
        stale = None
        if final.exists():
            stale = final.parent / f".{final.name}.{uuid.uuid4().hex}.stale{PARTIAL_SUFFIX}"
            final.rename(stale)
        partial.rename(final)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def _last_touched(folder: Path) -> float:
    """The newest modification time of ``folder`` and what it holds (a builder writes there as it goes)."""
    times = [folder.stat().st_mtime]
    for child in folder.rglob("*"):
        with contextlib.suppress(OSError):
            times.append(child.stat().st_mtime)
    return max(times)


def remove_stale_partials(base: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the temporary folders in ``base`` untouched for ``older_than_s`` (their builders died); returns them."""
    removed = []
    for folder in base.glob(f".{SET_PREFIX}*{PARTIAL_SUFFIX}"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and time.time() - _last_touched(folder) > older_than_s:
                shutil.rmtree(folder)
                removed.append(folder)
    return removed
