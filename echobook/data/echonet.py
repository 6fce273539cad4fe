"""EchoNet-Dynamic on disk: write a synthetic set in its exact layout, read it (real or synthetic), check it.

The layout (Ouyang et al., Nature 2020; ``echonet/dynamic``)::

    <root>/FileList.csv         FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split
    <root>/VolumeTracings.csv   FileName,X1,Y1,X2,Y2,Frame     (FileName WITH ".avi")
    <root>/Videos/<FileName>.avi

Each traced frame has 21 rows: the long axis (apex to mitral-plane midpoint), then 20 chords
perpendicular to it from the apex towards the mitral valve. X is the column, Y the row, in pixels.

The reader handles every quirk known in the public release and counts each one in a
:class:`Problems` object instead of failing or dropping data silently:

* FileName with or without ``.avi`` (FileList has none, VolumeTracings has it);
* ``Split`` in any case; extra leading index columns such as ``Unnamed: 0`` (columns are chosen by name);
* videos without tracings (6 in the release): kept for EF, ``has_tracings`` is False;
* tracings of files absent from FileList (1 in the release): ignored, counted;
* frames with 42/63/... rows (a frame traced more than once): the first 21 rows are used, counted;
  frames with fewer than 21 rows cannot form a tracing: ignored, counted;
* coordinates outside the image: clipped to the image, counted;
* ED is the traced frame with the larger LV area, ES the smaller; the file's order is not trusted
  (the official loader assumes "ES first", which holds for the release but not for every copy);
* any FPS and any codec OpenCV reads.

Frames are read as one gray channel (``[T, H, W]``), not as the AVI's three channels: the official
loader (``echonet.utils.loadvideo``) keeps the three MJPG-decoded channels (``[3, T, H, W]``), which
differ from this gray image by up to 2 gray levels (the channels were written identical; MJPG's
chroma rounding makes them differ by a unit or two).

:class:`EchoNetDataset` is a :class:`echobook.data.table.VideoTable`, so the clip loaders of
:mod:`echobook.data.clips` take it (or any other table) directly.

Missing or unreadable files and missing columns raise an error that names the file (and the column).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import pandas as pd

from echobook.data.folders import prepare_output_folder
from echobook.data.geometry import MASK_RULES, tracing_area_px2, tracing_to_mask
from echobook.data.table import SPLITS, split_names

FILELIST_NAME = "FileList.csv"
TRACINGS_NAME = "VolumeTracings.csv"
VIDEOS_DIR = "Videos"
VIDEO_SUFFIX = ".avi"

FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
# Without these a FileList is useless for EF regression; the others can be read from the video.
REQUIRED_FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "Split")
OPTIONAL_FILELIST_COLUMNS = ("FrameHeight", "FrameWidth", "FPS", "NumberOfFrames")

# Videos per split in the public release (FileList.csv), the proportions synthetic sets copy.
ECHONET_SPLIT_COUNTS = {"TRAIN": 7465, "VAL": 1288, "TEST": 1277}

ROWS_PER_TRACING = 21  # the long axis + 20 chords
# EF and volumes must agree: the release's rows satisfy EF = 100 (EDV - ESV) / EDV to 7e-8 (reference sec. 1.2);
# one EF point leaves room for volumes rounded to a decimal in other copies, and catches a mistyped EF.
EF_VOLUME_TOLERANCE_PERCENT = 1.0
FOURCC = "MJPG"  # what the release's conversion notebook and echonet.utils.savevideo write


class EchoNetFormatError(ValueError):
    """A file of an EchoNet-style folder is not in the expected format (the message names file and field)."""


class BrokenVideoError(ValueError):
    """A video decodes fewer frames than its FileList row (or its header) says it has: truncated or damaged."""


# --------------------------------------------------------------------------------------------- problems

@dataclass
class Problems:
    """Counts of every quirk or fault met while reading, each with a few example file names.

    ``fatal`` kinds make a folder unusable (:func:`check_echonet` reports them; the reader raises).
    """

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    fatal: set = field(default_factory=set)
    max_examples: int = 3

    def add(self, kind: str, count: int = 1, examples: Iterable[str] = (), *, fatal: bool = False) -> None:
        if count <= 0:
            return
        self.counts[kind] += int(count)
        kept = self.examples.setdefault(kind, [])
        for name in examples:
            if len(kept) >= self.max_examples:
                break
            if name not in kept:
                kept.append(str(name))
        if fatal:
            self.fatal.add(kind)

    def merge(self, other: "Problems") -> None:
        for kind, count in other.counts.items():
            self.add(kind, count, other.examples.get(kind, ()), fatal=kind in other.fatal)

    def __getitem__(self, kind: str) -> int:
        return self.counts.get(kind, 0)

    def __len__(self) -> int:
        return len(self.counts)

    def __bool__(self) -> bool:
        return bool(self.counts)

    @property
    def usable(self) -> bool:
        return not self.fatal

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def lines(self) -> list[str]:
        out = []
        for kind, count in self.counts.items():
            tag = "ERROR " if kind in self.fatal else ""
            example = self.examples.get(kind)
            suffix = f"  (e.g. {', '.join(example)})" if example else ""
            out.append(f"{tag}{kind}: {count}{suffix}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines()) or "no problems found"


# Problem kinds, named once so that tests and the report use the same words.
EXTRA_COLUMNS = "extra FileList columns ignored"
OPTIONAL_COLUMN_MISSING = "optional FileList column missing (value taken from the video)"
FILELIST_WITH_AVI = "FileList names ending in .avi (extension dropped)"
SPLIT_CASE = "Split values not in upper case (upper-cased)"
UNKNOWN_SPLIT = "FileList rows with a Split other than TRAIN/VAL/TEST (excluded)"
NO_EF = "FileList rows without a numeric EF (excluded)"
NO_VOLUMES = "FileList rows without a numeric ESV or EDV (kept; volumes are NaN)"
EF_OUT_OF_RANGE = "FileList rows with an EF outside 0-100 % (excluded)"
BAD_VOLUMES = "FileList rows with an EDV or ESV not above 0 mL, or an ESV not below the EDV (excluded)"
EF_VOLUMES_DISAGREE = (f"FileList rows whose EF differs from 100 (EDV - ESV) / EDV by more than "
                       f"{EF_VOLUME_TOLERANCE_PERCENT:g} EF point (excluded)")
EMPTY_SPLIT = "splits with no videos (training needs TRAIN and VAL, the book's evaluation TEST)"
DUPLICATE_ROWS = "duplicate FileName rows in FileList (first kept)"
TRACING_UNKNOWN_FILE = "tracing files absent from FileList (ignored)"
TRACING_BAD_ROWS = "tracing rows with a missing or non-numeric value (ignored)"
TRACING_EXTRA_ROWS = "traced frames with more than 21 rows (first 21 used)"
TRACING_SHORT = "traced frames with fewer than 21 rows (ignored)"
TRACING_OUTSIDE = "tracing rows with a coordinate outside the image (clipped)"
TRACING_BEYOND_VIDEO = "traced frames beyond the video's last frame (ignored)"
NO_TRACINGS = "videos without two usable traced frames (kept for EF, flagged for tracing tasks)"
MORE_THAN_TWO = "videos with more than two traced frames (largest area is ED, smallest ES)"
ED_LISTED_FIRST = "videos whose ED tracing is listed before ES (order not trusted; area decides)"
MISSING_VIDEO = "videos listed in FileList but missing from Videos/"
UNREADABLE_VIDEO = "videos OpenCV cannot read"
TRUNCATED_VIDEO = "videos whose last frame does not decode (truncated or damaged)"
FRAME_COUNT_MISMATCH = "videos whose frame count differs from NumberOfFrames"
FRAME_SIZE_MISMATCH = "videos whose size differs from FrameHeight/FrameWidth"
UNLISTED_VIDEO = "videos in Videos/ without a FileList row (ignored)"


# --------------------------------------------------------------------------------------------- names

def video_stem(name: str) -> str:
    """``0X1A.avi`` and ``0X1A`` both name the video ``0X1A`` (FileList has no extension, tracings have it)."""
    name = str(name).strip()
    return name[: -len(VIDEO_SUFFIX)] if name.lower().endswith(VIDEO_SUFFIX) else name


def _stems(names: pd.Series) -> pd.Series:
    names = names.astype(str).str.strip()
    return names.str.replace(r"\.avi$", "", case=False, regex=True)


def assign_splits(count: int, seed: int) -> list[str]:
    """TRAIN/VAL/TEST labels in EchoNet-Dynamic's 7465/1288/1277 proportions, shuffled by ``seed``.

    With three or more videos each split gets at least one, so a tiny set still has all three.
    """
    total = sum(ECHONET_SPLIT_COUNTS.values())
    val = round(count * ECHONET_SPLIT_COUNTS["VAL"] / total)
    test = round(count * ECHONET_SPLIT_COUNTS["TEST"] / total)
    if count >= 3:
        val, test = max(val, 1), max(test, 1)
    train = count - val - test
    labels = np.array(["TRAIN"] * train + ["VAL"] * val + ["TEST"] * test)
    order = np.random.default_rng(seed).permutation(count)
    return labels[order].tolist()


# --------------------------------------------------------------------------------------------- video files

def load_video(path: str | Path, stop: int | None = None) -> np.ndarray:
    """The frames of a video file as uint8 gray ``[T, H, W]`` (``stop``: read at most that many frames).

    Any codec OpenCV reads; colour frames are converted to gray with OpenCV's BGR-to-gray weights.
    EchoNet's AVIs hold 3 channels written identical, but MJPG's chroma rounding makes them differ
    by a unit, so one channel alone is not enough. This differs from the official loader
    (``echonet.utils.loadvideo``), which keeps the three decoded channels ``[3, T, H, W]``: its
    values differ from this gray image by up to 2 gray levels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this video")
        frames = []
        while stop is None or len(frames) < stop:
            ok, frame = capture.read()
            if not ok:
                break
            if frame.ndim == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{path}: no frame could be read (empty or corrupt video)")
    return np.stack(frames).astype(np.uint8, copy=False)


