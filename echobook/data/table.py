"""A video table: the minimum the clip loaders need from a data set, whatever its format on disk.

:class:`VideoTable` is a small protocol. EchoNet-Dynamic folders implement it
(:class:`echobook.data.echonet.EchoNetDataset`), and so does :class:`ArrayVideoTable`, a table of
videos held as arrays: for tests, for long synthetic videos, for a user's own clips. CAMUS, HMC-QU
or unlabelled pretraining videos plug into the same loaders by implementing the same few members.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

SPLITS = ("TRAIN", "VAL", "TEST")  # EchoNet-Dynamic's Split values, the default a table allows


@runtime_checkable
class VideoTable(Protocol):
    """The videos of a data set, with what EF regression and clip sampling need to know about each.

    Required members (``N = len(table)``; video ``i`` is row ``i`` everywhere):

    ``names``
        list[str], one per video, unique: how errors and plots name the video.
    ``frame_counts``
        np.int64 ``[N]``: frames of each video (the loaders draw clip starts from it; a video may
        turn out shorter when decoded, and the loaders then loop it).
    ``ef_percent``
        float ``[N]``: ejection fraction in percent, NaN where a video has none (unlabelled
        videos). EF loaders need it for every training video.
    ``fps``
        float ``[N]``: frames per second of each video, NaN where unknown.
    ``splits``
        str ``[N]``: the split of each video, e.g. ``TRAIN``, ``VAL`` or ``TEST``.
    ``video(index, stop=None)``
        uint8 gray frames ``[T, H, W]`` of one video, decoding at most ``stop`` frames.
    ``subset(split)``
        a table of the same kind holding the videos of one split (or of several).

    Optional members a table may have (the loaders use them where present, never require them):

    ``frame_sizes``
        np.int64 ``[N, 2]``: (height, width) in pixels, -1 where unknown; lets the loaders choose
        a common size (:func:`echobook.data.clips.common_image_size`) without decoding videos.
    ``has_tracings``
        bool ``[N]``: whether a video has usable ED/ES tracings (EchoNet-Dynamic's two traced
        frames); per-video masks, tracings or phases live on the table's own records.
    """

    names: list[str]
    frame_counts: np.ndarray
    ef_percent: np.ndarray
    fps: np.ndarray
    splits: np.ndarray

    def __len__(self) -> int: ...

    def video(self, index: int, stop: int | None = None) -> np.ndarray: ...

    def subset(self, split: str | Sequence[str]) -> "VideoTable": ...


def split_names(split: str | Sequence[str] | None, allowed: Sequence[str] = SPLITS) -> tuple[str, ...]:
    """``split`` as upper-case names checked against ``allowed``; None or ``"all"`` means all of them."""
    if split is None or (isinstance(split, str) and split.strip().lower() in ("", "all")):
        return tuple(allowed)
    wanted = (split,) if isinstance(split, str) else tuple(split)
    upper = tuple(str(s).strip().upper() for s in wanted)
    unknown = [s for s in upper if s not in allowed]
    if unknown:
        raise ValueError(f"split={split!r}: choose from {tuple(allowed)} (any case), 'all' or None")
    return upper


class ArrayVideoTable:
    """A :class:`VideoTable` of videos held in memory as uint8 gray arrays ``[T, H, W]``.

    ``ef_percent``: one EF per video (None: all NaN, unlabelled). ``names``: default
    ``video_0000``, ``video_0001``... ``fps``: one number for all or one per video (default NaN,
    unknown). ``splits``: one split for all or one per video (default ``TRAIN``), each one of
    ``allowed_splits`` (any case). Videos may differ in length and size. Bad input raises a
    ValueError that names the video and the field.
    """

    def __init__(self, videos: Sequence[np.ndarray], ef_percent: Sequence[float] | None = None, *,
                 names: Sequence[str] | None = None, fps: float | Sequence[float] = np.nan,
                 splits: str | Sequence[str] = "TRAIN", allowed_splits: Sequence[str] = SPLITS):
        count = len(videos)
        self.names = [f"video_{i:04d}" for i in range(count)] if names is None else [str(n) for n in names]
        _require_length(self.names, count, "names")
        _require_unique(self.names)
        self.videos = [_checked_video(video, name) for video, name in zip(videos, self.names)]
        self.ef_percent = self._per_video(np.nan if ef_percent is None else ef_percent, "ef_percent", float)
        self.fps = self._per_video(fps, "fps", float)
        self.allowed_splits = tuple(s.upper() for s in allowed_splits)
        upper = np.char.upper(np.char.strip(self._per_video(splits, "splits", str)))
        self.splits = self._checked_splits(upper)
        self.frame_counts = np.array([len(v) for v in self.videos], dtype=np.int64)
        self.frame_sizes = np.array([v.shape[1:] for v in self.videos], dtype=np.int64).reshape(count, 2)

    def _per_video(self, values, field: str, kind: type) -> np.ndarray:
        """One value for every video (a scalar is repeated), converted to ``kind``; errors name the video."""
        if np.ndim(values) == 0:
            values = [values] * len(self.names)
        _require_length(values, len(self.names), field)
        converted = []
        for name, value in zip(self.names, values):
            try:
                converted.append(kind(value))
            except (TypeError, ValueError) as error:
                raise ValueError(f"{name}: {field}={value!r} is not a {kind.__name__} ({error})") from error
        return np.array(converted, dtype=np.float64 if kind is float else str)

    def _checked_splits(self, splits: np.ndarray) -> np.ndarray:
        for name, split in zip(self.names, splits):
            if split not in self.allowed_splits:
                raise ValueError(f"{name}: splits={str(split)!r} is not one of {self.allowed_splits}")
        return splits

    def __len__(self) -> int:
        return len(self.videos)

    def video(self, index: int, stop: int | None = None) -> np.ndarray:
        """uint8 ``[T, H, W]`` of video ``index`` (its first ``stop`` frames), a view of the stored array."""
        return self.videos[index][:stop]

    def subset(self, split: str | Sequence[str]) -> "ArrayVideoTable":
        """The videos of the given split(s), in their order."""
        chosen = split_names(split, self.allowed_splits)
        keep = [i for i, s in enumerate(self.splits) if s in chosen]
        return ArrayVideoTable([self.videos[i] for i in keep], self.ef_percent[keep],
                               names=[self.names[i] for i in keep], fps=self.fps[keep],
                               splits=self.splits[keep], allowed_splits=self.allowed_splits)

    def __repr__(self) -> str:
        counts = {s: int(np.sum(self.splits == s)) for s in self.allowed_splits}
        return f"ArrayVideoTable(videos={len(self)}, {', '.join(f'{s} {n}' for s, n in counts.items() if n)})"


def _require_length(values: Sequence, count: int, field: str) -> None:
    if len(values) != count:
        raise ValueError(f"ArrayVideoTable: {count} videos but {len(values)} {field}")


def _require_unique(names: list[str]) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{name}: names must be unique; this name is given twice")
        seen.add(name)


def _checked_video(video: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(video)
    if array.dtype != np.uint8 or array.ndim != 3 or len(array) == 0:
        raise ValueError(f"{name}: video must be uint8 gray frames [T, H, W] with T >= 1; "
                         f"got {array.dtype} {array.shape}")
    return array
