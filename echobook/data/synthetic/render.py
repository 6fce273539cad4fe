"""Step 5, image formation, on one of two backends, and the finished :class:`SyntheticVideo`.

- NumPy + ``cv2.remap`` (``device=None``, the default and the reference bytes);
- torch on any device (``device="cpu"``, ``"cuda"``): ``grid_sample`` samples the texture and a
  ``torch.Generator`` seeded from the video's generator draws the noise.

Both run the same per-pixel code (:mod:`echobook.data.synthetic.formation`) on a plan made in
NumPy (:func:`~echobook.data.synthetic.plan.plan_video`), so labels never depend on the backend.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass, field

import numpy as np

from echobook.data.synthetic.formation import PixelInputs, form_chunk, log_compress, pixel_inputs
from echobook.data.synthetic.heart import SyntheticConfig, video_name
from echobook.data.synthetic.plan import VideoPlan, plan_video

_CHUNK_PIXELS = 65536  # pixels per step on a CPU: about 256 kB per float32 array keeps them in cache


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
    tracings: dict[int, np.ndarray]  # {ed_frame, es_frame} -> float [21, 4] (EchoNet convention); PSAX: empty
    labels: np.ndarray  # uint8 [T, H, W], echobook.data.labels.CHAMBER_LABELS: 0 background, 1 LV cavity, ...
    wall_motion: np.ndarray  # int [6]: 0 normal, 1 hypokinetic, 2 akinetic (order: SEGMENTS[view])
    quality: str  # "Good" | "Medium" | "Poor"
    view: str  # "A4C" | "A2C", or (echobook.data.synthetic.views) "PLAX" | "PSAX" | "other"
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


# ---------------------------------------------------------------------------- the entry points
def make_video(seed: int, index: int, config: SyntheticConfig | None = None, device=None) -> SyntheticVideo:
    """Video ``index`` of the synthetic dataset made from ``seed`` (the same bytes every time).

    ``device``: None or ``"numpy"`` forms the image with NumPy and OpenCV (the reference); a
    torch device (``"cpu"``, ``"cuda"``, ``torch.device``) forms it with torch there. Labels,
    EF, volumes, ED/ES and tracings are identical on every device; the frames differ by about
    a gray level (other noise, other interpolation rounding) and are deterministic per device.
    """
    return render_plan(plan_video(seed, index, config), device)


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
        tracings={} if plan.all_tracings is None else {f: plan.all_tracings[f].copy()
                                                        for f in (plan.ed_frame, plan.es_frame)},
        labels=labels, wall_motion=case.wall_motion.copy(), quality=case.quality, view=case.view,
        mm_per_pixel=plan.mm_per_pixel, volumes_ml=plan.volumes_ml, all_tracings=plan.all_tracings,
        target_ef_percent=case.target_ef_percent, seed=plan.seed, index=plan.index,
    )


def render_stages(seed: int, index: int, config: SyntheticConfig | None = None, frame: int = 0) -> dict:
    """The image-formation steps of one frame, for teaching: echogenicity, speckle, attenuation, TGC, log."""
    return _render_frames_numpy(plan_video(seed, index, config), stages_frame=frame)[2]


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


# ---------------------------------------------------------------------------- the NumPy backend (the reference)
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


def _render_frames_numpy(plan: VideoPlan, stages_frame: int | None = None):
    """(frames, labels, stages) with NumPy, a few frames at a time; ``stages`` is filled for ``stages_frame``."""
    size, n_frames = plan.config.image_size, plan.config.frames
    frames = np.empty((n_frames, size * size), dtype=np.uint8)
    labels = np.empty((n_frames, size * size), dtype=np.uint8)
    ops, px = _NumpyOps(plan), pixel_inputs(plan)
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    stages = {}
    for start in range(0, n_frames, chunk):
        rows = slice(start, min(n_frames, start + chunk))
        labels[rows], frames[rows], parts = form_chunk(ops, plan, px, rows)
        if stages_frame is not None and rows.start <= stages_frame < rows.stop:
            stages = _stages(plan, parts, stages_frame - rows.start, labels[stages_frame], frames[stages_frame])
    return frames.reshape(n_frames, size, size), labels.reshape(n_frames, size, size), stages


def attenuation_db(depth_cm, frequency_mhz: float, alpha_db_cm_mhz: float = 0.5):
    """Two-way tissue attenuation 2 alpha f z in dB (alpha ~ 0.5 dB/cm/MHz for heart and liver)."""
    return 2.0 * alpha_db_cm_mhz * frequency_mhz * np.asarray(depth_cm)


def _stages(plan: VideoPlan, parts: dict, k: int, labels: np.ndarray, frame: np.ndarray) -> dict:
    """The teaching view of one frame (row ``k`` of the chunk's intermediates ``parts``)."""
    case, scene, size = plan.case, plan.scene, plan.config.image_size
    depth_cm = scene.depth_px * plan.mm_per_pixel / 10.0
    raw_loss = 10.0 ** (-attenuation_db(depth_cm, case.frequency_mhz) / 20.0)
    echo, speckle = parts["echo"], parts["speckle"]

    def img(a):
        return np.asarray(a[k] if np.ndim(a) == 2 else a, dtype=np.float32).reshape(size, size)

    return {
        "labels": labels.reshape(size, size).copy(),
        "echogenicity": img(echo),
        "speckle": img(speckle),
        "echo_x_speckle": img(echo * speckle),
        "attenuated": img(echo * speckle) * img(raw_loss),
        "after_tgc": img(echo * speckle * scene.signal_gain),
        "sector": img(scene.sector),
        "log_compressed": log_compress(img(echo * speckle * scene.signal_gain), case.dynamic_range_db)
                          * img(scene.sector),
        "final": frame.reshape(size, size).astype(np.float32),
        "attenuation_db_at_depth": float(attenuation_db(case.radius * plan.mm_per_pixel / 10.0, case.frequency_mhz)),
        "frequency_mhz": case.frequency_mhz, "dynamic_range_db": case.dynamic_range_db,
    }


# ---------------------------------------------------------------------------- the torch backend
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
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        dtype = np.float32 if np.issubdtype(value.dtype, np.floating) else np.int64
        return torch.from_numpy(np.ascontiguousarray(value, dtype=dtype)).to(device)
    return float(value)  # NumPy scalars as Python numbers (torch keeps float32 then)


def _render_frames_torch(plan: VideoPlan, device):
    """(frames, labels) uint8 NumPy ``[T, H, W]`` with the image formed by torch on ``device``."""
    import torch

    size, n_frames = plan.config.image_size, plan.config.frames
    px = pixel_inputs(plan)
    px = PixelInputs(**{f.name: _to_device(getattr(px, f.name), device) for f in dataclasses.fields(px)})
    ops = _TorchOps(plan, device)
    # a GPU wants the whole video in one step (fewer kernel launches); a CPU, a few frames at a time
    chunk = n_frames if device.type != "cpu" else max(1, _CHUNK_PIXELS // (size * size))
    frames = torch.empty((n_frames, size * size), dtype=torch.uint8, device=device)
    labels = torch.empty_like(frames)
    with torch.inference_mode():
        for start in range(0, n_frames, chunk):
            rows = slice(start, min(n_frames, start + chunk))
            labels[rows], frames[rows], _ = form_chunk(ops, plan, px, rows)
    return (frames.reshape(n_frames, size, size).cpu().numpy(), labels.reshape(n_frames, size, size).cpu().numpy())
