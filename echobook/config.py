"""Sizes, device, seeding and paths: the settings every chapter starts from.

A chapter's parameters cell holds ``SIZE``, ``DATA_DIR``, ``SEED`` and ``DEVICE``
and passes them to :func:`setup`, which resolves them into a :class:`Settings`.

Precedence for the size: an explicit ``SIZE`` (``smoke``, ``small``, ``full``)
wins; ``SIZE="auto"`` (the default) takes ``$ECHOBOOK_SIZE`` when it is set, and
otherwise ``full`` on a GPU and ``small`` on a CPU. So the tests and the book build
choose a size through the environment, and papermill through the parameter.
"""
from __future__ import annotations

import dataclasses
import os
import random
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SIZE_ENV = "ECHOBOOK_SIZE"
DATA_ENV = "ECHOBOOK_DATA"
SIZES = ("smoke", "small", "full")
AUTO = "auto"


@dataclass(frozen=True)
class SizePreset:
    """The data and clip numbers of one size, shared by every method.

    ``full`` is paper scale (EchoNet-Dynamic's 10,030 videos, clips of 36 frames at stride 4 and
    112x112 pixels). ``small`` teaches on a laptop CPU in minutes; ``smoke`` only shows that learning
    happens, within about two minutes a chapter on 2 cores. What a method trains at each size (its
    encoder, epochs, rates) is its recipe, in its module: ``echobook.methods.coreecho.recipe(size)``.
    """

    name: str
    videos: int  # videos in a synthetic EchoNet-style set (all splits)
    video_frames: int  # frames of each synthetic video
    image_size: int  # pixels per side of the stored videos
    clip_frames: int  # frames in one training clip
    clip_stride: int  # take every `clip_stride`-th frame; a clip must span a whole beat (ED and ES)
    crop_size: int  # pixels per side the model sees after pad-and-crop
    batch_size: int  # videos per batch (CoReEcho stage 1 uses two clips each)
    eval_clips: int  # clips averaged per video at test time


# Videos: a tiny encoder overfits a few dozen videos long before it reads EF from them, and synthetic
# videos cost milliseconds, so the CPU sizes make hundreds (L1 baseline at smoke: 192 videos x 40 epochs gave a
# test MAE 0.88 of the mean predictor's; 480 videos x 16 epochs, the same number of steps, gave 0.74).
PRESETS: dict[str, SizePreset] = {
    "smoke": SizePreset(name="smoke", videos=480, video_frames=40, image_size=48, clip_frames=8, clip_stride=4,
                        crop_size=48, batch_size=16, eval_clips=3),
    "small": SizePreset(name="small", videos=960, video_frames=64, image_size=64, clip_frames=16, clip_stride=3,
                        crop_size=64, batch_size=16, eval_clips=3),
    "full": SizePreset(name="full", videos=10030, video_frames=176, image_size=112, clip_frames=36, clip_stride=4,
                       crop_size=112, batch_size=16, eval_clips=3),
}


def in_colab() -> bool:
    """Whether this kernel runs on Google Colab (its widgets and renderers differ)."""
    return "google.colab" in sys.modules


def gpu_available() -> bool:
    return torch.cuda.is_available()


def resolve_size(size: str = AUTO, *, has_gpu: bool | None = None) -> str:
    """The concrete size name for a chapter's ``SIZE`` parameter (see module doc)."""
    size = (size or AUTO).strip().lower()
    if size == AUTO:
        size = os.environ.get(SIZE_ENV, "").strip().lower() or AUTO
    if size == AUTO:
        has_gpu = gpu_available() if has_gpu is None else has_gpu
        return "full" if has_gpu else "small"
    if size not in SIZES:
        source = f"${SIZE_ENV}" if os.environ.get(SIZE_ENV, "").strip().lower() == size else "SIZE"
        raise ValueError(f"{source}={size!r} is not a size; choose one of {SIZES + (AUTO,)}")
    return size


def get_preset(size: str | SizePreset | None = AUTO) -> SizePreset:
    """The preset of a size name (``None`` means ``auto``); a preset passes through unchanged."""
    return size if isinstance(size, SizePreset) else PRESETS[resolve_size(size or AUTO)]


