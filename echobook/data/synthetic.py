"""A procedural generator of apical four-chamber (A4C) echo videos, with an A2C variant.

Video ``i`` of a dataset is made on demand from ``(seed, i)``: its random numbers come from
``numpy.random.SeedSequence(seed, spawn_key=(i,))``, which is exactly child ``i`` of
``SeedSequence(seed).spawn(...)``. The same seed and config give the same bytes.

How one video is made (each step is a function below, and chapter 1 shows each one):

1. **Case.** Heart rate, frame rate, a target EF drawn from EchoNet-Dynamic's empirical
   distribution, an EDV drawn from a lognormal that depends on the EF band, wall-motion
   defects in the six A4C/A2C segments, an image-quality level, and the anatomy's sizes.
2. **Cycle.** A contraction curve ``c(phase)`` in [0, 1]: 0 at end-diastole (phase 0),
   a half-cosine ejection over the ejection time (``LVET = 379 - 1.8 HR`` ms, clipped to
   0.28-0.38 of the cycle), a flat isovolumic relaxation, rapid filling, diastasis and the
   atrial kick. The heart rate swings by up to 5 % with breathing (sinus arrhythmia), so
   beats are not exact copies.
3. **Anatomy.** The LV endocardium is a truncated prolate shape along a tilted long axis
   (apex fixed near the transducer, mitral plane descending toward the apex in systole);
   each wall (image-left: septum in A4C, image-right: lateral wall) shortens radially by
   ``r * c * k(segment)`` with ``k`` = 1 (normal), 0.3-0.6 (hypokinetic), 0-0.1 (akinetic);
   ``r`` is solved so that the ES volume gives the target EF. Myocardium, RV, LA, RA,
   septa, mitral and tricuspid leaflets and the pericardium are built around it.
4. **Labels from the rendered contour.** Every frame's LV contour is traced the EchoNet way
   (long axis + 20 chords); its single-plane disc volume is the volume curve; the pixel
   spacing is chosen so the ED volume equals the drawn EDV; ED/ES are the frames of largest
   and smallest volume within one beat (ES after ED) and EF comes from them. The label maps
   rasterise the same contour, so labels agree with the pixels.
5. **Image formation.** Amplitude echogenicity x a speckle texture (a complex Gaussian
   field blurred by an anisotropic PSF on the polar beam grid, so grains widen with depth)
   that is *fixed in tissue coordinates* and warped by the motion, so speckle moves with
   the myocardium; depth attenuation with imperfect TGC; near-field haze, dropout,
   acoustic shadows and electronic noise by quality level; log compression; the V-shaped
   sector mask.

Steps 1-4 and the static scene are NumPy (:func:`plan_video`, cheap and shared by every backend,
so labels never depend on the backend). Step 5 is vectorised over frames and written once
against a small array namespace, and runs on one of two backends (:func:`render_plan`):

- NumPy + ``cv2.remap`` (``device=None``, the default and the reference bytes): about 720
  frames/s on one CPU core at 112 px, so a small set takes seconds on two cores;
- torch on any device (``device="cpu"``, ``"cuda"``): ``grid_sample`` samples the texture and a
  ``torch.Generator`` seeded from the video's generator draws the noise, so a device's output is
  deterministic per ``(seed, index)``. Labels, EF, volumes, ED/ES and tracings are identical to
  NumPy's; frames differ by about 2-3 gray levels on average (the other noise draw; without noise
  0.1). For a full set, worker processes make the plans and encode the AVIs while the main process
  forms the images on the GPU (:func:`iter_videos`, ``echobook synth echonet --device cuda``).
  ``benchmarks/bench_synthetic.py`` measures both.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import hashlib
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from echobook.data import geometry

QUALITIES = ("Good", "Medium", "Poor")
VIEWS = ("A4C", "A2C")
VIEW_CHOICES = VIEWS + ("mixed",)
LABELS = {0: "background", 1: "LV cavity", 2: "LV myocardium", 3: "LA"}  # CAMUS's label values
# The six wall segments of the A4C/A2C views in HMC-QU order (SEG1,2,3,5,6,7; the apical cap SEG4 is left out).
SEGMENTS = {
    "A4C": ("basal inferoseptal", "mid inferoseptal", "apical septal",
            "apical lateral", "mid anterolateral", "basal anterolateral"),
    "A2C": ("basal inferior", "mid inferior", "apical inferior",
            "apical anterior", "mid anterior", "basal anterior"),
}
WALL_MOTION = {0: "normal", 1: "hypokinetic", 2: "akinetic"}

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

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"SyntheticConfig.{name}={getattr(self, name)!r}: {why}")

        if not isinstance(self.image_size, (int, np.integer)) or self.image_size < 16:
            bad("image_size", "must be an integer >= 16")
        if not isinstance(self.frames, (int, np.integer)) or self.frames < 1:
            bad("frames", "must be an integer >= 1")
        for name in ("fps_range", "hr_range"):
            low, high = getattr(self, name)
            if not (0 < low <= high):
                bad(name, "must be (low, high) with 0 < low <= high")
        if self.min_cycles <= 0:
            bad("min_cycles", "must be positive")
        if self.ef_range is not None:
            low, high = self.ef_range
            if not (0 < low <= high < 100):
                bad("ef_range", "must be (low, high) with 0 < low <= high < 100 (percent)")
        if self.ef_percent is not None and not (0 < self.ef_percent < 100):
            bad("ef_percent", "must be in (0, 100) percent")
        weights = np.asarray(self.quality_weights, dtype=float)
        if weights.shape != (3,) or np.any(weights < 0) or weights.sum() <= 0:
            bad("quality_weights", "must be three non-negative weights for Good, Medium, Poor")
        if self.quality is not None and self.quality not in QUALITIES:
            bad("quality", f"must be one of {QUALITIES} or None")
        if self.view not in VIEW_CHOICES:
            bad("view", f"must be one of {VIEW_CHOICES}")
        if not (0 <= self.wall_motion_probability <= 1):
            bad("wall_motion_probability", "must be in [0, 1]")


def config_for_preset(preset, **overrides) -> SyntheticConfig:
    """The synthetic config of an :class:`echobook.config.SizePreset` (its image size and frames)."""
    return SyntheticConfig(image_size=int(preset.image_size), frames=int(preset.video_frames), **overrides)


@dataclass
class SyntheticVideo:
    """One synthetic echo video and its ground truth. Pixel coordinates: X = column, Y = row."""

    name: str  # EchoNet-like file stem, "0X" + 16 hex digits
    frames: np.ndarray  # uint8 [T, H, W] gray
    fps: float
    heart_rate_bpm: float  # the mean rate; it swings by up to 5 % with breathing
    ef_percent: float  # from the rendered contour's disc volumes at ed_frame and es_frame
    edv_ml: float
    esv_ml: float
    ed_frame: int
    es_frame: int
    phase: np.ndarray  # float [T], 0 at end-diastole, in [0, 1)
    tracings: dict[int, np.ndarray]  # {ed_frame, es_frame} -> float [21, 4] (EchoNet convention)
    labels: np.ndarray  # uint8 [T, H, W]: 0 background, 1 LV cavity, 2 LV myocardium, 3 LA
    wall_motion: np.ndarray  # int [6]: 0 normal, 1 hypokinetic, 2 akinetic (order: SEGMENTS[view])
    quality: str  # "Good" | "Medium" | "Poor"
    view: str  # "A4C" | "A2C"
    mm_per_pixel: float
    volumes_ml: np.ndarray = field(repr=False, default=None)  # float [T] disc volume of every frame
    all_tracings: np.ndarray = field(repr=False, default=None)  # float [T, 21, 4] every frame's tracing
    target_ef_percent: float = float("nan")  # what the case asked for (the label is ef_percent)
    seed: int = 0
    index: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def has_infarct(self) -> bool:
        """Patient-level MI analogue: any segment abnormal."""
        return bool(np.any(self.wall_motion > 0))

    def __repr__(self) -> str:
        t, h, w = self.frames.shape
        return (f"SyntheticVideo({self.name}, {self.view}, {self.quality}, {t}x{h}x{w} @ {self.fps:.1f} fps, "
                f"HR {self.heart_rate_bpm:.0f}, EF {self.ef_percent:.1f} %, EDV {self.edv_ml:.0f} mL, "
                f"ED {self.ed_frame}, ES {self.es_frame}, wall motion {self.wall_motion.tolist()})")


# ============================================================================ 1. the case
def video_name(seed: int, index: int) -> str:
    """EchoNet-like file stem ("0X" + 16 upper-case hex digits) derived from (seed, index)."""
    digest = hashlib.blake2b(f"echobook-synthetic:{int(seed)}:{int(index)}".encode(), digest_size=8).hexdigest()
    return "0X" + digest.upper()


def rng_for(seed: int, index: int) -> np.random.Generator:
    """Video ``index``'s generator: child ``index`` of ``SeedSequence(seed)``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))


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
        # segment indices (SEGMENTS order) of typical territories: LAD (septum + apex), LCx (lateral), RCA (basal septum)
        territories = ((1, 2, 3), (2, 3), (4, 5), (3, 4), (0, 1))
        territory = territories[int(u_territory * len(territories))]
        count = 1 + int(u_count * len(territory))
        start = int(u_start * (len(territory) - count + 1))
        for segment, u in zip(territory[start:start + count], u_severity):
            wall_motion[segment] = 1 + int(u < 0.4)
    return wall_motion


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


