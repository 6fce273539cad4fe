"""Step 1, the case: what kind of videos to make (:class:`SyntheticConfig`) and every random choice of one video.

Video ``i`` of a set draws its numbers from its own generator (:func:`rng_for`), in a fixed order
whatever the options, so forcing a quality, a view or an EF keeps the rest of the heart.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

import numpy as np

from echobook.data.labels import QUALITIES, VIEW_CHOICES, VIEW_CLASSES, VIEWS
from echobook.data.synthetic.anatomy import solve_radial_shortening

# EchoNet-Dynamic FileList.csv EF distribution (10,030 videos; reference report sec. 1.2) as
# (EF %, cumulative fraction) knots: quantiles 1/5/25/50/75/95/99 % and the bin edges.
ECHONET_EF_CDF = (
    (7.0, 0.0), (17.9, 0.01), (20.0, 0.016), (27.9, 0.05), (30.0, 0.062), (40.0, 0.126),
    (50.0, 0.224), (51.6, 0.25), (59.2, 0.50), (60.0, 0.552), (64.0, 0.75), (69.1, 0.95),
    (70.0, 0.968), (74.3, 0.99), (80.0, 0.997), (88.0, 1.0),
)
ECHONET_EF_MEAN, ECHONET_EF_SD, ECHONET_EF_BELOW_40 = 55.75, 12.37, 0.126
# EchoNet EDV medians by EF band (EF < 35, 35-50, >= 50) in mL; log-sd of EDV about 0.44 overall.
ECHONET_EDV_MEDIAN_ML = ((35.0, 142.0), (50.0, 101.0), (math.inf, 76.0))
EDV_LOG_SD = 0.33  # within an EF band (the bands' spread adds the rest of EchoNet's 0.44)
# RR intervals' coefficient of variation: beyond 0.5 a lognormal draw gives beats too short to hold a systole
MAX_RR_IRREGULARITY = 0.5
RR_SHORTEST, RR_LONGEST = 0.5, 2.0  # an irregular beat's RR interval within these multiples of the mean
RHYTHM_STREAM = 0x5252  # spawn key of the irregular rhythm's own generator ("RR"), apart from the video's
VIEW_STREAM = 0x5657  # spawn key of a non-apical view's pose generator ("VW"), apart from the video's


@dataclass(frozen=True)
class QualityLevel:
    """How an image-quality level (CAMUS's vocabulary) degrades the picture."""

    psf_scale: float  # speckle grain size relative to Good
    haze: float  # near-field clutter amplitude (linear, 1 = the brightest reflector)
    fog: float  # uniform haze over everything (raises the blood pool)
    dropout: float  # 0..1 loss of echo where walls run parallel to the beam
    shadows: tuple[int, int]  # min/max number of acoustic shadow wedges (ribs, lung)
    shadow_strength: float
    noise: float  # electronic noise amplitude
    tgc_error_db: float  # largest residual of imperfect gain compensation at full depth
    contrast: float  # scales the myocardium's echogenicity


QUALITY_LEVELS = {
    "Good": QualityLevel(1.0, 0.0, 0.0, 0.0, (0, 0), 0.0, 0.0015, 3.0, 1.0),
    "Medium": QualityLevel(1.3, 0.012, 0.002, 0.5, (0, 1), 0.5, 0.004, 5.0, 0.8),
    "Poor": QualityLevel(1.7, 0.03, 0.005, 0.85, (1, 2), 0.8, 0.008, 7.0, 0.6),
}
assert tuple(QUALITY_LEVELS) == QUALITIES  # quality_weights and the sampler count on this order


@dataclass(frozen=True)
class SyntheticConfig:
    """What kind of videos to make. Every range is ``(low, high)``; sizes in pixels and frames.

    EF: by default drawn from EchoNet-Dynamic's distribution; ``ef_range=(lo, hi)`` draws it
    uniformly instead, ``ef_percent`` fixes it. The EF of a video is what its rendered
    contour gives, within about a point of the drawn target.
    """

    image_size: int = 112  # pixels per side (EchoNet-Dynamic: 112)
    frames: int = 176  # frames per video (the full preset; EchoNet's median is 171)
    fps_range: tuple[float, float] = (30.0, 60.0)  # EchoNet: 79 % at 50 fps, 1-99 %: 33-76
    min_cycles: float = 1.6  # lower the fps if needed so a video holds this many beats (>= 1.52: a whole ED-to-ES)
    hr_range: tuple[float, float] = (50.0, 110.0)  # heart rate, beats per minute
    ef_range: tuple[float, float] | None = None  # uniform EF in percent instead of EchoNet's distribution
    ef_percent: float | None = None  # a fixed target EF in percent
    quality_weights: tuple[float, float, float] = (0.45, 0.4, 0.15)  # Good, Medium, Poor
    quality: str | None = None  # force one quality level
    view: str = "A4C"  # "A4C", "A2C" or "mixed" (half and half)
    wall_motion_probability: float = 0.2  # chance of a regional defect (doubled when EF < 45)
    # beat-to-beat variation of the RR interval (its coefficient of variation): 0 keeps the sinus rhythm (only the
    # breathing swing); atrial fibrillation's RR intervals vary by about 0.15-0.3 (0.2 is a typical AF value)
    rr_irregularity: float = 0.0

    def __post_init__(self):
        for name, why in _config_problems(self):
            raise ValueError(f"SyntheticConfig.{name}={getattr(self, name)!r}: {why}")


def _config_problems(config: SyntheticConfig):
    """``(field, why)`` of each invalid field, in field order."""
    if not isinstance(config.image_size, (int, np.integer)) or config.image_size < 16:
        yield "image_size", "must be an integer >= 16"
    if not isinstance(config.frames, (int, np.integer)) or config.frames < 1:
        yield "frames", "must be an integer >= 1"
    for name in ("fps_range", "hr_range"):
        low, high = getattr(config, name)
        if not (0 < low <= high):
            yield name, "must be (low, high) with 0 < low <= high"
    if config.min_cycles <= 0:
        yield "min_cycles", "must be positive"
    if config.ef_range is not None and not (0 < config.ef_range[0] <= config.ef_range[1] < 100):
        yield "ef_range", "must be (low, high) with 0 < low <= high < 100 (percent)"
    if config.ef_percent is not None and not (0 < config.ef_percent < 100):
        yield "ef_percent", "must be in (0, 100) percent"
    weights = np.asarray(config.quality_weights, dtype=float)
    if weights.shape != (3,) or np.any(weights < 0) or weights.sum() <= 0:
        yield "quality_weights", "must be three non-negative weights for Good, Medium, Poor"
    if config.quality is not None and config.quality not in QUALITIES:
        yield "quality", f"must be one of {QUALITIES} or None"
    if config.view not in VIEW_CHOICES:
        yield "view", f"must be one of {VIEW_CHOICES}"
    if not (0 <= config.wall_motion_probability <= 1):
        yield "wall_motion_probability", "must be in [0, 1]"
    if not isinstance(config.rr_irregularity, (int, float, np.integer, np.floating)) or isinstance(
            config.rr_irregularity, bool) or not (0 <= config.rr_irregularity <= MAX_RR_IRREGULARITY):
        yield "rr_irregularity", f"must be a number in [0, {MAX_RR_IRREGULARITY}] (0: sinus rhythm, ~0.2: AF-like)"


def config_for_preset(preset, **overrides) -> SyntheticConfig:
    """The synthetic config of an :class:`echobook.config.SizePreset` (its image size and frames)."""
    return SyntheticConfig(image_size=int(preset.image_size), frames=int(preset.video_frames), **overrides)


def check_seed_index(seed, index) -> None:
    """Raise a ValueError naming ``seed`` or ``index`` unless both are non-negative integers."""
    for name, value in (("seed", seed), ("index", index)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}")


def video_name(seed: int, index: int) -> str:
    """EchoNet-like file stem ("0X" + 16 upper-case hex digits) derived from (seed, index)."""
    digest = hashlib.blake2b(f"echobook-synthetic:{int(seed)}:{int(index)}".encode(), digest_size=8).hexdigest()
    return "0X" + digest.upper()


def rng_for(seed: int, index: int) -> np.random.Generator:
    """Video ``index``'s generator: child ``index`` of ``SeedSequence(seed)``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))


# ---------------------------------------------------------------------------- the samplers, in drawing order
def sample_view_and_quality(rng: np.random.Generator, config: SyntheticConfig) -> tuple[str, str]:
    """The view and the quality level; both numbers are drawn even when the config forces them."""
    u_view, u_quality = rng.uniform(size=2)
    view = config.view if config.view != "mixed" else VIEWS[int(u_view < 0.5)]
    weights = np.cumsum(config.quality_weights) / np.sum(config.quality_weights)
    quality = config.quality or QUALITIES[min(int(np.searchsorted(weights, u_quality, side="right")), 2)]
    return view, quality


def sample_rates(rng: np.random.Generator, config: SyntheticConfig) -> tuple[float, float]:
    """Heart rate (beats per minute) and a whole frame rate (frames per second)."""
    heart_rate_bpm = float(rng.uniform(*config.hr_range))
    fps = float(rng.uniform(*config.fps_range))
    if config.frames > 1:  # enough beats in the clip to hold both an ED and an ES
        fps = min(fps, (config.frames - 1) * heart_rate_bpm / (60.0 * config.min_cycles))
    fps = float(max(1, math.floor(fps)))  # whole frames per second, as in EchoNet's FileList (floor keeps min_cycles)
    return heart_rate_bpm, fps


def sample_ef_percent(rng: np.random.Generator, config: SyntheticConfig) -> float:
    """A target EF: fixed, uniform in ``ef_range``, or EchoNet-Dynamic's empirical distribution.

    Always draws exactly one number, so the EF option does not change the rest of the case.
    """
    u = rng.uniform()
    if config.ef_percent is not None:
        return float(config.ef_percent)
    if config.ef_range is not None:
        low, high = config.ef_range
        return float(low + u * (high - low))
    ef, cdf = np.array(ECHONET_EF_CDF).T
    return float(np.interp(u, cdf, ef))  # inverse CDF, piecewise linear


def sample_edv_ml(rng: np.random.Generator, ef_percent: float) -> float:
    """EDV drawn lognormally around EchoNet's median for the EF band (dilated hearts at low EF)."""
    median = next(m for upper, m in ECHONET_EDV_MEDIAN_ML if ef_percent < upper)
    return float(np.clip(median * math.exp(EDV_LOG_SD * rng.standard_normal()), 25.0, 400.0))


def sample_wall_motion(rng: np.random.Generator, ef_percent: float, probability: float) -> np.ndarray:
    """Defects in a coronary territory (MI analogue): per segment 0 normal, 1 hypo-, 2 akinetic.

    Always draws the same count of numbers, so the outcome does not shift the draws after it.
    """
    u_defect, u_territory, u_count, u_start, *u_severity = rng.uniform(size=7)
    wall_motion = np.zeros(6, dtype=np.int64)
    p = min(1.0, probability * (2.0 if ef_percent < 45 else 1.0))
    if u_defect < p:
        # segment indices (SEGMENTS order) of typical territories:
        # LAD (septum + apex), LCx (lateral), RCA (basal septum)
        territories = ((1, 2, 3), (2, 3), (4, 5), (3, 4), (0, 1))
        territory = territories[int(u_territory * len(territories))]
        count = 1 + int(u_count * len(territory))
        start = int(u_start * (len(territory) - count + 1))
        for segment, u in zip(territory[start:start + count], u_severity):
            wall_motion[segment] = 1 + int(u < 0.4)
    return wall_motion


def sample_motion_factor(rng: np.random.Generator, wall_motion: np.ndarray) -> np.ndarray:
    """Each segment's multiplier of its inward excursion: 1 normal, 0.3-0.6 hypokinetic, 0-0.1 akinetic."""
    hypokinetic, akinetic = rng.uniform(0.3, 0.6, size=6), rng.uniform(0.0, 0.1, size=6)
    return np.select([wall_motion == 1, wall_motion == 2], [hypokinetic, akinetic], 1.0)


@dataclass
class HeartCase:
    """Every random choice of one video (sizes in output pixels unless named otherwise)."""

    view: str
    quality: str
    heart_rate_bpm: float
    fps: float
    phase0: float
    target_ef_percent: float
    target_edv_ml: float
    wall_motion: np.ndarray
    motion_factor: np.ndarray  # [6] multiplier of each segment's inward excursion
    # sector
    tip_x: float
    half_angle: float
    radius: float
    # LV
    apex: np.ndarray  # (x, y)
    tilt: float  # long axis angle from +Y (down), positive: base to the image right
    length_ed: float
    half_width_left: float
    half_width_right: float
    widest_at: float  # fraction of the length where the LV is widest
    wall_ed: float
    longitudinal_shortening: float
    thickening: float
    radial_shortening: float = 0.0  # solved for the target EF
    # image
    dynamic_range_db: float = 50.0
    gain_db: float = 0.0
    frequency_mhz: float = 2.5
    tgc_error_db: float = 0.0
    tgc_wiggle_db: float = 0.0
    # respiratory sinus arrhythmia: the heart rate swings by +-hr_variation over a breath
    hr_variation: float = 0.0
    breath_s: float = 4.0
    breath_phase: float = 0.0
    # irregular rhythm (``SyntheticConfig.rr_irregularity`` > 0): the times of every end-diastole, seconds,
    # from before the first frame to after the last; None for the sinus rhythm above
    beat_times_s: np.ndarray | None = None
    # a non-apical view's own sizes in px (PLAX, PSAX, "other"; :func:`sample_view_case`); None for A4C and A2C
    view_shape: dict | None = None


def rhythm_rng(seed: int, index: int) -> np.random.Generator:
    """The irregular rhythm's own generator: a stream apart from the video's (:func:`rng_for`), so giving a
    video an irregular rhythm changes its beat timing and nothing else of the heart or the image."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), RHYTHM_STREAM)))


def sample_beat_times_s(rng: np.random.Generator, case: HeartCase, duration_s: float,
                        rr_irregularity: float) -> np.ndarray:
    """End-diastole times (seconds) of an irregular rhythm covering ``[0, duration_s]``.

    Each RR interval is the mean interval times an independent lognormal factor of mean 1 and coefficient of
    variation ``rr_irregularity``, clipped to [0.5, 2] (atrial fibrillation: RR intervals that are
    irregularly irregular, with no pattern from beat to beat). The first frame falls ``phase0`` into its beat.
    """
    mean_rr_s = 60.0 / case.heart_rate_bpm
    sigma = math.sqrt(math.log1p(rr_irregularity ** 2))
    count = int(math.ceil(duration_s / (RR_SHORTEST * mean_rr_s))) + 3  # enough beats even if all are short
    factors = np.exp(sigma * rng.standard_normal(count) - sigma ** 2 / 2)
    rr_s = mean_rr_s * np.clip(factors, RR_SHORTEST, RR_LONGEST)
    first_ed_s = -case.phase0 * rr_s[0]
    return first_ed_s + np.concatenate([[0.0], np.cumsum(rr_s)])


def sample_lv_pose(rng: np.random.Generator, size: int, ef_percent: float, view: str) -> dict:
    """The LV's ED length and half-widths, the sector's tip, the apex and the long axis' tilt (px, radians)."""
    impairment = float(np.clip((50.0 - ef_percent) / 30.0, 0.0, 1.0))  # 0 healthy .. 1 severely reduced
    length = size * rng.uniform(0.44, 0.52)
    sphericity = rng.uniform(0.25, 0.29) + 0.07 * impairment  # failing ventricles are rounder
    width = length * sphericity
    asymmetry = rng.uniform(-0.08, 0.08)
    tip_x = size * (0.5 + rng.uniform(-0.03, 0.03))
    if view == "A4C":
        apex = np.array([tip_x + size * rng.uniform(-0.02, 0.05), size * rng.uniform(0.12, 0.17)])
        tilt = math.radians(rng.uniform(6.0, 16.0))
    else:
        apex = np.array([tip_x + size * rng.uniform(-0.03, 0.03), size * rng.uniform(0.12, 0.17)])
        tilt = math.radians(rng.uniform(-4.0, 8.0))
    return dict(tip_x=tip_x, apex=apex, tilt=tilt, length_ed=length,
                half_width_left=width * (1 - asymmetry), half_width_right=width * (1 + asymmetry))


def sample_case(seed: int, index: int, config: SyntheticConfig) -> tuple[HeartCase, np.random.Generator]:
    """Video ``index``'s case, and its generator (the static scene and the NumPy noise draw on from it)."""
    rng = rng_for(seed, index)
    size = config.image_size
    view, quality = sample_view_and_quality(rng, config)
    heart_rate_bpm, fps = sample_rates(rng, config)
    ef = sample_ef_percent(rng, config)
    edv = sample_edv_ml(rng, ef)
    wall_motion = sample_wall_motion(rng, ef, config.wall_motion_probability)
    motion_factor = sample_motion_factor(rng, wall_motion)
    pose = sample_lv_pose(rng, size, ef, view)
    vigour = float(np.clip(ef / 60.0, 0.2, 1.25))
    # the remaining draws in the order the keywords are evaluated: reordering them changes every video
    case = HeartCase(
        view=view, quality=quality, heart_rate_bpm=heart_rate_bpm, fps=fps, phase0=float(rng.uniform()),
        target_ef_percent=ef, target_edv_ml=edv, wall_motion=wall_motion, motion_factor=motion_factor,
        half_angle=math.radians(rng.uniform(38.0, 45.0)), radius=size * rng.uniform(0.93, 0.99), **pose,
        widest_at=rng.uniform(0.55, 0.65), wall_ed=pose["length_ed"] * rng.uniform(0.10, 0.13),
        longitudinal_shortening=0.15 * vigour, thickening=0.45 * vigour,
        dynamic_range_db=rng.uniform(45.0, 55.0), gain_db=rng.uniform(-4.0, 1.0),
        frequency_mhz=rng.uniform(2.0, 3.5),
        tgc_error_db=QUALITY_LEVELS[quality].tgc_error_db * rng.uniform(0.5, 1.0),
        tgc_wiggle_db=rng.uniform(-1.5, 1.5),
        hr_variation=rng.uniform(0.0, 0.05), breath_s=rng.uniform(3.0, 5.0), breath_phase=rng.uniform(0, 2 * np.pi),
    )
    case.radial_shortening = solve_radial_shortening(case)
    if config.rr_irregularity > 0:  # drawn from its own stream: the rest of the video stays as in sinus rhythm
        duration_s = config.frames / case.fps
        case.beat_times_s = sample_beat_times_s(rhythm_rng(seed, index), case, duration_s, config.rr_irregularity)
    return case, rng


# ---------------------------------------------------------------------------- the views beyond the apical ones
def view_rng(seed: int, index: int, view: str) -> np.random.Generator:
    """A non-apical view's pose generator: a stream apart from the video's (:func:`rng_for`), one per view, so
    every view of heart ``(seed, index)`` keeps its case (rate, EF, EDV, wall motion, quality, image settings)."""
    code = VIEW_CLASSES.index(view)
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), VIEW_STREAM, code)))


