"""Heads that read EF from an encoder's embeddings.

- :class:`CoReEchoRegressor`: the shallow MLP of CoReEcho (Maani et al., MICCAI 2024), in the
  paper's order: BatchNorm1d, Dropout(0.4), Linear, BatchNorm1d, GELU, Dropout(0.4), Linear,
  with the output bias starting at the training set's mean EF.
- :class:`EncoderWithHead`: an encoder that gives ``[B, D]`` embeddings followed by a head.

Every regressor returns ``ef_percent`` of shape ``[B]``, like the labels.
"""
from __future__ import annotations

import torch
from torch import nn

# Where CoReEcho's and EchoNet-Dynamic's code start the output bias (their rounding of EchoNet's mean EF,
# 55.75 % over FileList.csv): the fall-back when the training set's own mean EF is not known.
HEAD_BIAS_INIT_EF_PERCENT = 55.6


class CoReEchoRegressor(nn.Sequential):
    """``[B, in_features]`` embeddings -> ``[B]`` EF (%)."""

    def __init__(self, in_features: int = 512, hidden_features: int | None = None, dropout: float = 0.4,
                 mean_ef_percent: float = HEAD_BIAS_INIT_EF_PERCENT):
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
