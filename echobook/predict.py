"""``echobook predict``: a user's own recordings (DICOM, AVI, MP4, or folders of them) to EF, clip by clip.

For each recording: the frames (:mod:`echobook.data.dicom` masks everything outside the scan sector;
videos are read as EchoNet stores them), cut to the sector, resized to the model's input size and
resampled in time to the frame rate it was trained at (so that a clip spans the same part of a beat);
then EF for every clip of a sliding window over the whole recording, the recording's EF as their mean,
their spread, and a split-conformal interval (its half-width calibrated on the VAL videos of the model's
training folder and stored in its card, its coverage measured on the TEST videos).

Then the beats (:mod:`echobook.beats`): with a landmark model (Echo-E3Net) from the LV area curve inside its
ED outline, EF per beat by Simpson's single plane from the landmarks of the clips covering the beat, volumes
in mL where the DICOM gives the spacing; else from the period of the frames' self-similarity, EF per beat the
mean of the clip EFs covering it.

A segmentation model (chapter 9's ``echofm-seg``) gives no EF of its own: it labels every frame (each frame's
logits averaged over the sliding windows that cover it), the LV cavity's pixel count is the area curve the beats
come from, each beat's EDV and ESV are the method of discs on its ED and ES masks, and the recording's EF is the
mean of its beats' EF. Its clips table holds, for each window, the EF from that window's own largest (ED) and
smallest (ES) LV cavity mask. A CSV of clips and one of beats per recording, one summary CSV, an overlay
video and an HTML report (:mod:`echobook.report`); a recording that fails is reported with its error and the
others go on. The model is a run folder written by ``echobook train`` (its card says how to feed it), or an
official weights file (:mod:`echobook.official`: CoReEcho's, EchoNet-Dynamic's).

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
MASK_BEAT_SOURCE = ("LV area curve of the segmentation model's LV cavity masks (label 1): ED at its maxima, ES at "
                    "its minima")
WINDOW_EF_MEANING = "EF of each window (its own largest and smallest LV cavity mask)"


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
        x0, y0, x1, y1 = dicom.image_box
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


@dataclass
class Prediction:
    """What the model said about one recording, on the frames it saw (:func:`model_frames`)."""

    recording: Recording
    frames: np.ndarray  # uint8 [T, S, S]: the recording resampled and resized for the model
    fps: float  # of ``frames``
    clips: pd.DataFrame  # one row per sliding-window clip (start_frame, end_frame, start_s, ef_percent)
    beats: pd.DataFrame  # one row per whole beat (ED, ES, end frames, EF, volumes)
    beat_source: str  # how the beats were found
    period_frames: float  # the beat length from the frames' self-similarity (NaN: no whole beat)
    landmarks: np.ndarray | None = None  # float [N, 2, K, 2] per clip (ED, ES), normalised; None: an EF regressor
    cams: np.ndarray | None = None  # float [T, S, S] Grad-CAM per frame in [0, 1], when asked
    labels: np.ndarray | None = None  # uint8 [T, S, S] label map of every frame (a segmentation model), else None
    clip_ef_meaning: str = "EF of each clip"  # what the clips table's ef_percent holds


def normalisation(pre: dict, frames: np.ndarray) -> tuple[float, float]:
    """The card's (mean, std), or the recording's own when the card has none (EchoNet-Dynamic's weights)."""
    if pre.get("mean") is None or pre.get("std") is None:
        return float(frames.mean()), float(max(frames.std(), 1e-6))
    return float(pre["mean"]), float(pre["std"])


def _forward(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """EF ``[B]`` and, from a landmark model, its (ED, ES) landmarks ``[B, 2, K, 2]``."""
    out = model(x)
    landmarks = getattr(out, "landmarks", None)
    ef = getattr(out, "ef_percent", out)
    return (ef.float().reshape(-1).cpu().numpy(),
            None if landmarks is None else landmarks.float().cpu().numpy())


def predict_recording(model: torch.nn.Module, card: dict, recording: Recording, *, batch_size: int = 8,
                      step: int | None = None, gradcam: bool = False) -> Prediction:
    """EF of every sliding-window clip of ``recording`` (start and end in frames of :func:`model_frames`, start
    in seconds, EF in percent), its beats and each beat's EF (:func:`beat_table`). A segmentation model's card
    goes to :func:`predict_segmentation`."""
    if is_segmentation(card):
        if gradcam:
            raise ValueError("Grad-CAM is drawn for UniFormer models (CoReEcho); a segmentation model has none")
        return predict_segmentation(model, card, recording, batch_size=batch_size, step=step)
    pre = card["preprocessing"]
    frames = model_frames(recording, card)
    starts = window_starts(len(frames), pre["clip_frames"], pre["clip_stride"], step)
    clips = clips_of(frames, starts, pre["clip_frames"], pre["clip_stride"])
    fps = pre.get("fps") or recording.fps
    mean, std = normalisation(pre, frames)
    device = next(model.parameters()).device
    ef, landmarks = [], []
    with torch.no_grad():
        for batch in np.array_split(clips, max(1, int(np.ceil(len(clips) / batch_size)))):
            batch_ef, batch_landmarks = _forward(model, (torch.from_numpy(batch).to(device).float() - mean) / std)
            ef.append(batch_ef)
            landmarks.append(batch_landmarks)
    span = (pre["clip_frames"] - 1) * pre["clip_stride"]
    table = pd.DataFrame({"start_frame": starts, "end_frame": np.minimum(starts + span, len(frames) - 1),
                          "start_s": starts / fps, "ef_percent": np.concatenate(ef)})
    landmarks = None if landmarks[0] is None else np.concatenate(landmarks)
    prediction = Prediction(recording, frames, fps, table, pd.DataFrame(), "", float("nan"), landmarks)
    beat_table(prediction)
    if gradcam:
        prediction.cams = frame_cams(model, clips, starts, len(frames), pre, mean, std)
    return prediction


def is_segmentation(card: dict) -> bool:
    from echobook.methods.echofm import SEGMENTATION_METHOD

    return card.get("method") == SEGMENTATION_METHOD


def predict_segmentation(model: torch.nn.Module, card: dict, recording: Recording, *, batch_size: int = 8,
                         step: int | None = None) -> Prediction:
    """A segmentation model's label map of every frame of ``recording`` (:func:`segment_frames`), then the windows'
    and the beats' EF from its LV cavity masks (:func:`prediction_from_labels`)."""
    pre = card["preprocessing"]
    frames = model_frames(recording, card)
    clip_stride = pre.get("clip_stride", 1)  # chapter 9 trains on consecutive frames at the card's fps
    starts = window_starts(len(frames), pre["clip_frames"], clip_stride, step)
    labels = segment_frames(model, frames, starts, pre["clip_frames"], clip_stride, batch_size=batch_size)
    return prediction_from_labels(recording, frames, pre.get("fps") or recording.fps, labels, starts,
                                  pre["clip_frames"], clip_stride)


def segment_frames(model: torch.nn.Module, frames: np.ndarray, starts: np.ndarray, clip_frames: int,
                   clip_stride: int, *, batch_size: int = 8) -> np.ndarray:
    """uint8 ``[T, S, S]`` label map of every frame: the model over the windows starting at ``starts`` (pixels
    / 255, as chapter 9 trains it), each frame's logits averaged over the windows that cover it (so every frame is
    labelled once, from all the context the windows give it), then the most likely class."""
    from echobook.data.clips import clip_indices

    clips = clips_of(frames, starts, clip_frames, clip_stride)
    device = next(model.parameters()).device
    total, count = None, np.zeros(len(frames), np.float32)
    with torch.no_grad():
        for first in range(0, len(clips), batch_size):
            batch = torch.from_numpy(clips[first:first + batch_size]).to(device).float() / 255.0
            logits = model(batch).float().cpu().numpy()  # [B, K, F, S, S]
            if total is None:
                total = np.zeros((len(frames), logits.shape[1], *logits.shape[3:]), np.float32)
            for start, clip_logits in zip(starts[first:first + batch_size], logits):
                index = clip_indices(len(frames), clip_frames, clip_stride, int(start))
                np.add.at(total, index, clip_logits.transpose(1, 0, 2, 3))  # a looped window repeats frames
                np.add.at(count, index, 1)
    return (total / np.maximum(count, 1)[:, None, None, None]).argmax(axis=1).astype(np.uint8)


def prediction_from_labels(recording: Recording, frames: np.ndarray, fps: float, labels: np.ndarray,
                           starts: np.ndarray, clip_frames: int, clip_stride: int) -> Prediction:
    """The :class:`Prediction` of per-frame label maps ``labels`` of ``frames`` (a segmentation model's, or any
    label maps): each window's EF from its own ED and ES masks (:func:`mask_window_table`), then the beats from the
    LV cavity's area curve with EF and volumes per beat (:func:`beat_table`)."""
    volume = mask_volume_of_frame(labels, _crop_extent(recording))
    clips = mask_window_table(labels, starts, clip_frames, clip_stride, fps, volume,
                              spacing_known=recording.mm_per_pixel is not None)
    prediction = Prediction(recording, frames, fps, clips, pd.DataFrame(), "", float("nan"), labels=labels,
                            clip_ef_meaning=WINDOW_EF_MEANING)
    beat_table(prediction)
    return prediction


def mask_volume_ml(mask: np.ndarray, extent: tuple[float, float]) -> float:
    """Single-plane method-of-discs volume (:func:`echobook.data.geometry.lv_volume_ml_from_mask`) of a binary LV
    cavity mask ``[S, S]`` of the model's frames, which were resized from a crop ``extent`` = (width, height) mm
    wide and high (in recording pixels when the spacing is unknown: then only ratios such as EF mean anything).
    The mask is first put back on square pixels; NaN when it cannot be traced (empty, or no LV shape)."""
    from echobook.data.geometry import lv_volume_ml_from_mask

    width, height = extent
    spacing = max(width, height) / max(mask.shape)
    size = (max(1, round(width / spacing)), max(1, round(height / spacing)))
    square = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.5
    try:
        return lv_volume_ml_from_mask(square, spacing)
    except ValueError:  # no LV pixel, or a region whose chords miss its border
        return float("nan")


def mask_volume_of_frame(labels: np.ndarray, extent: tuple[float, float]):
    """``volume(frame) -> float``: :func:`mask_volume_ml` of that frame's LV cavity, each frame traced once."""
    from functools import lru_cache

    from echobook.data.labels import LV_CAVITY

    @lru_cache(maxsize=None)
    def volume(frame: int) -> float:
        return mask_volume_ml(labels[frame] == LV_CAVITY, extent)

    return volume


def _ef_and_volumes(edv: float, esv: float, spacing_known: bool) -> dict:
    """EF from an ED and an ES volume, and the volumes themselves where they are in mL (the spacing is known)."""
    ef_percent = float(100.0 * (1.0 - esv / edv)) if np.isfinite(edv) and edv > 0 else float("nan")
    return {"ef_percent": ef_percent, "edv_ml": float(edv) if spacing_known else float("nan"),
            "esv_ml": float(esv) if spacing_known else float("nan")}


def mask_window_table(labels: np.ndarray, starts: np.ndarray, clip_frames: int, clip_stride: int, fps: float,
                      volume, *, spacing_known: bool) -> pd.DataFrame:
    """One row per window: its frames, and the EF from its own ED (largest LV cavity) and ES (smallest) masks,
    with their volumes where the spacing is known (``volume``: :func:`mask_volume_of_frame`)."""
    from echobook.beats import label_area_curve
    from echobook.data.clips import clip_indices

    area = label_area_curve(labels)
    span = (clip_frames - 1) * clip_stride
    rows = []
    for start in starts:
        index = clip_indices(len(labels), clip_frames, clip_stride, int(start))
        ed, es = int(index[np.argmax(area[index])]), int(index[np.argmin(area[index])])
        rows.append({"start_frame": int(start), "end_frame": int(min(start + span, len(labels) - 1)),
                     "start_s": start / fps, **_ef_and_volumes(volume(ed), volume(es), spacing_known),
                     "ed_frame": ed, "es_frame": es})
    return pd.DataFrame(rows, columns=["start_frame", "end_frame", "start_s", "ef_percent", "ed_frame", "es_frame",
                                       "edv_ml", "esv_ml"])


def frame_cams(model, clips: np.ndarray, starts: np.ndarray, frame_count: int, pre: dict, mean: float,
               std: float) -> np.ndarray:
    """Grad-CAM of every clip (:func:`echobook.interpret.gradcam.video_gradcam`, UniFormer's last stage) put back
    on the recording's frames, the clips covering a frame averaged: ``[T, S, S]`` in [0, 1]."""
    from echobook.data.clips import clip_indices
    from echobook.interpret.gradcam import find_uniformer, video_gradcam

    if find_uniformer(model) is None:
        raise ValueError("Grad-CAM is drawn for UniFormer models (CoReEcho); this model has none")
    device = next(model.parameters()).device
    maps = video_gradcam(model, (torch.from_numpy(clips).to(device).float() - mean) / std).maps
    total = np.zeros((frame_count, *maps.shape[2:]), np.float32)
    count = np.zeros(frame_count, np.float32)
    for start, clip_maps in zip(starts, maps):
        for frame, frame_map in zip(clip_indices(frame_count, pre["clip_frames"], pre["clip_stride"], int(start)),
                                    clip_maps):
            total[frame] += frame_map
            count[frame] += 1
    return total / np.maximum(count, 1)[:, None, None]


def ed_outline_px(landmarks: np.ndarray, size: int) -> np.ndarray:
    """``[P, 2]`` pixel outline of the LV from ED landmarks ``[K, 2]`` (normalised): apex, the image-left wall
    down to the annulus, across it, the image-right wall back up."""
    from echobook.data.landmarks import ANNULUS_LEFT, ANNULUS_RIGHT, APEX, left_wall, right_wall, wall_points_of

    walls = wall_points_of(len(landmarks))
    order = [landmarks[APEX], *landmarks[left_wall(walls)], landmarks[ANNULUS_LEFT], landmarks[ANNULUS_RIGHT],
             *landmarks[right_wall(walls)][::-1]]
    return np.asarray(order, dtype=np.float64) * size


def disc_volumes_ml(landmarks: np.ndarray, crop_mm: tuple[float, float]) -> np.ndarray:
    """Single-plane disc volumes (mL) of normalised landmarks ``[..., K, 2]`` of a frame ``crop_mm`` = (width,
    height) millimetres wide and high (the sector's box at the DICOM's spacing)."""
    from echobook.losses import disc_volumes

    millimetres = torch.from_numpy(np.asarray(landmarks, np.float64) * np.asarray(crop_mm, np.float64))
    return disc_volumes(millimetres).numpy() / 1000.0  # mm^3 -> mL


def beat_table(prediction: Prediction) -> None:
    """Fill ``prediction.beats`` (module doc): ED, ES and end frames, their times, the clips covering each beat
    and its EF (and, with landmarks or masks, its EDV and ESV in mL when the spacing is known, else NaN)."""
    from echobook.beats import beats_from_curve, beats_from_frames, label_area_curve, lv_area_curve, period_frames

    frames, landmarks = prediction.frames, prediction.landmarks
    period = period_frames(frames)
    if prediction.labels is not None:
        beats = beats_from_curve(label_area_curve(prediction.labels), period)
        source = MASK_BEAT_SOURCE
    elif landmarks is not None:
        outline = ed_outline_px(landmarks[:, 0].mean(axis=0), frames.shape[-1])
        beats = beats_from_curve(lv_area_curve(frames, outline), period)
        source = "LV area curve inside the landmark model's ED outline"
    else:
        beats = beats_from_frames(frames, period)
        source = "period of the frames' self-similarity (TSSM); ED = the darkest phase"
    volume = (mask_volume_of_frame(prediction.labels, _crop_extent(prediction.recording))
              if prediction.labels is not None else None)
    rows = [_beat_row(prediction, beat, volume) for beat in beats.itertuples(index=False)]
    table = pd.concat([beats, pd.DataFrame(rows, index=beats.index, columns=["clips", "ef_percent", "edv_ml",
                                                                             "esv_ml"])], axis=1)
    for column in ("ed", "es"):
        table.insert(table.columns.get_loc(f"{column}_frame") + 1, f"{column}_s", table[f"{column}_frame"] / prediction.fps)
    prediction.beats, prediction.beat_source, prediction.period_frames = table, source, period


def _beat_row(prediction: Prediction, beat, volume) -> dict:
    """One beat's covering clips, EF and volumes: from its own ED and ES masks (``volume``, a segmentation model),
    from the landmarks of the clips covering it, or the mean EF of those clips (an EF regressor)."""
    from echobook.beats import clips_covering

    clips, landmarks = prediction.clips, prediction.landmarks
    covering = clips_covering(clips, beat)
    spacing_known = prediction.recording.mm_per_pixel is not None
    row = {"clips": int(covering.sum()), "ef_percent": float("nan"), "edv_ml": float("nan"), "esv_ml": float("nan")}
    if volume is not None:
        return {**row, **_ef_and_volumes(volume(int(beat.ed_frame)), volume(int(beat.es_frame)), spacing_known)}
    if covering.any() and landmarks is not None:
        volumes = disc_volumes_ml(landmarks[covering], _crop_extent(prediction.recording)).mean(axis=0)  # [ED, ES]
        return {**row, **_ef_and_volumes(float(volumes[0]), float(volumes[1]), spacing_known)}
    if covering.any():
        row["ef_percent"] = float(clips["ef_percent"].to_numpy()[covering].mean())
    return row


def _crop_extent(recording: Recording) -> tuple[float, float]:
    """(width, height) of the crop the model's frames were resized from: in mm where the spacing is known, else in
    the recording's pixels (square pixels assumed: EF, a ratio, needs no more)."""
    height, width = recording.frames.shape[1:3]
    return _crop_mm(recording) or (width, height)


def _crop_mm(recording: Recording) -> tuple[float, float] | None:
    """(width, height) in mm of the frames the model's frames were resized from, or None (spacing unknown)."""
    if recording.mm_per_pixel is None:
        return None
    height, width = recording.frames.shape[1:3]
    return width * recording.mm_per_pixel[0], height * recording.mm_per_pixel[1]


def summarise(prediction: Prediction, card: dict) -> dict:
    """The recording's EF (:func:`recording_ef_percent`), the spread over clips and over beats, the card's conformal
    interval around it, the heart rate from the beat length, and the beats' mean volumes where known. The columns
    are the same for every kind of model."""
    recording, clips, beats = prediction.recording, prediction.clips, prediction.beats
    clip_ef = clips["ef_percent"].to_numpy(dtype=np.float64)
    ef = clip_ef[np.isfinite(clip_ef)]  # a window whose masks cannot be traced has no EF
    recording_ef, how = recording_ef_percent(prediction)
    beat_ef = beats["ef_percent"].dropna().to_numpy() if len(beats) else np.array([])
    conformal = card.get("conformal", {})
    half_width = conformal.get("half_width_percent", float("nan"))
    spacing_known = recording.mm_per_pixel is not None
    return {"recording": recording.name, "path": str(recording.path), "kind": recording.kind, "status": "ok",
            "frames": len(recording.frames), "fps": recording.fps, "clips": len(clip_ef),
            "ef_percent": recording_ef, "ef_sd_over_clips": float(ef.std(ddof=1)) if len(ef) > 1 else 0.0,
            "ef_low_percent": float(recording_ef - half_width), "ef_high_percent": float(recording_ef + half_width),
            "interval_level": 1 - conformal.get("alpha", float("nan")),
            "ef_min": float(ef.min()) if len(ef) else float("nan"),
            "ef_max": float(ef.max()) if len(ef) else float("nan"),
            "beats": len(beats), "ef_beats_percent": float(beat_ef.mean()) if len(beat_ef) else float("nan"),
            "ef_sd_over_beats": float(beat_ef.std(ddof=1)) if len(beat_ef) > 1 else float("nan"),
            "heart_rate_bpm": float(60.0 * prediction.fps / prediction.period_frames),
            "edv_ml": float(beats["edv_ml"].mean()) if len(beats) else float("nan"),
            "esv_ml": float(beats["esv_ml"].mean()) if len(beats) else float("nan"),
            "beat_source": prediction.beat_source,
            "mm_per_pixel": f"{recording.mm_per_pixel[0]:.3f}" if spacing_known else "spacing unknown",
            "notes": "; ".join(recording.notes + [how] * bool(how) + ([] if "conformal" in card else [
                "no conformal interval: the model's card holds no calibration"])), "error": ""}


def recording_ef_percent(prediction: Prediction) -> tuple[float, str]:
    """The recording's EF and, for a segmentation model, how it was found. An EF regressor's or a landmark model's
    is the mean over its clips. A segmentation model regresses no EF: its is the mean of its beats' EF (each from
    the beat's own ED and ES masks), else, when no beat could be traced, the mean of its windows' EF."""
    clip_ef = prediction.clips["ef_percent"].to_numpy(dtype=np.float64)
    if prediction.labels is None:
        return float(clip_ef.mean()), ""
    beat_ef = prediction.beats["ef_percent"].dropna().to_numpy() if len(prediction.beats) else np.array([])
    if len(beat_ef):
        return float(beat_ef.mean()), (f"EF of the recording: the mean over {len(beat_ef)} "
                                       f"beat{'s' * (len(beat_ef) != 1)} of the method of discs on each beat's ED "
                                       "and ES LV cavity masks")
    window_ef = clip_ef[np.isfinite(clip_ef)]
    if len(window_ef):
        return float(window_ef.mean()), ("EF of the recording: no whole beat traced, so the mean of the windows' EF "
                                         "(each from its own largest and smallest LV cavity mask)")
    return float("nan"), "no EF: no LV cavity mask of this recording could be traced"


def describe_interval(row: dict) -> str:
    """The summary row's conformal interval in words: bounds when finite, else why there are none."""
    low, high = row["ef_low_percent"], row["ef_high_percent"]
    if np.isfinite(low) and np.isfinite(high):
        return f"{row['interval_level']:.0%} interval {low:.1f}-{high:.1f}"
    if np.isnan(row["interval_level"]):
        return "no interval: the model's card holds no calibration"
    return (f"no finite {row['interval_level']:.0%} interval: too few calibration videos on the card "
            f"(a {row['interval_level']:.0%} split-conformal interval needs at least "
            f"{int(np.ceil(round(1 / (1 - row['interval_level']) - 1, 9)))})")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The model to predict with and its card: a run folder (or its ``model.pth``) of ``echobook train`` or a
    chapter (a landmark model with its landmarks), else an official weights file (:mod:`echobook.official`)."""
    from echobook.cards import read_with_card
    from echobook.official import load_official
    from echobook.training import CheckpointError

    path = Path(path)
    try:
        _, card = read_with_card(path)
    except CheckpointError:
        if path.is_dir():
            raise
        return load_official(path, device)
    if card["method"] == "e3net":
        from echobook.methods.e3net import load_e3net

        return load_e3net(path, device)
    from echobook.runs import load_trained

    return load_trained(path, device)


def predict_paths(paths, model_path, out_dir, *, device: str = "auto", progress: bool = True,
                  reports: bool = True, gradcam: bool = False) -> pd.DataFrame:
    """Predict every recording of ``paths`` with ``model_path`` (:func:`load_model`); in ``out_dir`` a CSV of
    clips and one of beats per recording (and with ``reports`` its overlay MP4 and HTML report,
    :mod:`echobook.report`) and the summary ``predictions.csv``. A recording that fails gets a row with its error;
    ``seconds`` is each recording's wall time."""
    from fastprogress.fastprogress import progress_bar

    from echobook.config import resolve_device

    model, card = load_model(model_path, resolve_device(device))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, found = [], recording_paths(paths)
    for path in (progress_bar(found) if progress and found else found):
        start = time.perf_counter()
        try:
            prediction = predict_recording(model, card, read_recording(path), gradcam=gradcam)
            name = prediction.recording.name
            prediction.clips.to_csv(out_dir / f"{name}.csv", index=False)
            prediction.beats.to_csv(out_dir / f"{name}_beats.csv", index=False)
            row = summarise(prediction, card)
            if reports:
                write_outputs(out_dir, prediction, row, card)
        except Exception as error:  # one recording's failure must not stop the others: report it
            row = {"recording": Path(path).stem, "path": str(path), "status": "failed",
                   "error": f"{type(error).__name__}: {error}"}
        row["seconds"] = round(time.perf_counter() - start, 3)
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary.to_csv(out_dir / SUMMARY_CSV, index=False)
    return summary


def write_outputs(out_dir: Path, prediction: Prediction, row: dict, card: dict) -> None:
    from echobook.report import write_overlay, write_report

    name = prediction.recording.name
    write_overlay(out_dir / f"{name}.mp4", prediction)
    write_report(out_dir / f"{name}.html", row, prediction, card)


# --------------------------------------------------------------------------------------------- the command
def add_predict_parser(subparsers) -> None:
    predict = subparsers.add_parser(
        "predict", help="EF of your own recordings (DICOM, AVI, MP4 or folders) with a trained run",
        description="Predict EF clip by clip over each recording with a run folder of `echobook train`. "
                    "Writes a CSV per recording and predictions.csv. Not a medical device.")
    predict.add_argument("recordings", nargs="+", metavar="RECORDING")
    predict.add_argument("--model", required=True,
                         help="a run folder written by `echobook train`, or an official weights file (CoReEcho's "
                              "best.pth, EchoNet-Dynamic's best.pt)")
    predict.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--no-report", action="store_true", help="CSV files only: no overlay video or HTML report")
    predict.add_argument("--gradcam", action="store_true", help="draw Grad-CAM on the overlay (UniFormer models)")
    predict.add_argument("--quiet", action="store_true")
    predict.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from echobook.training import CheckpointError

    try:
        summary = predict_paths(args.recordings, args.model, args.out, device=args.device, progress=not args.quiet,
                                reports=not args.no_report, gradcam=args.gradcam)
    except (FileNotFoundError, CheckpointError) as error:
        print(f"echobook predict: {error}", file=sys.stderr)
        return 2
    if summary.empty:
        print("echobook predict: no recordings found", file=sys.stderr)
        return 2
    for row in summary.to_dict("records"):
        if row["status"] == "ok":
            print(f"{row['recording']}: EF {row['ef_percent']:.1f} % ({describe_interval(row)}; "
                  f"sd {row['ef_sd_over_clips']:.1f} over "
                  f"{row['clips']} clips; {row['beats']} beats, EF per beat {row['ef_beats_percent']:.1f} %, "
                  f"sd {row['ef_sd_over_beats']:.1f})")
        else:
            print(f"{row['recording']}: FAILED {row['error']}")
    print(f"table: {Path(args.out) / SUMMARY_CSV}")
    return 0 if (summary["status"] == "ok").all() else 1
