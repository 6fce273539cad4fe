"""The synthetic set cache (echobook.data.synthetic.cache): its key, its marker, concurrent and killed builds."""
from __future__ import annotations

import ast
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from echobook.data import echonet
from echobook.data.echonet import read_echonet
from echobook.data.synthetic import SyntheticConfig, cache, cached_synthetic_echonet

TINY = SyntheticConfig(image_size=32, frames=8)
VIDEOS = 4
ROOT = Path(__file__).resolve().parent.parent


def build(cache_dir: Path, seed: int = 0) -> Path:
    return cached_synthetic_echonet(VIDEOS, seed, TINY, cache_dir=cache_dir)


def is_whole(folder: Path, seed: int = 0) -> bool:
    return cache.is_complete(folder, cache.synthetic_set_key(VIDEOS, seed, TINY), VIDEOS)


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def age(folder: Path, seconds: float) -> None:
    """Set the modification time of ``folder`` and everything in it ``seconds`` into the past."""
    then = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (then, then))


# ---------------------------------------------------------------------------- reuse and the key
def test_cached_set_is_made_once(tmp_path):
    first = build(tmp_path)
    stamp = (first / echonet.FILELIST_NAME).stat().st_mtime_ns
    assert build(tmp_path) == first
    assert (first / echonet.FILELIST_NAME).stat().st_mtime_ns == stamp  # reused, not rewritten
    other = build(tmp_path, seed=5)
    assert other != first and len(read_echonet(other)) == VIDEOS
    assert entries(tmp_path) == sorted([first.name, other.name])  # no partial, stale folder or lock file left
    assert is_whole(first) and cache.MARKER_NAME in entries(first)


def test_key_sources_hold_the_engine_geometry_labels_and_the_writer():
    names = {path.relative_to(ROOT / "echobook" / "data").as_posix() for path in cache.KEY_SOURCES}
    assert {"geometry.py", "labels.py", "echonet.py"} <= names
    engine = ROOT / "echobook" / "data" / "synthetic"
    assert {f"synthetic/{path.name}" for path in engine.glob("*.py")} <= names
    assert all(path.is_file() for path in cache.KEY_SOURCES)


def test_every_data_module_the_engine_imports_is_a_key_source():
    """A new dependency of the engine (another echobook.data module) must join the key, or its changes go unseen."""
    sources = {path.resolve() for path in cache.KEY_SOURCES}
    data_dir = ROOT / "echobook" / "data"
    for path in (data_dir / "synthetic").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("echobook.data"):
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for module in modules:
                parts = module.split(".")[2:]  # below echobook.data (whose __init__ holds nothing but a docstring)
                if not parts:
                    continue
                relative = Path(*parts)
                for candidate in (data_dir / relative.with_suffix(".py"), data_dir / relative / "__init__.py"):
                    if candidate.is_file():
                        assert candidate.resolve() in sources, f"{path.name} imports {module}: add it to KEY_SOURCES"


@pytest.mark.parametrize("changed", range(len(cache.KEY_SOURCES)), ids=[path.name for path in cache.KEY_SOURCES])
def test_changing_any_key_source_changes_the_key(changed, tmp_path, monkeypatch):
    copies = []
    for index, original in enumerate(cache.KEY_SOURCES):  # copies, so the test never touches the package
        copy = tmp_path / str(index) / original.name
        copy.parent.mkdir()
        shutil.copyfile(original, copy)
        copies.append(copy)
    monkeypatch.setattr(cache, "KEY_SOURCES", tuple(copies))
    before = cache.synthetic_set_key(VIDEOS, 0, TINY)
    assert before == cache.synthetic_set_key(VIDEOS, 0, TINY)
    with open(copies[changed], "ab") as handle:
        handle.write(b"\n# one more line\n")
    assert cache.synthetic_set_key(VIDEOS, 0, TINY) != before


def test_key_depends_on_config_count_seed_and_device():
    key = cache.synthetic_set_key(VIDEOS, 0, TINY)
    others = {cache.synthetic_set_key(VIDEOS + 1, 0, TINY), cache.synthetic_set_key(VIDEOS, 1, TINY),
              cache.synthetic_set_key(VIDEOS, 0, SyntheticConfig(image_size=32, frames=8, quality="Poor")),
              cache.synthetic_set_key(VIDEOS, 0, TINY, device="cpu")}
    assert key not in others and len(others) == 4


# ---------------------------------------------------------------------------- the marker decides reuse
def test_a_folder_without_marker_is_rebuilt_not_reused(tmp_path):
    final = build(tmp_path)
    (final / cache.MARKER_NAME).unlink()  # e.g. a set from an older version, or a crash on an odd filesystem
    victim = sorted((final / echonet.VIDEOS_DIR).iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:100])  # ... and half-written
    stamp = (final / echonet.FILELIST_NAME).stat().st_ino
    assert build(tmp_path) == final
    assert is_whole(final) and (final / echonet.FILELIST_NAME).stat().st_ino != stamp  # a new folder swapped in
    assert len(read_echonet(final)) == VIDEOS and victim.stat().st_size > 100
    assert entries(tmp_path) == [final.name]


@pytest.mark.parametrize("damage", ["missing video", "truncated video", "other key", "fewer videos", "garbled",
                                    "same size, other bytes"])
