"""Grad-CAM for video EF models, with pytorch-grad-cam's :class:`~pytorch_grad_cam.GradCAM`.

Grad-CAM (Selvaraju et al., ICCV 2017) on a 5-D feature map ``A [B, C, T', H', W']``: one weight
per channel, the mean over T', H', W' of d(target)/dA; the map is ReLU(sum_c w_c A_c), min-max
normalised per clip over the whole volume and zoomed (scipy, cubic) to the input's T, H, W. Only
``GradCAM`` among the library's methods handles 5-D maps (grad-cam >= 1.5.4); see the reference
notes, methods-peers.md section 8.

Three things adapt the library to an EF regressor:
- :class:`EFOutput` makes the model return one tensor ``[B, 1]`` (the library cannot take tuples,
  and CoReEcho's stage-1 output is one);
- :func:`ef_targets`: "raises" explains what pushes the EF prediction up, "lowers" what pulls it
  down (the maintainer's advice for regression: ``BinaryClassifierOutputTarget(1 | 0)``);
- :func:`uniformer_target_layer` picks a UniFormer stage's last block, whose output is already
  ``[B, C, T', H', W']`` (no reshape transform needed). At 112 px a stage-4 map is 3x3 pixels of
  32 px, so earlier stages give sharper, if less semantic, maps.

:func:`focus_scores` measures where the map's energy lies: the share inside the LV cavity and
inside the LV cavity plus myocardium, from label masks (the synthetic engine's ``labels``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from echobook.data.labels import LV_CAVITY, LV_MYOCARDIUM
from echobook.metrics import ef_prediction

UNIFORMER_STAGES = (1, 2, 3, 4)
# BinaryClassifierOutputTarget's category: 1 explains the score itself, 0 its negative
DIRECTIONS = {"raises": 1, "lowers": 0}


class EFOutput(nn.Module):
    """``model`` returning the EF as one tensor ``[B, 1]``, as pytorch-grad-cam requires."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and not clips.requires_grad:
            # A frozen encoder (MLP probing) has no parameter that needs a gradient, so its feature
            # maps would carry none; a gradient-requiring input makes autograd track them anyway.
            clips = clips.detach().requires_grad_(True)
        ef_percent = ef_prediction(self.model(clips))
        if ef_percent.numel() != clips.shape[0]:
            raise ValueError(f"the model gives {ef_percent.numel() // clips.shape[0]} values per clip; Grad-CAM "
                             "of EF needs one (an encoder alone returns embeddings: add its head)")
        return ef_percent.float().reshape(-1, 1)


def ef_targets(batch_size: int, direction: str = "raises") -> list:
    """One Grad-CAM target per clip: ``"raises"`` (what raises the EF prediction) or ``"lowers"``."""
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: choose one of {sorted(DIRECTIONS)}")
    return [BinaryClassifierOutputTarget(DIRECTIONS[direction]) for _ in range(batch_size)]


# --------------------------------------------------------------------------------------------- layers

def find_uniformer(model: nn.Module):
    """The UniFormer inside a model (itself, a CoReEcho model's encoder, or wrapped deeper)."""
    from echobook.models.uniformer import UniFormer

    for module in model.modules():
        if isinstance(module, UniFormer):
            return module
    raise TypeError(f"no UniFormer inside {type(model).__name__}; pass target_layer= explicitly")


def uniformer_target_layer(model: nn.Module, stage: int = 4, block: int = -1) -> nn.Module:
    """A UniFormer stage's block (the last by default): its output ``[B, C, T/2, H/s, W/s]`` with
    s = 4, 8, 16, 32 for stages 1-4 is the feature map Grad-CAM weighs."""
    if stage not in UNIFORMER_STAGES:
        raise ValueError(f"stage={stage}: UniFormer has stages {UNIFORMER_STAGES}")
    return getattr(find_uniformer(model), f"blocks{stage}")[block]


def uniformer_stage_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{"stage 1": last block, ..., "stage 4": last block}``, for a layer choice."""
    return {f"stage {stage}": uniformer_target_layer(model, stage) for stage in UNIFORMER_STAGES}


# --------------------------------------------------------------------------------------------- Grad-CAM

class VideoCAM(NamedTuple):
    maps: np.ndarray  # float32 [B, T, H, W] in [0, 1], at the input's resolution
    ef_percent: np.ndarray  # float32 [B], the model's predictions for the same clips


def video_gradcam(model: nn.Module, clips: torch.Tensor, *, stage: int = 4, target_layer: nn.Module | None = None,
                  direction: str = "raises", batch_size: int = 8) -> VideoCAM:
    """Grad-CAM maps of normalised clips ``[B, C, T, H, W]`` on the model's device, ``batch_size``
    clips at a time (a backward pass holds every activation). ``target_layer`` overrides ``stage``.

    The model's train/eval mode is restored (the library switches it to eval) and the parameter
    gradients the backward pass leaves behind are cleared.
    """
    from pytorch_grad_cam import GradCAM

    if clips.ndim != 5:
        raise ValueError(f"expected clips [B, C, T, H, W], got shape {tuple(clips.shape)}")
    layer = target_layer if target_layer is not None else uniformer_target_layer(model, stage)
    device = next(model.parameters()).device
    was_training = model.training
    maps, predictions = [], []
    try:
        with GradCAM(EFOutput(model), [layer]) as cam:
            for chunk in clips.split(batch_size):
                maps.append(cam(chunk.to(device).float(), targets=ef_targets(len(chunk), direction)))
                predictions.append(cam.outputs.detach().float().reshape(-1).cpu().numpy())
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return VideoCAM(np.concatenate(maps).astype(np.float32), np.concatenate(predictions))


# --------------------------------------------------------------------------------------------- focus

def clip_labels(labels: np.ndarray, clip_frames: int, clip_stride: int, start: int = 0,
                image_size: int | None = None) -> np.ndarray:
    """A video's label masks ``[T_video, H, W]`` at one clip's frames (looped like the clip, see
    :func:`echobook.data.clips.clip_indices`), resized by nearest neighbour to ``image_size``."""
    import cv2

    from echobook.data.clips import clip_indices

    chosen = labels[clip_indices(len(labels), clip_frames, clip_stride, start)]
    if image_size is None or chosen.shape[1:] == (image_size, image_size):
        return chosen
    return np.stack([cv2.resize(m, (image_size, image_size), interpolation=cv2.INTER_NEAREST) for m in chosen])


def focus_scores(cams: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The share of CAM energy (sum of the map) inside the LV cavity and inside cavity + myocardium.

    ``cams`` ``[..., T, H, W]`` (non-negative, e.g. ``VideoCAM.maps``); ``labels`` the matching label
    masks, the same shape or one clip's ``[T, H, W]`` for all. Scores have the shape ``cams.shape[:-3]``;
    a map of no energy at all scores NaN. A uniform map scores the regions' area fractions.
    """
    cams, labels = np.asarray(cams, dtype=np.float64), np.asarray(labels)
    if labels.shape != cams.shape[-labels.ndim:] or labels.ndim < 3:
        raise ValueError(f"labels {labels.shape} do not match the maps {cams.shape} (frames, height, width)")
    if np.any(cams < 0):
        raise ValueError("CAM energy shares need non-negative maps")
    energy = cams.sum(axis=(-3, -2, -1))

    def share(region: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (cams * region).sum(axis=(-3, -2, -1)) / energy

    return {
        "lv_cavity": share(labels == LV_CAVITY),
        "lv_cavity_and_myocardium": share(np.isin(labels, (LV_CAVITY, LV_MYOCARDIUM))),
    }
