"""Which tokens of a video a masked autoencoder sees: three masking strategies, batched on the device.

Tokens are tubelets on a grid of ``T'`` time slices by ``S = H' x W'`` positions, flattened time-major
(token ``n = t * S + s``), as :func:`echobook.models.videomae.patchify` orders them. Every strategy returns
a :class:`Masking`:

- ``ids_keep`` ``[B, K]``: the visible tokens, in ascending token order, so the visible tokens of one time
  slice stay together (EchoFM's projection head splits them into slices);
- ``ids_restore`` ``[B, N]``: the inverse of the permutation ``ids_shuffle = [visible..., masked...]``:
  ``cat(visible, masked).gather(1, ids_restore)`` puts every token back in its place. (EchoFM's first
  release used the forward permutation here, which scrambles the decoder's input.)
- ``mask`` ``[B, N]`` float, 1 where a token is hidden (the reconstruction loss counts those only).

The strategies (ratios are of hidden tokens):

- :func:`random_masking`: every tubelet token hidden independently ("random tube" masking: MAE-ST's and
  VideoMAE's space-time-agnostic baseline). Some positions stay visible in several slices, so a model can
  copy a patch from its neighbour in time.
- :func:`uniform_frame_masking`: whole time slices hidden, the visible ones evenly spaced in time with a
  random offset: the model must interpolate motion between the frames it sees.
- :func:`consistent_masking`: EchoFM's "spatio-temporally consistent" masking: one random spatial mask per
  clip shared by every time slice (the same idea as VideoMAE's tube masking, which makes its mask in the
  data pipeline with NumPy). A hidden position is hidden at all times: nothing can be copied along time.

The random numbers come from ``torch.rand`` on the requested device (with an optional ``generator``); no
Python loop runs over the batch.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

MASKING_STRATEGIES = ("random", "uniform_frame", "consistent")


class Masking(NamedTuple):
    ids_keep: torch.Tensor  # [B, K] long, ascending
    ids_restore: torch.Tensor  # [B, N] long: inverse of cat(ids_keep, masked ids)
    mask: torch.Tensor  # [B, N] float, 1 = hidden


def _check(batch: int, slices: int, positions: int, mask_ratio: float) -> None:
    for name, value in (("batch", batch), ("slices", slices), ("positions", positions)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1) (the share of hidden tokens); got {mask_ratio!r}")


def masking_from_visible(visible: torch.Tensor) -> Masking:
    """The :class:`Masking` of a boolean ``visible`` ``[B, N]`` holding the same count of True in every row."""
    batch, tokens = visible.shape
    counts = visible.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("visible must hold the same number of visible tokens in every clip of the batch")
    keep = int(counts[0])
    order = torch.arange(tokens, device=visible.device, dtype=torch.float32) / tokens  # [0, 1): ascending
    # visible tokens sort first and in token order; hidden ones after them (their order does not matter)
    score = torch.where(visible, order.expand(batch, -1), 1.0 + order.expand(batch, -1))
    ids_shuffle = torch.argsort(score, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # the inverse permutation
    return Masking(ids_shuffle[:, :keep], ids_restore, (~visible).float())


def _lowest(noise: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean ``noise.shape``: True at the ``count`` smallest values of each row."""
    ranks = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    return ranks < count


def random_masking(batch: int, slices: int, positions: int, mask_ratio: float, *, device=None,
                   generator: torch.Generator | None = None) -> Masking:
    """Each of the ``slices * positions`` tokens hidden at random: ``int(N * (1 - mask_ratio))`` stay visible."""
    _check(batch, slices, positions, mask_ratio)
    tokens = slices * positions
    keep = max(1, int(tokens * (1.0 - mask_ratio)))
    noise = torch.rand(batch, tokens, device=device, generator=generator)
    return masking_from_visible(_lowest(noise, keep))


def consistent_masking(batch: int, slices: int, positions: int, mask_ratio: float, *, device=None,
                       generator: torch.Generator | None = None) -> Masking:
    """One spatial mask per clip, shared by every slice: ``int(S * (1 - mask_ratio))`` positions stay visible
    (EchoFM: ``int(196 * 0.25) = 49`` of 196, in each of its 8 slices)."""
    _check(batch, slices, positions, mask_ratio)
    keep = max(1, int(positions * (1.0 - mask_ratio)))
    noise = torch.rand(batch, positions, device=device, generator=generator)
    visible_positions = _lowest(noise, keep)  # [B, S]
    return masking_from_visible(visible_positions.repeat(1, slices))  # time-major: the same S mask per slice


def uniform_frame_masking(batch: int, slices: int, positions: int, mask_ratio: float, *, device=None,
                          generator: torch.Generator | None = None) -> Masking:
    """Whole slices hidden: ``max(1, round(T' * (1 - mask_ratio)))`` visible slices, evenly spaced in time from
    a random offset per clip (at 0.75 and 8 slices: 2 visible slices, 4 apart)."""
    _check(batch, slices, positions, mask_ratio)
    keep = max(1, round(slices * (1.0 - mask_ratio)))
    spacing = slices / keep
    offset = torch.rand(batch, 1, device=device, generator=generator) * spacing  # [B, 1] in [0, spacing)
    chosen = torch.floor(offset + spacing * torch.arange(keep, device=device)).long().clamp(max=slices - 1)
    visible_slices = torch.zeros(batch, slices, dtype=torch.bool, device=device)
    visible_slices.scatter_(1, chosen, True)
    return masking_from_visible(visible_slices.repeat_interleave(positions, dim=1))


MASKING_FUNCTIONS = {"random": random_masking, "uniform_frame": uniform_frame_masking,
                     "consistent": consistent_masking}


def make_masking(strategy: str, batch: int, slices: int, positions: int, mask_ratio: float, *, device=None,
                 generator: torch.Generator | None = None) -> Masking:
    """A masking by strategy name (one of :data:`MASKING_STRATEGIES`)."""
    if strategy not in MASKING_FUNCTIONS:
        raise ValueError(f"strategy={strategy!r}: choose one of {MASKING_STRATEGIES}")
    return MASKING_FUNCTIONS[strategy](batch, slices, positions, mask_ratio, device=device, generator=generator)


def visible_per_slice(masking: Masking, slices: int) -> torch.Tensor:
    """``[B, T']``: how many tokens of each time slice are visible."""
    batch, tokens = masking.mask.shape
    return (1.0 - masking.mask).reshape(batch, slices, tokens // slices).sum(2).long()


def unshuffle(visible_and_masked: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """``[B, N, D]`` tokens in shuffled order (visible first, then masked) back in token order."""
    return visible_and_masked.gather(1, ids_restore[..., None].expand(-1, -1, visible_and_masked.shape[-1]))