def probe_video(path: str | Path) -> dict[str, float]:
    """Frame count, height, width and FPS from the file's header, without decoding the frames."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this video")
        return {
            "frames": int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "fps": float(capture.get(cv2.CAP_PROP_FPS)),
        }
    finally:
        capture.release()


def save_video(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write uint8 gray ``[T, H, W]`` frames as an MJPG AVI with 3 identical channels, as EchoNet does."""
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 [T, H, W], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), float(fps), (width, height), True)
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an {FOURCC} video here")
    try:
        for gray in frames:
            writer.write(cv2.merge([gray, gray, gray]))
    finally:
        writer.release()


# --------------------------------------------------------------------------------------------- tracings geometry

def tracing_mask(tracing: np.ndarray, height: int, width: int, rule: str = "exact") -> np.ndarray:
    """uint8 {0, 1} LV mask ``[H, W]`` of a tracing (the package's one rasteriser, in geometry.py).

    ``rule``: ``"exact"`` (default) or ``"echonet"`` (the official loader's masks); see
    :func:`echobook.data.geometry.polygon_to_mask`.
    """
    return tracing_to_mask(tracing, (height, width), rule=rule)


# --------------------------------------------------------------------------------------------- reading

def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        # names stay text ("0X..." must never become a number); utf-8-sig drops a BOM before the header
        frame = pd.read_csv(path, dtype={"FileName": str, "Split": str}, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise EchoNetFormatError(f"{path}: cannot be read as CSV ({error})") from error
    frame.columns = [str(column).strip() for column in frame.columns]
    return frame


def _require_columns(frame: pd.DataFrame, required: Sequence[str], path: Path) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise EchoNetFormatError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found {', '.join(repr(c) for c in frame.columns)})"
        )


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce")


