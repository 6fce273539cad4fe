"""Many videos: lists, streams through worker processes, a dataset made on demand, an EchoNet folder, a benchmark."""
from __future__ import annotations

import collections
import contextlib
import itertools
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from echobook.data import echonet
from echobook.data.table import ArrayVideoTable, split_names
from echobook.data.synthetic.heart import SyntheticConfig, check_seed_index
from echobook.data.synthetic.plan import plan_video
from echobook.data.synthetic.render import SyntheticVideo, make_video, render_device, render_plan

MIN_SET_VIDEOS = 3  # echonet.assign_splits gives each of TRAIN, VAL and TEST one video from three on


def make_videos(seed: int, indices: Iterable[int] | int, config: SyntheticConfig | None = None,
                workers: int = 1, device=None) -> list[SyntheticVideo]:
    """Videos ``indices`` (or ``range(indices)``) of the dataset from ``seed``, optionally in worker processes.

    With a torch ``device``, the workers make the plans and this process forms the images on the
    device (see :func:`iter_videos`). The result does not depend on ``workers``.
    """
    indices = list(range(indices)) if isinstance(indices, (int, np.integer)) else [int(i) for i in indices]
    device = render_device(device)
    if workers <= 1 or len(indices) < 2:
        return [make_video(seed, i, config, device) for i in indices]
    with worker_pool(workers) as pool:
        return list(iter_videos(seed, indices, config, device=device, pool=pool, ahead=4 * workers))


def worker_pool(workers: int):
    """A process pool for :func:`iter_videos` (and whatever else the caller gives it, such as encoding).

    The workers are forked, as a torch ``DataLoader``'s are: that is safe after this process has
    started CUDA because they never touch the device (NumPy, OpenCV and files only), and it needs
    no ``if __name__ == "__main__"`` guard in scripts and costs no re-import per worker.
    """
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers)


def iter_videos(seed: int, indices: Iterable[int], config: SyntheticConfig | None = None, *, device=None,
                pool=None, ahead: int = 32):
    """Videos ``indices`` in order, as a stream (a set of any size in bounded memory).

    Without ``pool`` this process makes each one. With ``pool`` (from :func:`worker_pool`): on the
    NumPy path the workers make whole videos; with a torch ``device`` they make the plans
    (:func:`plan_video`, NumPy) and this process forms the images on the device, since a GPU
    cannot be shared by worker processes. At most ``ahead`` videos are in flight.
    """
    device = render_device(device)
    if pool is None:
        yield from (make_video(seed, int(i), config, device) for i in indices)
        return
    task = make_video if device is None else plan_video
    jobs = iter(indices)
    pending = collections.deque(pool.submit(task, seed, int(i), config) for i in itertools.islice(jobs, max(1, ahead)))
    while pending:
        made = pending.popleft().result()
        pending.extend(pool.submit(task, seed, int(i), config) for i in itertools.islice(jobs, 1))  # keep workers busy
        yield made if device is None else render_plan(made, device)


class SyntheticDataset:
    """``videos`` synthetic videos made on demand: ``dataset[i]`` is ``make_video(seed, i, config)``.

    Nothing is stored, so a set of any size costs no disk; it has ``__len__`` and ``__getitem__``
    and so works as a map-style ``torch.utils.data.Dataset`` (each worker makes its own videos).
    """

    def __init__(self, seed: int, videos: int, config: SyntheticConfig | None = None):
        check_seed_index(seed, 0)
        if not isinstance(videos, (int, np.integer)) or videos < 0:
            raise ValueError(f"videos must be a non-negative integer; got {videos!r}")
        self.seed, self.videos = int(seed), int(videos)
        self.config = SyntheticConfig() if config is None else config

    def __len__(self) -> int:
        return self.videos

    def __getitem__(self, index: int) -> SyntheticVideo:
        if isinstance(index, (int, np.integer)) and -self.videos <= index < 0:
            index += self.videos
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.videos:
            raise IndexError(f"index {index!r} out of range for {self.videos} videos")
        return make_video(self.seed, int(index), self.config)

    def __repr__(self) -> str:
        return f"SyntheticDataset(seed={self.seed}, videos={self.videos}, config={self.config})"


# ---------------------------------------------------------------------------- a video table in memory
class SyntheticVideoTable(ArrayVideoTable):
    """Synthetic videos as a :class:`~echobook.data.table.VideoTable`, with the true cardiac phase of every frame.

    ``phases[i]``: float ``[T]`` in [0, 1) (0 at end-diastole) of video ``i``; ``heart_rate_bpm[i]``: its mean
    rate. The clip loaders of :mod:`echobook.data.clips` take it as any table; what they sample can be
    paired with the truth through the same frame indices (:func:`echobook.data.clips.clip_indices`).
    """

    def __init__(self, videos: list[SyntheticVideo], splits: str | list[str] = "TRAIN", *, labelled: bool = True):
        super().__init__([v.frames for v in videos], [v.ef_percent for v in videos] if labelled else None,
                         names=[v.name for v in videos], fps=[v.fps for v in videos], splits=splits)
        self.records = list(videos)
        self.labelled = labelled
        self.phases = [np.asarray(v.phase, dtype=np.float64) for v in videos]
        self.heart_rate_bpm = np.array([v.heart_rate_bpm for v in videos], dtype=np.float64)

    def subset(self, split) -> "SyntheticVideoTable":
        chosen = split_names(split, self.allowed_splits)
        keep = [i for i, s in enumerate(self.splits) if s in chosen]
        return SyntheticVideoTable([self.records[i] for i in keep], [str(self.splits[i]) for i in keep],
                                   labelled=self.labelled)


