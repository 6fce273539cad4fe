"""Beats of a recording: where each cardiac cycle starts (end-diastole, ED) and where it is smallest (end-systole, ES).

Two ways, one per kind of model (``echobook predict`` picks):

- from an **LV area curve** (a landmark or segmentation model gives the LV; :func:`lv_area_curve` measures the
  blood pool inside a landmark model's outline frame by frame, :func:`label_area_curve` counts a segmentation
  model's LV cavity pixels): ED at the curve's local maxima, ES at its minimum between two EDs
  (:func:`beats_from_curve`);
- from the frames alone (an EF regressor gives no LV): the beat length is the **period of the frames' temporal
  self-similarity matrix** (the TSSM of chapter 8, :func:`echobook.methods.echofm.pixel_similarity` and
  :func:`~echobook.methods.echofm.cycle_length_slices`, one frame per slice); the beats start at the frames most
  alike a reference frame, the darkest one (the most blood in view: diastole), and each beat's ES is its frame
  least alike it (:func:`beats_from_frames`). That ED and ES are named by brightness is an assumption that holds
  on the synthetic hearts and on most apical views, not a measurement.

A beat is ``(ed_frame, es_frame, end_frame)``: ``end_frame`` is the next beat's ED (the last whole beat ends
there), all in the frames given. Only whole beats are returned: the part before the first ED and after the last
is not a beat.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MIN_BEAT_SHARE = 0.6  # two EDs closer than this share of the period are one beat (a notch, not a new cycle)
PROMINENCE_SHARE = 0.2  # an ED stands out from its neighbours by this share of the curve's range (not noise)
BEAT_COLUMNS = ("beat", "ed_frame", "es_frame", "end_frame")
BLOOD_GRAY = 40  # gray levels below this inside the LV count as blood pool (speckle in tissue is brighter)


def period_frames(frames: np.ndarray | None = None, *, similarity: np.ndarray | None = None, min_lag: int = 3) -> float:
    """The beat length in frames of gray frames ``[T, H, W]`` (or of their :func:`frame_similarity`): the first
    peak of the TSSM's diagonal means, one frame a slice. NaN when the recording holds no whole beat."""
    from echobook.methods.echofm import cycle_length_slices

    similarity = frame_similarity(frames) if similarity is None else similarity
    if len(similarity) <= min_lag + 1:
        return float("nan")
    return float(cycle_length_slices(similarity[None], min_lag=min_lag)[0])


def frame_similarity(frames: np.ndarray) -> np.ndarray:
    """``[T, T]`` cosine similarity of every pair of frames, their static anatomy removed (the pixel TSSM of
    :func:`echobook.methods.echofm.pixel_similarity` with one frame per slice)."""
    import torch

    from echobook.methods.echofm import pixel_similarity

    clip = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[None, None]  # [1, 1, T, H, W]
    return pixel_similarity(clip, slices=len(frames))[0].numpy().astype(np.float64)


def beats_from_curve(curve: np.ndarray, period: float) -> pd.DataFrame:
    """Beats of an LV area (or volume) curve ``[T]``: ED at its local maxima at least ``MIN_BEAT_SHARE * period``
    frames apart and ``PROMINENCE_SHARE`` of the range above their surroundings, ES at the minimum between two
    consecutive EDs."""
    from scipy.signal import find_peaks

    curve = np.asarray(curve, dtype=np.float64)
    if not np.isfinite(period) or period < 2:
        return _table([])
    spread = float(np.ptp(curve)) if len(curve) else 0.0
    eds, _ = find_peaks(curve, distance=max(1, int(MIN_BEAT_SHARE * period)), prominence=PROMINENCE_SHARE * spread)
    beats = [(int(a), int(a + np.argmin(curve[a:b + 1])), int(b)) for a, b in zip(eds[:-1], eds[1:])]
    return _table(beats)


def beats_from_frames(frames: np.ndarray, period: float | None = None) -> pd.DataFrame:
    """Beats of gray frames ``[T, H, W]`` from their TSSM alone (module doc); ``period`` in frames, else
    :func:`period_frames`."""
    similarity = frame_similarity(frames)
    if period is None:
        period = period_frames(similarity=similarity)
    reference = int(np.argmin(np.asarray(frames, dtype=np.float32).mean(axis=(1, 2))))  # the darkest frame
    return beats_from_curve(similarity[reference], period)


def lv_area_curve(frames: np.ndarray, polygon_px: np.ndarray, blood_gray: int = BLOOD_GRAY) -> np.ndarray:
    """``[T]`` pixels of blood pool (gray below ``blood_gray``) inside the LV outline ``polygon_px`` ``[P, 2]``
    (x, y pixels; the ED outline, the LV at its largest) in every frame: largest at ED, as the walls move in it
    falls, smallest at ES."""
    import cv2

    inside = np.zeros(frames.shape[1:], np.uint8)
    cv2.fillPoly(inside, [np.round(polygon_px).astype(np.int32)], 1)
    inside = inside.astype(bool)
    return (np.asarray(frames)[:, inside] < blood_gray).sum(axis=1).astype(np.float64)


def label_area_curve(labels: np.ndarray, value: int | None = None) -> np.ndarray:
    """``[T]`` pixels of label ``value`` (default the LV cavity, :data:`echobook.data.labels.LV_CAVITY`) in each of
    the label maps ``[T, H, W]`` of a segmentation model: the LV area curve, largest at ED, smallest at ES."""
    from echobook.data.labels import LV_CAVITY

    value = LV_CAVITY if value is None else value
    return (np.asarray(labels) == value).sum(axis=(1, 2)).astype(np.float64)


def clips_covering(clips: pd.DataFrame, beat) -> np.ndarray:
    """bool ``[N]``: the clip windows that cover most of a beat, or that the beat covers most of (a clip
    shorter than a beat)."""
    start, end = clips["start_frame"].to_numpy(), clips["end_frame"].to_numpy()
    overlap = np.clip(np.minimum(end, beat.end_frame) - np.maximum(start, beat.ed_frame) + 1, 0, None)
    beat_frames = beat.end_frame - beat.ed_frame + 1
    return (overlap >= 0.5 * beat_frames) | (overlap >= 0.5 * (end - start + 1))


def _table(beats) -> pd.DataFrame:
    table = pd.DataFrame(beats, columns=list(BEAT_COLUMNS[1:]), dtype=np.int64)
    table.insert(0, "beat", np.arange(1, len(table) + 1, dtype=np.int64))
    return table


__all__ = ["BEAT_COLUMNS", "beats_from_curve", "beats_from_frames", "clips_covering", "frame_similarity",
           "label_area_curve", "lv_area_curve", "period_frames"]
