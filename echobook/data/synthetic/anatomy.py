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
FOUR_CHAMBER_VIEWS = ("A4C", "other")  # views that show the RV, the RA and the tricuspid valve ("other": subcostal)


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
    if isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating)):  # two numbers (torch wants one)
        return (rho - 1.0) * float(min(a, b))
    return (rho - 1.0) * xp.minimum(a, b)


def chamber_distances(case: HeartCase, u, v, cc, L, xp=np) -> dict:
    """Signed distances of the other chambers: dict name ("la", and in A4C "rv", "ra") -> [t, HW] (px).

    ``u``, ``v`` [HW] are the pixels' axis coordinates; ``cc`` (contraction) and ``L`` (LV length) are [t, 1]
    float32. ``xp`` is the array namespace (NumPy, or the torch backend's).
    """
    if case.view == "PLAX":
        return parasternal_long_axis_chambers(case, u, v, cc, L, xp)
    if case.view == "PSAX":
        return short_axis_chambers(case, u, v, cc, xp)
    profile_at_base = lv_profile(1.0, case.widest_at)
    base_l, base_r = case.half_width_left * profile_at_base, case.half_width_right * profile_at_base
    la_a, la_b = LA_HALF_LENGTH * case.length_ed, LA_HALF_WIDTH * case.length_ed
    la_scale = 1.0 + 0.15 * cc  # atria fill while the ventricles eject
    la_v = 0.5 * (base_r - base_l)
    out = {"la": ellipse_distance(u - (L + 0.92 * la_a * la_scale), v - la_v, la_a * la_scale, la_b * la_scale, xp)}
    if case.view in FOUR_CHAMBER_VIEWS:
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

    if case.view == "PLAX":  # the anterior mitral leaflet hangs from the aortic root (aorto-mitral continuity)
        ao_v, ao_r = plax_aorta(case)
        valve(-left, np.full_like(left, ao_v - ao_r), length, opening)
        return segments
    valve(-left, right, length, opening)  # mitral
    if case.view in FOUR_CHAMBER_VIEWS:  # tricuspid, across the RV's base
        rv_b = RV_HALF_WIDTH * case.length_ed * (1.0 - 0.15 * c)
        rv_v = -(case.half_width_left + case.wall_ed + 0.75 * RV_HALF_WIDTH * case.length_ed)
        half = rv_b * math.sqrt(1 - 0.7 ** 2)
        valve(rv_v - half, np.minimum(rv_v + half, -left - case.wall_ed), length, opening)
    return segments


# ---------------------------------------------------------------------------- parasternal long axis (PLAX)
# (u, v) as everywhere: u from the apex (image left) to the base (image right), v positive toward the
# transducer (anterior: the septum and the RV outflow); the "left" wall of the tables is the posterior wall.
def plax_aorta(case: HeartCase) -> tuple[float, float]:
    """(v of the aortic root's axis, its radius) in px: its anterior wall continues the septum."""
    half_width = 0.5 * (case.half_width_left + case.half_width_right)
    radius = case.view_shape["aorta_radius"] * half_width
    septum_at_base = case.half_width_right * lv_profile(1.0, case.widest_at)
    return septum_at_base + 0.3 * case.wall_ed - radius, radius


def parasternal_long_axis_chambers(case: HeartCase, u, v, cc, L, xp=np) -> dict:
    """PLAX's blood pools as signed distances [t, HW] (px): "la", the aortic root "ao", the RV outflow "rv" near
    the transducer, and the descending aorta "da" behind the LA."""
    shape, half_width = case.view_shape, 0.5 * (case.half_width_left + case.half_width_right)
    ao_v, ao_r = plax_aorta(case)
    out = {"ao": xp.maximum(xp.abs(v - ao_v) - ao_r, L - u)}  # a tube leaving the base to the image right
    la_top = ao_v - ao_r - 0.04 * case.length_ed  # the aortic root's posterior wall
    la_b = shape["la_depth"] * half_width  # the LA reaches behind the posterior annulus, level with the AV groove
    la_v, la_bottom = la_top - la_b, la_top - 2.0 * la_b
    la_a = shape["la_length"] * case.length_ed
    la_scale = 1.0 + 0.15 * cc  # the LA fills while the LV ejects
    out["la"] = ellipse_distance(u - (L + 0.92 * la_a * la_scale), v - la_v, la_a * la_scale, la_b, xp)
    rv_b = 0.5 * shape["rv_depth"] * half_width * (1.0 - 0.15 * cc)
    rv_v = case.half_width_right + case.wall_ed + 0.04 * case.length_ed + 0.5 * shape["rv_depth"] * half_width
    out["rv"] = ellipse_distance(u - 0.6 * case.length_ed, v - rv_v, 0.5 * case.length_ed, rv_b, xp)
    da_r = shape["descending_aorta"] * half_width
    out["da"] = ellipse_distance(u - (case.length_ed + 0.3 * la_a), v - (la_bottom - 0.06 * case.length_ed - da_r),
                                 da_r, da_r, xp)
    return out