def _zoomed(case: HeartCase, zoom: float, **changes) -> HeartCase:
    """The case's heart seen ``zoom`` times larger (another depth setting): every size in px scales, shapes do not
    (so the solved radial shortening, which depends on shape alone, still gives the target EF)."""
    return dataclasses.replace(
        case, length_ed=case.length_ed * zoom, half_width_left=case.half_width_left * zoom,
        half_width_right=case.half_width_right * zoom, wall_ed=case.wall_ed * zoom, **changes)


def sample_view_case(case: HeartCase, view: str, rng: np.random.Generator, size: int) -> HeartCase:
    """The apical case ``case`` (drawn as A4C) posed for ``view``: "PLAX", "PSAX" or "other" (subcostal 4C).

    Only the pose, the zoom and the view's own structures are drawn (from ``rng``, :func:`view_rng`); the
    physiology and the image settings stay the case's. Sizes in px of a ``size``-pixel image.
    """
    if view == "PLAX":
        # long axis across the image, apex at the left (slightly lower), base with the aortic root and LA at the right
        zoom = rng.uniform(0.88, 0.98)
        tilt = math.radians(90.0 + rng.uniform(4.0, 14.0))  # apex-to-base axis pointing right and a little up
        apex = np.array([case.tip_x - size * rng.uniform(0.35, 0.39), size * rng.uniform(0.5, 0.56)])
        # sizes relative to the LV's half-width (aorta, LA depth, RV, descending aorta) or length (LA along the axis)
        shape = dict(aorta_radius=rng.uniform(0.55, 0.7), la_length=rng.uniform(0.2, 0.25),
                     la_depth=rng.uniform(0.75, 0.95), rv_depth=rng.uniform(0.9, 1.2),
                     descending_aorta=rng.uniform(0.25, 0.32))
        # the tables' "right" wall faces the transducer here: give it the septum (its size and its segments' motion)
        mirrored = dataclasses.replace(
            case, half_width_left=case.half_width_right, half_width_right=case.half_width_left,
            motion_factor=case.motion_factor[::-1].copy())
        return _zoomed(mirrored, zoom, view=view, apex=apex, tilt=tilt, view_shape=shape)
    if view == "PSAX":
        # mid-papillary ring: apex holds the LV's centre, the axis points down so that (u, v) = (y, x) - centre
        zoom = rng.uniform(1.1, 1.25)
        centre = np.array([case.tip_x + size * rng.uniform(0.0, 0.04), size * rng.uniform(0.47, 0.53)])
        shape = dict(ellipticity=rng.uniform(0.0, 0.08), ellipse_angle=rng.uniform(0.0, np.pi),
                     rv_width=rng.uniform(0.55, 0.75), rv_height=rng.uniform(1.25, 1.45),
                     papillary_angles=(math.radians(rng.uniform(30.0, 50.0)), math.radians(rng.uniform(120.0, 140.0))),
                     papillary_radius=rng.uniform(0.15, 0.2))
        return _zoomed(case, zoom, view=view, apex=centre, tilt=0.0, view_shape=shape)
    if view == "other":
        # subcostal four-chamber: the liver in the near field, the heart across the image with the apex at the
        # right and higher, the RV next to the liver, the atria at the lower left
        zoom = rng.uniform(0.85, 0.95)
        slope = math.radians(rng.uniform(20.0, 35.0))
        tilt = -(math.pi / 2 - slope)  # apex-to-base axis pointing left and down
        apex = np.array([case.tip_x + size * rng.uniform(0.24, 0.3), size * rng.uniform(0.36, 0.42)])
        shape = dict(liver_depth=rng.uniform(0.2, 0.27), liver_wave=rng.uniform(0.02, 0.05),
                     liver_wave_phase=rng.uniform(0.0, 2 * np.pi))
        return _zoomed(case, zoom, view=view, apex=apex, tilt=tilt, view_shape=shape)
    raise ValueError(f"view={view!r}: a posed view is one of 'PLAX', 'PSAX', 'other'")
