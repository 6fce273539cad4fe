"""Official weights the user downloads: CoReEcho's released checkpoint and EchoNet-Dynamic's R(2+1)D.

``echobook predict --model FILE`` takes either, recognised from its keys (methods-peers.md sec. 1 and 3):

- **CoReEcho** (``best.pth``/``last.pth`` of ``train_first_stage.py``/``train_second_stage.py``):
  ``{"model": UniFormer-S state dict, "regressor": MLP state dict}``, keys with a ``module.`` prefix when saved
  from DataParallel. The UniFormer keys are echobook's UniFormer-S keys (its ``head``, never used by CoReEcho,
  is dropped); the MLP is echobook's :class:`~echobook.models.heads.CoReEchoRegressor` layer for layer.
  Preprocessing as CoReEcho trained it: 112 x 112, 36 frames 4 apart at EchoNet's 50 fps, the per-channel
  mean and std of its ``dataset.py`` (x 255; the three are averaged here, since the channels of a gray
  recording are the same, a change below 0.1 % of a gray level per unit).
- **EchoNet-Dynamic** (``best.pt`` of ``echonet video``): ``{"state_dict": ...}`` of torchvision's
  ``r2plus1d_18`` with ``fc = Linear(512, 1)``, saved from DataParallel (``module.`` prefix), beside
  ``epoch``, ``opt_dict``, ... Preprocessing: 112 x 112, 32 frames 2 apart at 50 fps. EchoNet does not store
  its normalisation (``get_mean_and_std`` over 128 training videos per run), so each recording's own mean and
  std are used, as EchoNet computes them on its (gray, sector-masked) videos. The three-channel stem is folded
  into echobook's one-channel stem (its weights summed over the channels: exact for gray input normalised the
  same in each channel).

Each gets a card made on the fly (method, the file, its preprocessing) marked "official weights: no conformal
interval unless calibrated". A file that is neither, or whose shapes do not fit, is refused with a
:class:`~echobook.training.CheckpointError` naming the file and the keys.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

DATAPARALLEL_PREFIX = "module."
ECHONET_FPS = 50.0  # EchoNet-Dynamic's videos (FileList.csv's FPS is 50 for nearly all)
COREECHO_MEAN_GRAY = float(np.mean([0.12741, 0.12794, 0.12913]) * 255)  # coreecho/dataset.py, per channel
COREECHO_STD_GRAY = float(np.mean([0.19557, 0.19562, 0.19659]) * 255)
COREECHO_CLIP = {"clip_frames": 36, "clip_stride": 4, "eval_clips": 3}
ECHONET_CLIP = {"clip_frames": 32, "clip_stride": 2, "eval_clips": 1}
IMAGE_SIZE = 112
UNCALIBRATED = "official weights: no conformal interval unless calibrated"


def strip_prefix(state: dict, prefix: str = DATAPARALLEL_PREFIX) -> dict:
    """The state dict without DataParallel's ``module.`` prefix (when every key has it)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def read_official(path: str | os.PathLike) -> dict:
    """The checkpoint's contents, read with ``weights_only=True`` (a crafted file cannot run code)."""
    from echobook.training import CheckpointError, load_safely

    checkpoint = load_safely(path, "weights file")
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def official_kind(checkpoint: dict) -> str | None:
    """"coreecho", "echonet" or None, from the checkpoint's keys."""
    if isinstance(checkpoint.get("model"), dict) and isinstance(checkpoint.get("regressor"), dict):
        return "coreecho"
    state = checkpoint.get("state_dict")
    if isinstance(state, dict) and any(k.endswith("fc.weight") for k in state) and \
            any("stem." in k for k in state):
        return "echonet"
    return None


def _card(method: str, variant: str, path: Path, preprocessing: dict, source: str) -> dict:
    from echobook.cards import new_card

    return new_card(method=method, variant=variant, size="official", seed=0, official=True,
                    preprocessing={"image_size": IMAGE_SIZE, "fps": ECHONET_FPS, **preprocessing},
                    data={"weights_file": str(path), "source": source, "note": UNCALIBRATED})


def _regressor_state(state: dict) -> dict:
    """CoReEcho's MLP keys as an ``nn.Sequential``'s (``0.weight`` ...), whatever attribute held it."""
    state = strip_prefix(state)
    first = next(iter(state), "")
    head, _, _ = first.partition(".")
    if not head.isdigit() and all(k.startswith(head + ".") for k in state):
        state = {k[len(head) + 1:]: v for k, v in state.items()}
    return state


def coreecho_from_checkpoint(checkpoint: dict, path: Path) -> tuple[torch.nn.Module, dict]:
    from echobook.methods.coreecho import coreecho_model
    from echobook.training import check_state_fits

    model = coreecho_model("uniformer_s")
    encoder = {k: v for k, v in strip_prefix(checkpoint["model"]).items() if not k.startswith("head.")}
    state = {**{f"encoder.{k}": v for k, v in encoder.items()},
             **{f"head.{k}": v for k, v in _regressor_state(checkpoint["regressor"]).items()}}
    check_state_fits(model, state, path, "CoReEcho's released UniFormer-S + MLP head")
    model.load_state_dict(state)
    card = _card("coreecho", "uniformer_s", path, {**COREECHO_CLIP, "mean": COREECHO_MEAN_GRAY,
                                                    "std": COREECHO_STD_GRAY},
                 "CoReEcho (BioMedIA-MBZUAI/CoReEcho) released checkpoint")
    return model, card


def echonet_from_checkpoint(checkpoint: dict, path: Path) -> tuple[torch.nn.Module, dict]:
    from echobook.models.r2plus1d import R2Plus1DRegressor
    from echobook.training import CheckpointError, check_state_fits

    state = {f"net.{k}": v for k, v in strip_prefix(checkpoint["state_dict"]).items()}
    stem = state.get("net.stem.0.weight")
    if stem is None or stem.ndim != 5:
        raise CheckpointError(f"{path}: no R(2+1)D stem (stem.0.weight) in its state_dict")
    state["net.stem.0.weight"] = stem.sum(dim=1, keepdim=True)  # gray input: the channels' weights add up
    model = R2Plus1DRegressor(in_chans=1)
    check_state_fits(model, state, path, "EchoNet-Dynamic's r2plus1d_18 with a 1-output fc")
    model.load_state_dict(state)
    card = _card("echonet_r2plus1d", "r2plus1d_18", path, {**ECHONET_CLIP, "mean": None, "std": None},
                 "EchoNet-Dynamic (echonet/dynamic) best.pt; mean and std from each recording")
    return model, card


def load_official(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The model of an official weights file (module doc), in eval mode, and its card made on the fly."""
    from echobook.training import CheckpointError

    path = Path(path)
    checkpoint = read_official(path)
    kind = official_kind(checkpoint)
    if kind is None:
        keys = ", ".join(list(checkpoint)[:6])
        raise CheckpointError(f"{path}: neither an echobook run (no card), nor CoReEcho's checkpoint ('model' and "
                              f"'regressor'), nor EchoNet-Dynamic's ('state_dict' of r2plus1d_18); its keys: {keys}")
    build = coreecho_from_checkpoint if kind == "coreecho" else echonet_from_checkpoint
    model, card = build(checkpoint, path)
    return model.to(device).eval(), card


__all__ = ["UNCALIBRATED", "load_official", "official_kind", "read_official", "strip_prefix"]
