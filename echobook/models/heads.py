"""Regression heads and the EchoNet-Dynamic baseline.

- :class:`CoReEchoRegressor`: the shallow MLP of CoReEcho (Maani et al., MICCAI 2024), in the
  paper's order: BatchNorm1d, Dropout(0.4), Linear, BatchNorm1d, GELU, Dropout(0.4), Linear,
  with the output bias starting at the training set's mean EF.
- :class:`EncoderWithHead`: an encoder that gives ``[B, D]`` embeddings followed by a head.
- :func:`r2plus1d_18_ef`: torchvision's R(2+1)D-18 with one output, the EchoNet-Dynamic EF model
  (Ouyang et al., Nature 2020), built without pretrained weights (nothing is downloaded).

Every regressor returns ``ef_percent`` of shape ``[B]``, like the labels.
"""
from __future__ import annotations

import torch
from torch import nn

# EchoNet-Dynamic's mean EF (%), the value both CoReEcho and EchoNet start the output bias at.
ECHONET_MEAN_EF_PERCENT = 55.6


class CoReEchoRegressor(nn.Sequential):
    """``[B, in_features]`` embeddings -> ``[B]`` EF (%)."""

    def __init__(self, in_features: int = 512, hidden_features: int | None = None, dropout: float = 0.4,
                 mean_ef_percent: float = ECHONET_MEAN_EF_PERCENT):
        hidden = hidden_features or in_features
        super().__init__(
            nn.BatchNorm1d(in_features),
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        # Starting at the mean EF spares the first steps of learning a large offset.
        nn.init.constant_(self[-1].bias, float(mean_ef_percent))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2:
            raise ValueError(f"the regressor expects embeddings [B, D], got shape {tuple(embeddings.shape)}")
        return super().forward(embeddings).squeeze(-1)


class EncoderWithHead(nn.Module):
    """``encoder`` (clips -> ``[B, D]``) then ``head`` (``[B, D]`` -> ``[B]``); both stay reachable
    by name, for freezing the encoder (MLP probing) or hooking it (Grad-CAM)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(clip))


class R2Plus1DRegressor(nn.Module):
    """torchvision's R(2+1)D-18 taking ``[B, in_chans, T, H, W]`` clips and returning ``[B]`` EF (%).

    Gray clips are fed to a stem convolution with one input channel: the same function as three
    identical channels (EchoNet's AVIs are gray copied three times) at a third of the stem's cost.
    Torchvision's key names are kept under ``net.`` (with the stem's first weight one channel wide).
    """

    def __init__(self, in_chans: int = 1, mean_ef_percent: float = ECHONET_MEAN_EF_PERCENT):
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


def r2plus1d_18_ef(in_chans: int = 1, mean_ef_percent: float = ECHONET_MEAN_EF_PERCENT) -> R2Plus1DRegressor:
    """The EchoNet-Dynamic EF model, randomly initialised (EchoNet started from Kinetics-400)."""
    return R2Plus1DRegressor(in_chans, mean_ef_percent)
