"""Clip sampling and fastai DataLoaders for EF regression on echo videos.

The loaders take any :class:`~echobook.data.table.VideoTable`: an EchoNet-Dynamic folder
(:class:`~echobook.data.echonet.EchoNetDataset`), an :class:`~echobook.data.table.ArrayVideoTable`
of videos in memory, or another data set's table. EF loaders need an EF for every training video;
a video whose EF is NaN gives a NaN target.

A clip is ``clip_frames`` frames taken every ``clip_stride``-th frame (36 at stride 4 at full
size, as in CoReEcho). Training draws several clips per video with random starts; evaluation
uses ``eval_clips`` fixed, evenly spaced starts (3 in CoReEcho, whose predictions are averaged).

Batches leave the loader as uint8 ``[B, 1, F, H, W]`` (gray stored once; a model expands the
channel at its input), move to the device, and only there become float: normalised with the
training set's mean and std, and in training shifted by a random zero-pad-and-crop (pad to
size + 12, crop back to size; one offset per clip, the same for all its frames), vectorised
over the batch. Two-clip mode (CoReEcho stage 1) yields ``[B, 2, 1, F, H, W]``: two clips of
each video with different starts and independent crops.

Short videos are looped: frame ``i`` of a video of ``T`` frames is read as ``i mod T``. A heart
beats periodically, so a looped video still shows real frames and whole beats; the official
EchoNet loader pads with zeros instead, which puts black frames in the clip whose count tells a
model how short the video was, information that has nothing to do with EF.
"""
from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from echobook.config import get_preset
from echobook.data.echonet import EchoNetDataset, read_echonet
from echobook.data.table import VideoTable

CROP_PAD_PIXELS = 12  # pad to size + 12 then crop back (EchoNet/CoReEcho: 112 -> 124 -> 112)
ECHONET_FRAME_PIXELS = 112  # EchoNet-Dynamic's frames, on which that pad is defined
CACHE_LIMIT_BYTES = 1 << 30  # hold videos in memory when they fit in 1 GiB; else read lazily
STATS_MAX_VIDEOS = 128  # training videos sampled for mean/std (EchoNet's get_mean_and_std uses 128)


def shift_pad_pixels(image_size: int) -> int:
    """CoReEcho's pad-and-crop scaled to ``image_size``: the same fraction of the frame (5 % a side at
    112 pixels), so a 48-pixel frame shifts by up to 2-3 pixels, not the 6 of a 112-pixel one."""
    return round(CROP_PAD_PIXELS * image_size / ECHONET_FRAME_PIXELS)


# --------------------------------------------------------------------------------------------- indices

def clip_span(clip_frames: int, clip_stride: int) -> int:
    """Frames of the video one clip covers, first to last."""
    return (clip_frames - 1) * clip_stride + 1


def last_start(video_frames: int, clip_frames: int, clip_stride: int) -> int:
    """The latest start that keeps a clip inside the video (0 for a video shorter than a clip)."""
    return max(video_frames - clip_span(clip_frames, clip_stride), 0)


def clip_indices(video_frames: int, clip_frames: int, clip_stride: int, start: int) -> np.ndarray:
    """Frame indices of one clip, looping short videos (see the module's note on padding)."""
    return (start + clip_stride * np.arange(clip_frames)) % video_frames


def eval_starts(video_frames: int, clip_frames: int, clip_stride: int, count: int = 3) -> np.ndarray:
    """``count`` fixed starts spread evenly from the first to the last possible start."""
    return np.linspace(0, last_start(video_frames, clip_frames, clip_stride), count).round().astype(np.int64)


def random_starts(video_frames: int, clip_frames: int, clip_stride: int, count: int,
                  rng: random.Random) -> tuple[int, ...]:
    """``count`` random starts, all different where the video allows it."""
    choices = last_start(video_frames, clip_frames, clip_stride) + 1
    if choices >= count:
        return tuple(rng.sample(range(choices), count))
    return tuple(rng.randrange(choices) for _ in range(count))


# --------------------------------------------------------------------------------------------- videos

