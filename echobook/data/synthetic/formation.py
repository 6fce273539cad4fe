"""Step 5's per-pixel code, shared by the NumPy and the torch backend (:mod:`echobook.data.synthetic.render`).

It is written once against a small array namespace ``xp`` (numpy's own functions, or their torch
twins in the torch backend), so the two paths cannot drift apart; only texture sampling, noise and
quantisation differ by backend. ``xp`` provides ``maximum, minimum, abs, sqrt, log10, hypot, where,
clip, zeros, as_uint8, noise(rows, shape)`` and ``sample(map_x, map_y)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echobook.data.labels import LEFT_ATRIUM, LV_CAVITY, LV_MYOCARDIUM
from echobook.data.synthetic.anatomy import chamber_distances, lv_axes
from echobook.data.synthetic.heart import QUALITY_LEVELS
from echobook.data.synthetic.plan import VideoPlan


@dataclass(frozen=True)
class Levels:
    """Amplitude echogenicities (1 = the brightest reflector)."""

    blood: float = 0.0025
    myocardium: float = 0.2
    background: float = 0.025
    pericardium: float = 0.6
    valve: float = 0.45
    liver: float = 0.1  # parenchyma, a little darker than the myocardium (the subcostal view's near field)


@dataclass
class PixelInputs:
    """The arrays the per-pixel code reads (NumPy here; tensors on the device for the torch path)."""

    u: np.ndarray  # [HW] float32 pixel coordinates along / across the LV axis
    v: np.ndarray
    abs_v: np.ndarray
    sign_v: np.ndarray
    table_index: np.ndarray  # [HW] int64 column of the half-width tables
    length: np.ndarray  # [T] float32
    contraction: np.ndarray  # [T] float32
    endo: np.ndarray  # [T, 2 NB] float32 tables, see VideoPlan
    epi: np.ndarray
    endo_ref: np.ndarray
    epi_ref: np.ndarray
    sector: np.ndarray  # [HW] float32 static maps, see StaticScene
    signal_gain: np.ndarray
    haze: np.ndarray
    noise_gain: np.ndarray
    pericardium_side: np.ndarray
    valve_band: np.ndarray  # [B] int64
    leaflets: list
    # scalars: the apex (x, y), the axes e and n, the motion fall-off. NumPy scalars here, so NumPy promotes
    # as it always did (the reference bytes); the torch path gets Python numbers and stays in float32
    apex: tuple
    e: tuple
    n: tuple
    fade: float
    extra_tissue: np.ndarray | None = None  # [HW] float32, see StaticScene


def pixel_inputs(plan: VideoPlan) -> PixelInputs:
    """The plan's arrays in the form the per-pixel code reads (NumPy; the torch backend moves them)."""
    scene, case = plan.scene, plan.case
    e, n = lv_axes(case)
    return PixelInputs(
        u=scene.u, v=scene.v, abs_v=scene.abs_v, sign_v=np.where(scene.v >= 0, 1.0, -1.0).astype(np.float32),
        table_index=scene.table_index, length=plan.length.astype(np.float32),
        contraction=plan.contraction.astype(np.float32), endo=plan.endo, epi=plan.epi, endo_ref=plan.endo_ref,
        epi_ref=plan.epi_ref, sector=scene.sector, signal_gain=scene.signal_gain, haze=scene.haze,
        noise_gain=scene.noise_gain, pericardium_side=scene.pericardium_side, valve_band=scene.valve_band,
        leaflets=plan.leaflets, apex=(case.apex[0], case.apex[1]), e=(e[0], e[1]), n=(n[0], n[1]),
        fade=np.float32(0.15 * case.length_ed),  # beyond the epicardium, tissue motion fades out over this many px
        extra_tissue=scene.extra_tissue,
    )


def soft(distance, xp=np):
    """Inside-ness from a signed distance in pixels (negative inside): a one-pixel ramp."""
    return xp.clip(0.5 - distance, 0.0, 1.0)


def log_compress(amplitude, dynamic_range_db: float, xp=np):
    """Gray levels 0..255 of a linear amplitude (1 = the brightest reflector) over ``dynamic_range_db``."""
    gray = (20.0 * xp.log10(xp.maximum(amplitude, 1e-6)) + dynamic_range_db) * (255.0 / dynamic_range_db)
    return xp.clip(gray, 0.0, 255.0)


