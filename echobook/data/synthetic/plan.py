"""Steps 1-4 of a video and its static scene, in NumPy: everything but the pixels (:func:`plan_video`).

A :class:`VideoPlan` holds the case, the cycle, the labels' contour and volumes, the per-frame
half-width tables and the arrays that do not change from frame to frame (the sector, gains,
clutter and the speckle texture). It is small enough to pickle, so worker processes can make
plans while the main process forms the images on a GPU (:func:`echobook.data.synthetic.render.render_plan`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from echobook.data import geometry
from echobook.data.synthetic.anatomy import (
    PSAX_ANGLES, aortic_cusps, leaflet_segments, lv_annulus_half_widths, lv_axes, lv_half_widths, lv_length,
    lv_tracings, lv_wall_thickness, offset_outward, papillary_muscles, psax_radii,
)
from echobook.data.synthetic.cycle import (
    cardiac_phase, contraction, ed_es_frames_of_beat, ejection_share_of_cycle, mitral_opening,
)
from echobook.data.synthetic.heart import (
    QUALITY_LEVELS, HeartCase, QualityLevel, SyntheticConfig, check_seed_index, sample_case,
)

TABLE_STEP_PX = 0.125  # the half-width tables sample the LV axis 8 times per pixel


@dataclass
class StaticScene:
    """Per-video arrays that do not change from frame to frame (pixels flattened: [H*W])."""

    u: np.ndarray  # [H*W] distance along the LV axis from the apex, px
    v: np.ndarray  # [H*W] signed distance across (positive: image right), px
    abs_v: np.ndarray
    table_index: np.ndarray  # [H*W] index into per-frame half-width tables
    u_grid: np.ndarray  # [NB] the tables' u samples
    sector: np.ndarray  # [H*W] soft sector mask
    depth_px: np.ndarray  # [H*W]
    signal_gain: np.ndarray  # [H*W] TGC residual x shadows x dropout (amplitude factor)
    haze: np.ndarray  # [H*W] additive clutter amplitude
    noise_gain: np.ndarray  # [H*W] electronic-noise amplitude
    pericardium_side: np.ndarray  # [H*W] where the bright pericardium line is drawn
    texture: np.ndarray  # [S+2m, S+2m, 2] speckle and low-frequency echogenicity
    margin: int
    valve_band: np.ndarray  # indices of pixels near the AV planes
    # static tissue that is not the heart's, drawn instead of the background (the liver of the subcostal view), 0..1
    extra_tissue: np.ndarray | None = None


# ---------------------------------------------------------------------------- textures
def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency texture in about [-1, 1]: random values on a coarse grid, cubic-upsampled."""
    import cv2

    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC) / 1.5, -1.5, 1.5)


