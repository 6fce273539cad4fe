"""Losses shared by methods: Rank-N-Contrast and the L1 error of EF predictions.

A method's own objective (CoReEcho's stage-1 loss, ...) lives in its module under
:mod:`echobook.methods` and is built from these.

Rank-N-Contrast (Zha et al., NeurIPS 2023, Eq. 1), for ``n = 2N`` embeddings ``v`` with labels ``y``::

    L = -1/(n(n-1)) * sum_i sum_{k != i} log( exp(s_ik / t) / sum_{j != i, d_ij >= d_ik} exp(s_ij / t) )

with label distance ``d_ij = |y_i - y_j|`` (L1) and similarity ``s_ij = -||v_i - v_j||_2`` (minus the
Euclidean distance: not squared, features not normalised). The denominator of the pair (i, k) runs
over every sample at least as far from the anchor i in label as the positive k, so the loss ranks
the embeddings by label distance.

The reference code loops over k (n-1 Python iterations, each over an ``[n, n-1]`` mask) and takes a
plain ``log(sum(exp(.)))``. In float32, ``exp(-x)`` leaves the normal range past ``x`` of about 87.3
(subnormals keep fewer and fewer bits) and is exactly 0 from about 103.3. So the naive loss first goes
wrong without a word, then returns minus infinity (``log 0``, not plus infinity): the anchor's farthest
sample in label has only itself (and its ties) in its denominator, so a single pair more than about 104
temperature units apart is enough. Sixteen embeddings evenly spread on a line with labels in order, the
farthest pair D apart: at D = 100 the naive loss reads 0.32472 (true 0.32458), at 103 0.3221 (true
0.3244), at 104 minus infinity (``tests/test_losses.py::test_naive_rnc_underflow`` holds these numbers).
Here the loss is vectorised and exact with O(n^2) memory: for each anchor, sort the others by label
distance; the denominator of the sample at sorted position p is the log-sum-exp over the positions
from p's tie group onwards, i.e. a reverse cumulative log-sum-exp read at the first position of p's tie group (ties share one denominator, as ``>=`` requires).
``logcumsumexp`` never underflows to -inf for finite inputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from echobook.metrics import ef_prediction, repeat_per_clip


def label_distances(labels: torch.Tensor) -> torch.Tensor:
    """``[n]`` or ``[n, L]`` labels -> ``[n, n]`` L1 distances (summed over label dimensions)."""
    y = labels.reshape(labels.shape[0], -1)
    return (y[:, None, :] - y[None, :, :]).abs().sum(-1)


def feature_distances(features: torch.Tensor) -> torch.Tensor:
    """``[n, C]`` -> ``[n, n]`` Euclidean distances, computed from differences: the faster
    ``|a|^2 + |b|^2 - 2ab`` form loses precision for nearby points, exactly the pairs that matter."""
    return torch.cdist(features, features, compute_mode="donot_use_mm_for_euclid_dist")


def _drop_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    n = matrix.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return matrix[off_diagonal].reshape(n, n - 1)


def rnc_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Rank-N-Contrast loss (module docstring) of ``features [n, C]`` with ``labels [n]`` or ``[n, L]``.

    Computed in float32 at least (bfloat16 features are upcast: its 8-bit mantissa cannot
    resolve distances between nearby embeddings), returned as a float32 (or float64) scalar.
    """
    _check_rnc_inputs(features, labels, temperature)
    compute_dtype = torch.promote_types(features.dtype, torch.float32)
    f = features.to(compute_dtype)
    logits = _drop_diagonal(-feature_distances(f) / temperature)  # [n, n-1], s_ik / t
    dist = _drop_diagonal(label_distances(labels.to(compute_dtype)))  # [n, n-1], d_ik

    dist_sorted, order = dist.sort(dim=1)  # nearest label first
    logits_sorted = logits.gather(1, order)
    # tail[i, p] = log sum_{q >= p} exp(logits_sorted[i, q])
    tail = logits_sorted.flip(1).logcumsumexp(dim=1).flip(1)
    # the denominator of position p starts where p's tie group starts: the first q with d_q >= d_p
    group_start = torch.searchsorted(dist_sorted, dist_sorted, right=False)
    log_denominator = tail.gather(1, group_start)
    return (log_denominator - logits_sorted).mean()


def _check_rnc_inputs(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must be [n, C], got shape {tuple(features.shape)}")
    if features.shape[0] < 2:
        raise ValueError("Rank-N-Contrast needs at least 2 samples")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"{features.shape[0]} feature rows but {labels.shape[0]} labels")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


class RnCLoss(nn.Module):
    """``RnCLoss(temperature)(features [2N, C], labels [2N])`` -> scalar; see :func:`rnc_loss`.

    CoReEcho uses ``temperature=1``; the Rank-N-Contrast reference defaults to 2.
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return rnc_loss(features, labels, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class L1EFLoss(nn.Module):
    """L1 between EF predictions (a tensor, or the ``ef_percent`` of a multi-output) and ``[B]`` targets, in EF
    points; predictions of ``k`` clips per video (video-major) are compared clip by clip with the labels repeated."""

    def forward(self, pred, ef_percent: torch.Tensor) -> torch.Tensor:
        ef_percent_pred = ef_prediction(pred).float().reshape(-1)
        clips_per_video = ef_percent_pred.numel() // ef_percent.numel()
        return F.l1_loss(ef_percent_pred, repeat_per_clip(ef_percent.float(), clips_per_video))
