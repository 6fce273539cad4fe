"""The scanner's screen around a synthetic sector: a burned-in caption and an ECG strip, as exports show them.

A clinical recording is rarely the sector alone: the scanner burns a caption (name, frame number, rate) into
the pixels above it and draws the ECG below it. Readers must remove both before a model sees the frames
(:mod:`echobook.data.dicom` masks everything outside the sector), so the synthetic HMC-QU videos
(:mod:`echobook.data.hmcqu`) and the synthetic DICOMs (``echobook synth dicom``) are framed the same way here:

- :func:`canvas_geometry`: the wider frame holding the square sector (its size and where the sector sits);
- :func:`ecg_trace`: a schematic ECG (P, QRS, T) over the cardiac phase, the R wave at end-diastole;
- :func:`compose_frames`: the sector, its label maps, the caption and the ECG strip on that frame, in gray or
  with the trace in green and the caption in white (what a colour export shows).
"""
from __future__ import annotations

import numpy as np

CANVAS_HEIGHT_OVER_SECTOR = 1.25  # the sector fills the central 80 % of the height
CANVAS_ASPECT = 1.5  # width / height, about HMC-QU's 636 / 422
ECG_WINDOW_CYCLES = 2.0  # beats shown by the ECG strip
ECG_GREEN_RGB = (40, 220, 90)  # scanners draw the ECG in green on a colour screen
CAPTION_GRAY, RATE_GRAY, ECG_GRAY = 230, 200, 255


def canvas_geometry(sector_px: int) -> tuple[int, int, int, int]:
    """(height, width, top, left) of a frame holding a ``sector_px`` square sector centred in it."""
    height = int(round(sector_px * CANVAS_HEIGHT_OVER_SECTOR))
    width = int(round(height * CANVAS_ASPECT))
    return height, width, (height - sector_px) // 2, (width - sector_px) // 2


def ecg_trace(phase: np.ndarray) -> np.ndarray:
    """A schematic ECG over the cycle phase (0 at ED = the R wave): P, QRS and T waves, amplitude about 1."""
    phase = np.asarray(phase, dtype=np.float64)
    distance = np.minimum(phase, 1 - phase)  # to the nearest R
    qrs = np.exp(-0.5 * (distance / 0.012) ** 2)
    t_wave = 0.3 * np.exp(-0.5 * ((phase - 0.3) / 0.04) ** 2)
    p_wave = 0.15 * np.exp(-0.5 * ((phase - 0.88) / 0.025) ** 2)
    return qrs + t_wave + p_wave


def _screen_layers(video, name: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[T, H', W']`` caption layer and ECG layer (0 where nothing is drawn), the sector left empty."""
    import cv2

    count, size = video.frames.shape[0], video.frames.shape[1]
    height, width, top, left = canvas_geometry(size)
    caption = np.zeros((count, height, width), dtype=np.uint8)
    ecg = np.zeros_like(caption)
    margin = max(top, 2)
    font_scale = max(0.2, margin / 40.0)
    strip_x = np.linspace(0, 1, width - 2 * 2)
    rate = f"{video.fps:.0f}Hz"
    for t in range(count):
        cv2.putText(caption[t], f"{name} {t + 1:03d}", (2, max(margin - 3, 6)), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, CAPTION_GRAY, 1, cv2.LINE_AA)
        cv2.putText(caption[t], rate, (width - left + 2, max(margin - 3, 6)), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, RATE_GRAY, 1, cv2.LINE_AA)
        # the strip shows the last ECG_WINDOW_CYCLES beats, the current frame at its right end
        column_phase = (video.phase[t] - (1 - strip_x) * ECG_WINDOW_CYCLES) % 1.0
        baseline = height - margin // 2 - 1
        ys = np.clip(baseline - ecg_trace(column_phase) * (margin * 0.7), top + size + 1, height - 1)
        points = np.stack([2 + np.arange(len(strip_x)), ys], axis=1).astype(np.int32)
        cv2.polylines(ecg[t], [points], False, ECG_GRAY, 1, cv2.LINE_AA)
    return caption, ecg


def compose_frames(video, name: str, *, rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The video's frames and labels inside a wider frame with a burned-in caption (top left, the frame rate top
    right) and an ECG strip (bottom) outside the sector, as scanners draw them: uint8 ``[T, H', W']`` each, or
    with ``rgb`` the frames as ``[T, H', W', 3]`` with a green ECG trace."""
    frames, labels = np.asarray(video.frames), np.asarray(video.labels)
    size = frames.shape[1]
    height, width, top, left = canvas_geometry(size)
    caption, ecg = _screen_layers(video, name)
    label_canvas = np.zeros(caption.shape, dtype=np.uint8)
    label_canvas[:, top:top + size, left:left + size] = labels
    if rgb:
        green = (ecg[..., None].astype(np.float32) / 255.0 * np.array(ECG_GREEN_RGB, np.float32)).astype(np.uint8)
        canvas = np.maximum(np.repeat(caption[..., None], 3, axis=-1), green)
        canvas[:, top:top + size, left:left + size] = frames[..., None]
    else:
        canvas = np.maximum(caption, ecg)
        # the sector last: a glyph's descender or anti-aliasing never spills into the image
        canvas[:, top:top + size, left:left + size] = frames
    return canvas, label_canvas


def sector_region(sector_px: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), inclusive, of the square sector inside :func:`canvas_geometry`'s frame: the 2-D tissue
    region a scanner writes in SequenceOfUltrasoundRegions."""
    _, _, top, left = canvas_geometry(sector_px)
    return left, top, left + sector_px - 1, top + sector_px - 1


__all__ = ["CANVAS_ASPECT", "CANVAS_HEIGHT_OVER_SECTOR", "ECG_WINDOW_CYCLES", "canvas_geometry", "compose_frames",
           "ecg_trace", "sector_region"]