def read_filelist(root: str | Path, problems: Problems | None = None) -> pd.DataFrame:
    """FileList.csv as a clean table: one row per usable video, columns named with units.

    Columns: ``name`` (no extension), ``split`` (TRAIN/VAL/TEST), ``ef_percent``, ``esv_ml``,
    ``edv_ml``, ``frame_height``, ``frame_width``, ``fps``, ``frame_count`` (NaN where the
    column is missing: read them from the video).
    """
    problems = Problems() if problems is None else problems
    path = Path(root) / FILELIST_NAME
    raw = _read_csv(path)
    _require_columns(raw, REQUIRED_FILELIST_COLUMNS, path)
    extra = [c for c in raw.columns if c not in FILELIST_COLUMNS]
    problems.add(EXTRA_COLUMNS, len(extra), extra)
    missing_optional = [c for c in OPTIONAL_FILELIST_COLUMNS if c not in raw.columns]
    problems.add(OPTIONAL_COLUMN_MISSING, len(missing_optional), missing_optional)

    names = raw["FileName"].astype(str).str.strip()
    with_avi = names.str.lower().str.endswith(VIDEO_SUFFIX)
    problems.add(FILELIST_WITH_AVI, int(with_avi.sum()), names[with_avi])
    split_text = raw["Split"].astype(str).str.strip()
    split = split_text.str.upper()
    problems.add(SPLIT_CASE, int((split_text != split).sum()), names[split_text != split])

    table = pd.DataFrame({
        "name": _stems(names),
        "split": split,
        "ef_percent": _numeric(raw, "EF"),
        "esv_ml": _numeric(raw, "ESV"),
        "edv_ml": _numeric(raw, "EDV"),
        "frame_height": _numeric(raw, "FrameHeight"),
        "frame_width": _numeric(raw, "FrameWidth"),
        "fps": _numeric(raw, "FPS"),
        "frame_count": _numeric(raw, "NumberOfFrames"),
    })
    unknown_split = ~table["split"].isin(SPLITS)
    problems.add(UNKNOWN_SPLIT, int(unknown_split.sum()), table.loc[unknown_split, "name"])
    no_ef = table["ef_percent"].isna()
    problems.add(NO_EF, int(no_ef.sum()), table.loc[no_ef, "name"])
    no_volumes = table[["esv_ml", "edv_ml"]].isna().any(axis=1) & ~no_ef
    problems.add(NO_VOLUMES, int(no_volumes.sum()), table.loc[no_volumes, "name"])
    bad_label = _label_problems(table, problems)
    table = table[~unknown_split & ~no_ef & ~bad_label]
    duplicate = table["name"].duplicated(keep="first")
    problems.add(DUPLICATE_ROWS, int(duplicate.sum()), table.loc[duplicate, "name"])
    return table[~duplicate].reset_index(drop=True)