def test_a_marker_that_does_not_match_the_files_means_rebuild(tmp_path, damage):
    final = build(tmp_path)
    marker_path = final / cache.MARKER_NAME
    marker = json.loads(marker_path.read_text())
    video = sorted((final / echonet.VIDEOS_DIR).iterdir())[0]
    if damage == "missing video":
        video.unlink()
    elif damage == "truncated video":
        video.write_bytes(video.read_bytes()[:-1])
    elif damage == "other key":
        marker_path.write_text(json.dumps({**marker, "key": "0" * 12}))
    elif damage == "fewer videos":
        marker_path.write_text(json.dumps({**marker, "videos": VIDEOS - 1}))
    elif damage == "same size, other bytes":  # a flipped bit on disk: only the manifest's hash sees it
        data = bytearray(video.read_bytes())
        data[len(data) // 2] ^= 0xFF
        video.write_bytes(bytes(data))
    else:
        marker_path.write_text("{not json")
    assert not is_whole(final)
    with pytest.warns(UserWarning, match=f"{final.name}.*building it again"):
        assert build(tmp_path) == final and is_whole(final)
    assert len(read_echonet(final)) == VIDEOS and entries(tmp_path) == [final.name]


def test_losing_the_install_race_keeps_the_winners_set(tmp_path):
    final = build(tmp_path)
    inode = final.stat().st_ino
    late = tmp_path / f".{final.name}.late{cache.PARTIAL_SUFFIX}"
    shutil.copytree(final, late)
    cache._install(late, final, cache.synthetic_set_key(VIDEOS, 0, TINY), VIDEOS)
    assert final.stat().st_ino == inode and is_whole(final)  # the winner's folder, untouched
    assert late.is_dir()  # the loser's copy is left to its builder, which deletes it


# ---------------------------------------------------------------------------- concurrent and killed builds
def _build_in_child(cache_dir, barrier, results):
    try:
        barrier.wait(timeout=60)
        results.put(str(build(Path(cache_dir))))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put(f"error: {error!r}")


def test_two_processes_building_at_once_share_one_complete_set(tmp_path, monkeypatch):
    log = tmp_path / "builds.log"
    real = cache.synth_echonet

    def build_slowly(*args, **kwargs):  # both builders finish writing before either installs: a real race
        out = real(*args, **kwargs)
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return out

    monkeypatch.setattr(cache, "synth_echonet", build_slowly)
    cache_dir = tmp_path / "cache"
    context = multiprocessing.get_context("fork")  # the children inherit the slowed-down builder
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_build_in_child, args=(cache_dir, barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    paths = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert paths[0] == paths[1] and not paths[0].startswith("error"), paths
    assert len(log.read_text().split()) == 2  # both built: one won the rename, the other kept the winner's set
    final = Path(paths[0])
    assert is_whole(final) and len(read_echonet(final)) == VIDEOS
    assert entries(cache_dir) == [final.name]  # no partial folder left by the loser


KILLED_BUILDER = textwrap.dedent("""
    import sys, time
    from echobook.data import echonet
    from echobook.data.synthetic import SyntheticConfig, cached_synthetic_echonet

    save_video = echonet.save_video

    def save_then_hang(*args, **kwargs):  # the first video is written, then the builder stalls until killed
        save_video(*args, **kwargs)
        time.sleep(600)

    echonet.save_video = save_then_hang
    cached_synthetic_echonet({videos}, 0, SyntheticConfig(image_size=32, frames=8), cache_dir=sys.argv[1])
""")


def test_a_killed_builder_leaves_nothing_that_is_reused(tmp_path):
    cache_dir = tmp_path / "cache"
    builder = subprocess.Popen([sys.executable, "-c", KILLED_BUILDER.format(videos=VIDEOS), str(cache_dir)],
                               cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not list(cache_dir.glob(f".*{cache.PARTIAL_SUFFIX}/{echonet.VIDEOS_DIR}/*.avi")):
            assert builder.poll() is None and time.time() < deadline, "the builder never wrote a video"
            time.sleep(0.05)
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.wait()
    (half,) = cache_dir.glob(f".*{cache.PARTIAL_SUFFIX}")
    final = build(cache_dir)
    assert final != half and is_whole(final) and len(read_echonet(final)) == VIDEOS
    assert half.is_dir()  # a young partial may belong to a live builder: kept, but never reused
    age(half, cache.STALE_AFTER_S + 60)
    assert cache.remove_stale_partials(cache_dir) == [half]
    assert entries(cache_dir) == [final.name]


def test_old_partials_are_cleaned_up_when_a_set_is_built(tmp_path):
    old, young = tmp_path / ".echonet-old.abc.tmp", tmp_path / ".echonet-young.def.tmp"
    for folder in (old, young):
        (folder / echonet.VIDEOS_DIR).mkdir(parents=True)
        (folder / echonet.VIDEOS_DIR / "0XHALF.avi").write_bytes(b"half")
    age(old, cache.STALE_AFTER_S + 60)
    final = build(tmp_path)
    assert entries(tmp_path) == sorted([final.name, young.name])


def test_the_key_changes_with_the_library_versions_that_decide_bytes(monkeypatch):
    import cv2
    import numpy

    from echobook.data.synthetic import SyntheticConfig
    from echobook.data.synthetic.cache import synthetic_set_key

    config = SyntheticConfig(image_size=32, frames=8)
    before = synthetic_set_key(4, 0, config)
    monkeypatch.setattr(numpy, "__version__", "0.0.1")
    after_numpy = synthetic_set_key(4, 0, config)
    monkeypatch.setattr(cv2, "__version__", "0.0.1")
    assert len({before, after_numpy, synthetic_set_key(4, 0, config)}) == 3