def speckle_texture(rng: np.random.Generator, case: HeartCase, size: int, margin: int,
                    psf_scale: float = 1.0) -> np.ndarray:
    """Rayleigh speckle ``[size + 2 margin]^2`` (unit RMS): complex Gaussian scatterers blurred on the polar beam grid.

    Axial blur is fixed in pixels; lateral blur is fixed in angle, so grains widen with depth.
    """
    import cv2
    from scipy.ndimage import gaussian_filter

    radius = case.radius + margin * 1.5
    half = case.half_angle + 0.25
    step = 0.5  # polar samples per pixel: 2
    n_r = int(math.ceil(radius / step)) + 2
    n_theta = int(math.ceil(2 * half * radius / step)) + 2
    d_theta = 2 * half / (n_theta - 1)
    field_ = rng.standard_normal((2, n_r, n_theta)).astype(np.float32)
    sigma_axial_px = 0.45 * psf_scale
    sigma_lateral_rad = 0.9 * psf_scale / (0.5 * case.radius)  # about 0.9 px at mid-depth
    sigma = (0, sigma_axial_px / step, sigma_lateral_rad / d_theta)
    field_ = gaussian_filter(field_, sigma=sigma, mode="wrap")
    amplitude = np.hypot(field_[0], field_[1])
    amplitude /= np.sqrt(np.mean(amplitude ** 2))
    # scan conversion: Cartesian texture pixel (x, y) (image coords + margin) -> polar sample
    coords = np.arange(size + 2 * margin, dtype=np.float32) - margin
    xx, yy = np.meshgrid(coords, coords)
    rr = np.hypot(xx - case.tip_x, yy + 0.0)
    theta = np.arctan2(xx - case.tip_x, yy)
    map_r = (rr / step).astype(np.float32)
    map_t = ((theta + half) / d_theta).astype(np.float32)
    return cv2.remap(amplitude, map_t, map_r, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


# ---------------------------------------------------------------------------- the static scene
def _with_acoustic_shadows(gain, rng, case: HeartCase, quality: QualityLevel, theta, depth_px) -> np.ndarray:
    """``gain`` darkened by angular wedges behind a rib or lung edge (applied one at a time, in drawing order)."""
    low, high = quality.shadows
    for _ in range(int(rng.integers(low, high + 1))):
        centre = rng.uniform(-0.8, 0.8) * case.half_angle
        width = math.radians(rng.uniform(3.0, 7.0))
        start = case.radius * rng.uniform(0.05, 0.3)
        wedge = np.exp(-0.5 * ((theta - centre) / width) ** 2) * np.clip((depth_px - start) / 3.0, 0, 1)
        gain = gain * (1.0 - quality.shadow_strength * rng.uniform(0.7, 1.0) * wedge)
    return gain


def _dropout_loss(case: HeartCase, u, v) -> np.ndarray:
    """0..1 where walls run parallel to the beam (the lateral wall, the apex) and return little echo."""
    spots = [(0.45 * case.length_ed, case.half_width_right + 0.5 * case.wall_ed, 0.22, 0.10),
             (-0.3 * case.wall_ed, 0.0, 0.12, 0.25)]
    if case.view == "PSAX":  # the ring's lateral and septal sides (3 and 9 o'clock) run along the beams
        across = 0.5 * (case.half_width_left + case.half_width_right) + 0.5 * case.wall_ed
        spots = [(0.0, across, 0.15, 0.06), (0.0, -across, 0.15, 0.06)]
    loss = np.zeros_like(u)
    for along, across, a, b in spots:
        loss = np.maximum(loss, np.exp(-0.5 * (((u - along) / (a * case.length_ed)) ** 2
                                              + ((v - across) / (b * case.length_ed)) ** 2)))
    return loss


def _signal_gain(rng, case: HeartCase, quality: QualityLevel, u, v, theta, depth_px, depth_fraction) -> np.ndarray:
    """Amplitude gain of every pixel: imperfect TGC, acoustic shadows and dropout."""
    # imperfect TGC: the attenuation 2 alpha f z is compensated except for a smooth residual
    residual_db = (-case.tgc_error_db * depth_fraction ** 1.5
                   + case.tgc_wiggle_db * np.sin(np.pi * depth_fraction))
    gain = 10.0 ** ((residual_db + case.gain_db) / 20.0)
    gain = _with_acoustic_shadows(gain, rng, case, quality, theta, depth_px)
    if quality.dropout > 0:
        gain = gain * (1.0 - quality.dropout * rng.uniform(0.7, 1.0) * _dropout_loss(case, u, v))
    return gain


def _valve_band(case: HeartCase, u) -> np.ndarray:
    """Indices of the pixels the AV valves' leaflets can reach in any frame."""
    leaflet_max = 0.6 * max(case.half_width_left, case.half_width_right) + 0.3 * case.length_ed
    low_u = case.length_ed * (1 - case.longitudinal_shortening) - leaflet_max - 2
    return np.flatnonzero((u > low_u) & (u < case.length_ed + leaflet_max + 2))


def static_scene(case: HeartCase, rng: np.random.Generator, size: int, quality: QualityLevel) -> StaticScene:
    """The frame-independent arrays of one video (draws shadows, dropout and the textures from ``rng``)."""
    coords = np.arange(size, dtype=np.float64)
    xx, yy = np.meshgrid(coords, coords)
    x, y = xx.ravel(), yy.ravel()
    e, n = lv_axes(case)
    u = (x - case.apex[0]) * e[0] + (y - case.apex[1]) * e[1]
    v = (x - case.apex[0]) * n[0] + (y - case.apex[1]) * n[1]
    # half-width tables along the axis, left side first then right
    u_min, u_max = -2.0 * case.wall_ed - 2.0, case.length_ed + 2.0
    u_grid = np.arange(u_min, u_max + TABLE_STEP_PX, TABLE_STEP_PX)
    nb = len(u_grid)
    table_index = np.clip(np.rint((u - u_min) / TABLE_STEP_PX), 0, nb - 1).astype(np.int64) + nb * (v >= 0)

    depth_px = np.hypot(x - case.tip_x, y)
    theta = np.arctan2(x - case.tip_x, y)
    sector = (np.clip(0.5 + depth_px * np.sin(case.half_angle - np.abs(theta)), 0, 1)
              * np.clip(0.5 + case.radius - depth_px, 0, 1))
    depth_fraction = np.clip(depth_px / case.radius, 0, 1)
    gain = _signal_gain(rng, case, quality, u, v, theta, depth_px, depth_fraction)

    margin = max(4, size // 8)
    texture = np.empty((size + 2 * margin, size + 2 * margin, 2), dtype=np.float32)
    texture[..., 0] = speckle_texture(rng, case, size, margin, quality.psf_scale)
    texture[..., 1] = 1.0 + 0.35 * smooth_noise(rng, texture.shape[:2], cells=7)
    static_speckle = texture[margin:margin + size, margin:margin + size, 0].ravel()
    haze = (quality.haze * np.exp(-depth_px / (0.25 * case.radius)) * static_speckle + quality.fog) * gain
    noise_gain = quality.noise * (0.3 + 0.7 * depth_fraction)

    pericardium_side = ((v > 0) | (u < 0.15 * case.length_ed)).astype(np.float32)
    if case.view == "A2C":
        pericardium_side = np.ones_like(u, dtype=np.float32)
    f32 = np.float32
    scene = StaticScene(u=u.astype(f32), v=v.astype(f32), abs_v=np.abs(v).astype(f32), table_index=table_index,
                        u_grid=u_grid, sector=sector.astype(f32), depth_px=depth_px.astype(f32),
                        signal_gain=gain.astype(f32), haze=haze.astype(f32), noise_gain=noise_gain.astype(f32),
                        pericardium_side=pericardium_side, texture=texture, margin=margin,
                        valve_band=_valve_band(case, u))
    if case.view in ("PLAX", "PSAX", "other"):
        _pose_scene(scene, case, u, v, theta, depth_px)
    return scene


def _pose_scene(scene: StaticScene, case: HeartCase, u, v, theta, depth_px) -> None:
    """A non-apical view's changes to the static scene: where the pericardium shows, PSAX's polar tables,
    the subcostal view's liver."""
    f32 = np.float32
    if case.view == "PLAX":  # the bright posterior pericardium under the LV's posterior wall
        scene.pericardium_side = (v < 0).astype(f32)
    elif case.view == "PSAX":
        # the tables sample the ring's radius by angle: abs_v holds the distance from the LV's centre
        radius = 0.5 * (case.half_width_left + case.half_width_right)
        scene.abs_v = np.hypot(u, v).astype(f32)
        angle = np.arctan2(u, v)
        scene.u_grid = -np.pi + 2 * np.pi * np.arange(PSAX_ANGLES) / PSAX_ANGLES
        scene.table_index = (np.rint((angle + np.pi) * PSAX_ANGLES / (2 * np.pi)).astype(np.int64) % PSAX_ANGLES)
        scene.pericardium_side = (v > -0.6 * radius).astype(f32)  # round the LV, but not along the RV
        scene.valve_band = np.zeros(0, dtype=np.int64)  # no valves at the mid-papillary level
    elif case.view == "other":  # the liver fills the near field down to a wavy edge
        shape = case.view_shape
        edge = case.radius * shape["liver_depth"] * (1.0 + shape["liver_wave"] * np.sin(4.0 * theta
                                                                                       + shape["liver_wave_phase"]))
        scene.extra_tissue = np.clip(0.5 + (edge - depth_px) / 2.0, 0.0, 1.0).astype(f32)


# ---------------------------------------------------------------------------- the plan
@dataclass
class VideoPlan:
    """Everything about one video except its pixels, made with NumPy (steps 1-4 and the static scene).

    It is small enough to pickle, so worker processes can make plans while the main process
    forms the images on a GPU (:func:`~echobook.data.synthetic.render.render_plan`).
    """

    seed: int
    index: int
    config: SyntheticConfig
    case: HeartCase
    rng: np.random.Generator  # the video's generator after the case and scene: the NumPy path's noise
    scene: StaticScene
    phase: np.ndarray  # [T]
    contraction: np.ndarray  # [T]
    length: np.ndarray  # [T] LV long-axis length, px
    all_tracings: np.ndarray | None  # [T, 21, 4]; None for PSAX (no long-axis contour)
    volumes_ml: np.ndarray  # [T]
    ed_frame: int
    es_frame: int
    mm_per_pixel: float
    # per-frame LV half-width tables [T, 2 NB] (left then right side, float32): this frame's endocardium and
    # epicardium, and where that tissue was at end-diastole (the speckle's reference); PSAX: the ring's radius
    # tables [T, PSAX_ANGLES] by angle (:func:`short_axis_tables`)
    endo: np.ndarray
    epi: np.ndarray
    endo_ref: np.ndarray
    epi_ref: np.ndarray
    leaflets: list  # (anchor [T, 2], direction [T, 2], length [T]) per leaflet, in (u, v); PSAX: papillary muscles
    # (the same and a radius [T])


def _sides(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One float32 table of both sides: left columns first, then right (what ``table_index`` indexes)."""
    return np.concatenate([left, right], axis=1).astype(np.float32)


def half_width_tables(case: HeartCase, scene: StaticScene, c: np.ndarray, length: np.ndarray) -> dict:
    """Per-frame LV half-widths along the axis: endocardium, epicardium, and both at ED (the tissue reference)."""
    u_grid = scene.u_grid[None, :]
    L = length[:, None]
    left, right = lv_half_widths(case, u_grid, L, c[:, None])
    left_ref, right_ref = lv_half_widths(case, u_grid * case.length_ed / L, case.length_ed, 0.0)
    s = u_grid / L
    inside = (s >= 0) & (s <= 1)
    inside_ref = (u_grid >= 0) & (u_grid <= L)  # the reference table is sampled at the same u/L
    wall_left, wall_right = lv_wall_thickness(case, s, c[:, None])
    wall_ref = np.full_like(left_ref, case.wall_ed)
    du = scene.u_grid[1] - scene.u_grid[0]
    return dict(
        endo=_sides(left, right),
        epi=_sides(offset_outward(left, inside, wall_left, du), offset_outward(right, inside, wall_right, du)),
        endo_ref=_sides(left_ref, right_ref),
        epi_ref=_sides(offset_outward(left_ref, inside_ref, wall_ref, du),
                       offset_outward(right_ref, inside_ref, wall_ref, du)),
    )


def plan_video(seed: int, index: int, config: SyntheticConfig | None = None) -> VideoPlan:
    """Steps 1-4 of video ``index``: the case, the cycle, the contour's labels and the per-frame tables."""
    check_seed_index(seed, index)
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise ValueError(f"config must be a SyntheticConfig; got {type(config).__name__}")
    case, rng = sample_case(seed, index, config)
    return plan_from_case(seed, index, config, case, rng)


def aortic_opening(phase, heart_rate_bpm: float) -> np.ndarray:
    """0 shut .. 1 open: the aortic valve opens as ejection starts and shuts as it ends (PLAX's cusps)."""
    p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    ejection, ramp = ejection_share_of_cycle(heart_rate_bpm), 0.04
    return np.clip(p / ramp, 0.0, 1.0) * np.clip((ejection - p) / ramp, 0.0, 1.0)


def short_axis_tables(case: HeartCase, c: np.ndarray) -> dict:
    """PSAX's per-frame radius tables [T, PSAX_ANGLES] by angle: endocardium, epicardium, and both at ED."""
    angle = -np.pi + 2 * np.pi * np.arange(PSAX_ANGLES) / PSAX_ANGLES
    endo, epi = psax_radii(case, angle[None, :], c[:, None])
    endo_ref, epi_ref = psax_radii(case, angle[None, :], np.zeros((len(c), 1)))
    f32 = np.float32
    return dict(endo=endo.astype(f32), epi=epi.astype(f32), endo_ref=endo_ref.astype(f32), epi_ref=epi_ref.astype(f32))


def plan_from_case(seed: int, index: int, config: SyntheticConfig, case: HeartCase, rng: np.random.Generator,
                   volume_case: HeartCase | None = None) -> VideoPlan:
    """Steps 2-4 and the static scene of a drawn case (its generator ``rng`` draws on).

    PSAX has no long-axis contour: its volumes, ED/ES and EF are those of ``volume_case`` (the heart's apical
    pose), and its pixel spacing that pose's, divided by the zoom; it has no tracings.
    """
    beats = cardiac_phase(case, np.arange(config.frames) / case.fps, unwrapped=True)
    phase = np.mod(beats, 1.0)
    c = contraction(phase, case.heart_rate_bpm)
    short_axis = case.view == "PSAX"
    contour_case = volume_case if short_axis else case
    all_tracings = lv_tracings(contour_case, c)
    volumes_px3 = geometry.disc_volume_px3(all_tracings)
    ed_frame, es_frame = ed_es_frames_of_beat(beats, volumes_px3)
    # the pixel spacing that makes the ED disc volume the drawn EDV
    mm_per_pixel = float((case.target_edv_ml * 1000.0 / volumes_px3[ed_frame]) ** (1.0 / 3.0))
    volumes_ml = volumes_px3 * mm_per_pixel ** 3 / 1000.0
    if short_axis:  # this view's pixels are the apical pose's, zoomed
        mm_per_pixel *= contour_case.length_ed / case.length_ed

    scene = static_scene(case, rng, config.image_size, QUALITY_LEVELS[case.quality])
    length = lv_length(case, c)  # [T]
    if short_axis:
        tables, leaflets = short_axis_tables(case, c), papillary_muscles(case, c)
    else:
        annulus_left, annulus_right = lv_annulus_half_widths(case, c)
        tables = half_width_tables(case, scene, c, length)
        leaflets = leaflet_segments(case, length, annulus_left, annulus_right, c,
                                    mitral_opening(phase, case.heart_rate_bpm))
        if case.view == "PLAX":
            leaflets = leaflets + aortic_cusps(case, length, aortic_opening(phase, case.heart_rate_bpm))
    return VideoPlan(
        seed=int(seed), index=int(index), config=config, case=case, rng=rng, scene=scene, phase=phase,
        contraction=c, length=length, all_tracings=None if short_axis else all_tracings,
        volumes_ml=volumes_ml,
        ed_frame=ed_frame, es_frame=es_frame, mm_per_pixel=mm_per_pixel, **tables, leaflets=leaflets,
    )
