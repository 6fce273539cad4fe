"""Step 3, the anatomy: the LV endocardium along a tilted long axis, its tracings, and what is built around it.

Coordinates: ``u`` runs along the LV long axis from the apex (px), ``v`` across it (positive: image
right). Each wall shortens radially by ``r * c * k(segment)`` (see :func:`lv_half_widths`).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from echobook.data import geometry

if TYPE_CHECKING:
    from echobook.data.synthetic.heart import HeartCase

# the other chambers' semi-axes as fractions of the LV's ED length
LA_HALF_LENGTH, LA_HALF_WIDTH = 0.28, 0.24
RV_HALF_LENGTH, RV_HALF_WIDTH = 0.38, 0.2
RA_HALF_LENGTH, RA_HALF_WIDTH = 0.25, 0.19


# ---------------------------------------------------------------------------- the LV endocardium
def segment_factor(s: np.ndarray, factors3: np.ndarray) -> np.ndarray:
    """Motion multiplier along a wall: apical, mid, basal thirds, blended linearly between their centres."""
    return np.interp(s, (1 / 6, 1 / 2, 5 / 6), factors3)


def lv_profile(s: np.ndarray, widest_at: float) -> np.ndarray:
    """LV half-width along the axis, 0 at the apex (s=0), 1 at its widest, narrowing to the annulus (s=1)."""
    return np.sqrt(np.clip(1.0 - ((s - widest_at) / widest_at) ** 2, 0.0, None))


def wall_factors(case: HeartCase) -> tuple[np.ndarray, np.ndarray]:
    """(left wall, right wall) motion factors ordered apical, mid, basal."""
    f = case.motion_factor
    return np.array([f[2], f[1], f[0]]), np.array([f[3], f[4], f[5]])


def lv_half_widths(case: HeartCase, u: np.ndarray, length: np.ndarray, c: np.ndarray,
                   radial_shortening: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Endocardial half-widths (left, right) at distance ``u`` from the apex along the axis.

    ``length`` and ``c`` broadcast against ``u`` (frames in front). Zero outside [0, length].
    """
    r = case.radial_shortening if radial_shortening is None else radial_shortening
    s = u / length
    inside = (s >= 0) & (s <= 1)
    base = lv_profile(np.clip(s, 0, 1), case.widest_at)
    left_k, right_k = wall_factors(case)
    left = case.half_width_left * base * (1.0 - r * c * segment_factor(s, left_k))
    right = case.half_width_right * base * (1.0 - r * c * segment_factor(s, right_k))
    return np.where(inside, left, 0.0), np.where(inside, right, 0.0)