def sample_case(seed: int, index: int, config: SyntheticConfig) -> tuple[HeartCase, np.random.Generator]:
    rng = rng_for(seed, index)
    size = config.image_size
    # the same numbers are drawn whatever the options, so forcing a quality or a view keeps the heart
    u_view, u_quality = rng.uniform(size=2)
    view = config.view if config.view != "mixed" else VIEWS[int(u_view < 0.5)]
    weights = np.cumsum(config.quality_weights) / np.sum(config.quality_weights)
    quality = config.quality or QUALITIES[min(int(np.searchsorted(weights, u_quality, side="right")), 2)]
    hr = float(rng.uniform(*config.hr_range))
    fps = float(rng.uniform(*config.fps_range))
    if config.frames > 1:  # enough beats in the clip to hold both an ED and an ES
        fps = min(fps, (config.frames - 1) * hr / (60.0 * config.min_cycles))
    fps = float(max(1, math.floor(fps)))  # whole frames per second, as in EchoNet's FileList (floor keeps min_cycles)
    ef = sample_ef_percent(rng, config)
    edv = sample_edv_ml(rng, ef)
    wall_motion = sample_wall_motion(rng, ef, config.wall_motion_probability)
    hypokinetic, akinetic = rng.uniform(0.3, 0.6, size=6), rng.uniform(0.0, 0.1, size=6)
    factor = np.select([wall_motion == 1, wall_motion == 2], [hypokinetic, akinetic], 1.0)

    impairment = float(np.clip((50.0 - ef) / 30.0, 0.0, 1.0))  # 0 healthy .. 1 severely reduced
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
    vigour = float(np.clip(ef / 60.0, 0.2, 1.25))
    case = HeartCase(
        view=view, quality=quality, heart_rate_bpm=hr, fps=fps, phase0=float(rng.uniform()),
        target_ef_percent=ef, target_edv_ml=edv, wall_motion=wall_motion, motion_factor=factor,
        tip_x=tip_x, half_angle=math.radians(rng.uniform(38.0, 45.0)), radius=size * rng.uniform(0.93, 0.99),
        apex=apex, tilt=tilt, length_ed=length,
        half_width_left=width * (1 - asymmetry), half_width_right=width * (1 + asymmetry),
        widest_at=rng.uniform(0.55, 0.65), wall_ed=length * rng.uniform(0.10, 0.13),
        longitudinal_shortening=0.15 * vigour, thickening=0.45 * vigour,
        dynamic_range_db=rng.uniform(45.0, 55.0), gain_db=rng.uniform(-4.0, 1.0),
        frequency_mhz=rng.uniform(2.0, 3.5),
        tgc_error_db=QUALITY_LEVELS[quality].tgc_error_db * rng.uniform(0.5, 1.0),
        tgc_wiggle_db=rng.uniform(-1.5, 1.5),
        hr_variation=rng.uniform(0.0, 0.05), breath_s=rng.uniform(3.0, 5.0), breath_phase=rng.uniform(0, 2 * np.pi),
    )
    case.radial_shortening = solve_radial_shortening(case)
    return case, rng


# ============================================================================ 2. the cycle
def ejection_fraction_of_cycle(heart_rate_bpm: float) -> float:
    """LV ejection time as a fraction of the cycle: LVET = 379 - 1.8 HR ms (Lance et al.), clipped to 0.28-0.38."""
    lvet_s = (379.0 - 1.8 * heart_rate_bpm) / 1000.0
    return float(np.clip(lvet_s * heart_rate_bpm / 60.0, 0.28, 0.38))


def contraction(phase, heart_rate_bpm: float = 75.0) -> np.ndarray:
    """Contraction ``c`` in [0, 1] (0: end-diastole, 1: end-systole) at ``phase`` in [0, 1).

    Ejection (half-cosine) over the ejection time; isovolumic relaxation (flat, 70 ms);
    rapid filling to 25 % of the stroke; diastasis to 18 %; atrial kick over the last 20 %
    of diastole. The LV volume is ``EDV - (EDV - ESV) c`` to a good approximation.
    """
    p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    cycle_s = 60.0 / heart_rate_bpm
    ejection = ejection_fraction_of_cycle(heart_rate_bpm)
    relax_end = ejection + min(0.07 / cycle_s, 0.1)
    diastole = 1.0 - relax_end
    rapid_end = relax_end + 0.35 * diastole
    kick_start = relax_end + 0.8 * diastole

    def ramp(x):  # 0 -> 1, smooth at both ends
        return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))

    c = np.where(p < ejection, ramp(p / ejection), 1.0)
    c = np.where(p >= relax_end, 1.0 - 0.75 * ramp((p - relax_end) / (rapid_end - relax_end)), c)
    c = np.where(p >= rapid_end, 0.25 - 0.07 * (p - rapid_end) / (kick_start - rapid_end), c)
    c = np.where(p >= kick_start, 0.18 * (1.0 - ramp((p - kick_start) / (1.0 - kick_start))), c)
    return c