def form_chunk(xp, plan: VideoPlan, px: PixelInputs, rows: slice):
    """Labels and gray frames ``[t, HW]`` (uint8) of frames ``rows``, and the intermediates the stages show."""
    case = plan.case
    short_axis = case.view == "PSAX"
    Lt = px.length[rows, None]
    w_endo = px.endo[rows][:, px.table_index]
    w_epi = px.epi[rows][:, px.table_index]
    if short_axis:  # the ring's radius tables: abs_v is the distance from the LV's centre
        d_cavity, d_epi = px.abs_v - w_endo, px.abs_v - w_epi
    else:
        d_cavity, d_epi = _lv_distances(xp, px, w_endo, w_epi, Lt)
    chambers = chamber_distances(case, px.u, px.v, px.contraction[rows, None], Lt, xp)
    labels = _label_map(xp, d_cavity, d_epi, chambers)
    if case.view_shape is not None:  # a posed view may reach past the sector: label only what it shows
        labels = labels * xp.as_uint8(px.sector >= 0.5)
    if short_axis:
        speckle, texture = _short_axis_texture(xp, plan, px, rows, w_endo, w_epi)
    else:
        speckle, texture = _tissue_texture(xp, plan, px, rows, w_endo, w_epi, Lt)
    echo = _echogenicity(xp, plan, px, rows, d_cavity, d_epi, chambers) * texture
    amplitude = echo * speckle * px.signal_gain + px.haze
    amplitude = amplitude + xp.abs(xp.noise(rows, amplitude.shape)) * px.noise_gain
    gray = log_compress(amplitude, case.dynamic_range_db, xp) * px.sector
    return labels, xp.as_uint8(gray + 0.5), {"echo": echo, "speckle": speckle}


def _lv_distances(xp, px: PixelInputs, w_endo, w_epi, Lt):
    """Signed distances (px, negative inside) to the LV cavity and to the LV epicardium, [t, HW]."""
    u, abs_v = px.u, px.abs_v
    d_cavity = xp.maximum(xp.maximum(abs_v - w_endo, -u), u - Lt)
    d_cavity = xp.where(w_endo > 0, d_cavity, xp.maximum(d_cavity, 0.5))
    d_epi = xp.maximum(abs_v - w_epi, u - Lt)
    return d_cavity, d_epi


def _label_map(xp, d_cavity, d_epi, chambers: dict):
    """The chamber label map (echobook.data.labels.CHAMBER_LABELS) of the same contours the pixels show."""
    cavity, epi = d_cavity <= 0, d_epi <= 0
    labels = LV_CAVITY * xp.as_uint8(cavity) + LV_MYOCARDIUM * xp.as_uint8(epi & ~cavity)
    if "la" not in chambers:  # PSAX shows no atrium
        return labels
    la = (chambers["la"] <= 0) & ~epi
    return labels + LEFT_ATRIUM * xp.as_uint8(la)


def _tissue_texture(xp, plan: VideoPlan, px: PixelInputs, rows: slice, w_endo, w_epi, Lt):
    """(speckle, low-frequency texture) [t, HW] sampled where each pixel's tissue was at end-diastole.

    The texture is fixed in tissue coordinates, so speckle moves with the myocardium.
    """
    case, u, abs_v, idx = plan.case, px.u, px.abs_v, px.table_index
    u_ref = xp.where(u < 0, u, xp.where(u <= Lt, u * (case.length_ed / Lt), u + (case.length_ed - Lt)))
    a_ref = _reference_distance(xp, px, rows, abs_v, w_endo, w_epi)
    v_ref = px.sign_v * a_ref
    margin, (e, n) = plan.scene.margin, (px.e, px.n)
    return xp.sample(px.apex[0] + u_ref * e[0] + v_ref * n[0] + margin,
                     px.apex[1] + u_ref * e[1] + v_ref * n[1] + margin)


def _reference_distance(xp, px: PixelInputs, rows: slice, distance, w_endo, w_epi):
    """Where a pixel at ``distance`` from the axis (or PSAX's centre) was at end-diastole: the cavity, the wall and
    a fall-off zone of width ``px.fade`` each stretch linearly to their ED widths; beyond, tissue stays still."""
    idx = px.table_index
    w_ref, e_ref = px.endo_ref[rows][:, idx], px.epi_ref[rows][:, idx]
    safe_endo = xp.maximum(w_endo, 1e-3)
    D = px.fade
    in_wall = w_ref + (distance - w_endo) * (e_ref - w_ref) / xp.maximum(w_epi - w_endo, 1e-3)
    in_fall_off = e_ref + (distance - w_epi) * ((w_epi + D - e_ref) / D)
    return xp.where(distance <= w_endo, distance * (w_ref / safe_endo),
                    xp.where(distance <= w_epi, in_wall, xp.where(distance <= w_epi + D, in_fall_off, distance)))