def _label_problems(table: pd.DataFrame, problems: Problems) -> pd.Series:
    """Rows whose EF or volumes cannot be right, each kind counted with examples (NaN volumes are not judged)."""
    ef, edv, esv = table["ef_percent"], table["edv_ml"], table["esv_ml"]
    out_of_range = (ef < 0) | (ef > 100)
    has_volumes = edv.notna() & esv.notna()
    bad_volumes = has_volumes & ((edv <= 0) | (esv <= 0) | (esv >= edv)) & ~out_of_range
    volume_ef = 100 * (edv - esv) / edv
    disagree = has_volumes & ~bad_volumes & ~out_of_range & ((ef - volume_ef).abs() > EF_VOLUME_TOLERANCE_PERCENT)
    for kind, rows in ((EF_OUT_OF_RANGE, out_of_range), (BAD_VOLUMES, bad_volumes), (EF_VOLUMES_DISAGREE, disagree)):
        problems.add(kind, int(rows.sum()), table.loc[rows, "name"])
    return out_of_range | bad_volumes | disagree


def read_tracings(root: str | Path, filelist: pd.DataFrame,
                  problems: Problems | None = None) -> dict[str, dict[int, np.ndarray]]:
    """VolumeTracings.csv as ``{name: {frame: float32 [21, 4] (X1, Y1, X2, Y2)}}``, frames in file order.

    ``filelist`` (from :func:`read_filelist`) gives the known names, the image sizes used for
    clipping and the frame counts; every deviation is counted in ``problems``.
    """
    problems = Problems() if problems is None else problems
    path = Path(root) / TRACINGS_NAME
    raw = _read_csv(path)
    _require_columns(raw, TRACING_COLUMNS, path)
    rows = pd.DataFrame({"name": _stems(raw["FileName"])})
    for column in ("X1", "Y1", "X2", "Y2", "Frame"):
        rows[column] = _numeric(raw, column)

    known = rows["name"].isin(set(filelist["name"]))
    problems.add(TRACING_UNKNOWN_FILE, rows.loc[~known, "name"].nunique(), rows.loc[~known, "name"].unique())
    rows = rows[known]
    bad = rows[["X1", "Y1", "X2", "Y2", "Frame"]].isna().any(axis=1) | (rows["Frame"] % 1 != 0)
    problems.add(TRACING_BAD_ROWS, int(bad.sum()), rows.loc[bad, "name"].unique())
    rows = _clip_to_image(rows[~bad].copy(), filelist, problems)
    rows["Frame"] = rows["Frame"].astype(np.int64)

    frame_counts = filelist.set_index("name")["frame_count"]
    coordinates = rows[["X1", "Y1", "X2", "Y2"]].to_numpy(np.float32)
    tracings: dict[str, dict[int, np.ndarray]] = {}
    groups = rows.groupby(["name", "Frame"], sort=False).indices
    for (name, frame), positions in sorted(groups.items(), key=lambda group: group[1][0]):  # file order
        if len(positions) < ROWS_PER_TRACING:
            problems.add(TRACING_SHORT, 1, [name])
            continue
        if len(positions) > ROWS_PER_TRACING:
            problems.add(TRACING_EXTRA_ROWS, 1, [name])
        count = frame_counts.get(name, np.nan)
        if frame < 0 or (not np.isnan(count) and frame >= count):
            problems.add(TRACING_BEYOND_VIDEO, 1, [name])
            continue
        tracings.setdefault(name, {})[int(frame)] = coordinates[positions[:ROWS_PER_TRACING]]
    return tracings


def _clip_to_image(rows: pd.DataFrame, filelist: pd.DataFrame, problems: Problems) -> pd.DataFrame:
    """Clip coordinates to [0, size - 1] where FileList gives the size (it does for the release)."""
    sizes = filelist.set_index("name")[["frame_height", "frame_width"]]
    height = rows["name"].map(sizes["frame_height"]).to_numpy(float)
    width = rows["name"].map(sizes["frame_width"]).to_numpy(float)
    x_max = np.where(np.isnan(width), np.inf, width - 1)[:, None]
    y_max = np.where(np.isnan(height), np.inf, height - 1)[:, None]
    xs, ys = rows[["X1", "X2"]].to_numpy(float), rows[["Y1", "Y2"]].to_numpy(float)
    outside = ((xs < 0) | (xs > x_max) | (ys < 0) | (ys > y_max)).any(axis=1)
    problems.add(TRACING_OUTSIDE, int(outside.sum()), rows.loc[outside, "name"].unique())
    rows[["X1", "X2"]] = np.clip(xs, 0, x_max)
    rows[["Y1", "Y2"]] = np.clip(ys, 0, y_max)
    return rows