def cardiac_phase(case: HeartCase, times_s: np.ndarray, unwrapped: bool = False) -> np.ndarray:
    """Phase in [0, 1) (0 = end-diastole) at ``times_s``: the integral of a heart rate that swings with breathing.

    ``unwrapped=True`` counts beats instead (phase 2.3 = 30 % into the third beat).
    """
    t = np.asarray(times_s, dtype=np.float64)
    omega = 2 * np.pi / case.breath_s
    swing = case.hr_variation / omega * (np.cos(case.breath_phase) - np.cos(omega * t + case.breath_phase))
    beats = case.phase0 + case.heart_rate_bpm / 60.0 * (t + swing)
    return beats if unwrapped else np.mod(beats, 1.0)


def choose_ed_es(beats: np.ndarray, volumes: np.ndarray) -> tuple[int, int]:
    """ED and ES frames of one beat: the largest and smallest volume of the first beat the video holds whole.

    ``beats`` is the unwrapped phase of every frame. Beat k's ED lies at phase k and its ES at
    the end of ejection (at most 0.38 of a beat later), so the window [k - 0.1, k + 0.42) must be
    inside the video: any video of 1.52 beats or more holds one. A shorter video falls back to
    the largest and smallest volume overall (possibly of different beats).
    """
    first, last = beats[0], beats[-1]
    for k in range(int(np.ceil(first + 0.1)), int(np.floor(last - 0.42)) + 1):
        window = np.flatnonzero((beats >= k - 0.1) & (beats < k + 0.42))
        if len(window) >= 2:
            return int(window[np.argmax(volumes[window])]), int(window[np.argmin(volumes[window])])
    return int(np.argmax(volumes)), int(np.argmin(volumes))


def mitral_opening(phase, heart_rate_bpm: float = 75.0) -> np.ndarray:
    """0 closed .. 1 open: the AV valves open after isovolumic relaxation and close at end-diastole."""
    p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    cycle_s = 60.0 / heart_rate_bpm
    opens = ejection_fraction_of_cycle(heart_rate_bpm) + min(0.07 / cycle_s, 0.1)
    ramp = 0.05
    return np.clip((p - opens) / ramp, 0.0, 1.0) * np.clip((1.0 - p) / ramp, 0.0, 1.0)


# ============================================================================ 3. the anatomy
def _segment_factor(s: np.ndarray, factors3: np.ndarray) -> np.ndarray:
    """Motion multiplier along a wall: apical, mid, basal thirds, blended linearly between their centres."""
    return np.interp(s, (1 / 6, 1 / 2, 5 / 6), factors3)


def _profile(s: np.ndarray, widest_at: float) -> np.ndarray:
    """LV half-width along the axis, 0 at the apex (s=0), 1 at its widest, narrowing to the annulus (s=1)."""
    return np.sqrt(np.clip(1.0 - ((s - widest_at) / widest_at) ** 2, 0.0, None))


def _wall_factors(case: HeartCase) -> tuple[np.ndarray, np.ndarray]:
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
    base = _profile(np.clip(s, 0, 1), case.widest_at)
    left_k, right_k = _wall_factors(case)
    left = case.half_width_left * base * (1.0 - r * c * _segment_factor(s, left_k))
    right = case.half_width_right * base * (1.0 - r * c * _segment_factor(s, right_k))
    return np.where(inside, left, 0.0), np.where(inside, right, 0.0)


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


def _frame_axes(case: HeartCase) -> tuple[np.ndarray, np.ndarray]:
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
    e, n = _frame_axes(case)
    left_pts = case.apex + u[..., None] * e - left[..., None] * n
    right_pts = case.apex + u[..., None] * e + right[..., None] * n
    contour = np.concatenate([left_pts, right_pts[:, ::-1][:, :-1]], axis=1)  # apex ... base ... back
    apex = np.broadcast_to(case.apex, (len(c), 2))
    return contour, apex, left_pts[:, -1], right_pts[:, -1]


def lv_tracings(case: HeartCase, c: np.ndarray) -> np.ndarray:
    """EchoNet tracings ``[T, 21, 4]`` of the rendered contours."""
    contour, apex, base_left, base_right = lv_contours(case, c)
    return geometry.tracing_from_contour(contour, apex, base_left, base_right)


# ============================================================================ 5. image formation helpers
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
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


def attenuation_db(depth_cm, frequency_mhz: float, alpha_db_cm_mhz: float = 0.5):
    """Two-way tissue attenuation 2 alpha f z in dB (alpha ~ 0.5 dB/cm/MHz for heart and liver)."""
    return 2.0 * alpha_db_cm_mhz * frequency_mhz * np.asarray(depth_cm)


def _soft(distance, xp=np):
    """Inside-ness from a signed distance in pixels (negative inside): a one-pixel ramp."""
    return xp.clip(0.5 - distance, 0.0, 1.0)


@dataclass
class _Scene:
    """Per-video arrays that do not change from frame to frame."""

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


