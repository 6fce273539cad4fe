"""Endocardial landmarks of the left ventricle, from EchoNet-Dynamic tracings or from label masks.

Echo-E3Net (Heidari et al., 2025) predicts endocardial landmarks at end-diastole (ED) and end-systole (ES).
Its code and the paper body are not public, so the layout here is this package's own choice (chapter 10
says so). One phase's landmarks are a float array ``[K, 2]`` of ``(x, y)`` points, ``K = 3 + 2 M`` with
``M = wall_points``:

- index 0 (:data:`APEX`): the apex;
- index 1, 2 (:data:`ANNULUS_LEFT`, :data:`ANNULUS_RIGHT`): the two ends of the mitral annulus, image-left
  then image-right;
- ``3 .. 3 + M``: points on the image-left wall (the septum in A4C) at fractions ``j / (M + 1)``,
  ``j = 1..M``, of the long axis from the apex towards the mitral plane;
- ``3 + M .. 3 + 2M``: the image-right wall at the same fractions.

Left point ``j`` and right point ``j`` are the ends of one chord perpendicular to the long axis, so the
method of discs reads straight off the landmarks (:func:`echobook.losses.disc_volumes`): with ``M = 20``
they are EchoNet's own chords and the disc volume equals :func:`echobook.data.geometry.disc_volume_px3`
of the tracing.

Coordinates are *normalised*: ``x / width`` and ``y / height`` of the frame, so ``(0, 0)`` is the top-left
corner and ``(1, 1)`` the bottom-right one, whatever the frame's size (a pixel's centre at integer pixel
coordinates, as in :mod:`echobook.data.geometry`).

From an EchoNet tracing (long axis + 20 chords, :mod:`echobook.data.geometry`): the apex is the long axis's
first point; the chords are put in order from the apex (by their position along the axis) and their ends
on their sides (the image-left end first), so a tracing listed base-first or with its ends swapped gives
the same landmarks. EchoNet tracings hold no annulus points: the last chord's ends, slid along the axis
onto the mitral plane (the line through the long axis's end, perpendicular to it), stand for them. Wall
points between chords are linear interpolations, which stay on the chord line at their fraction (the
position along the axis is linear too). From a mask (CAMUS-style labels): the contour, apex and mitral
plane come from :func:`echobook.data.geometry.find_apex_and_mitral_plane`, the chords from
:func:`echobook.data.geometry.tracing_from_contour`, and the annulus points are the mitral plane's ends.
"""
from __future__ import annotations

import numpy as np

from echobook.data.geometry import (
    N_CHORDS, find_apex_and_mitral_plane, first_tracing, mask_contour, tracing_from_contour,
)
from echobook.data.labels import LV_CAVITY

APEX, ANNULUS_LEFT, ANNULUS_RIGHT = 0, 1, 2
FIXED_POINTS = 3  # apex and the two annulus ends
DEFAULT_WALL_POINTS = 10  # per wall; 20 reproduces EchoNet's chords exactly
PHASES = ("ED", "ES")


def landmark_count(wall_points: int = DEFAULT_WALL_POINTS) -> int:
    """``K = 3 + 2 * wall_points`` landmarks per phase."""
    if int(wall_points) < 1:
        raise ValueError(f"wall_points must be at least 1; got {wall_points!r}")
    return FIXED_POINTS + 2 * int(wall_points)


def wall_points_of(count: int) -> int:
    """``M`` from a landmark count ``K = 3 + 2M`` (a ValueError for any other count)."""
    if count < FIXED_POINTS + 2 or (count - FIXED_POINTS) % 2:
        raise ValueError(f"{count} landmarks is not 3 + 2 * wall_points")
    return (count - FIXED_POINTS) // 2


def left_wall(wall_points: int) -> slice:
    """Indices of the image-left wall's points, apex to base."""
    return slice(FIXED_POINTS, FIXED_POINTS + wall_points)


