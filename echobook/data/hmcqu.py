"""HMC-QU on disk (Kaggle ``aysendegerli/hmcqu-dataset``): read the A4C recordings and their MI labels, check, write.

The layout of the current Kaggle release::

    <root>/A4C.xlsx                                         one row per recording (below)
    <root>/HMC-QU/A4C/<ECHO>.avi                            25 fps; the stem is the ECHO cell verbatim
    <root>/LV Ground-truth Segmentation Masks/Mask_<ECHO>.mat   variable ``predicted``, uint8 (F, 224, 224)

``A4C.xlsx`` has ten columns, used by position as the peer loaders do (the header cells are merged and
differ between copies): ECHO, the six segments SEG1, SEG2, SEG3, SEG5, SEG6, SEG7 (0 normal, 1
abnormal wall motion), the first and the last frame of one annotated cardiac cycle (1-based,
inclusive), and the mask flag: the Wingdings check mark, stored as the character ``'ü'``, where a
mask file exists. A recording shows **myocardial infarction (MI)** when any segment is abnormal.
Mask frame ``k`` is video frame ``reference - 1 + k`` (0-based), so ``F = end - reference + 1``.

What the reader does:

* the header row is the first row whose first cell is ``ECHO``; blank rows are skipped;
* columns after the tenth are ignored and counted; a segment that is not 0 or 1, or a frame number
  that is not a whole number (or a cycle ending before it starts), raises :class:`HmcquFormatError`
  naming the file, the row's ECHO and the column; a cycle ending after the video's last frame raises
  when the cycle is read (:meth:`HmcquDataset.cycle`), and :func:`check_hmcqu` counts it;
* ECHO names are kept verbatim, spaces included (some recordings have them);
* a mask flagged in the sheet but missing on disk is counted (``has_mask`` False); reading it raises
  :class:`FileNotFoundError` naming the file;
* a video OpenCV cannot read raises a ValueError naming the file when read (:func:`check_hmcqu` counts it);
* the older release (one ``HMC_QU.xlsx``, videos under ``HMC-QU Echos/``) is refused with a message
  that says so: its sheet's columns are not documented well enough to read them safely.

:class:`HmcquDataset` is a :class:`~echobook.data.table.VideoTable` (no EF: ``ef_percent`` is NaN; no
official split: every recording is ``TRAIN``, and cross-validation folds come from the caller).
:func:`write_hmcqu` writes the synthetic engine's hearts in this layout, with regional wall-motion
defects in about two recordings of three, a burned-in caption and an ECG strip outside the sector.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from echobook.data.echonet import Problems, load_video, probe_video, save_video
from echobook.data.folders import prepare_output_folder
from echobook.data.labels import LV_MYOCARDIUM
# Synthetic frames: the heart's square sector inside a wider frame (as the release's 422x636 to 768x1024 are),
# with a caption and an ECG strip: one home for that screen, shared with the synthetic DICOMs.
from echobook.data.synthetic.screen import (  # noqa: F401 (re-exported: HMC-QU's framing)
    CANVAS_ASPECT, CANVAS_HEIGHT_OVER_SECTOR, ECG_WINDOW_CYCLES, canvas_geometry, compose_frames, ecg_trace,
)
from echobook.data.table import split_names

SHEET_NAME = "A4C.xlsx"
VIDEOS_DIR = Path("HMC-QU") / "A4C"
MASKS_DIR = "LV Ground-truth Segmentation Masks"
MASK_PREFIX, MASK_VARIABLE = "Mask_", "predicted"
OLD_SHEET_NAME, OLD_VIDEOS_DIR = "HMC_QU.xlsx", "HMC-QU Echos"
MASK_FLAG = "\u00fc"  # 'ü': Wingdings' check mark as the text of the cell
MASK_SIZE = 224
HMCQU_FPS = 25.0
SEGMENT_COLUMNS = ("SEG1", "SEG2", "SEG3", "SEG5", "SEG6", "SEG7")
SHEET_COLUMNS = ("ECHO", *SEGMENT_COLUMNS, "Reference Frame", "End of Cycle",
                 "LV Wall Ground-truth Segmentation Masks")  # vital's names for the ten positions
SPLIT = "TRAIN"  # HMC-QU has no official split

# The Kaggle release's A4C subset with masks: 109 recordings, 72 MI and 37 non-MI, about two MI per normal one.
HMCQU_MI_SHARE = 72 / 109
HMCQU_MASK_SHARE = 109 / 162  # recordings with a mask among the 162 A4C ones


class HmcquFormatError(ValueError):
    """An HMC-QU file is not in the expected format (the message names the file, the row and the column)."""


EXTRA_COLUMNS = "sheet columns after the tenth (ignored)"
BLANK_ROWS = "blank sheet rows (skipped)"
MASK_MISSING = "masks flagged in the sheet but missing on disk"
UNFLAGGED_MASK = "mask files present but not flagged in the sheet (used)"
MISSING_VIDEO = "videos listed in the sheet but missing"
UNREADABLE_VIDEO = "videos OpenCV cannot read"
CYCLE_BEYOND_VIDEO = "recordings whose annotated cycle ends after the video's last frame"
MASK_FRAMES_MISMATCH = "masks whose frame count differs from End - Reference + 1"


# --------------------------------------------------------------------------------------------- the sheet

def refuse_old_layout(root: Path) -> None:
    """Raise a clear error for the older single-spreadsheet release."""
    if (root / OLD_SHEET_NAME).is_file() or (root / OLD_VIDEOS_DIR).is_dir():
        raise HmcquFormatError(
            f"{root}: this is the older HMC-QU release ({OLD_SHEET_NAME}, '{OLD_VIDEOS_DIR}/'), whose sheet "
            f"layout is not documented well enough to read safely; echobook reads the current Kaggle release "
            f"({SHEET_NAME}, '{VIDEOS_DIR.as_posix()}/', '{MASKS_DIR}/')")


def _header_row(raw: pd.DataFrame, path: Path) -> int:
    for row in range(len(raw)):
        if str(raw.iat[row, 0]).strip().upper() == "ECHO":
            return row
    raise HmcquFormatError(f"{path}: no header row whose first cell is 'ECHO'")


def _whole_number(value, path: Path, echo: str, column: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number != int(number):
        raise HmcquFormatError(f"{path}: row {echo!r}, column {column}: {value!r} is not a whole number")
    return int(number)


def _segment_labels(row: Sequence, path: Path, echo: str) -> list[int]:
    labels = []
    for column, value in zip(SEGMENT_COLUMNS, row):
        label = _whole_number(value, path, echo, column)
        if label not in (0, 1):
            raise HmcquFormatError(f"{path}: row {echo!r}, column {column}: {label} is not 0 (normal) or 1 (MI)")
        labels.append(label)
    return labels


def read_sheet(path: str | Path, problems: Problems | None = None) -> pd.DataFrame:
    """``A4C.xlsx`` as a clean table: ``echo`` (verbatim), ``seg1..seg7`` (0/1), ``reference_frame`` and
    ``end_frame`` (1-based, inclusive, as stored), ``mask_flag`` (bool), ``mi`` (any segment abnormal)."""
    path = Path(path)
    problems = Problems() if problems is None else problems
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sheet not found")
    try:
        raw = pd.read_excel(path, header=None, dtype=object, engine="openpyxl")
    except Exception as error:  # openpyxl raises several kinds for a damaged workbook
        raise HmcquFormatError(f"{path}: cannot be read as an xlsx workbook ({type(error).__name__}: {error})") from error
    header = _header_row(raw, path)
    if raw.shape[1] < len(SHEET_COLUMNS):
        raise HmcquFormatError(f"{path}: {raw.shape[1]} columns, expected {len(SHEET_COLUMNS)} "
                               f"({', '.join(SHEET_COLUMNS)})")
    extra = [str(raw.iat[header, c]) for c in range(len(SHEET_COLUMNS), raw.shape[1])]
    problems.add(EXTRA_COLUMNS, len(extra), extra)
    rows = []
    for position in range(header + 1, len(raw)):
        values = raw.iloc[position, :len(SHEET_COLUMNS)].tolist()
        if pd.isna(values[0]) or str(values[0]).strip() == "":
            problems.add(BLANK_ROWS, 1, [f"row {position + 1}"])
            continue
        rows.append(_sheet_row(values, path))
    if not rows:
        raise HmcquFormatError(f"{path}: no recording listed under the header")
    table = pd.DataFrame(rows)
    duplicated = table["echo"][table["echo"].duplicated()].tolist()
    if duplicated:
        raise HmcquFormatError(f"{path}: ECHO {duplicated[0]!r} is listed twice")
    return table


def _sheet_row(values: list, path: Path) -> dict:
    echo = str(values[0])  # verbatim: names may hold spaces
    segments = _segment_labels(values[1:7], path, echo)
    reference = _whole_number(values[7], path, echo, "Reference Frame")
    end = _whole_number(values[8], path, echo, "End of Cycle")
    if not 1 <= reference <= end:
        raise HmcquFormatError(f"{path}: row {echo!r}: Reference Frame {reference} and End of Cycle {end} "
                               "must satisfy 1 <= reference <= end")
    flag = values[9]
    flagged = not pd.isna(flag) and str(flag).strip() == MASK_FLAG
    if not pd.isna(flag) and str(flag).strip() not in ("", MASK_FLAG):
        raise HmcquFormatError(f"{path}: row {echo!r}, column {SHEET_COLUMNS[9]}: {flag!r} is neither "
                               f"{MASK_FLAG!r} nor empty")
    return {"echo": echo, **{c.lower(): s for c, s in zip(SEGMENT_COLUMNS, segments)},
            "reference_frame": reference, "end_frame": end, "mask_flag": flagged, "mi": any(segments)}


# --------------------------------------------------------------------------------------------- records

@dataclass(frozen=True)
class HmcquRecord:
    """One A4C recording: its files, its six segment labels and its annotated cycle (0-based, inclusive)."""

    echo: str
    video_path: Path
    mask_path: Path
    segments: tuple[int, ...]  # SEG1, SEG2, SEG3, SEG5, SEG6, SEG7 (labels.SEGMENTS["A4C"] order)
    cycle_start: int  # 0-based: Reference Frame - 1
    cycle_end: int  # 0-based, inclusive: End of Cycle - 1
    has_mask: bool

    @property
    def mi(self) -> bool:
        return any(self.segments)

    @property
    def cycle_frames(self) -> int:
        return self.cycle_end - self.cycle_start + 1


def read_mask(path: str | Path, expected_frames: int | None = None) -> np.ndarray:
    """uint8 ``[F, 224, 224]`` {0, 1} LV-wall masks of one recording (``predicted`` of the .mat file)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    try:
        contents = loadmat(str(path))
    except Exception as error:  # scipy raises several kinds for a damaged file
        raise HmcquFormatError(f"{path}: cannot be read as a .mat file ({type(error).__name__}: {error})") from error
    if MASK_VARIABLE not in contents:
        raise HmcquFormatError(f"{path}: no variable {MASK_VARIABLE!r} (found "
                               f"{', '.join(k for k in contents if not k.startswith('__'))})")
    masks = np.asarray(contents[MASK_VARIABLE])
    if masks.ndim != 3 or masks.shape[1:] != (MASK_SIZE, MASK_SIZE):
        raise HmcquFormatError(f"{path}: {MASK_VARIABLE} has shape {masks.shape}, expected (F, 224, 224)")
    if expected_frames is not None and len(masks) != expected_frames:
        raise HmcquFormatError(f"{path}: {len(masks)} mask frames, the sheet's cycle has {expected_frames}")
    return (masks > 0).astype(np.uint8)


