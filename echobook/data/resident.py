"""Videos decoded once into device memory, clips sampled and augmented there: a loader that never starves a GPU.

The CPU loaders (:mod:`echobook.data.clips`) read each clip's frames from videos in host memory (or decode them)
item by item, then stack, copy and augment the batch. At paper scale on one fast GPU that host work is the
bottleneck. Here the whole set is decoded once into one ``uint8`` tensor on the device
(:class:`ResidentVideos`: EchoNet-Dynamic's 10,030 videos of 112x112 pixels, about 1.78 million frames, take
about 22 GB), and a batch is one gather of frame indices on the device (:class:`ResidentClipLoader`), followed by
the same on-device normalisation and pad-and-crop shift as the CPU loaders
(:class:`~echobook.data.clips.ClipBatchTransform`).

Layout: frames of all videos concatenated, ``frames [total_frames, H, W]``, with ``offsets [N]`` and
``frame_counts [N]``, rather than ``[N, T_max, H, W]``: EchoNet's videos run from 28 to over 1,000 frames, and
padding every video to the longest would take several times the memory of the frames themselves.

Equivalence: the resident loader keeps the CPU loader's items (the same :class:`~echobook.data.clips.ClipDataset`,
its starts drawn from the same ``rng``, the same shuffle, the same looping of short videos), so for one seed both
give the same uint8 clips, the same EF targets, in the same order, and after the transform (whose shift draws
from torch's generator on the batch's device) the same float batches. ``tests/test_resident.py`` checks this
on a CPU tensor.

:func:`resident_dataloaders` turns the loaders that :func:`~echobook.data.clips.echonet_dataloaders` built into
resident ones (every option and check of those stays where it is); the CoReEcho recipe switches it on at
``full`` on CUDA (``CoReEchoRecipe.resident_data``).
"""
from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch
from fastai.data.core import DataLoaders

from echobook.data.clips import ClipDataLoader, ClipDataset, VideoStore, auto_workers


class ResidentVideos:
    """uint8 gray videos held in one tensor on a device: ``frames [total_frames, H, W]``, ``offsets`` and
    ``frame_counts`` ``[N]`` (int64, same device). :meth:`clips` gathers clips of many videos at once."""

    def __init__(self, frames: torch.Tensor, frame_counts: Sequence[int] | torch.Tensor):
        counts = torch.as_tensor(frame_counts, dtype=torch.int64).reshape(-1)
        if frames.dtype != torch.uint8 or frames.ndim != 3:
            raise ValueError(f"ResidentVideos: frames must be uint8 [total_frames, H, W], got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        if len(counts) == 0 or int(counts.min()) < 1:
            raise ValueError("ResidentVideos: frame_counts must hold at least one video, each of at least 1 frame")
        if int(counts.sum()) != frames.shape[0]:
            raise ValueError(f"ResidentVideos: frame_counts add up to {int(counts.sum())} frames, the tensor "
                             f"holds {frames.shape[0]}")
        self.frames = frames
        self.frame_counts = counts.to(frames.device)
        self.offsets = torch.cumsum(counts, 0).sub(counts).to(frames.device)

    @classmethod
    def from_store(cls, store: VideoStore, device: torch.device | str, workers: int | None = None) -> "ResidentVideos":
        """Decode every video of a :class:`~echobook.data.clips.VideoStore` once (all its frames, resized to the
        store's size) into one tensor on ``device``; videos decode on ``workers`` threads (OpenCV releases the
        GIL) and are copied in order. A set larger than the device's free memory is refused before decoding."""
        device = torch.device(device)
        counts = np.asarray(store.frame_counts, dtype=np.int64)
        first = store.frames(0, np.arange(1))
        height, width = first.shape[1:]
        total = int(counts.sum())
        _check_fits(total * height * width, device)
        frames = torch.empty((total, height, width), dtype=torch.uint8, device=device)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])

        def decode(index: int) -> np.ndarray:
            return store.frames(index, np.arange(counts[index]))

        workers = max(1, auto_workers() if workers is None else workers)
        chunk = 4 * workers  # decoded videos waiting for their copy stay few: host memory holds a chunk, not the set
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for first_index in range(0, len(store), chunk):
                indices = range(first_index, min(first_index + chunk, len(store)))
                for index, video in zip(indices, pool.map(decode, indices)):
                    if video.shape[1:] != (height, width):
                        raise ValueError(f"video {index} of the store has {video.shape[1:]} frames, the first has "
                                         f"{(height, width)}: give the store an image_size")
                    start = int(offsets[index])
                    frames[start:start + len(video)].copy_(torch.from_numpy(np.ascontiguousarray(video)))
        return cls(frames, counts)

    def __len__(self) -> int:
        return len(self.frame_counts)

    @property
    def nbytes(self) -> int:
        return self.frames.numel() * self.frames.element_size()

    def clips(self, videos: torch.Tensor, starts: torch.Tensor, clip_frames: int, clip_stride: int) -> torch.Tensor:
        """uint8 clips ``[B, k, 1, F, H, W]`` of ``videos [B]`` from ``starts [B, k]``: frame ``start + stride * j``,
        looped over a short video (``mod`` its length), as :func:`echobook.data.clips.clip_indices`."""
        videos = videos.to(self.frames.device)
        starts = starts.to(self.frames.device)
        steps = clip_stride * torch.arange(clip_frames, device=self.frames.device)
        within = (starts[..., None] + steps) % self.frame_counts[videos][:, None, None]  # [B, k, F]
        return self.frames[within + self.offsets[videos][:, None, None]].unsqueeze(2)