def aortic_cusps(case: HeartCase, length: np.ndarray, opening: np.ndarray) -> list:
    """The two aortic cusps PLAX shows, as leaflet segments: across the root when shut, along its walls when open."""
    ao_v, ao_r = plax_aorta(case)
    angle = opening * 1.35  # radians swung from across the root toward the aorta
    segments = []
    for sign, anchor_v in ((1.0, ao_v - ao_r), (-1.0, ao_v + ao_r)):
        direction = np.stack([np.sin(angle) - 0.12 * np.cos(angle), sign * np.cos(angle)], axis=-1)
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        anchor = np.stack([length + 0.02 * case.length_ed, np.full_like(length, anchor_v)], axis=-1)
        segments.append((anchor, direction, np.full_like(length, 0.95 * ao_r)))
    return segments


# ---------------------------------------------------------------------------- parasternal short axis (PSAX)
# The apex field holds the LV's centre and the axis points down, so (u, v) = (y, x) - centre; the angle
# phi = atan2(u, v) is 0 at the image right (lateral), pi/2 down (inferior), pi at the left (septum, RV side).
PSAX_ANGLES = 256  # samples of the ring's radius tables around the circle


def psax_mid_ring_factors(case: HeartCase, angle: np.ndarray) -> np.ndarray:
    """Motion multiplier around the mid-papillary ring: the case's mid inferoseptal (at 150 deg) and mid
    anterolateral (at -30 deg) segments, the other mid segments normal, blended periodically."""
    f = case.motion_factor
    centres = np.radians([-150.0, -90.0, -30.0, 30.0, 90.0, 150.0])  # anteroseptal ... inferoseptal
    factors = np.array([1.0, 1.0, f[4], 1.0, 1.0, f[1]])
    return np.interp(angle, centres, factors, period=2 * np.pi)


def psax_radii(case: HeartCase, angle: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Endocardial and epicardial radius (px) of the ring at ``angle`` [A] for contraction ``c`` [T, 1]: the
    cavity shrinks by ``r c k`` (the case's radial shortening) and the wall thickens by ``thickening c k``."""
    shape = case.view_shape
    radius_ed = 0.5 * (case.half_width_left + case.half_width_right)
    oval = 1.0 + shape["ellipticity"] * np.cos(2.0 * (angle - shape["ellipse_angle"]))
    k = psax_mid_ring_factors(case, angle)
    endo = radius_ed * oval * (1.0 - case.radial_shortening * c * k)
    wall = case.wall_ed * (1.0 + case.thickening * c * k)
    return endo, endo + wall


def short_axis_chambers(case: HeartCase, u, v, cc, xp=np) -> dict:
    """PSAX's RV crescent [t, HW] (px): an ellipse wrapped round the septum at the image left; the LV's wall
    covers the part inside it (the renderer lets the LV's myocardium win)."""
    shape = case.view_shape
    epi_ed = 0.5 * (case.half_width_left + case.half_width_right) + case.wall_ed
    rv_b = (0.45 + shape["rv_width"]) * epi_ed * (1.0 - 0.12 * cc)
    rv_a = shape["rv_height"] * epi_ed
    return {"rv": ellipse_distance(u + 0.1 * epi_ed, v + 0.45 * epi_ed, rv_a, rv_b, xp)}


def papillary_muscles(case: HeartCase, c: np.ndarray) -> list:
    """The two papillary muscles as thick segments from the wall inward: (anchor [T, 2] in (u, v), direction
    [T, 2], length [T], radius [T]); they move with the wall and thicken with it."""
    muscles = []
    for angle in case.view_shape["papillary_angles"]:
        endo, _ = psax_radii(case, np.array([angle]), c[:, None])
        outward = np.array([math.sin(angle), math.cos(angle)])  # (u, v)
        radius = case.view_shape["papillary_radius"] * endo[:, 0] * (1.0 + 0.3 * c)
        anchor = (endo[:, 0] - 0.5 * radius)[:, None] * outward
        muscles.append((anchor, np.broadcast_to(-outward, anchor.shape).copy(), 0.3 * endo[:, 0], radius))
    return muscles
