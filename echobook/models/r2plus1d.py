"""EchoNet-Dynamic's EF model (Ouyang et al., Nature 2020): torchvision's R(2+1)D-18 with one output.

Registered as ``r2plus1d_18`` (a whole EF regressor, not an encoder), built without pretrained weights
(EchoNet started from Kinetics-400; nothing is downloaded here). It returns ``ef_percent`` ``[B]``.
"""
from __future__ import annotations

import torch
from torch import nn

from echobook.models.heads import HEAD_BIAS_INIT_EF_PERCENT
from echobook.models.registry import register_model


class R2Plus1DRegressor(nn.Module):
    """torchvision's R(2+1)D-18 taking ``[B, in_chans, T, H, W]`` clips and returning ``[B]`` EF (%).

    Gray clips are fed to a stem convolution with one input channel: the same function as three
    identical channels (EchoNet's AVIs are gray copied three times) at a third of the stem's cost.
    Torchvision's key names are kept under ``net.`` (with the stem's first weight one channel wide).
    """

    def __init__(self, in_chans: int = 1, mean_ef_percent: float = HEAD_BIAS_INIT_EF_PERCENT):
        super().__init__()
        from torchvision.models.video import r2plus1d_18

        self.net = r2plus1d_18(weights=None, num_classes=1)
        stem = self.net.stem[0]
        if in_chans != stem.in_channels:
            self.net.stem[0] = nn.Conv3d(in_chans, stem.out_channels, stem.kernel_size, stem.stride,
                                         stem.padding, bias=stem.bias is not None)
        nn.init.constant_(self.net.fc.bias, float(mean_ef_percent))
        self.in_chans = in_chans

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.ndim != 5 or clip.shape[1] != self.in_chans:
            raise ValueError(f"expected clips [B, {self.in_chans}, T, H, W], got shape {tuple(clip.shape)}")
        return self.net(clip).squeeze(-1)


@register_model(kind="ef_regressor")
def r2plus1d_18(in_chans: int = 1, mean_ef_percent: float = HEAD_BIAS_INIT_EF_PERCENT) -> R2Plus1DRegressor:
    """The EchoNet-Dynamic EF model, randomly initialised (EchoNet started from Kinetics-400)."""
    return R2Plus1DRegressor(in_chans, mean_ef_percent)