def choose_ed_es(frames: dict[int, np.ndarray], name: str, problems: Problems) -> tuple[int, int] | None:
    """(ED frame, ES frame): the traced frames with the largest and the smallest LV area.

    ``None`` when fewer than two frames are traced. The CSV order is only used to count how often
    it disagrees with the official loader's assumption (ES listed first).
    """
    if len(frames) < 2:
        return None
    listed = list(frames)
    areas = {frame: tracing_area_px2(tracing) for frame, tracing in frames.items()}
    ed_frame = max(listed, key=areas.__getitem__)
    es_frame = min(listed, key=areas.__getitem__)
    if len(frames) > 2:
        problems.add(MORE_THAN_TWO, 1, [name])
    if listed.index(ed_frame) < listed.index(es_frame):
        problems.add(ED_LISTED_FIRST, 1, [name])
    return ed_frame, es_frame


@dataclass(frozen=True)
class EchoNetRecord:
    """One video's labels, without its frames (cheap to hold for 10,030 videos)."""

    name: str
    path: Path
    split: str
    ef_percent: float
    esv_ml: float
    edv_ml: float
    fps: float  # NaN where FileList has no FPS column
    frame_count: int  # -1 where FileList has no NumberOfFrames column
    frame_height: int  # -1 where unknown
    frame_width: int  # -1 where unknown
    ed_frame: int = -1  # -1: no usable tracings
    es_frame: int = -1
    ed_tracing: np.ndarray | None = field(default=None, repr=False)  # float32 [21, 4]
    es_tracing: np.ndarray | None = field(default=None, repr=False)

    @property
    def has_tracings(self) -> bool:
        return self.ed_tracing is not None


@dataclass
class EchoNetItem:
    """A video with its labels: what ``EchoNetDataset[i]`` returns."""

    record: EchoNetRecord
    video: np.ndarray  # uint8 [T, H, W]
    ed_mask: np.ndarray | None  # uint8/bool [H, W] of the ED tracing, None without tracings
    es_mask: np.ndarray | None

    def __getattr__(self, name):  # the record's fields read as the item's own (item.ef_percent)
        if name == "record":
            raise AttributeError(name)
        return getattr(self.record, name)


def _int_or(value: float, default: int) -> int:
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def build_records(root: Path, filelist: pd.DataFrame, tracings: dict, problems: Problems) -> list[EchoNetRecord]:
    """One record per FileList row, with ED/ES chosen by area; videos lacking tracings are counted."""
    records = []
    for row in filelist.itertuples(index=False):
        frames = tracings.get(row.name, {})
        chosen = choose_ed_es(frames, row.name, problems)
        if chosen is None:
            problems.add(NO_TRACINGS, 1, [row.name])
        ed, es = chosen if chosen else (-1, -1)
        records.append(EchoNetRecord(
            name=row.name, path=root / VIDEOS_DIR / f"{row.name}{VIDEO_SUFFIX}", split=row.split,
            ef_percent=float(row.ef_percent), esv_ml=float(row.esv_ml), edv_ml=float(row.edv_ml),
            fps=float(row.fps), frame_count=_int_or(row.frame_count, -1),
            frame_height=_int_or(row.frame_height, -1), frame_width=_int_or(row.frame_width, -1),
            ed_frame=ed, es_frame=es,
            ed_tracing=frames[ed] if chosen else None, es_tracing=frames[es] if chosen else None,
        ))
    return records