def lv_annulus_half_widths(case: HeartCase, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Endocardial half-widths (left, right) at the mitral annulus (s = 1) for contraction ``c``."""
    left_k, right_k = wall_factors(case)
    left = case.half_width_left * lv_profile(1.0, case.widest_at) * (
        1.0 - case.radial_shortening * c * segment_factor(1.0, left_k))
    right = case.half_width_right * lv_profile(1.0, case.widest_at) * (
        1.0 - case.radial_shortening * c * segment_factor(1.0, right_k))
    return left, right


def lv_wall_thickness(case: HeartCase, s: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wall thickness (left, right) in px at fraction ``s`` of the length: it thickens with each segment's motion."""
    left_k, right_k = wall_factors(case)
    left = case.wall_ed * (1.0 + case.thickening * c * segment_factor(s, left_k))
    right = case.wall_ed * (1.0 + case.thickening * c * segment_factor(s, right_k))
    return left, right


def lv_length(case: HeartCase, c) -> np.ndarray:
    """Long-axis length: the mitral plane moves toward the (still) apex in systole."""
    return case.length_ed * (1.0 - case.longitudinal_shortening * np.asarray(c))


def solve_radial_shortening(case: HeartCase, max_shortening: float = 0.8) -> float:
    """Radial shortening ``r`` whose ES disc volume gives the target EF (bisection; capped)."""
    fractions = np.arange(1, geometry.N_CHORDS + 1) / (geometry.N_CHORDS + 1)

    def volume(c, r):
        length = lv_length(case, c)
        left, right = lv_half_widths(case, fractions * length, length, c, r)
        return np.sum((left + right) ** 2) * length

    wanted = 1.0 - case.target_ef_percent / 100.0
    ed = volume(0.0, 0.0)
    low, high = 0.0, max_shortening
    if volume(1.0, high) / ed > wanted:
        return high  # defects this large cannot reach the target: the EF label is what renders
    for _ in range(40):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if volume(1.0, mid) / ed > wanted else (low, mid)
    return 0.5 * (low + high)


def lv_axes(case: HeartCase) -> tuple[np.ndarray, np.ndarray]:
    """Unit long axis ``e`` (apex to base, pointing down) and ``n`` (to the image right)."""
    e = np.array([math.sin(case.tilt), math.cos(case.tilt)])
    return e, np.array([e[1], -e[0]])


def lv_contours(case: HeartCase, c: np.ndarray, points_per_side: int = 64):
    """The rendered LV endocardium of every frame: contour ``[T, P, 2]``, apex, base ends ``[T, 2]``."""
    c = np.asarray(c, dtype=np.float64)[:, None]
    length = lv_length(case, c)
    s = 0.5 - 0.5 * np.cos(np.pi * np.arange(points_per_side + 1) / points_per_side)  # dense at both ends
    u = s[None, :] * length
    left, right = lv_half_widths(case, u, length, c)
    e, n = lv_axes(case)
    left_pts = case.apex + u[..., None] * e - left[..., None] * n
    right_pts = case.apex + u[..., None] * e + right[..., None] * n
    contour = np.concatenate([left_pts, right_pts[:, ::-1][:, :-1]], axis=1)  # apex ... base ... back
    apex = np.broadcast_to(case.apex, (len(c), 2))
    return contour, apex, left_pts[:, -1], right_pts[:, -1]


def lv_tracings(case: HeartCase, c: np.ndarray) -> np.ndarray:
    """EchoNet tracings ``[T, 21, 4]`` of the rendered contours."""
    contour, apex, base_left, base_right = lv_contours(case, c)
    return geometry.tracing_from_contour(contour, apex, base_left, base_right)


# ---------------------------------------------------------------------------- the myocardium around it
def offset_outward(half_width: np.ndarray, inside: np.ndarray, thickness: np.ndarray, du: float,
                   steps: int = 12) -> np.ndarray:
    """Epicardial half-width: the endocardial outline grown by ``thickness`` along its normals.

    ``half_width [T, NB]`` is sampled every ``du`` px along the axis. Growing the outline by a
    disc (the max over shifts d of ``w(u - d) + sqrt(t^2 - d^2)``) rounds the apical cap the
    way a wall of constant thickness does; outside the wall the half-width is 0.
    """
    w = np.where(inside, half_width, -np.inf)
    grown = w + thickness
    reach = float(np.max(thickness))
    for shift_px in np.linspace(-reach, reach, 2 * steps + 1):
        k = int(round(shift_px / du))
        if k == 0:
            continue
        shifted = np.full_like(w, -np.inf)
        if k > 0:
            shifted[:, k:] = w[:, :-k]
        else:
            shifted[:, :k] = w[:, -k:]
        rise = np.sqrt(np.clip(thickness ** 2 - (k * du) ** 2, 0.0, None))
        grown = np.maximum(grown, np.where(rise > 0, shifted + rise, -np.inf))
    return np.where(np.isfinite(grown), np.maximum(grown, 0.0), 0.0)


# ---------------------------------------------------------------------------- the other chambers and the valves
def ellipse_distance(du, dv, a, b, xp=np):
    """Approximate signed distance (px) to an axis-aligned ellipse with semi-axes a (along u), b."""
    rho = xp.sqrt((du / a) ** 2 + (dv / b) ** 2)
    return (rho - 1.0) * xp.minimum(a, b)


def chamber_distances(case: HeartCase, u, v, cc, L, xp=np) -> dict:
    """Signed distances of the other chambers: dict name ("la", and in A4C "rv", "ra") -> [t, HW] (px).

    ``u``, ``v`` [HW] are the pixels' axis coordinates; ``cc`` (contraction) and ``L`` (LV length) are [t, 1]
    float32. ``xp`` is the array namespace (NumPy, or the torch backend's).
    """
    profile_at_base = lv_profile(1.0, case.widest_at)
    base_l, base_r = case.half_width_left * profile_at_base, case.half_width_right * profile_at_base
    la_a, la_b = LA_HALF_LENGTH * case.length_ed, LA_HALF_WIDTH * case.length_ed
    la_scale = 1.0 + 0.15 * cc  # atria fill while the ventricles eject
    la_v = 0.5 * (base_r - base_l)
    out = {"la": ellipse_distance(u - (L + 0.92 * la_a * la_scale), v - la_v, la_a * la_scale, la_b * la_scale, xp)}
    if case.view == "A4C":
        rv_a, rv_b = RV_HALF_LENGTH * case.length_ed, RV_HALF_WIDTH * case.length_ed
        rv_bt = rv_b * (1.0 - 0.15 * cc)
        rv_v = -(case.half_width_left + case.wall_ed + 0.75 * rv_b)
        out["rv"] = xp.maximum(ellipse_distance(u - (L - 0.7 * rv_a), v - rv_v, rv_a, rv_bt, xp), u - L)
        ra_a, ra_b = RA_HALF_LENGTH * case.length_ed, RA_HALF_WIDTH * case.length_ed
        ra_scale = 1.0 + 0.12 * cc
        ra_v = la_v - 1.15 * (la_b + ra_b) - 0.05 * case.length_ed
        out["ra"] = ellipse_distance(u - (L + 0.92 * ra_a * ra_scale), v - ra_v, ra_a * ra_scale, ra_b * ra_scale, xp)
    return out


def leaflet_segments(case: HeartCase, length: np.ndarray, left: np.ndarray, right: np.ndarray, c: np.ndarray,
                     opening: np.ndarray) -> list:
    """Leaflet segments per frame: list of (anchor [T, 2] in (u, v), direction [T, 2], length [T]).

    ``left``, ``right`` are the LV's annulus half-widths [T]; ``opening`` (0..1) swings the leaflets toward the apex.
    """
    segments = []

    def valve(v_left, v_right, base_u, open_):
        span = v_right - v_left
        leaflet = 0.48 * span
        angle = open_ * 1.25  # radians swung from closed (across the plane) toward the apex
        for sign, anchor_v in ((1.0, v_left), (-1.0, v_right)):
            direction = np.stack([0.12 * np.cos(angle) - np.sin(angle), sign * np.cos(angle)], axis=-1)
            direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
            segments.append((np.stack([base_u, anchor_v], axis=-1), direction, leaflet))

    valve(-left, right, length, opening)  # mitral
    if case.view == "A4C":  # tricuspid, across the RV's base
        rv_b = RV_HALF_WIDTH * case.length_ed * (1.0 - 0.15 * c)
        rv_v = -(case.half_width_left + case.wall_ed + 0.75 * RV_HALF_WIDTH * case.length_ed)
        half = rv_b * math.sqrt(1 - 0.7 ** 2)
        valve(rv_v - half, np.minimum(rv_v + half, -left - case.wall_ed), length, opening)
    return segments
