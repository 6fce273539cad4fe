"""``echobook predict``: a user's own recordings (DICOM, AVI, MP4, or folders of them) to EF, clip by clip.

For each recording: the frames (:mod:`echobook.data.dicom` masks everything outside the scan sector;
videos are read as EchoNet stores them), cut to the sector, resized to the model's input size and
resampled in time to the frame rate it was trained at (so that a clip spans the same part of a beat);
then EF for every clip of a sliding window over the whole recording, the recording's EF as their mean,
their spread, and a split-conformal interval (its half-width calibrated on the VAL videos of the model's
training folder and stored in its card, its coverage measured on the TEST videos). A CSV per recording and one summary CSV; a recording that fails is reported with its
error and the others go on. The model is any run folder written by ``echobook train`` (its card says how
to feed it).

These models are trained on synthetic hearts unless you trained them on real data: nothing here is a
medical device.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv")
DICOM_SUFFIXES = (".dcm", ".dicom")
DICOM_MAGIC_OFFSET = 128  # a DICOM file holds "DICM" after a 128-byte preamble, whatever its name
SUMMARY_CSV = "predictions.csv"


@dataclass
class Recording:
    """One recording as the model will see it (before resizing): gray frames cut to the sector."""

    name: str
    path: Path
    frames: np.ndarray  # uint8 [T, H, W]
    fps: float
    kind: str  # "DICOM" or "video"
    mm_per_pixel: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)
    sector: np.ndarray | None = None  # bool [H, W] of the frames (DICOM), None for a video file


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(DICOM_MAGIC_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def recording_paths(paths) -> list[Path]:
    """The recordings named: files as given, folders expanded to their videos and DICOMs (sorted)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                            and (p.suffix.lower() in VIDEO_SUFFIXES or is_dicom(p)))
        else:
            found.append(path)
    return found


def read_recording(path: str | Path) -> Recording:
    """A DICOM cine loop (sector-masked and cut to the sector's box) or a video file, as gray frames."""
    from echobook.data.dicom import read_dicom
    from echobook.data.echonet import load_video, probe_video

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such recording")
    if is_dicom(path):
        dicom = read_dicom(path)
        notes = [*dicom.notes, f"sector from the {dicom.sector_source}: {dicom.masked_fraction:.0%} of the image "
                               "(text, ECG, borders) masked"]
        x0, y0, x1, y1 = dicom.sector_box
        return Recording(path.stem, path, dicom.cropped(), dicom.fps, "DICOM", dicom.mm_per_pixel, notes,
                         sector=dicom.sector[y0:y1 + 1, x0:x1 + 1])
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"{path}: not a DICOM file and not a video ({', '.join(VIDEO_SUFFIXES)})")
    frames = load_video(path)
    fps = probe_video(path)["fps"]
    if not fps or fps <= 0:
        raise ValueError(f"{path}: the video's header gives no frame rate")
    return Recording(path.stem, path, frames, float(fps), "video")