class EchoNetDataset:
    """An EchoNet-Dynamic-style folder (real or synthetic), one split or several: a
    :class:`~echobook.data.table.VideoTable`.

    ``dataset[i]`` reads the video (uint8 gray ``[T, H, W]``) and builds the ED/ES masks
    (``mask_rule``: see :func:`echobook.data.geometry.polygon_to_mask`); ``dataset.records[i]``
    holds the labels alone. ``require_tracings=True`` drops the videos without two usable traced
    frames, as the official EchoNet and CoReEcho loaders do (their names: ``dropped_untraced``);
    otherwise they stay, with ``has_tracings`` False. Every video of the chosen splits must exist
    (as in the official loader): a missing one raises :class:`FileNotFoundError` naming it.
    ``problems`` counts what was found and handled; ``chosen_splits`` names the splits read.
    """

    def __init__(self, root: str | Path, split: str | Sequence[str] | None = None, *,
                 require_tracings: bool = False, mask_rule: str = "exact"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder (expected {FILELIST_NAME}, "
                                    f"{TRACINGS_NAME} and {VIDEOS_DIR}/ inside)")
        if mask_rule not in MASK_RULES:
            raise ValueError(f"mask_rule={mask_rule!r}: choose from {MASK_RULES}")
        self.chosen_splits = split_names(split)
        self.problems = Problems()
        self.mask_rule = mask_rule
        self._header_frames: dict[str, int] = {}  # frame counts read from headers where FileList has none
        filelist = read_filelist(self.root, self.problems)
        tracings = read_tracings(self.root, filelist, self.problems)
        records = build_records(self.root, filelist, tracings, self.problems)
        records = [r for r in records if r.split in self.chosen_splits]
        self.records: list[EchoNetRecord] = [r for r in records if r.has_tracings or not require_tracings]
        self._dropped: list[EchoNetRecord] = [r for r in records if require_tracings and not r.has_tracings]
        self._require_videos()

    def _require_videos(self) -> None:
        missing = [r.path for r in self.records if not r.path.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:3])
            raise FileNotFoundError(f"{len(missing)} video(s) listed in {self.root / FILELIST_NAME} are missing: "
                                    f"{shown}{' ...' if len(missing) > 3 else ''}")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> EchoNetItem:
        record = self.records[index]
        video = self.video(index)
        masks = (None, None)
        if record.has_tracings:
            height, width = video.shape[1:]
            masks = tuple(tracing_mask(tracing, height, width, self.mask_rule)
                          for tracing in (record.ed_tracing, record.es_tracing))
        return EchoNetItem(record=record, video=video, ed_mask=masks[0], es_mask=masks[1])

    def video(self, index: int, stop: int | None = None) -> np.ndarray:
        """uint8 gray ``[T, H, W]`` of video ``index`` (at most ``stop`` frames); see :func:`load_video`.

        Raises :class:`BrokenVideoError` when fewer frames decode than the video has (FileList's
        NumberOfFrames, else the header's count): a broken file is never passed on short.
        """
        record = self.records[index]
        frames = load_video(record.path, stop=stop)
        expected = int(self.frame_counts[index])
        wanted = expected if stop is None else min(stop, expected)
        if len(frames) < wanted:
            raise BrokenVideoError(f"{record.path}: only {len(frames)} of its {expected} frames decode "
                                   f"(NumberOfFrames in {FILELIST_NAME}, else the header); the file is truncated "
                                   f"or damaged: export it again or remove its row")
        return frames

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records]

    @property
    def paths(self) -> list[Path]:
        return [r.path for r in self.records]

    @property
    def ef_percent(self) -> np.ndarray:
        return np.array([r.ef_percent for r in self.records], dtype=np.float32)

    @property
    def fps(self) -> np.ndarray:
        """Frames per second from FileList (NaN where it has no FPS column)."""
        return np.array([r.fps for r in self.records], dtype=np.float64)

    @property
    def splits(self) -> np.ndarray:
        """Each video's split (TRAIN/VAL/TEST)."""
        return np.array([r.split for r in self.records], dtype=str)

    @property
    def frame_counts(self) -> np.ndarray:
        """Frame counts from FileList; where it has none, from the video's header (read once, without decoding)."""
        return np.array([r.frame_count if r.frame_count > 0 else self._header_frame_count(r)
                         for r in self.records], dtype=np.int64)

    def _header_frame_count(self, record: EchoNetRecord) -> int:
        if record.name not in self._header_frames:
            self._header_frames[record.name] = probe_video(record.path)["frames"]
        return self._header_frames[record.name]

    @property
    def frame_sizes(self) -> np.ndarray:
        """(FrameHeight, FrameWidth) from FileList, ``[N, 2]``, -1 where unknown."""
        sizes = [(r.frame_height, r.frame_width) for r in self.records]
        return np.array(sizes, dtype=np.int64).reshape(len(sizes), 2)

    @property
    def has_tracings(self) -> np.ndarray:
        """Whether each video has two usable traced frames (ED and ES)."""
        return np.array([r.has_tracings for r in self.records], dtype=bool)

    @property
    def traced(self) -> np.ndarray:
        """Indices of the videos usable for tracing tasks (two traced frames)."""
        return np.flatnonzero(self.has_tracings).astype(np.int64)

    @property
    def dropped_untraced(self) -> list[str]:
        """Names of the videos of these splits that ``require_tracings=True`` dropped (empty otherwise)."""
        return [r.name for r in self._dropped]

    def subset(self, split: str | Sequence[str]) -> "EchoNetDataset":
        """The same folder restricted to other splits, without re-reading the CSVs (same type and settings)."""
        splits = split_names(split)
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)  # root, problems, mask_rule, the shared header cache
        view.chosen_splits = splits
        view.records = [r for r in self.records if r.split in splits]
        view._dropped = [r for r in self._dropped if r.split in splits]
        return view

    def __repr__(self) -> str:
        dropped = f", dropped untraced={len(self._dropped)}" if self._dropped else ""
        return (f"EchoNetDataset({str(self.root)!r}, splits={'/'.join(self.chosen_splits)}, videos={len(self)}, "
                f"traced={len(self.traced)}{dropped}, problems={sum(self.problems.counts.values())})")