def _records(root: Path, sheet: pd.DataFrame, problems: Problems) -> list[HmcquRecord]:
    records = []
    for row in sheet.itertuples(index=False):
        mask_path = root / MASKS_DIR / f"{MASK_PREFIX}{row.echo}.mat"
        exists = mask_path.is_file()
        problems.add(MASK_MISSING, int(row.mask_flag and not exists), [row.echo])
        problems.add(UNFLAGGED_MASK, int(exists and not row.mask_flag), [row.echo])
        records.append(HmcquRecord(
            echo=row.echo, video_path=root / VIDEOS_DIR / f"{row.echo}.avi", mask_path=mask_path,
            segments=tuple(int(getattr(row, c.lower())) for c in SEGMENT_COLUMNS),
            cycle_start=int(row.reference_frame) - 1, cycle_end=int(row.end_frame) - 1, has_mask=exists))
    return records


class HmcquDataset:
    """An HMC-QU folder's A4C recordings: a :class:`~echobook.data.table.VideoTable` with MI labels.

    ``records[i]`` holds recording ``i``'s labels; ``video(i)`` its frames, ``cycle(i)`` the annotated
    cycle, ``mask(i)`` its LV-wall masks. ``mi`` and ``segments`` are the labels as arrays. Every
    video listed must exist (a missing one raises naming it). ``problems`` counts what was handled.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder (expected {SHEET_NAME} and {VIDEOS_DIR}/ inside)")
        refuse_old_layout(self.root)
        self.problems = Problems()
        sheet = read_sheet(self.root / SHEET_NAME, self.problems)
        self.records: list[HmcquRecord] = _records(self.root, sheet, self.problems)
        self._headers: dict[str, dict] = {}
        missing = [r.video_path for r in self.records if not r.video_path.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:3])
            raise FileNotFoundError(f"{len(missing)} video(s) listed in {SHEET_NAME} are missing: {shown}")

    def __len__(self) -> int:
        return len(self.records)

    def _header(self, index: int) -> dict:
        record = self.records[index]
        if record.echo not in self._headers:
            self._headers[record.echo] = probe_video(record.video_path)
        return self._headers[record.echo]

    @property
    def names(self) -> list[str]:
        return [r.echo for r in self.records]

    @property
    def frame_counts(self) -> np.ndarray:
        """Frame counts from the videos' headers (read once each, without decoding)."""
        return np.array([self._header(i)["frames"] for i in range(len(self))], dtype=np.int64)

    @property
    def fps(self) -> np.ndarray:
        return np.array([self._header(i)["fps"] for i in range(len(self))], dtype=np.float64)

    @property
    def ef_percent(self) -> np.ndarray:
        """HMC-QU has no EF: NaN for every recording."""
        return np.full(len(self), np.nan, dtype=np.float32)

    @property
    def splits(self) -> np.ndarray:
        return np.full(len(self), SPLIT)

    @property
    def mi(self) -> np.ndarray:
        """bool ``[N]``: any segment abnormal."""
        return np.array([r.mi for r in self.records], dtype=bool)

    @property
    def segments(self) -> np.ndarray:
        """int ``[N, 6]``: SEG1, SEG2, SEG3, SEG5, SEG6, SEG7."""
        return np.array([r.segments for r in self.records], dtype=np.int64).reshape(len(self), 6)

    @property
    def has_mask(self) -> np.ndarray:
        return np.array([r.has_mask for r in self.records], dtype=bool)

    def video(self, index: int, stop: int | None = None) -> np.ndarray:
        """uint8 gray ``[T, H, W]`` (ValueError naming the file if OpenCV cannot read it)."""
        return load_video(self.records[index].video_path, stop=stop)

    def cycle(self, index: int) -> np.ndarray:
        """uint8 ``[F, H, W]``: the annotated cardiac cycle (Reference Frame to End of Cycle)."""
        record = self.records[index]
        frames = self.video(index, stop=record.cycle_end + 1)
        if len(frames) <= record.cycle_end:
            raise HmcquFormatError(f"{record.video_path}: {len(frames)} frames, but {SHEET_NAME} says its cycle "
                                   f"ends at frame {record.cycle_end + 1}")
        return frames[record.cycle_start:record.cycle_end + 1]

    def mask(self, index: int) -> np.ndarray:
        """uint8 ``[F, 224, 224]`` LV-wall masks of the annotated cycle."""
        record = self.records[index]
        return read_mask(record.mask_path, record.cycle_frames)

    def subset(self, split: str | Sequence[str]) -> "HmcquDataset":
        """Every recording is ``TRAIN`` (no official split): ``TRAIN`` or ``all`` gives them all, others none."""
        chosen = split_names(split)
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.records = list(self.records) if SPLIT in chosen else []
        return view

    def select(self, indices: Sequence[int]) -> "HmcquDataset":
        """The recordings at ``indices`` (a cross-validation fold), same folder and settings."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.records = [self.records[int(i)] for i in indices]
        return view

    def __repr__(self) -> str:
        return (f"HmcquDataset({str(self.root)!r}, recordings={len(self)}, MI={int(self.mi.sum())}, "
                f"masks={int(self.has_mask.sum())}, problems={sum(self.problems.counts.values())})")


def read_hmcqu(root: str | Path) -> HmcquDataset:
    """Read an HMC-QU folder (current Kaggle layout); see :class:`HmcquDataset`."""
    return HmcquDataset(root)


# --------------------------------------------------------------------------------------------- checking

@dataclass
class HmcquReport:
    """What :func:`check_hmcqu` found: recordings, MI and normal, masks, segment rates, problems."""

    root: Path
    recordings: int = 0
    mi: int = 0
    masks: int = 0
    segment_rates: dict[str, float] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)

    @property
    def usable(self) -> bool:
        return self.problems.usable and self.recordings > 0

    def as_dict(self) -> dict:
        return {"root": str(self.root), "usable": self.usable, "recordings": self.recordings, "mi": self.mi,
                "normal": self.recordings - self.mi, "masks": self.masks, "segment_rates": self.segment_rates,
                "problems": self.problems.as_dict(), "fatal": sorted(self.problems.fatal)}

    def __str__(self) -> str:
        lines = [f"HMC-QU folder: {self.root}",
                 f"  A4C recordings {self.recordings}: MI {self.mi}, normal {self.recordings - self.mi}; "
                 f"with LV-wall masks {self.masks}"]
        if self.segment_rates:
            lines.append("  abnormal share per segment: "
                         + ", ".join(f"{s} {r:.2f}" for s, r in self.segment_rates.items()))
        lines.append("problems found:" if self.problems else "problems found: none")
        lines += [f"  {line}" for line in self.problems.lines()]
        lines.append("usable: yes" if self.usable else "usable: NO")
        return "\n".join(lines)


def _check_videos(records: list[HmcquRecord], problems: Problems, open_videos: bool) -> None:
    for record in records:
        if not record.video_path.is_file():
            problems.add(MISSING_VIDEO, 1, [record.video_path.name], fatal=True)
            continue
        if not open_videos:
            continue
        try:
            frames = len(load_video(record.video_path))
        except ValueError:
            problems.add(UNREADABLE_VIDEO, 1, [record.video_path.name], fatal=True)
            continue
        problems.add(CYCLE_BEYOND_VIDEO, int(record.cycle_end >= frames), [record.echo])


def _check_masks(records: list[HmcquRecord], problems: Problems) -> None:
    for record in records:
        if record.has_mask:
            try:
                read_mask(record.mask_path, record.cycle_frames)
            except HmcquFormatError:
                problems.add(MASK_FRAMES_MISMATCH, 1, [record.mask_path.name])


def check_hmcqu(root: str | Path, *, open_videos: bool = True) -> HmcquReport:
    """Check an HMC-QU folder without raising: counts, MI, masks and every problem found.

    ``open_videos`` decodes each video (to find unreadable ones and cycles past a video's end) and
    reads each mask file.
    """
    root = Path(root)
    report = HmcquReport(root=root)
    try:
        if not root.is_dir():
            raise FileNotFoundError(f"folder not found: {root}")
        refuse_old_layout(root)
        sheet = read_sheet(root / SHEET_NAME, report.problems)
    except (FileNotFoundError, HmcquFormatError) as error:
        report.problems.add(str(error), 1, fatal=True)
        return report
    records = _records(root, sheet, report.problems)
    _check_videos(records, report.problems, open_videos)
    if open_videos:
        _check_masks(records, report.problems)
    report.recordings, report.mi = len(records), sum(r.mi for r in records)
    report.masks = sum(r.has_mask for r in records)
    rates = np.mean([r.segments for r in records], axis=0)
    report.segment_rates = {c: float(v) for c, v in zip(SEGMENT_COLUMNS, rates)}
    return report


# --------------------------------------------------------------------------------------------- writing

def hmcqu_synthetic_config(config=None):
    """The engine's config for HMC-QU-like recordings: A4C, 25 fps (the release's rate)."""
    from echobook.data.synthetic import SyntheticConfig

    base = SyntheticConfig() if config is None else config
    return dataclasses.replace(base, view="A4C", fps_range=(HMCQU_FPS, HMCQU_FPS))


def echo_name(index: int) -> str:
    """A recording name with a space in it, as some of the release's are."""
    return f"ES{index + 1:04d} 4CH_1"