def resample_frames(frames: np.ndarray, fps: float, target_fps: float) -> np.ndarray:
    """The frames at ``target_fps`` (nearest frame in time): a clip of the model's frame count then spans the
    same time as in training."""
    if not target_fps or abs(fps / target_fps - 1) < 0.05:
        return frames
    count = max(1, int(round(len(frames) * target_fps / fps)))
    index = np.minimum(np.round(np.arange(count) * fps / target_fps).astype(np.int64), len(frames) - 1)
    return frames[index]


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def window_starts(frame_count: int, clip_frames: int, clip_stride: int, step: int | None = None) -> np.ndarray:
    """Starts of the sliding window over a whole recording: every ``step`` frames (default half a clip's
    span), the last window ending at the last frame; one window (looped) for a recording shorter than a clip."""
    from echobook.data.clips import clip_span, last_start

    span = clip_span(clip_frames, clip_stride)
    step = step or max(1, span // 2)
    last = last_start(frame_count, clip_frames, clip_stride)
    starts = np.arange(0, last + 1, step)
    return np.unique(np.append(starts, last)).astype(np.int64)


def clips_of(frames: np.ndarray, starts: np.ndarray, clip_frames: int, clip_stride: int) -> np.ndarray:
    from echobook.data.clips import clip_indices

    index = np.stack([clip_indices(len(frames), clip_frames, clip_stride, int(s)) for s in starts])
    return frames[index][:, None]  # [N, 1, F, H, W]


def model_frames(recording: Recording, card: dict) -> np.ndarray:
    """The recording as the model sees it: resampled to its training frame rate, resized to its input size."""
    pre = card["preprocessing"]
    return resize_frames(resample_frames(recording.frames, recording.fps, pre.get("fps")), pre["image_size"])


def predict_recording(model: torch.nn.Module, card: dict, recording: Recording, *, batch_size: int = 8,
                      step: int | None = None) -> pd.DataFrame:
    """EF of every sliding-window clip of ``recording``: one row per clip (start and end in frames of
    :func:`model_frames`, start in seconds, EF in percent)."""
    pre = card["preprocessing"]
    frames = model_frames(recording, card)
    starts = window_starts(len(frames), pre["clip_frames"], pre["clip_stride"], step)
    clips = clips_of(frames, starts, pre["clip_frames"], pre["clip_stride"])
    fps = pre.get("fps") or recording.fps
    device = next(model.parameters()).device
    ef = []
    with torch.no_grad():
        for batch in np.array_split(clips, max(1, int(np.ceil(len(clips) / batch_size)))):
            x = (torch.from_numpy(batch).to(device).float() - pre["mean"]) / pre["std"]
            ef.append(model(x).float().reshape(-1).cpu().numpy())
    span = (pre["clip_frames"] - 1) * pre["clip_stride"]
    return pd.DataFrame({"start_frame": starts, "end_frame": np.minimum(starts + span, len(frames) - 1),
                         "start_s": starts / fps, "ef_percent": np.concatenate(ef)})


def summarise(recording: Recording, clips: pd.DataFrame, card: dict) -> dict:
    """The recording's EF (mean over its clips), their spread, and the card's conformal interval around it."""
    ef = clips["ef_percent"].to_numpy()
    half_width = card.get("conformal", {}).get("half_width_percent", float("nan"))
    return {"recording": recording.name, "path": str(recording.path), "kind": recording.kind, "status": "ok",
            "frames": len(recording.frames), "fps": recording.fps, "clips": len(ef),
            "ef_percent": float(ef.mean()), "ef_sd_over_clips": float(ef.std(ddof=1)) if len(ef) > 1 else 0.0,
            "ef_low_percent": float(ef.mean() - half_width), "ef_high_percent": float(ef.mean() + half_width),
            "interval_level": 1 - card.get("conformal", {}).get("alpha", float("nan")),
            "ef_min": float(ef.min()), "ef_max": float(ef.max()),
            "mm_per_pixel": "" if recording.mm_per_pixel is None else f"{recording.mm_per_pixel[0]:.3f}",
            "notes": "; ".join(recording.notes), "error": ""}


def predict_paths(paths, model_path, out_dir, *, device: str = "auto", progress: bool = True,
                  reports: bool = True) -> pd.DataFrame:
    """Predict every recording of ``paths`` with the run folder ``model_path``; in ``out_dir`` a CSV per
    recording (and with ``reports`` its overlay MP4 and HTML report, :mod:`echobook.report`) and the summary
    ``predictions.csv``. A recording that fails gets a row with its error."""
    from fastprogress.fastprogress import progress_bar

    from echobook.config import resolve_device
    from echobook.runs import load_trained

    model, card = load_trained(model_path, resolve_device(device))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, found = [], recording_paths(paths)
    for path in (progress_bar(found) if progress and found else found):
        start = time.perf_counter()
        try:
            recording = read_recording(path)
            clips = predict_recording(model, card, recording)
            clips.to_csv(out_dir / f"{recording.name}.csv", index=False)
            row = summarise(recording, clips, card)
            if reports:
                write_outputs(out_dir, recording, clips, row, card)
        except Exception as error:  # one recording's failure must not stop the others: report it
            row = {"recording": Path(path).stem, "path": str(path), "status": "failed",
                   "error": f"{type(error).__name__}: {error}"}
        row["seconds"] = round(time.perf_counter() - start, 3)
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary.to_csv(out_dir / SUMMARY_CSV, index=False)
    return summary


def write_outputs(out_dir: Path, recording: Recording, clips: pd.DataFrame, row: dict, card: dict) -> None:
    from echobook.report import write_overlay, write_report

    frames = model_frames(recording, card)
    fps = card["preprocessing"].get("fps") or recording.fps
    write_overlay(out_dir / f"{recording.name}.mp4", frames, fps, clips, recording.sector)
    write_report(out_dir / f"{recording.name}.html", row, clips, frames, card)


# --------------------------------------------------------------------------------------------- the command
def add_predict_parser(subparsers) -> None:
    predict = subparsers.add_parser(
        "predict", help="EF of your own recordings (DICOM, AVI, MP4 or folders) with a trained run",
        description="Predict EF clip by clip over each recording with a run folder of `echobook train`. "
                    "Writes a CSV per recording and predictions.csv. Not a medical device.")
    predict.add_argument("recordings", nargs="+", metavar="RECORDING")
    predict.add_argument("--model", required=True, help="a run folder written by `echobook train`")
    predict.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--no-report", action="store_true", help="CSV files only: no overlay video or HTML report")
    predict.add_argument("--quiet", action="store_true")
    predict.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from echobook.training import CheckpointError

    try:
        summary = predict_paths(args.recordings, args.model, args.out, device=args.device, progress=not args.quiet,
                                reports=not args.no_report)
    except (FileNotFoundError, CheckpointError) as error:
        print(f"echobook predict: {error}", file=sys.stderr)
        return 2
    if summary.empty:
        print("echobook predict: no recordings found", file=sys.stderr)
        return 2
    for row in summary.to_dict("records"):
        if row["status"] == "ok":
            print(f"{row['recording']}: EF {row['ef_percent']:.1f} % ({row['interval_level']:.0%} interval "
                  f"{row['ef_low_percent']:.1f}-{row['ef_high_percent']:.1f}; sd {row['ef_sd_over_clips']:.1f} over "
                  f"{row['clips']} clips)")
        else:
            print(f"{row['recording']}: FAILED {row['error']}")
    print(f"table: {Path(args.out) / SUMMARY_CSV}")
    return 0 if (summary["status"] == "ok").all() else 1