def resolve_device(device: str | torch.device = AUTO) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an unavailable request falls back to the CPU with a warning."""
    name = str(device or AUTO).strip().lower()
    if name == AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        wanted = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"DEVICE={device!r} is not a device name (try 'auto', 'cpu', 'cuda', 'cuda:1', 'mps')") from error
    unavailable = (
        (wanted.type == "cuda" and not torch.cuda.is_available())
        or (wanted.type == "cuda" and wanted.index is not None and wanted.index >= torch.cuda.device_count())
        or (wanted.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()))
    )
    if unavailable:
        warnings.warn(f"DEVICE={device!r} is not available here; running on the CPU instead", stacklevel=2)
        return torch.device("cpu")
    return wanted


def resolve_data_dir(data_dir: str | os.PathLike | None = "") -> Path | None:
    """``None`` means the synthetic default; a path must exist. ``$ECHOBOOK_DATA`` fills an empty ``DATA_DIR``."""
    raw = str(data_dir or "").strip() or os.environ.get(DATA_ENV, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        source = "DATA_DIR" if str(data_dir or "").strip() else f"${DATA_ENV}"
        raise FileNotFoundError(f"{source}={raw!r}: no such folder (leave it empty for the synthetic data)")
    return path


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch so that a CPU run repeats exactly.

    ``deterministic`` asks torch for deterministic kernels where it has them
    (warning, not failing, where it has none) and turns off cuDNN's autotuner.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        # cuBLAS needs this to be deterministic; it must be set before the first cuBLAS call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass(frozen=True)
class Settings:
    """A chapter's resolved parameters."""

    size: str
    preset: SizePreset
    data_dir: Path | None
    seed: int
    device: torch.device
    data_seed: int | None = None  # the synthetic set's seed; None: it follows `seed`

    def __post_init__(self):
        if self.data_seed is None:  # frozen: set the resolved value once, so cfg.data_seed is always an int
            object.__setattr__(self, "data_seed", self.seed)

    @property
    def synthetic(self) -> bool:
        return self.data_dir is None

    def summary(self) -> dict[str, object]:
        """Plain values, for printing and for gluing."""
        return {
            "size": self.size,
            "device": str(self.device),
            "data": "synthetic" if self.synthetic else str(self.data_dir),
            "seed": self.seed,
            "data_seed": self.data_seed,
            "torch": torch.__version__,
            **{f"preset.{k}": v for k, v in dataclasses.asdict(self.preset).items() if k != "name"},
        }


def setup(size: str = AUTO, data_dir: str | os.PathLike | None = "", seed: int = 0,
          device: str | torch.device = AUTO, data_seed: int | None = None, *, verbose: bool = True) -> Settings:
    """Resolve a chapter's parameters, seed everything, and say what was chosen.

    ``seed`` seeds the training (torch, NumPy, Python); ``data_seed`` picks the synthetic set
    (``cfg.data_seed``, which a chapter passes to whatever makes its set). ``None`` lets the set follow
    ``seed``, so one number still fixes a whole run; a separate ``data_seed`` tells the spread that the
    data brings from the spread that the training brings (``echobook ledger --data-seed``).
    """
    chosen_device = resolve_device(device)
    name = resolve_size(size, has_gpu=chosen_device.type == "cuda")
    settings = Settings(
        size=name, preset=PRESETS[name], data_dir=resolve_data_dir(data_dir),
        seed=int(seed), device=chosen_device, data_seed=None if data_seed is None else int(data_seed),
    )
    seed_everything(settings.seed)
    _use_offline_plotly()
    if verbose:
        info = settings.summary()
        data_seed = "" if settings.data_seed == settings.seed else f" data_seed={settings.data_seed}"
        print(f"echobook: size={info['size']} device={info['device']} data={info['data']} "
              f"seed={info['seed']}{data_seed} torch={info['torch']}")
    return settings


def _use_offline_plotly() -> None:
    from echobook.plotting import use_book_renderer

    try:
        use_book_renderer()
    except ImportError:  # plotly comes with the optional `notebook` extra
        pass