def mi_plan(count: int, seed: int) -> np.ndarray:
    """bool ``[count]``: which synthetic recordings get a wall-motion defect, about two in three (the release's
    72 MI of 109), shuffled by ``seed``; at least one of each class when ``count`` >= 2."""
    mi_count = int(round(count * HMCQU_MI_SHARE))
    if count >= 2:
        mi_count = min(max(mi_count, 1), count - 1)
    plan = np.zeros(count, dtype=bool)
    plan[:mi_count] = True
    return np.random.default_rng([seed, 4241]).permutation(plan)


def annotated_cycle(video) -> tuple[int, int]:
    """(first, last) frame, 0-based inclusive, of one cycle from the video's ED: one mean beat long
    (``fps * 60 / heart rate`` frames), cut at the video's last frame."""
    beat_frames = max(2, int(round(video.fps * 60.0 / video.heart_rate_bpm)))
    last = min(video.ed_frame + beat_frames - 1, video.num_frames - 1)
    return int(video.ed_frame), int(last)


def cycle_masks(label_canvas: np.ndarray, first: int, last: int) -> np.ndarray:
    """uint8 ``[F, 224, 224]`` myocardium (LV wall) masks of frames ``first..last``, the whole frame resized."""
    import cv2

    return np.stack([cv2.resize((label_canvas[t] == LV_MYOCARDIUM).astype(np.uint8), (MASK_SIZE, MASK_SIZE),
                                interpolation=cv2.INTER_NEAREST) for t in range(first, last + 1)])


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    prepare_output_folder(out_dir, overwrite, (SHEET_NAME, "HMC-QU", MASKS_DIR), "HMC-QU")
    (out_dir / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / MASKS_DIR).mkdir(parents=True, exist_ok=True)


