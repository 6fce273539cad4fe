"""What a model costs: parameters and multiply-adds per forward pass, for any model of the package."""
from __future__ import annotations

import copy

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_multiply_adds(model: nn.Module, clip_shape: tuple[int, ...] = (1, 3, 36, 112, 112)) -> int:
    """Multiply-adds of one forward pass (convolutions and matrix products, the usual convention).

    Measured with :class:`torch.utils.flop_counter.FlopCounterMode` (which counts 2 FLOPs per
    multiply-add) on a copy of the model on the ``meta`` device, so nothing is computed. The
    attention runs on PyTorch's math backend there, whose two batched matrix products the
    counter sees (it has no rule for the fused CPU kernel).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    meta_model = _meta_copy(model).eval()
    clip = torch.empty(clip_shape, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        meta_model(clip)
    return counter.get_total_flops() // 2


def _meta_copy(model: nn.Module) -> nn.Module:
    """The model rebuilt on the ``meta`` device: from its config where it has one (no weights copied),
    else a deep copy moved there."""
    config = getattr(model, "config", None)
    if config is not None:
        with torch.device("meta"):
            return type(model)(config)
    return copy.deepcopy(model).to("meta")