def _check_fits(nbytes: int, device: torch.device) -> None:
    if device.type != "cuda":
        return
    free, _ = torch.cuda.mem_get_info(device)
    if nbytes > 0.9 * free:  # leave room for the model, its activations and the batch
        raise MemoryError(f"the videos take {nbytes / 2**30:.1f} GiB as uint8, {device} has {free / 2**30:.1f} GiB "
                          "free: use the CPU loaders (resident_data=False) or a smaller set")


class ResidentClipLoader(ClipDataLoader):
    """A :class:`~echobook.data.clips.ClipDataLoader` whose batches are gathered on the device from
    :class:`ResidentVideos` in one indexing operation, not read and stacked item by item on the host.

    The epoch's items, their order and the ``after_batch`` transform are the CPU loader's. Batches come out
    ``(uint8 [B, 1, F, H, W] or [B, 2, 1, F, H, W], float32 EF [B])`` on the videos' device, then the transform
    normalises and shifts them there. Works under fastai's ``DistributedDL`` (it calls :meth:`create_batches`).
    """

    def __init__(self, dataset: ClipDataset, videos: ResidentVideos, **kwargs):
        if len(videos) != len(dataset.store):
            raise ValueError(f"{len(videos)} resident videos for a dataset of {len(dataset.store)}")
        kwargs["num_workers"] = 0  # the work is one gather on the device; workers would copy the tensor
        super().__init__(dataset, **kwargs)
        self.videos = videos
        self.ef_percent = torch.as_tensor(dataset.ef_percent, dtype=torch.float32, device=videos.frames.device)

    def create_batches(self, samps):
        for chunk in self.chunkify(samps):
            items = [self.dataset.items[i] for i in chunk]
            videos = torch.tensor([video for video, _ in items], dtype=torch.int64)
            starts = torch.tensor([list(starts) for _, starts in items], dtype=torch.int64)
            clips = self.videos.clips(videos, starts, self.dataset.clip_frames, self.dataset.clip_stride)
            if self.dataset.clips_per_item == 1:
                clips = clips[:, 0]
            yield clips, self.ef_percent[videos.to(self.ef_percent.device)]


def resident_loader(loader: ClipDataLoader, videos: ResidentVideos | None = None,
                    device: torch.device | str | None = None) -> ResidentClipLoader:
    """The resident twin of a clip loader: same dataset, batch size, shuffling, transform and random state.
    ``videos``: its dataset's videos already on the device (shared between loaders of the same videos)."""
    device = torch.device(device if device is not None else loader.device or "cpu")
    if videos is None:
        videos = ResidentVideos.from_store(loader.dataset.store, device)
    global_state = random.getstate()  # fastai seeds a new loader's rng from Python's generator: leave it as it was
    twin = ResidentClipLoader(loader.dataset, videos, bs=loader.bs, shuffle=loader.shuffle,
                              drop_last=loader.drop_last, device=videos.frames.device, after_batch=loader.after_batch)
    random.setstate(global_state)
    twin.rng = random.Random()
    twin.rng.setstate(loader.rng.getstate())
    for name in ("table", "dropped_untraced"):
        if hasattr(loader, name):
            setattr(twin, name, getattr(loader, name))
    return twin


def _videos_key(store: VideoStore):
    """Stores of the same videos at the same size (two loaders of one split) share one resident copy."""
    if store.table is not None:
        return tuple(store.table.names), store.image_size
    return id(store)


def resident_dataloaders(*dls: DataLoaders, device: torch.device | str | None = None) -> list[DataLoaders]:
    """Each ``DataLoaders`` of clip loaders (from :func:`~echobook.data.clips.echonet_dataloaders` or
    :func:`~echobook.data.clips.clip_dataloaders`) with resident loaders on ``device`` (default: theirs).

    Several ``DataLoaders`` of the same splits (CoReEcho's two-clip and one-clip loaders) share one copy of each
    split's videos. Their attributes (``normalisation``, ``dropped_untraced``) carry over.
    """
    shared: dict[object, ResidentVideos] = {}
    converted = []
    for loaders in dls:
        target = torch.device(device if device is not None else loaders.device or "cpu")
        twins = []
        for loader in loaders.loaders:
            if not isinstance(loader, ClipDataLoader):
                raise TypeError(f"resident_dataloaders: a {type(loader).__name__} is not a ClipDataLoader")
            key = _videos_key(loader.dataset.store)
            if key not in shared:
                shared[key] = ResidentVideos.from_store(loader.dataset.store, target)
            twins.append(resident_loader(loader, shared[key]))
        result = DataLoaders(*twins, device=target)
        for name in ("normalisation", "dropped_untraced"):
            if hasattr(loaders, name):
                setattr(result, name, getattr(loaders, name))
        converted.append(result)
    return converted