def read_echonet(root: str | Path, split: str | Sequence[str] | None = None, *,
                 require_tracings: bool = False, mask_rule: str = "exact") -> EchoNetDataset:
    """Read an EchoNet-Dynamic-style folder; see :class:`EchoNetDataset`."""
    return EchoNetDataset(root, split, require_tracings=require_tracings, mask_rule=mask_rule)


# --------------------------------------------------------------------------------------------- checking

@dataclass
class EchoNetReport:
    """What :func:`check_echonet` found: counts per split, EF statistics, problems, usability."""

    root: Path
    split_counts: dict[str, int] = field(default_factory=dict)
    traced_counts: dict[str, int] = field(default_factory=dict)
    ef_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)

    @property
    def usable(self) -> bool:
        return self.problems.usable and sum(self.split_counts.values()) > 0

    def as_dict(self) -> dict:
        return {
            "root": str(self.root), "usable": self.usable, "split_counts": self.split_counts,
            "traced_counts": self.traced_counts, "ef_stats": self.ef_stats,
            "problems": self.problems.as_dict(), "fatal": sorted(self.problems.fatal),
        }

    def __str__(self) -> str:
        lines = [f"EchoNet-Dynamic folder: {self.root}"]
        for split in (*SPLITS, "ALL"):
            if split in self.split_counts:
                stats = self.ef_stats.get(split, {})
                ef = (f"EF mean {stats['mean']:.1f} sd {stats['sd']:.1f} min {stats['min']:.1f} "
                      f"median {stats['median']:.1f} max {stats['max']:.1f} %" if stats.get("count") else "EF -")
                lines.append(f"  {split:<5} {self.split_counts[split]:>6} videos, "
                             f"{self.traced_counts.get(split, 0):>6} traced   {ef}")
        lines.append("problems found:" if self.problems else "problems found: none")
        lines += [f"  {line}" for line in self.problems.lines()]
        lines.append("usable: yes" if self.usable else "usable: NO")
        return "\n".join(lines)


def _ef_stats(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"count": 0}
    return {"count": int(len(values)), "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def last_frame_decodes(path: str | Path, frame_count: int) -> bool:
    """Whether frame ``frame_count - 1`` decodes: a truncated file keeps its header's count but loses the end."""
    capture = cv2.VideoCapture(str(path))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, max(frame_count - 1, 0))
        ok, _ = capture.read()
        return bool(ok)
    finally:
        capture.release()


def _check_videos(records: list[EchoNetRecord], root: Path, problems: Problems, open_videos: bool,
                  decode: bool) -> None:
    listed = set()
    for record in records:
        listed.add(record.path.name)
        if not record.path.is_file():
            problems.add(MISSING_VIDEO, 1, [record.path.name], fatal=True)
            continue
        if not open_videos:
            continue
        try:
            header = probe_video(record.path)
        except ValueError:
            problems.add(UNREADABLE_VIDEO, 1, [record.path.name], fatal=True)
            continue
        if header["frames"] <= 0:
            problems.add(UNREADABLE_VIDEO, 1, [record.path.name], fatal=True)
            continue
        if record.frame_count >= 0 and header["frames"] != record.frame_count:
            problems.add(FRAME_COUNT_MISMATCH, 1, [record.path.name])
        expected = record.frame_count if record.frame_count > 0 else header["frames"]
        if decode and not last_frame_decodes(record.path, expected):
            problems.add(TRUNCATED_VIDEO, 1, [record.path.name], fatal=True)
        listed_size = (record.frame_height, record.frame_width)
        if record.frame_height >= 0 and (header["height"], header["width"]) != listed_size:
            problems.add(FRAME_SIZE_MISMATCH, 1, [record.path.name])
    videos_dir = root / VIDEOS_DIR
    on_disk = set()
    if videos_dir.is_dir():
        on_disk = {p.name for p in videos_dir.iterdir() if p.suffix.lower() == VIDEO_SUFFIX}
    unlisted = sorted(on_disk - listed)
    problems.add(UNLISTED_VIDEO, len(unlisted), unlisted)