def _static_scene(case: HeartCase, rng: np.random.Generator, size: int,
                  quality: QualityLevel) -> _Scene:
    coords = np.arange(size, dtype=np.float64)
    xx, yy = np.meshgrid(coords, coords)
    x, y = xx.ravel(), yy.ravel()
    e, n = _frame_axes(case)
    u = (x - case.apex[0]) * e[0] + (y - case.apex[1]) * e[1]
    v = (x - case.apex[0]) * n[0] + (y - case.apex[1]) * n[1]
    # half-width tables: 8 samples per pixel along the axis, left side first then right
    du = 0.125
    u_min, u_max = -2.0 * case.wall_ed - 2.0, case.length_ed + 2.0
    u_grid = np.arange(u_min, u_max + du, du)
    nb = len(u_grid)
    table_index = np.clip(np.rint((u - u_min) / du), 0, nb - 1).astype(np.int64) + nb * (v >= 0)

    depth_px = np.hypot(x - case.tip_x, y)
    theta = np.arctan2(x - case.tip_x, y)
    sector = (np.clip(0.5 + depth_px * np.sin(case.half_angle - np.abs(theta)), 0, 1)
              * np.clip(0.5 + case.radius - depth_px, 0, 1))
    depth_fraction = np.clip(depth_px / case.radius, 0, 1)

    # imperfect TGC: the attenuation 2 alpha f z is compensated except for a smooth residual
    residual_db = (-case.tgc_error_db * depth_fraction ** 1.5
                   + case.tgc_wiggle_db * np.sin(np.pi * depth_fraction))
    gain = 10.0 ** ((residual_db + case.gain_db) / 20.0)
    # acoustic shadows: angular wedges behind a rib or lung edge
    low, high = quality.shadows
    for _ in range(int(rng.integers(low, high + 1))):
        centre = rng.uniform(-0.8, 0.8) * case.half_angle
        width = math.radians(rng.uniform(3.0, 7.0))
        start = case.radius * rng.uniform(0.05, 0.3)
        wedge = np.exp(-0.5 * ((theta - centre) / width) ** 2) * np.clip((depth_px - start) / 3.0, 0, 1)
        gain = gain * (1.0 - quality.shadow_strength * rng.uniform(0.7, 1.0) * wedge)
    # dropout: walls parallel to the beam (lateral wall, apex) return little echo
    if quality.dropout > 0:
        spots = [(0.45 * case.length_ed, case.half_width_right + 0.5 * case.wall_ed, 0.22, 0.10),
                 (-0.3 * case.wall_ed, 0.0, 0.12, 0.25)]
        loss = np.zeros_like(u)
        for along, across, a, b in spots:
            loss = np.maximum(loss, np.exp(-0.5 * (((u - along) / (a * case.length_ed)) ** 2
                                                  + ((v - across) / (b * case.length_ed)) ** 2)))
        gain = gain * (1.0 - quality.dropout * rng.uniform(0.7, 1.0) * loss)

    margin = max(4, size // 8)
    texture = np.empty((size + 2 * margin, size + 2 * margin, 2), dtype=np.float32)
    texture[..., 0] = speckle_texture(rng, case, size, margin, quality.psf_scale)
    texture[..., 1] = 1.0 + 0.35 * _smooth_noise(rng, texture.shape[:2], cells=7)
    static_speckle = texture[margin:margin + size, margin:margin + size, 0].ravel()
    haze = (quality.haze * np.exp(-depth_px / (0.25 * case.radius)) * static_speckle + quality.fog) * gain
    noise_gain = quality.noise * (0.3 + 0.7 * depth_fraction)

    pericardium_side = ((v > 0) | (u < 0.15 * case.length_ed)).astype(np.float32)
    if case.view == "A2C":
        pericardium_side = np.ones_like(u, dtype=np.float32)
    leaflet_max = 0.6 * max(case.half_width_left, case.half_width_right) + 0.3 * case.length_ed
    low_u = case.length_ed * (1 - case.longitudinal_shortening) - leaflet_max - 2
    valve_band = np.flatnonzero((u > low_u) & (u < case.length_ed + leaflet_max + 2))
    f32 = np.float32
    return _Scene(u=u.astype(f32), v=v.astype(f32), abs_v=np.abs(v).astype(f32), table_index=table_index,
                  u_grid=u_grid, sector=sector.astype(f32), depth_px=depth_px.astype(f32),
                  signal_gain=gain.astype(f32), haze=haze.astype(f32), noise_gain=noise_gain.astype(f32),
                  pericardium_side=pericardium_side, texture=texture, margin=margin, valve_band=valve_band)


@dataclass(frozen=True)
class _Levels:
    """Amplitude echogenicities (1 = the brightest reflector)."""

    blood: float = 0.0025
    myocardium: float = 0.2
    background: float = 0.025
    pericardium: float = 0.6
    valve: float = 0.45


def _ellipse_distance(du, dv, a, b, xp=np):
    """Approximate signed distance (px) to an axis-aligned ellipse with semi-axes a (along u), b."""
    rho = xp.sqrt((du / a) ** 2 + (dv / b) ** 2)
    return (rho - 1.0) * xp.minimum(a, b)


def _chambers(case: HeartCase, u, v, cc, L, xp=np):
    """Signed distances of the other chambers: dict name -> [t, HW] (px).

    ``u``, ``v`` [HW] are the pixels' axis coordinates; ``cc`` (contraction) and ``L`` (LV length) are [t, 1] float32.
    """
    base_l, base_r = case.half_width_left * _profile(1.0, case.widest_at), case.half_width_right * _profile(1.0, case.widest_at)
    la_a, la_b = 0.28 * case.length_ed, 0.24 * case.length_ed
    la_scale = 1.0 + 0.15 * cc  # atria fill while the ventricles eject
    la_v = 0.5 * (base_r - base_l)
    out = {"la": _ellipse_distance(u - (L + 0.92 * la_a * la_scale), v - la_v, la_a * la_scale, la_b * la_scale, xp)}
    if case.view == "A4C":
        rv_a, rv_b = 0.38 * case.length_ed, 0.2 * case.length_ed
        rv_bt = rv_b * (1.0 - 0.15 * cc)
        rv_v = -(case.half_width_left + case.wall_ed + 0.75 * rv_b)
        out["rv"] = xp.maximum(_ellipse_distance(u - (L - 0.7 * rv_a), v - rv_v, rv_a, rv_bt, xp), u - L)
        ra_a, ra_b = 0.25 * case.length_ed, 0.19 * case.length_ed
        ra_scale = 1.0 + 0.12 * cc
        ra_v = la_v - 1.15 * (la_b + ra_b) - 0.05 * case.length_ed
        out["ra"] = _ellipse_distance(u - (L + 0.92 * ra_a * ra_scale), v - ra_v, ra_a * ra_scale, ra_b * ra_scale, xp)
    return out


def _leaflets(case: HeartCase, length: np.ndarray, left: np.ndarray, right: np.ndarray, c: np.ndarray,
              opening: np.ndarray):
    """Leaflet segments per frame: list of (anchor [T, 2] in (u, v), direction [T, 2], length [T])."""
    segments = []

    def valve(v_left, v_right, base_u, open_):
        span = v_right - v_left
        leaflet = 0.48 * span
        angle = open_ * 1.25  # radians swung from closed (across the plane) toward the apex
        for sign, anchor_v in ((1.0, v_left), (-1.0, v_right)):
            direction = np.stack([0.12 * np.cos(angle) - np.sin(angle), sign * np.cos(angle)], axis=-1)
            direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
            segments.append((np.stack([base_u, anchor_v], axis=-1), direction, leaflet))

    valve(-left, right, length, opening)
    if case.view == "A4C":
        rv_b = 0.2 * case.length_ed * (1.0 - 0.15 * c)
        rv_v = -(case.half_width_left + case.wall_ed + 0.75 * 0.2 * case.length_ed)
        half = rv_b * math.sqrt(1 - 0.7 ** 2)
        valve(rv_v - half, np.minimum(rv_v + half, -left - case.wall_ed), length, opening)
    return segments


def _offset_outward(half_width: np.ndarray, inside: np.ndarray, thickness: np.ndarray, du: float,
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


# ============================================================================ the whole video
def make_video(seed: int, index: int, config: SyntheticConfig | None = None, device=None) -> SyntheticVideo:
    """Video ``index`` of the synthetic dataset made from ``seed`` (the same bytes every time).

    ``device``: None or ``"numpy"`` forms the image with NumPy and OpenCV (the reference); a
    torch device (``"cpu"``, ``"cuda"``, ``torch.device``) forms it with torch there. Labels,
    EF, volumes, ED/ES and tracings are identical on every device; the frames differ by about
    a gray level (other noise, other interpolation rounding) and are deterministic per device.
    """
    return render_plan(plan_video(seed, index, config), device)


def render_stages(seed: int, index: int, config: SyntheticConfig | None = None, frame: int = 0) -> dict:
    """The image-formation steps of one frame, for teaching: echogenicity, speckle, attenuation, TGC, log."""
    return _render_frames_numpy(plan_video(seed, index, config), stages_frame=frame)[2]


def _check_seed_index(seed, index):
    for name, value in (("seed", seed), ("index", index)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}")


@dataclass
class VideoPlan:
    """Everything about one video except its pixels, made with NumPy (steps 1-4 and the static scene).

    It is small enough to pickle, so worker processes can make plans while the main process
    forms the images on a GPU (:func:`render_plan`).
    """

    seed: int
    index: int
    config: SyntheticConfig
    case: HeartCase
    rng: np.random.Generator  # the video's generator after the case and scene: the NumPy path's noise
    scene: _Scene
    phase: np.ndarray  # [T]
    contraction: np.ndarray  # [T]
    length: np.ndarray  # [T] LV long-axis length, px
    all_tracings: np.ndarray  # [T, 21, 4]
    volumes_ml: np.ndarray  # [T]
    ed_frame: int
    es_frame: int
    mm_per_pixel: float
    # per-frame LV half-width tables [T, 2 NB] (left then right side, float32): this frame's endocardium and
    # epicardium, and where that tissue was at end-diastole (the speckle's reference)
    endo: np.ndarray
    epi: np.ndarray
    endo_ref: np.ndarray
    epi_ref: np.ndarray
    leaflets: list  # (anchor [T, 2], direction [T, 2], length [T]) per leaflet, in (u, v)


def plan_video(seed: int, index: int, config: SyntheticConfig | None = None) -> VideoPlan:
    """Steps 1-4 of video ``index``: the case, the cycle, the contour's labels and the per-frame tables."""
    _check_seed_index(seed, index)
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise ValueError(f"config must be a SyntheticConfig; got {type(config).__name__}")
    case, rng = sample_case(seed, index, config)
    n_frames = config.frames

    # -- cycle and the rendered contour's volumes (labels come from these)
    beats = cardiac_phase(case, np.arange(n_frames) / case.fps, unwrapped=True)
    phase = np.mod(beats, 1.0)
    c = contraction(phase, case.heart_rate_bpm)
    all_tracings = lv_tracings(case, c)
    volumes_px3 = geometry.disc_volume_px3(all_tracings)
    ed_frame, es_frame = choose_ed_es(beats, volumes_px3)
    mm_per_pixel = float((case.target_edv_ml * 1000.0 / volumes_px3[ed_frame]) ** (1.0 / 3.0))

    scene = _static_scene(case, rng, config.image_size, QUALITY_LEVELS[case.quality])
    length = lv_length(case, c)  # [T]
    # per-frame tables of the LV half-widths along the axis: endocardium, epicardium, and at ED (the tissue reference)
    u_grid = scene.u_grid[None, :]
    L = length[:, None]
    left, right = lv_half_widths(case, u_grid, L, c[:, None])
    left_ref, right_ref = lv_half_widths(case, u_grid * case.length_ed / L, case.length_ed, 0.0)
    s = u_grid / L
    left_k, right_k = _wall_factors(case)
    inside = (s >= 0) & (s <= 1)
    inside_ref = (u_grid >= 0) & (u_grid <= L)  # the reference table is sampled at the same u/L
    wall_left = case.wall_ed * (1.0 + case.thickening * c[:, None] * _segment_factor(s, left_k))
    wall_right = case.wall_ed * (1.0 + case.thickening * c[:, None] * _segment_factor(s, right_k))
    du = scene.u_grid[1] - scene.u_grid[0]
    wall_ref = np.full_like(left_ref, case.wall_ed)
    base_left = case.half_width_left * _profile(1.0, case.widest_at) * (
        1.0 - case.radial_shortening * c * _segment_factor(1.0, left_k))
    base_right = case.half_width_right * _profile(1.0, case.widest_at) * (
        1.0 - case.radial_shortening * c * _segment_factor(1.0, right_k))
    return VideoPlan(
        seed=int(seed), index=int(index), config=config, case=case, rng=rng, scene=scene, phase=phase,
        contraction=c, length=length, all_tracings=all_tracings,
        volumes_ml=volumes_px3 * mm_per_pixel ** 3 / 1000.0, ed_frame=ed_frame, es_frame=es_frame,
        mm_per_pixel=mm_per_pixel,
        endo=np.concatenate([left, right], axis=1).astype(np.float32),
        epi=np.concatenate([_offset_outward(left, inside, wall_left, du),
                            _offset_outward(right, inside, wall_right, du)], axis=1).astype(np.float32),
        endo_ref=np.concatenate([left_ref, right_ref], axis=1).astype(np.float32),
        epi_ref=np.concatenate([_offset_outward(left_ref, inside_ref, wall_ref, du),
                                _offset_outward(right_ref, inside_ref, wall_ref, du)], axis=1).astype(np.float32),
        leaflets=_leaflets(case, length, base_left, base_right, c, mitral_opening(phase, case.heart_rate_bpm)),
    )


def render_plan(plan: VideoPlan, device=None) -> SyntheticVideo:
    """Step 5, image formation, of a plan on ``device`` (see :func:`make_video`); the plan is left as it was."""
    device = render_device(device)
    if device is None:
        frames, labels, _ = _render_frames_numpy(plan)
    else:
        frames, labels = _render_frames_torch(plan, device)
    case, edv, esv = plan.case, float(plan.volumes_ml[plan.ed_frame]), float(plan.volumes_ml[plan.es_frame])
    return SyntheticVideo(
        name=video_name(plan.seed, plan.index), frames=frames, fps=case.fps,
        heart_rate_bpm=round(case.heart_rate_bpm, 2), ef_percent=100.0 * (edv - esv) / edv, edv_ml=edv, esv_ml=esv,
        ed_frame=plan.ed_frame, es_frame=plan.es_frame, phase=plan.phase,
        tracings={f: plan.all_tracings[f].copy() for f in (plan.ed_frame, plan.es_frame)},
        labels=labels, wall_motion=case.wall_motion.copy(), quality=case.quality, view=case.view,
        mm_per_pixel=plan.mm_per_pixel, volumes_ml=plan.volumes_ml, all_tracings=plan.all_tracings,
        target_ef_percent=case.target_ef_percent, seed=plan.seed, index=plan.index,
    )


def render_device(device):
    """The backend of the image formation: None for NumPy (``None`` or ``"numpy"``), else the ``torch.device``
    asked for, checked to be usable.

    Unlike :func:`echobook.config.resolve_device` there is no ``auto`` and no fall-back to the CPU: the
    device decides the bytes, so a set asked for on ``cuda`` must not quietly come from another one.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "numpy"):
        return None
    return _usable_torch_device(str(device))


@functools.lru_cache(maxsize=None)
def _usable_torch_device(name: str):
    """``torch.device(name)``, allocated on once (cached: every video of a set asks again)."""
    import torch

    try:
        resolved = torch.device(name)
        torch.empty(1, device=resolved)  # fails here, not mid-video, when the device is absent
    except (RuntimeError, TypeError, AssertionError) as error:
        raise ValueError(f"device={name!r}: not 'numpy' or a usable torch device "
                         f"('cpu', 'cuda', 'cuda:1', ...): {error}") from None
    return resolved


# -- image formation, shared by the NumPy and the torch path. The per-pixel code below is written once
# against a small array namespace ``xp`` (numpy's own functions, or their torch twins in _TorchOps), so the
# two paths cannot drift apart; only texture sampling, noise and quantisation differ by backend.

@dataclass
class _PixelInputs:
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
    sector: np.ndarray  # [HW] float32 static maps, see _Scene
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


def _pixel_inputs(plan: VideoPlan) -> _PixelInputs:
    scene, case = plan.scene, plan.case
    e, n = _frame_axes(case)
    return _PixelInputs(
        u=scene.u, v=scene.v, abs_v=scene.abs_v, sign_v=np.where(scene.v >= 0, 1.0, -1.0).astype(np.float32),
        table_index=scene.table_index, length=plan.length.astype(np.float32),
        contraction=plan.contraction.astype(np.float32), endo=plan.endo, epi=plan.epi, endo_ref=plan.endo_ref,
        epi_ref=plan.epi_ref, sector=scene.sector, signal_gain=scene.signal_gain, haze=scene.haze,
        noise_gain=scene.noise_gain, pericardium_side=scene.pericardium_side, valve_band=scene.valve_band,
        leaflets=plan.leaflets, apex=(case.apex[0], case.apex[1]), e=(e[0], e[1]), n=(n[0], n[1]),
        fade=np.float32(0.15 * case.length_ed),  # beyond the epicardium, tissue motion fades out over this many px
    )


class _NumpyOps:
    """The reference backend: NumPy, OpenCV's remap for the texture, the video's NumPy generator for noise."""

    maximum, minimum, abs, sqrt, log10, hypot = np.maximum, np.minimum, np.abs, np.sqrt, np.log10, np.hypot
    where, clip = staticmethod(np.where), staticmethod(np.clip)  # functions, unlike the ufuncs, would bind as methods

    def __init__(self, plan: VideoPlan):
        self.texture, self.size = plan.scene.texture, plan.config.image_size
        self.rng = copy.deepcopy(plan.rng)  # so that rendering a plan leaves it as it was

    def zeros(self, shape):
        return np.zeros(shape, dtype=np.float32)

    def as_uint8(self, a):
        return a.astype(np.uint8)

    def noise(self, rows: slice, shape):
        return self.rng.standard_normal(shape, dtype=np.float32)

    def sample(self, map_x, map_y):
        """(speckle, low-frequency texture) [t, HW] at texture coordinates ``map_x, map_y`` [t, HW] (px)."""
        import cv2

        t, size = map_x.shape[0], self.size
        map_x = map_x.astype(np.float32).reshape(t, size, size)
        map_y = map_y.astype(np.float32).reshape(t, size, size)
        sampled = np.stack([cv2.remap(self.texture, map_x[k], map_y[k], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                            for k in range(t)]).reshape(t, size * size, 2)
        return sampled[..., 0], sampled[..., 1]


def _form_chunk(xp, plan: VideoPlan, px: _PixelInputs, rows: slice):
    """Labels and gray frames ``[t, HW]`` (uint8) of frames ``rows``, and the intermediates the stages show."""
    case, quality, levels = plan.case, QUALITY_LEVELS[plan.case.quality], _Levels()
    u, v, abs_v, idx = px.u, px.v, px.abs_v, px.table_index
    Lt = px.length[rows, None]
    w_endo = px.endo[rows][:, idx]
    w_epi = px.epi[rows][:, idx]
    # signed distances (px, negative inside) to the LV cavity and the LV epicardium
    d_cavity = xp.maximum(xp.maximum(abs_v - w_endo, -u), u - Lt)
    d_cavity = xp.where(w_endo > 0, d_cavity, xp.maximum(d_cavity, 0.5))
    d_epi = xp.maximum(abs_v - w_epi, u - Lt)
    chambers = _chambers(case, u, v, px.contraction[rows, None], Lt, xp)
    cavity, epi = d_cavity <= 0, d_epi <= 0
    la = (chambers["la"] <= 0) & ~epi
    labels = xp.as_uint8(cavity) + 2 * xp.as_uint8(epi & ~cavity) + 3 * xp.as_uint8(la)

    # tissue coordinates: where this pixel's tissue was at end-diastole (the speckle's frame)
    u_ref = xp.where(u < 0, u, xp.where(u <= Lt, u * (case.length_ed / Lt), u + (case.length_ed - Lt)))
    w_ref, e_ref = px.endo_ref[rows][:, idx], px.epi_ref[rows][:, idx]
    safe_endo = xp.maximum(w_endo, 1e-3)
    D = px.fade
    a_ref = xp.where(abs_v <= w_endo, abs_v * (w_ref / safe_endo),
                     xp.where(abs_v <= w_epi, w_ref + (abs_v - w_endo) * (e_ref - w_ref) / xp.maximum(w_epi - w_endo, 1e-3),
                              xp.where(abs_v <= w_epi + D, e_ref + (abs_v - w_epi) * ((w_epi + D - e_ref) / D), abs_v)))
    v_ref = px.sign_v * a_ref
    margin, (e, n) = plan.scene.margin, (px.e, px.n)
    speckle, texture = xp.sample(px.apex[0] + u_ref * e[0] + v_ref * n[0] + margin,
                                 px.apex[1] + u_ref * e[1] + v_ref * n[1] + margin)

    # echogenicity: background, heart tissue, blood, pericardium, valves
    heart = _soft(d_epi, xp)
    blood_other = xp.zeros(heart.shape)
    for name, d in chambers.items():
        wall = 0.03 * case.length_ed if name == "rv" else 0.035 * case.length_ed
        heart = xp.maximum(heart, _soft(d - wall, xp))
        blood_other = xp.maximum(blood_other, _soft(d, xp))
    blood = xp.maximum(_soft(d_cavity, xp), blood_other * (1.0 - _soft(d_epi, xp)))
    echo = levels.background + (levels.myocardium * quality.contrast - levels.background) * heart
    echo = echo + (levels.blood - echo) * blood
    pericardium = xp.clip(1.0 - xp.abs(d_epi - 1.2), 0.0, 1.0) * px.pericardium_side
    echo = xp.maximum(echo, levels.pericardium * pericardium)
    band = px.valve_band
    if len(band):
        echo[:, band] = xp.maximum(echo[:, band], levels.valve * _valves(xp, px, rows, u[band][None, :], v[band][None, :]))
    echo = echo * texture

    amplitude = echo * speckle * px.signal_gain + px.haze
    amplitude = amplitude + xp.abs(xp.noise(rows, amplitude.shape)) * px.noise_gain
    gray = (20.0 * xp.log10(xp.maximum(amplitude, 1e-6)) + case.dynamic_range_db) * (255.0 / case.dynamic_range_db)
    gray = xp.clip(gray, 0.0, 255.0) * px.sector
    return labels, xp.as_uint8(gray + 0.5), {"echo": echo, "speckle": speckle}


def _valves(xp, px: _PixelInputs, rows: slice, bu, bv):
    """Leaflet brightness 0..1 at the valve-band pixels ``(bu, bv)`` [1, B]: a 1.2-px line along each leaflet."""
    valve = xp.zeros((rows.stop - rows.start, bu.shape[1]))
    for anchor, direction, leaflet_len in px.leaflets:
        au, av = anchor[rows, 0:1], anchor[rows, 1:2]
        du_, dv_ = direction[rows, 0:1], direction[rows, 1:2]
        ru, rv_ = bu - au, bv - av
        along = xp.clip(ru * du_ + rv_ * dv_, 0.0, leaflet_len[rows, None] if getattr(leaflet_len, "ndim", 0) else leaflet_len)
        dist = xp.hypot(ru - along * du_, rv_ - along * dv_)
        valve = xp.maximum(valve, xp.clip(1.2 - dist, 0.0, 1.0))
    return valve


_CHUNK_PIXELS = 65536  # pixels per step on a CPU: about 256 kB per float32 array keeps them in cache


def _render_frames_numpy(plan: VideoPlan, stages_frame: int | None = None):
    """(frames, labels, stages) with NumPy, a few frames at a time; ``stages`` is filled for ``stages_frame``."""
    size, n_frames = plan.config.image_size, plan.config.frames
    frames = np.empty((n_frames, size * size), dtype=np.uint8)
    labels = np.empty((n_frames, size * size), dtype=np.uint8)
    ops, px = _NumpyOps(plan), _pixel_inputs(plan)
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    stages = {}
    for start in range(0, n_frames, chunk):
        rows = slice(start, min(n_frames, start + chunk))
        labels[rows], frames[rows], parts = _form_chunk(ops, plan, px, rows)
        if stages_frame is not None and rows.start <= stages_frame < rows.stop:
            stages = _stages(plan, parts, stages_frame - rows.start, labels[stages_frame], frames[stages_frame])
    return frames.reshape(n_frames, size, size), labels.reshape(n_frames, size, size), stages


def _stages(plan: VideoPlan, parts: dict, k: int, labels: np.ndarray, frame: np.ndarray) -> dict:
    """The teaching view of one frame (row ``k`` of the chunk's intermediates ``parts``)."""
    case, scene, size = plan.case, plan.scene, plan.config.image_size
    depth_cm = scene.depth_px * plan.mm_per_pixel / 10.0
    raw_loss = 10.0 ** (-attenuation_db(depth_cm, case.frequency_mhz) / 20.0)
    echo, speckle = parts["echo"], parts["speckle"]

    def img(a):
        return np.asarray(a[k] if np.ndim(a) == 2 else a, dtype=np.float32).reshape(size, size)

    def to_gray(a):
        g = (20.0 * np.log10(np.maximum(a, 1e-6)) + case.dynamic_range_db) * (255.0 / case.dynamic_range_db)
        return np.clip(g, 0, 255) * img(scene.sector)

    return {
        "labels": labels.reshape(size, size).copy(),
        "echogenicity": img(echo),
        "speckle": img(speckle),
        "echo_x_speckle": img(echo * speckle),
        "attenuated": img(echo * speckle) * img(raw_loss),
        "after_tgc": img(echo * speckle * scene.signal_gain),
        "sector": img(scene.sector),
        "log_compressed": to_gray(img(echo * speckle * scene.signal_gain)),
        "final": frame.reshape(size, size).astype(np.float32),
        "attenuation_db_at_depth": float(attenuation_db(case.radius * plan.mm_per_pixel / 10.0, case.frequency_mhz)),
        "frequency_mhz": case.frequency_mhz, "dynamic_range_db": case.dynamic_range_db,
    }


class _TorchOps:
    """The torch backend: numpy's names with torch's functions, ``grid_sample`` for the texture, a torch generator.

    torch's functions want tensors where numpy takes Python numbers too, so the few that get a number
    (a threshold, a clip bound) turn it into a bound of ``clamp``.
    """

    def __init__(self, plan: VideoPlan, device):
        import torch

        self.torch, self.device = torch, device
        self.where, self.abs, self.sqrt, self.log10, self.hypot = (
            torch.where, torch.abs, torch.sqrt, torch.log10, torch.hypot)
        # [1, 2, H, W]: speckle and low-frequency texture as two channels of one image
        self.texture = torch.from_numpy(np.ascontiguousarray(plan.scene.texture.transpose(2, 0, 1)))[None].to(device)
        # noise for the whole video at once (so chunking cannot change it), seeded from the video's own
        # generator: a device's output is a function of (seed, index) alone
        generator = torch.Generator(device=device)
        generator.manual_seed(int(copy.deepcopy(plan.rng).integers(2 ** 63)))
        size = plan.config.image_size
        self.noise_field = torch.randn((plan.config.frames, size * size), generator=generator, device=device)

    def maximum(self, a, b):
        torch = self.torch
        if not isinstance(b, torch.Tensor):
            return torch.clamp(a, min=b)
        return torch.clamp(b, min=a) if not isinstance(a, torch.Tensor) else torch.maximum(a, b)

    def minimum(self, a, b):
        torch = self.torch
        if not isinstance(b, torch.Tensor):
            return torch.clamp(a, max=b)
        return torch.clamp(b, max=a) if not isinstance(a, torch.Tensor) else torch.minimum(a, b)

    def clip(self, a, low, high):
        return self.minimum(self.maximum(a, low), high)

    def zeros(self, shape):
        return self.torch.zeros(shape, device=self.device)

    def as_uint8(self, a):
        return a.to(self.torch.uint8)

    def noise(self, rows: slice, shape):
        return self.noise_field[rows]

    def sample(self, map_x, map_y):
        """Bilinear texture lookup like ``cv2.remap(..., INTER_LINEAR, BORDER_REFLECT)``.

        OpenCV puts pixel ``i``'s centre at coordinate ``i``; with ``align_corners=False``,
        grid_sample's -1 and +1 are the image's outer edges, so ``x_norm = (2 x + 1) / W - 1``,
        and its reflection padding mirrors about those edges, as BORDER_REFLECT does.
        """
        t, pixels = map_x.shape
        height, width = self.texture.shape[-2:]
        grid = self.torch.stack([(2.0 * map_x + 1.0) / width - 1.0, (2.0 * map_y + 1.0) / height - 1.0], dim=-1)
        sampled = self.torch.nn.functional.grid_sample(
            self.texture, grid.reshape(1, t * pixels, 1, 2), mode="bilinear", padding_mode="reflection",
            align_corners=False).reshape(2, t, pixels)
        return sampled[0], sampled[1]


def _to_device(value, device):
    """NumPy arrays (and lists/tuples of them) as tensors on ``device``: floats as float32, integers as int64."""
    import torch

    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(item, device) for item in value)
    if isinstance(value, np.ndarray):
        dtype = np.float32 if np.issubdtype(value.dtype, np.floating) else np.int64
        return torch.from_numpy(np.ascontiguousarray(value, dtype=dtype)).to(device)
    return float(value)  # NumPy scalars as Python numbers (torch keeps float32 then)


def _render_frames_torch(plan: VideoPlan, device):
    """(frames, labels) uint8 NumPy ``[T, H, W]`` with the image formed by torch on ``device``."""
    import torch

    size, n_frames = plan.config.image_size, plan.config.frames
    px = _pixel_inputs(plan)
    px = _PixelInputs(**{f.name: _to_device(getattr(px, f.name), device) for f in dataclasses.fields(px)})
    ops = _TorchOps(plan, device)
    # a GPU wants the whole video in one step (fewer kernel launches); a CPU, a few frames at a time
    chunk = n_frames if device.type != "cpu" else max(1, _CHUNK_PIXELS // (size * size))
    frames = torch.empty((n_frames, size * size), dtype=torch.uint8, device=device)
    labels = torch.empty_like(frames)
    with torch.inference_mode():
        for start in range(0, n_frames, chunk):
            rows = slice(start, min(n_frames, start + chunk))
            labels[rows], frames[rows], _ = _form_chunk(ops, plan, px, rows)
    return (frames.reshape(n_frames, size, size).cpu().numpy(), labels.reshape(n_frames, size, size).cpu().numpy())


# ============================================================================ datasets and speed
def make_videos(seed: int, indices: Iterable[int] | int, config: SyntheticConfig | None = None,
                workers: int = 1, device=None) -> list[SyntheticVideo]:
    """Videos ``indices`` (or ``range(indices)``) of the dataset from ``seed``, optionally in worker processes.

    With a torch ``device``, the workers make the plans and this process forms the images on the
    device (see :func:`iter_videos`). The result does not depend on ``workers``.
    """
    indices = list(range(indices)) if isinstance(indices, (int, np.integer)) else [int(i) for i in indices]
    device = render_device(device)
    if workers <= 1 or len(indices) < 2:
        return [make_video(seed, i, config, device) for i in indices]
    with worker_pool(workers) as pool:
        return list(iter_videos(seed, indices, config, device=device, pool=pool, ahead=4 * workers))


def worker_pool(workers: int):
    """A process pool for :func:`iter_videos` (and whatever else the caller gives it, such as encoding).

    The workers are forked, as a torch ``DataLoader``'s are: that is safe after this process has
    started CUDA because they never touch the device (NumPy, OpenCV and files only), and it needs
    no ``if __name__ == "__main__"`` guard in scripts and costs no re-import per worker.
    """
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers)


def iter_videos(seed: int, indices: Iterable[int], config: SyntheticConfig | None = None, *, device=None,
                pool=None, ahead: int = 32):
    """Videos ``indices`` in order, as a stream (a set of any size in bounded memory).

    Without ``pool`` this process makes each one. With ``pool`` (from :func:`worker_pool`): on the
    NumPy path the workers make whole videos; with a torch ``device`` they make the plans
    (:func:`plan_video`, NumPy) and this process forms the images on the device, since a GPU
    cannot be shared by worker processes. At most ``ahead`` videos are in flight.
    """
    device = render_device(device)
    if pool is None:
        yield from (make_video(seed, int(i), config, device) for i in indices)
        return
    task = make_video if device is None else plan_video
    jobs = iter(indices)
    pending = collections.deque(pool.submit(task, seed, int(i), config) for i in itertools.islice(jobs, max(1, ahead)))
    while pending:
        made = pending.popleft().result()
        pending.extend(pool.submit(task, seed, int(i), config) for i in itertools.islice(jobs, 1))  # keep workers busy
        yield made if device is None else render_plan(made, device)


class SyntheticDataset:
    """``videos`` synthetic videos made on demand: ``dataset[i]`` is ``make_video(seed, i, config)``.

    Nothing is stored, so a set of any size costs no disk; it has ``__len__`` and ``__getitem__``
    and so works as a map-style ``torch.utils.data.Dataset`` (each worker makes its own videos).
    """

    def __init__(self, seed: int, videos: int, config: SyntheticConfig | None = None):
        _check_seed_index(seed, 0)
        if not isinstance(videos, (int, np.integer)) or videos < 0:
            raise ValueError(f"videos must be a non-negative integer; got {videos!r}")
        self.seed, self.videos = int(seed), int(videos)
        self.config = SyntheticConfig() if config is None else config

    def __len__(self) -> int:
        return self.videos

    def __getitem__(self, index: int) -> SyntheticVideo:
        if isinstance(index, (int, np.integer)) and -self.videos <= index < 0:
            index += self.videos
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.videos:
            raise IndexError(f"index {index!r} out of range for {self.videos} videos")
        return make_video(self.seed, int(index), self.config)

    def __repr__(self) -> str:
        return f"SyntheticDataset(seed={self.seed}, videos={self.videos}, config={self.config})"


def benchmark(config: SyntheticConfig | None = None, videos: int = 8, seed: int = 0, device=None) -> dict:
    """Frames per second of :func:`make_video` on one CPU core (OpenCV and torch held to one thread).

    ``device``: None/"numpy" (the NumPy path), "cpu" (torch on the CPU) or a GPU ("cuda").
    ``render_frames_per_second`` times the image formation alone (:func:`render_plan` of plans
    made beforehand): the part a device takes over, while worker processes make the plans.
    """
    import cv2

    config = SyntheticConfig(image_size=112, frames=64) if config is None else config
    device = render_device(device)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    if device is not None:
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        make_video(seed, 0, config, device)  # warm up imports, caches and the device
        start = time.perf_counter()
        for i in range(videos):
            make_video(seed, i, config, device)
        elapsed = time.perf_counter() - start
        plans = [plan_video(seed, i, config) for i in range(videos)]
        start = time.perf_counter()
        for plan in plans:
            render_plan(plan, device)  # returns NumPy arrays, so a GPU has finished when it returns
        render_elapsed = time.perf_counter() - start
    finally:
        cv2.setNumThreads(threads)
        if device is not None:
            torch.set_num_threads(torch_threads)
    frames = videos * config.frames
    return {"device": "numpy" if device is None else str(device), "image_size": config.image_size,
            "frames_per_video": config.frames, "videos": videos, "seconds": elapsed,
            "frames_per_second": frames / elapsed, "seconds_per_video": elapsed / videos,
            "render_frames_per_second": frames / render_elapsed, "plan_seconds_per_video": (elapsed - render_elapsed) / videos}