class VideoStore:
    """uint8 gray videos by index, held in memory (``arrays``) or read lazily through a ``table``'s
    :meth:`~echobook.data.table.VideoTable.video`, all resized to one ``image_size``.

    Lazily read videos are decoded only up to the last frame a clip needs.
    """

    def __init__(self, arrays: Sequence[np.ndarray] | None = None, *, table: VideoTable | None = None,
                 image_size: int | None = None):
        if (arrays is None) == (table is None):
            raise ValueError("VideoStore: give either arrays (held in memory) or a table (read lazily)")
        self.table, self.image_size = table, image_size
        if arrays is not None:
            self.arrays = [self._resize(np.asarray(a), image_size) for a in arrays]
            self.frame_counts = np.array([len(a) for a in self.arrays], dtype=np.int64)
        else:
            self.arrays = None
            self.frame_counts = np.asarray(table.frame_counts, dtype=np.int64)
            empty = np.flatnonzero(self.frame_counts < 1)
            if len(empty):
                shown = ", ".join(table.names[i] for i in empty[:3])
                raise ValueError(f"{len(empty)} video(s) of the table have no frames (frame_counts < 1): {shown}")

    @classmethod
    def from_table(cls, table: VideoTable, *, cache: bool | None = None,
                   image_size: int | None = None) -> "VideoStore":
        """``cache=None`` holds the videos in memory when they fit in :data:`CACHE_LIMIT_BYTES`."""
        if cache is None:
            side = image_size or ECHONET_FRAME_PIXELS
            cache = int(np.clip(table.frame_counts, 1, None).sum()) * side * side <= CACHE_LIMIT_BYTES
        if cache:
            return cls(arrays=[table.video(i) for i in range(len(table))], image_size=image_size)
        return cls(table=table, image_size=image_size)

    def __len__(self) -> int:
        return len(self.frame_counts)

    @staticmethod
    def _resize(video: np.ndarray, size: int | None) -> np.ndarray:
        if size is None or video.shape[1:] == (size, size):
            return video
        return np.stack([cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA) for frame in video])

    def frames(self, index: int, frame_indices: np.ndarray) -> np.ndarray:
        """uint8 ``[len(frame_indices), H, W]``; a video with fewer frames than asked for is an error, never looped."""
        if self.arrays is not None:
            video = self.arrays[index]
        else:
            video = self._resize(self.table.video(index, stop=int(frame_indices.max()) + 1), self.image_size)
        if int(frame_indices.max()) >= len(video):
            name = self.table.names[index] if self.table is not None else f"video {index}"
            raise ValueError(f"{name}: frame {int(frame_indices.max())} asked for, but only {len(video)} frames "
                             f"decode (the table says {int(self.frame_counts[index])}): truncated or damaged")
        return video[frame_indices]


# --------------------------------------------------------------------------------------------- items