def check_echonet(root: str | Path, *, open_videos: bool = True, decode: bool = True) -> EchoNetReport:
    """Check an EchoNet-Dynamic-style folder without raising: counts, EF statistics and every problem.

    ``open_videos`` opens each video's header to find unreadable files and frame counts or sizes that
    disagree with FileList; ``decode`` also decodes each video's last frame, which finds truncated
    files (their header still counts every frame). ``decode=False`` is the fast path for huge folders:
    a truncated video then shows only when a loader reads it (:class:`BrokenVideoError`).
    """
    root = Path(root)
    report = EchoNetReport(root=root)
    problems = report.problems
    if not root.is_dir():
        problems.add(f"folder not found: {root}", 1, fatal=True)
        return report
    try:
        filelist = read_filelist(root, problems)
        tracings = read_tracings(root, filelist, problems)
    except (FileNotFoundError, EchoNetFormatError) as error:
        problems.add(str(error), 1, fatal=True)
        return report
    records = build_records(root, filelist, tracings, problems)
    _check_videos(records, root, problems, open_videos, decode)
    for split in (*SPLITS, "ALL"):
        chosen = [r for r in records if split == "ALL" or r.split == split]
        report.split_counts[split] = len(chosen)
        report.traced_counts[split] = sum(r.has_tracings for r in chosen)
        report.ef_stats[split] = _ef_stats(np.array([r.ef_percent for r in chosen]))
    empty = [split for split in SPLITS if report.split_counts[split] == 0]
    problems.add(EMPTY_SPLIT, len(empty), empty, fatal=True)
    return report


# --------------------------------------------------------------------------------------------- writing

def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite`` and written by echobook; then remove only what this writer
    writes (:func:`echobook.data.folders.prepare_output_folder`)."""
    prepare_output_folder(out_dir, overwrite, (FILELIST_NAME, TRACINGS_NAME, f"{VIDEOS_DIR}/*{VIDEO_SUFFIX}"),
                          "EchoNet-Dynamic")
    (out_dir / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)


def _tracing_rows(video) -> list[tuple]:
    """VolumeTracings rows of one video: the ES block first, then ED, as in the release."""
    rows = []
    order = [video.es_frame, video.ed_frame] + sorted(set(video.tracings) - {video.es_frame, video.ed_frame})
    for frame in order:
        if frame not in video.tracings:
            continue
        tracing = np.asarray(video.tracings[frame], dtype=np.float64)
        if tracing.shape != (ROWS_PER_TRACING, 4):
            raise ValueError(f"{video.name}: tracing of frame {frame} has shape {tracing.shape}, expected (21, 4)")
        rows += [(f"{video.name}{VIDEO_SUFFIX}", *map(float, row), int(frame)) for row in tracing]
    return rows


def write_echonet(out_dir: str | Path, videos: Iterable, splits: Sequence[str], *,
                  overwrite: bool = False, pool=None, ahead: int = 8) -> Path:
    """Write videos (``SyntheticVideo``-like objects) in the EchoNet-Dynamic layout; returns ``out_dir``.

    Each video needs ``name``, ``frames`` (uint8 ``[T, H, W]``), ``fps``, ``ef_percent``,
    ``esv_ml``, ``edv_ml``, ``ed_frame``, ``es_frame`` and ``tracings`` ({frame: [21, 4]}).
    ``splits`` gives each video's TRAIN/VAL/TEST. The same inputs give the same bytes.
    A non-empty ``out_dir`` is refused unless ``overwrite``.
    ``pool`` (a ``concurrent.futures`` executor) encodes the AVIs in its processes, at most ``ahead``
    waiting: encoding takes about as long as making a video, so in one process it is the bottleneck
    of a set formed on a GPU. The files are the same either way.
    """
    from collections import deque

    out_dir = Path(out_dir)
    _prepare_output(out_dir, overwrite)
    splits = [str(s).strip().upper() for s in splits]
    filelist_rows, tracing_rows, seen, encoding = [], [], set(), deque()
    for index, video in enumerate(videos):
        if index >= len(splits):
            raise ValueError(f"more videos than splits ({len(splits)})")
        if video.name in seen:
            raise ValueError(f"{video.name}: two videos have this name")
        seen.add(video.name)
        frames = np.asarray(video.frames)
        fps = int(round(float(video.fps)))  # FileList stores whole FPS; the AVI gets the same number
        avi = out_dir / VIDEOS_DIR / f"{video.name}{VIDEO_SUFFIX}"
        if pool is None:
            save_video(avi, frames, fps)
        else:
            encoding.append(pool.submit(save_video, avi, frames, fps))
            while len(encoding) > ahead:
                encoding.popleft().result()  # also raises a worker's error here
        filelist_rows.append((video.name, float(video.ef_percent), float(video.esv_ml), float(video.edv_ml),
                              frames.shape[1], frames.shape[2], fps, frames.shape[0], splits[index]))
        tracing_rows += _tracing_rows(video)
    for job in encoding:
        job.result()
    if len(filelist_rows) != len(splits):
        raise ValueError(f"{len(splits)} splits for {len(filelist_rows)} videos")
    pd.DataFrame(filelist_rows, columns=list(FILELIST_COLUMNS)).to_csv(
        out_dir / FILELIST_NAME, index=False, float_format="%.8f", lineterminator="\n")
    pd.DataFrame(tracing_rows, columns=list(TRACING_COLUMNS)).to_csv(
        out_dir / TRACINGS_NAME, index=False, float_format="%.6f", lineterminator="\n")
    return out_dir