def _short_axis_texture(xp, plan: VideoPlan, px: PixelInputs, rows: slice, w_endo, w_epi):
    """PSAX's (speckle, low-frequency texture) [t, HW]: each pixel moves radially, toward the ring's centre."""
    rho = px.abs_v
    scale = _reference_distance(xp, px, rows, rho, w_endo, w_epi) / xp.maximum(rho, 1e-3)
    margin = plan.scene.margin
    return xp.sample(px.apex[0] + px.v * scale + margin, px.apex[1] + px.u * scale + margin)


def _echogenicity(xp, plan: VideoPlan, px: PixelInputs, rows: slice, d_cavity, d_epi, chambers: dict):
    """Amplitude echogenicity [t, HW] before speckle: background, heart tissue, blood, pericardium, valves."""
    case, quality, levels = plan.case, QUALITY_LEVELS[plan.case.quality], Levels()
    heart = soft(d_epi, xp)
    blood_other = xp.zeros(heart.shape)
    for name, d in chambers.items():
        wall = 0.03 * case.length_ed if name == "rv" else 0.035 * case.length_ed
        heart = xp.maximum(heart, soft(d - wall, xp))
        blood_other = xp.maximum(blood_other, soft(d, xp))
    blood = xp.maximum(soft(d_cavity, xp), blood_other * (1.0 - soft(d_epi, xp)))
    if px.extra_tissue is None:
        echo = levels.background + (levels.myocardium * quality.contrast - levels.background) * heart
    else:  # tissue that is not the heart's (the liver) replaces the background
        background = levels.background + (levels.liver * quality.contrast - levels.background) * px.extra_tissue
        echo = background + (levels.myocardium * quality.contrast - background) * heart
    if case.view == "PSAX":  # the papillary muscles: tissue inside the cavity (CAMUS labels them cavity)
        blood = blood * (1.0 - _papillary_muscles(xp, px, rows))
    echo = echo + (levels.blood - echo) * blood
    pericardium = xp.clip(1.0 - xp.abs(d_epi - 1.2), 0.0, 1.0) * px.pericardium_side
    echo = xp.maximum(echo, levels.pericardium * pericardium)
    band = px.valve_band
    if len(band):
        valves = _valves(xp, px, rows, px.u[band][None, :], px.v[band][None, :])
        echo[:, band] = xp.maximum(echo[:, band], levels.valve * valves)
    return echo


def _papillary_muscles(xp, px: PixelInputs, rows: slice):
    """0..1 inside PSAX's papillary muscles [t, HW]: within each one's radius of its segment (``px.leaflets``)."""
    inside = xp.zeros((rows.stop - rows.start, px.u.shape[0]))
    for anchor, direction, muscle_len, radius in px.leaflets:
        ru, rv_ = px.u[None, :] - anchor[rows, 0:1], px.v[None, :] - anchor[rows, 1:2]
        du_, dv_ = direction[rows, 0:1], direction[rows, 1:2]
        along = xp.clip(ru * du_ + rv_ * dv_, 0.0, muscle_len[rows, None])
        dist = xp.hypot(ru - along * du_, rv_ - along * dv_)
        inside = xp.maximum(inside, soft(dist - radius[rows, None], xp))
    return inside


def _valves(xp, px: PixelInputs, rows: slice, bu, bv):
    """Leaflet brightness 0..1 at the valve-band pixels ``(bu, bv)`` [1, B]: a 1.2-px line along each leaflet."""
    valve = xp.zeros((rows.stop - rows.start, bu.shape[1]))
    for anchor, direction, leaflet_len in px.leaflets:
        au, av = anchor[rows, 0:1], anchor[rows, 1:2]
        du_, dv_ = direction[rows, 0:1], direction[rows, 1:2]
        ru, rv_ = bu - au, bv - av
        longest = leaflet_len[rows, None] if getattr(leaflet_len, "ndim", 0) else leaflet_len
        along = xp.clip(ru * du_ + rv_ * dv_, 0.0, longest)
        dist = xp.hypot(ru - along * du_, rv_ - along * dv_)
        valve = xp.maximum(valve, xp.clip(1.2 - dist, 0.0, 1.0))
    return valve