class ClipDataset:
    """Clips of videos with their EF: the dataset behind a :class:`ClipDataLoader`.

    An item is ``(video_index, starts)``; ``dataset[i]`` is ``(uint8 clips, float32 EF)`` of
    ``items[i]`` (or of an item given directly), with clips ``[1, F, H, W]`` (one start) or
    ``[2, 1, F, H, W]`` (two starts). ``items`` is this epoch's list, redrawn by the loader.
    ``train=True``: each epoch draws ``clips_per_video`` items per video with random starts.
    ``train=False``: fixed items, one per eval start (single-clip mode; ``video_index`` maps
    items to videos for averaging) or the first and last eval starts (two-clip mode).
    """

    n_inp = 1  # fastai: the first element of a batch is the input, the rest the target

    def __init__(self, store: VideoStore, ef_percent: Sequence[float], clip_frames: int, clip_stride: int, *,
                 clips_per_item: int = 1, train: bool = True, clips_per_video: int = 1, eval_clips: int = 3):
        if clips_per_item not in (1, 2):
            raise ValueError(f"clips_per_item={clips_per_item}: 1 (single-clip) or 2 (two-clip mode)")
        if len(ef_percent) != len(store):
            raise ValueError(f"{len(ef_percent)} EF values for {len(store)} videos")
        self.store, self.ef_percent = store, np.asarray(ef_percent, dtype=np.float32)
        self.clip_frames, self.clip_stride = clip_frames, clip_stride
        self.clips_per_item, self.train = clips_per_item, train
        self.clips_per_video, self.eval_clips = clips_per_video, eval_clips
        self.fixed_items = self._fixed_items()
        self.items = self.epoch_items(random.Random(0))

    def _fixed_items(self) -> list[tuple[int, tuple[int, ...]]]:
        items = []
        for video, frames in enumerate(self.store.frame_counts):
            starts = eval_starts(int(frames), self.clip_frames, self.clip_stride, self.eval_clips).tolist()
            if self.clips_per_item == 2:
                items.append((video, (starts[0], starts[-1])))
            else:
                items += [(video, (start,)) for start in starts]
        return items

    @property
    def video_index(self) -> np.ndarray:
        """The video of each fixed item, in order (to average test-time clips per video)."""
        return np.array([video for video, _ in self.fixed_items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.store) * self.clips_per_video if self.train else len(self.fixed_items)

    def epoch_items(self, rng: random.Random) -> list[tuple[int, tuple[int, ...]]]:
        """This epoch's items: fresh random starts in training, the fixed ones otherwise."""
        if not self.train:
            return list(self.fixed_items)
        per_video, items = self.clips_per_item, []
        for video, frames in enumerate(self.store.frame_counts):
            # all the video's clips this epoch drawn together, so their starts differ where possible
            count = self.clips_per_video * per_video
            starts = random_starts(int(frames), self.clip_frames, self.clip_stride, count, rng)
            items += [(video, starts[i * per_video:(i + 1) * per_video]) for i in range(self.clips_per_video)]
        return items

    def clips(self, video: int, starts: Sequence[int]) -> np.ndarray:
        """uint8 ``[len(starts), 1, F, H, W]``, all read in one pass over the video."""
        frames = int(self.store.frame_counts[video])
        indices = np.stack([clip_indices(frames, self.clip_frames, self.clip_stride, s) for s in starts])
        pixels = self.store.frames(video, indices.ravel())
        return pixels.reshape(len(starts), 1, self.clip_frames, *pixels.shape[1:])

    def __getitem__(self, item) -> tuple[torch.Tensor, torch.Tensor]:
        video, starts = self.items[item] if isinstance(item, (int, np.integer)) else item
        clips = self.clips(video, starts)
        array = clips[0] if self.clips_per_item == 1 else clips
        return torch.from_numpy(np.ascontiguousarray(array)), torch.tensor(self.ef_percent[video])


class ClipDataLoader(DataLoader):
    """A fastai DataLoader whose epoch is a fresh draw of :meth:`ClipDataset.epoch_items`.

    The starts are drawn in the main process from the loader's own ``rng`` before any worker
    starts (workers copy the dataset), so runs repeat and workers never share a random stream.
    Indices stay plain integers, as fastai's ``get_preds(reorder=True)`` needs.
    """

    def get_idxs(self):
        self.dataset.items = self.dataset.epoch_items(self.rng)
        idxs = list(range(len(self.dataset.items)))
        return self.shuffle_fn(idxs) if self.shuffle else idxs

    def create_batch(self, items):
        """Stack items with NumPy: ``torch.stack`` runs on intra-op threads, which stall for
        hundreds of milliseconds on a busy 2-core machine; a memory copy needs no threads."""
        clips = np.stack([clip.numpy() for clip, _ in items])
        ef_percent = np.array([ef.item() for _, ef in items], dtype=np.float32)
        return torch.from_numpy(clips), torch.from_numpy(ef_percent)


# --------------------------------------------------------------------------------------------- device side

def random_shift(clips: torch.Tensor, pad_pixels: int = CROP_PAD_PIXELS,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad ``[..., C, F, H, W]`` clips to ``H + pad_pixels`` and crop back at a random offset.

    One offset per clip (all leading dims), shared by its channels and frames; vectorised with
    two ``gather`` calls, so it runs on the clips' device without a Python loop over samples.
    """
    *lead, channels, frames, height, width = clips.shape
    flat = clips.reshape(-1, channels, frames, height, width)
    count, half = flat.shape[0], pad_pixels // 2
    padded = F.pad(flat, (half, pad_pixels - half, half, pad_pixels - half))
    offsets = torch.randint(0, pad_pixels + 1, (2, count), device=clips.device, generator=generator)
    rows = offsets[0, :, None] + torch.arange(height, device=clips.device)  # [N, H]
    cols = offsets[1, :, None] + torch.arange(width, device=clips.device)  # [N, W]
    shape = (count, channels, frames)
    out = padded.gather(3, rows[:, None, None, :, None].expand(*shape, height, width + pad_pixels))
    out = out.gather(4, cols[:, None, None, None, :].expand(*shape, height, width))
    return out.reshape(*lead, channels, frames, height, width)


class ClipBatchTransform:
    """fastai ``after_batch``: on the batch's device, uint8 clips -> normalised float (+ random shift in training).

    Shifting happens on uint8 before normalising, so the padding is black, like the background
    outside the ultrasound sector (the official loader pads after normalising, i.e. mean gray).
    """

    def __init__(self, mean: float, std: float, *, train: bool, pad_pixels: int = CROP_PAD_PIXELS):
        self.mean, self.std, self.train, self.pad_pixels = float(mean), float(std), train, pad_pixels

    def __call__(self, batch):
        clips, ef_percent = batch
        if self.train and self.pad_pixels > 0:
            clips = random_shift(clips, self.pad_pixels)
        clips = (clips.float() - self.mean) / self.std
        return clips, ef_percent.float()


def normalisation_stats(store: VideoStore, max_videos: int = STATS_MAX_VIDEOS, seed: int = 0) -> tuple[float, float]:
    """Mean and std of the gray values (0-255) over up to ``max_videos`` videos (all their frames).

    Compute it on the training set only, so validation and test data leak nothing into training.
    """
    chosen = np.random.default_rng(seed).permutation(len(store))[:max_videos]
    total = total_sq = count = 0.0
    for video in sorted(chosen.tolist()):
        pixels = store.frames(video, np.arange(store.frame_counts[video])).astype(np.float64)
        total, total_sq, count = total + pixels.sum(), total_sq + np.square(pixels).sum(), count + pixels.size
    if count == 0:
        raise ValueError("no training video to compute the normalisation from")
    mean = total / count
    return float(mean), float(np.sqrt(max(total_sq / count - mean**2, 1e-12)))


# --------------------------------------------------------------------------------------------- loaders

def auto_workers() -> int:
    """Worker processes for decoding lazily read videos: half the cores, at most 8, leaving the
    rest to the main process (training, and the on-device transform's launches)."""
    return max(0, min(8, (os.cpu_count() or 1) // 2))


def common_image_size(table: VideoTable) -> int | None:
    """The most common frame height of a table (112 in EchoNet-Dynamic), to which odd-sized videos
    are resized (the release has 6 at 768x1024) so that clips stack into batches.

    Read from the table's optional ``frame_sizes``; None where it has none or they are unknown
    (the videos are then not resized).
    """
    sizes = getattr(table, "frame_sizes", None)
    heights = [] if sizes is None else [int(h) for h in np.asarray(sizes).reshape(-1, 2)[:, 0] if h > 0]
    return int(np.bincount(heights).argmax()) if heights else None


def require_ef(table: VideoTable, role: str) -> None:
    """Raise a ValueError naming the videos of ``table`` without EF (NaN): an EF loader cannot train on them."""
    missing = np.flatnonzero(np.isnan(np.asarray(table.ef_percent, dtype=np.float64)))
    if len(missing):
        shown = ", ".join(table.names[i] for i in missing[:3])
        raise ValueError(f"{role} table: {len(missing)} of {len(table)} videos have no EF (NaN), e.g. {shown}; "
                         f"EF loaders need an EF for every training video")


def clip_dataloader(dataset: ClipDataset, *, batch_size: int, mean: float, std: float,
                    device: torch.device | str | None = None, seed: int = 0, num_workers: int = 0,
                    pad_pixels: int = CROP_PAD_PIXELS) -> ClipDataLoader:
    """One fastai loader over a :class:`ClipDataset`; training ones shuffle, drop the last partial batch and augment.

    ``device=None`` means ``auto`` (CUDA, then MPS, then the CPU), as everywhere in the book.
    """
    from echobook.config import resolve_device

    device = resolve_device(device if device is not None else "auto")
    loader = ClipDataLoader(
        dataset, bs=batch_size, shuffle=dataset.train, drop_last=dataset.train and len(dataset) > batch_size,
        num_workers=num_workers, device=device,
        after_batch=ClipBatchTransform(mean, std, train=dataset.train, pad_pixels=pad_pixels),
    )
    loader.rng = random.Random(seed)  # fastai seeds it from the global `random`; make it explicit
    return loader


def clip_dataloaders(train: VideoTable, valid: VideoTable, *, clip_frames: int, clip_stride: int,
                     batch_size: int, two_clips: bool = False, clips_per_video: int = 1, eval_clips: int = 3,
                     image_size: int | None = None, device: torch.device | str | None = None,
                     cache: bool | None = None, stats: tuple[float, float] | None = None,
                     seed: int = 0, num_workers: int | None = None, pad_pixels: int | None = None) -> DataLoaders:
    """fastai ``DataLoaders`` of EF clips: ``train`` with random starts and shifts, ``valid`` with fixed starts.

    ``train`` and ``valid`` are :class:`~echobook.data.table.VideoTable` s; every training video
    needs an EF (a ValueError names those without); a validation video without EF gives NaN targets.
    ``two_clips`` gives CoReEcho stage 1's ``[B, 2, 1, F, H, W]``; otherwise ``[B, 1, F, H, W]``.
    Videos are resized to ``image_size`` pixels a side (default: :func:`common_image_size`).
    ``num_workers=None``: none for videos held in memory, :func:`auto_workers` for lazily read ones.
    ``stats`` (mean, std) defaults to :func:`normalisation_stats` of the training videos;
    the result's ``normalisation`` attribute holds it. ``pad_pixels``: the training shift's pad
    (default :func:`shift_pad_pixels` of the image size; 0 turns the shift off).
    """
    require_ef(train, "train")
    for table, role in ((train, "training"), (valid, "validation")):
        if len(table) == 0:
            raise ValueError(f"the {role} table has no videos: the learners need both a training and a "
                             f"validation set")
    image_size = image_size or common_image_size(train)
    if pad_pixels is None:
        pad_pixels = shift_pad_pixels(image_size) if image_size else CROP_PAD_PIXELS
    train_store = VideoStore.from_table(train, cache=cache, image_size=image_size)
    valid_store = VideoStore.from_table(valid, cache=cache, image_size=image_size)
    mean, std = stats if stats is not None else normalisation_stats(train_store, seed=seed)
    if num_workers is None:
        num_workers = 0 if train_store.arrays is not None else auto_workers()
    per_item = 2 if two_clips else 1
    common = dict(clip_frames=clip_frames, clip_stride=clip_stride, clips_per_item=per_item, eval_clips=eval_clips)
    train_clips = ClipDataset(train_store, train.ef_percent, train=True, clips_per_video=clips_per_video, **common)
    loaders = [
        clip_dataloader(train_clips, batch_size=batch_size, mean=mean, std=std, device=device, seed=seed,
                        num_workers=num_workers, pad_pixels=pad_pixels),
        clip_dataloader(ClipDataset(valid_store, valid.ef_percent, train=False, **common),
                        batch_size=batch_size, mean=mean, std=std, device=device, seed=seed, num_workers=num_workers),
    ]
    dls = DataLoaders(*loaders, device=loaders[0].device)
    dls.normalisation = (mean, std)
    return dls


def echonet_dataloaders(root: str | Path, preset=None, *, two_clips: bool = False, device=None,
                        clips_per_video: int = 1, cache: bool | None = None, seed: int = 0,
                        batch_size: int | None = None, num_workers: int | None = None,
                        pad_pixels: int | None = None, require_tracings: bool = True) -> DataLoaders:
    """TRAIN/VAL loaders of an EchoNet-style folder with a size preset's clip settings.

    ``preset``: a :class:`echobook.config.SizePreset`, a size name, or None for ``auto``.
    ``pad_pixels``: see :func:`clip_dataloaders`. ``require_tracings`` (default, the paper's
    protocol): drop the videos without two usable traced frames, as the official EchoNet and
    CoReEcho loaders do (5 TRAIN videos of the release); a warning gives the count, and the result's
    ``dropped_untraced`` attribute their names. Synthetic sets are fully traced: nothing is dropped.
    """
    preset = get_preset(preset)
    dataset = echonet_split(root, ("TRAIN", "VAL"), require_tracings=require_tracings)
    for split in ("TRAIN", "VAL"):
        if len(dataset.subset(split)) == 0:
            raise ValueError(f"{root}: the {split} split has no videos (Split column of FileList.csv); "
                             f"training validates on VAL after each epoch: give the folder TRAIN and VAL videos")
    dls = clip_dataloaders(
        dataset.subset("TRAIN"), dataset.subset("VAL"), clip_frames=preset.clip_frames,
        clip_stride=preset.clip_stride, batch_size=batch_size or preset.batch_size, two_clips=two_clips,
        clips_per_video=clips_per_video, eval_clips=preset.eval_clips, image_size=preset.crop_size,
        device=device, cache=cache, seed=seed, num_workers=num_workers, pad_pixels=pad_pixels,
    )
    dls.dropped_untraced = dataset.dropped_untraced
    return dls


def echonet_split(root: str | Path, split: str | Sequence[str] | None = "TEST", *,
                  require_tracings: bool = True) -> EchoNetDataset:
    """One split (or several) of an EchoNet-style folder as the EF loaders read it.

    ``require_tracings`` (default) follows the paper's protocol: the videos without two usable
    traced frames are dropped (1 TEST video of the release: 1,276 of 1,277 remain, as in CoReEcho's
    test set), with a warning that gives the count; their names are in ``dropped_untraced``.
    """
    dataset = read_echonet(root, split, require_tracings=require_tracings)
    dropped = dataset.dropped_untraced
    if dropped:
        warnings.warn(f"{root}: dropped {len(dropped)} video(s) without two usable traced frames "
                      f"(e.g. {', '.join(dropped[:3])}), as the official EchoNet loader does; "
                      f"require_tracings=False keeps them", stacklevel=2)
    return dataset


def echonet_eval_dataloader(root: str | Path, preset=None, *, mean: float, std: float, split: str = "TEST",
                            device=None, batch_size: int | None = None, eval_clips: int | None = None,
                            require_tracings: bool = True, cache: bool | None = None) -> ClipDataLoader:
    """Test-time loader of one split of an EchoNet-style folder with a preset's clip settings.

    ``mean``, ``std``: the training set's (``dls.normalisation``). ``eval_clips`` defaults to the
    preset's. ``require_tracings``: see :func:`echonet_split` (the paper's protocol by default).
    The loader's ``table`` is the split read, its ``dropped_untraced`` the names dropped.
    """
    preset = get_preset(preset)
    table = echonet_split(root, split, require_tracings=require_tracings)
    loader = eval_dataloader(table, clip_frames=preset.clip_frames, clip_stride=preset.clip_stride,
                             batch_size=batch_size or preset.batch_size, mean=mean, std=std,
                             eval_clips=eval_clips or preset.eval_clips, image_size=preset.crop_size,
                             device=device, cache=cache)
    loader.dropped_untraced = table.dropped_untraced
    return loader


def eval_dataloader(table: VideoTable, *, clip_frames: int, clip_stride: int, batch_size: int,
                    mean: float, std: float, eval_clips: int = 3, image_size: int | None = None,
                    device=None, cache: bool | None = None) -> ClipDataLoader:
    """Test-time loader: ``eval_clips`` fixed clips per video, in order; average with :func:`average_per_video`.

    A video without EF (NaN) gives NaN targets: predictions still come out, metrics need EF.
    The loader's ``table`` attribute is ``table``.
    """
    store = VideoStore.from_table(table, cache=cache, image_size=image_size or common_image_size(table))
    clips = ClipDataset(store, table.ef_percent, clip_frames, clip_stride, train=False, eval_clips=eval_clips)
    loader = clip_dataloader(clips, batch_size=batch_size, mean=mean, std=std, device=device)
    loader.table = table
    return loader


def average_per_video(values: torch.Tensor, video_index: np.ndarray) -> torch.Tensor:
    """Mean of per-clip ``values`` ``[N, ...]`` per video (``video_index`` from ``ClipDataset.video_index``)."""
    index = torch.as_tensor(video_index, device=values.device)
    videos = int(index.max()) + 1
    sums = torch.zeros((videos, *values.shape[1:]), dtype=values.dtype, device=values.device)
    sums.index_add_(0, index, values)
    counts = torch.bincount(index, minlength=videos).to(values.dtype).reshape(-1, *[1] * (values.dim() - 1))
    return sums / counts