def right_wall(wall_points: int) -> slice:
    """Indices of the image-right wall's points, apex to base."""
    return slice(FIXED_POINTS + wall_points, FIXED_POINTS + 2 * wall_points)


def wall_fractions(wall_points: int) -> np.ndarray:
    """Where the wall points sit along the long axis: ``j / (M + 1)``, ``j = 1..M``."""
    return np.arange(1, wall_points + 1) / (wall_points + 1)


# --------------------------------------------------------------------------------------------- from geometry

def _frame_scale(frame_size_px) -> np.ndarray:
    """``(width, height)`` to divide ``(x, y)`` by, from ``frame_size_px = (height, width)``."""
    height, width = (float(s) for s in frame_size_px)
    if not (height > 0 and width > 0):
        raise ValueError(f"frame_size_px must be (height, width) in pixels, both positive; got {frame_size_px!r}")
    return np.array([width, height])


def _canonical_chords(apex: np.ndarray, mid: np.ndarray, chords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chord ends ``[N, 2]`` left and right, ordered from the apex; and each chord's fraction of the axis."""
    axis = mid - apex
    length = float(np.hypot(*axis))
    if length <= 0:
        raise ValueError("the apex coincides with the mitral-plane midpoint: no long axis")
    e = axis / length
    n = np.array([e[1], -e[0]])  # across the axis, pointing image-right when the axis points down
    first, second = chords[:, 0:2], chords[:, 2:4]
    swap = (first @ n) > (second @ n)  # an end on the right listed first: swap it to the left
    left = np.where(swap[:, None], second, first)
    right = np.where(swap[:, None], first, second)
    fraction = (0.5 * (left + right) - apex) @ e / length
    order = np.argsort(fraction, kind="stable")
    return left[order], right[order], fraction[order]


def _wall(apex: np.ndarray, ends: np.ndarray, ends_fraction: np.ndarray, annulus: np.ndarray,
          wall_points: int) -> np.ndarray:
    """One wall's polyline (apex, chord ends, annulus end) resampled at :func:`wall_fractions`."""
    fractions = np.concatenate([[0.0], ends_fraction, [1.0]])
    points = np.vstack([apex, ends, annulus])
    # np.interp needs increasing positions; real tracings may hold a chord at (or just past) the plane
    fractions = np.maximum.accumulate(np.clip(fractions, 0.0, 1.0))
    targets = wall_fractions(wall_points)
    return np.stack([np.interp(targets, fractions, points[:, k]) for k in range(2)], axis=1)


def _assemble(apex, annulus_left, annulus_right, left, right, fraction, wall_points) -> np.ndarray:
    # both ends of a chord share its fraction: the chord is perpendicular to the axis
    left_wall_px = _wall(apex, left, fraction, annulus_left, wall_points)
    right_wall_px = _wall(apex, right, fraction, annulus_right, wall_points)
    return np.vstack([apex, annulus_left, annulus_right, left_wall_px, right_wall_px])


def _slide_onto_plane(point: np.ndarray, apex: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """``point`` moved along the long axis onto the line through ``mid`` perpendicular to it."""
    e = (mid - apex) / np.hypot(*(mid - apex))
    return point + ((mid - point) @ e) * e


def landmarks_px_from_tracing(tracing, wall_points: int = DEFAULT_WALL_POINTS) -> np.ndarray:
    """Landmarks ``[K, 2]`` in pixels of one EchoNet tracing ``[21, 4]`` (see the module doc).

    Frames traced more than once (42, 63... rows) use their first tracing.
    """
    t = first_tracing(tracing)
    landmark_count(wall_points)  # validates wall_points
    apex, mid = t[0, 0:2], t[0, 2:4]
    left, right, fraction = _canonical_chords(apex, mid, t[1:])
    annulus_left = _slide_onto_plane(left[-1], apex, mid)
    annulus_right = _slide_onto_plane(right[-1], apex, mid)
    return _assemble(apex, annulus_left, annulus_right, left, right, fraction, wall_points)


def landmarks_from_tracing(tracing, frame_size_px, wall_points: int = DEFAULT_WALL_POINTS) -> np.ndarray:
    """Normalised landmarks ``[K, 2]`` (``x / width``, ``y / height``) of one EchoNet tracing.

    ``frame_size_px``: ``(height, width)`` of the frame the tracing was drawn on (112, 112 in EchoNet).
    """
    return landmarks_px_from_tracing(tracing, wall_points) / _frame_scale(frame_size_px)


def landmarks_px_from_mask(mask, wall_points: int = DEFAULT_WALL_POINTS, lv_label: int = LV_CAVITY) -> np.ndarray:
    """Landmarks ``[K, 2]`` in pixels of an LV mask ``[H, W]``.

    ``mask``: a binary LV mask, or a label map (CAMUS values: 1 = LV cavity, 2 = myocardium, 3 = atrium),
    from which the pixels equal to ``lv_label`` are taken. The annulus points are the mitral plane's ends.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W]; got shape {m.shape}")
    binary = (m == lv_label) if m.max(initial=0) > 1 else (m > 0)
    if not binary.any():
        raise ValueError(f"mask holds no LV pixels (label {lv_label}, or non-zero in a binary mask)")
    contour = mask_contour(binary.astype(np.uint8))
    apex, base_left, base_right = find_apex_and_mitral_plane(contour)
    tracing = tracing_from_contour(contour, apex, base_left, base_right, N_CHORDS)
    if not np.all(np.isfinite(tracing)):
        raise ValueError("a chord missed the mask's border: is the mask one LV-shaped region?")
    mid = 0.5 * (base_left + base_right)
    left, right, fraction = _canonical_chords(apex, mid, tracing[1:])
    return _assemble(apex, base_left, base_right, left, right, fraction, wall_points)


def landmarks_from_mask(mask, wall_points: int = DEFAULT_WALL_POINTS, lv_label: int = LV_CAVITY) -> np.ndarray:
    """Normalised landmarks ``[K, 2]`` of an LV mask or label map (see :func:`landmarks_px_from_mask`)."""
    return landmarks_px_from_mask(mask, wall_points, lv_label) / _frame_scale(np.shape(mask))


# --------------------------------------------------------------------------------------------- tables

def video_landmarks(records, wall_points: int = DEFAULT_WALL_POINTS) -> np.ndarray:
    """float32 ``[N, 2, K, 2]`` landmarks (ED then ES) of EchoNet records (``EchoNetDataset.records``).

    A video without two usable tracings gets NaN (the losses leave NaN targets out). The frame size is the
    record's ``FrameHeight``/``FrameWidth``; where FileList lacks them, 112 x 112 (EchoNet-Dynamic's frames).
    """
    out = np.full((len(records), 2, landmark_count(wall_points), 2), np.nan, dtype=np.float32)
    for i, record in enumerate(records):
        if record.ed_tracing is None or record.es_tracing is None:
            continue
        size = (record.frame_height if record.frame_height > 0 else 112,
                record.frame_width if record.frame_width > 0 else 112)
        for phase, tracing in enumerate((record.ed_tracing, record.es_tracing)):
            out[i, phase] = landmarks_from_tracing(tracing, size, wall_points)
    return out


def landmark_polygon(landmarks) -> np.ndarray:
    """The closed outline ``[2M + 3, 2]`` through one phase's landmarks, for drawing: apex, the left wall
    down to the left annulus end, across the mitral plane, and the right wall back up to the apex."""
    points = np.asarray(landmarks, dtype=np.float64)
    wall_points = wall_points_of(points.shape[-2])
    return np.concatenate([
        points[..., [APEX], :], points[..., left_wall(wall_points), :], points[..., [ANNULUS_LEFT], :],
        points[..., [ANNULUS_RIGHT], :], points[..., right_wall(wall_points), :][..., ::-1, :],
        points[..., [APEX], :],
    ], axis=-2)