def write_hmcqu(out_dir: str | Path, videos: int, seed: int = 0, config=None, *, overwrite: bool = False,
                progress: bool = False) -> Path:
    """Write ``videos`` synthetic A4C recordings in HMC-QU's layout; returns ``out_dir``.

    Recording ``i`` is the engine's video ``(seed, i)`` with a wall-motion defect forced on or off by
    :func:`mi_plan` (the rest of the heart kept), framed by :func:`compose_frames`. Its row gives the six
    segments (hypo- or akinetic = 1), one cycle from ED, and the mask flag for about two thirds of the
    recordings, whose ``Mask_<ECHO>.mat`` holds the myocardium of that cycle. Same arguments, same files.
    """
    from scipy.io import savemat

    from echobook.data.synthetic import make_video

    if videos < 1:
        raise ValueError(f"videos={videos}: need at least one")
    out_dir = Path(out_dir)
    _prepare_output(out_dir, overwrite)
    config = hmcqu_synthetic_config(config)
    mi = mi_plan(videos, seed)
    with_mask = np.random.default_rng([seed, 4242]).uniform(size=videos) < HMCQU_MASK_SHARE
    rows = []
    for index in range(videos):
        if progress and index % 10 == 0:
            print(f"synth hmcqu: videos {index + 1}-{min(index + 10, videos)} of {videos}", flush=True)
        probability = 1.0 if mi[index] else 0.0
        video = make_video(seed, index, dataclasses.replace(config, wall_motion_probability=probability))
        name = echo_name(index)
        frames, label_canvas = compose_frames(video, name)
        save_video(out_dir / VIDEOS_DIR / f"{name}.avi", frames, HMCQU_FPS)
        first, last = annotated_cycle(video)
        if with_mask[index]:
            savemat(str(out_dir / MASKS_DIR / f"{MASK_PREFIX}{name}.mat"),
                    {MASK_VARIABLE: cycle_masks(label_canvas, first, last)}, do_compression=True)
        segments = (np.asarray(video.wall_motion) > 0).astype(int).tolist()
        rows.append([name, *segments, first + 1, last + 1, MASK_FLAG if with_mask[index] else None])
    pd.DataFrame(rows, columns=list(SHEET_COLUMNS)).to_excel(out_dir / SHEET_NAME, index=False, engine="openpyxl")
    return out_dir