def synthetic_video_table(seed: int, videos: int, config: SyntheticConfig | None = None, *, labelled: bool = False,
                          split: str | list[str] | None = None, workers: int = 1) -> SyntheticVideoTable:
    """``videos`` synthetic videos from ``seed`` held in memory as a table, split as EchoNet-Dynamic's release
    is (:func:`echobook.data.echonet.assign_splits`). ``labelled=False`` (the default: pretraining data)
    leaves EF out (NaN), as for unlabelled videos; the true phases stay on the table (``phases``).
    ``split``: make only the videos of that split (or splits): the same videos as ``table.subset(split)`` of the
    whole set, without making the others."""
    if not isinstance(videos, (int, np.integer)) or videos < 1:
        raise ValueError(f"videos must be a positive integer; got {videos!r}")
    splits = echonet.assign_splits(int(videos), seed)
    wanted = split_names(split)
    indices = [i for i, name in enumerate(splits) if name in wanted]
    made = make_videos(seed, indices, config, workers=workers)
    return SyntheticVideoTable(made, [splits[i] for i in indices], labelled=labelled)


# ---------------------------------------------------------------------------- a set on disk, EchoNet's layout
def synth_echonet(out_dir: str | Path, videos: int, seed: int, config: SyntheticConfig | None = None, *,
                  overwrite: bool = False, progress: bool = False, workers: int = 1, device=None) -> Path:
    """Make ``videos`` synthetic echocardiograms from ``seed`` and write them in the EchoNet layout.

    Video ``i`` is :func:`make_video` ``(seed, i, config, device)``; splits come from
    :func:`echobook.data.echonet.assign_splits` with the same seed, so one seed and device give the
    same folder, byte for byte (``workers`` only changes how fast). ``device``: None (NumPy) or a
    torch device such as ``"cuda"`` that forms the images in this process. With ``workers`` > 1,
    worker processes make the videos (or, with a device, their NumPy plans) and encode the AVIs, so
    a set of any size streams through in bounded memory. A non-empty ``out_dir`` is refused unless
    ``overwrite``, before any video is made (the videos are a lazy stream that the writer starts
    consuming only after checking the folder).
    """
    if videos < MIN_SET_VIDEOS:
        raise ValueError(f"videos={videos}: a set needs at least {MIN_SET_VIDEOS} videos, one for each of TRAIN, VAL "
                         "and TEST (fewer leave a split empty)")
    check_seed_index(seed, 0)  # every argument is checked before the folder is touched
    device = render_device(device)  # a bad device fails before anything is written
    splits = echonet.assign_splits(videos, seed)
    if workers <= 1:
        made = iter_videos(seed, range(videos), config, device=device)
        return echonet.write_echonet(out_dir, _report_progress(made, videos, progress, every=8), splits,
                                     overwrite=overwrite)
    with worker_pool(workers) as pool:
        made = iter_videos(seed, range(videos), config, device=device, pool=pool, ahead=4 * workers)
        return echonet.write_echonet(out_dir, _report_progress(made, videos, progress, every=8 * workers), splits,
                                     overwrite=overwrite, pool=pool, ahead=4 * workers)


def _report_progress(videos: Iterable, total: int, progress: bool, every: int):
    """``videos`` passed through, with a line before each ``every`` of them when ``progress``."""
    for index, video in enumerate(videos):
        if progress and index % every == 0:
            print(f"synth echonet: videos {index + 1}-{min(index + every, total)} of {total}", flush=True)
        yield video


# ---------------------------------------------------------------------------- speed
@contextlib.contextmanager
def _one_cpu_thread(device):
    """OpenCV (and torch, for a torch ``device``) held to one thread, restored afterwards."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    if device is not None:
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)
        if device is not None:
            torch.set_num_threads(torch_threads)


def benchmark(config: SyntheticConfig | None = None, videos: int = 8, seed: int = 0, device=None) -> dict:
    """Frames per second of :func:`make_video` on one CPU core (OpenCV and torch held to one thread).

    ``device``: None/"numpy" (the NumPy path), "cpu" (torch on the CPU) or a GPU ("cuda").
    ``render_frames_per_second`` times the image formation alone (:func:`render_plan` of plans
    made beforehand): the part a device takes over, while worker processes make the plans.
    """
    config = SyntheticConfig(image_size=112, frames=64) if config is None else config
    device = render_device(device)
    with _one_cpu_thread(device):
        make_video(seed, 0, config, device)  # warm up imports, caches and the device
        start = time.perf_counter()
        for i in range(videos):
            make_video(seed, i, config, device)
        elapsed = time.perf_counter() - start
        plans = [plan_video(seed, i, config) for i in range(videos)]
        start = time.perf_counter()
        for plan in plans:
            render_plan(plan, device)  # returns NumPy arrays, so a GPU has finished when it returns
        render_elapsed = time.perf_counter() - start
    frames = videos * config.frames
    return {"device": "numpy" if device is None else str(device), "image_size": config.image_size,
            "frames_per_video": config.frames, "videos": videos, "seconds": elapsed,
            "frames_per_second": frames / elapsed, "seconds_per_video": elapsed / videos,
            "render_frames_per_second": frames / render_elapsed,
            "plan_seconds_per_video": (elapsed - render_elapsed) / videos}
