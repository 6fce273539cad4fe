"""Losses shared by methods: Rank-N-Contrast, the L1 error of EF predictions, and the Simpson-inspired terms of
Echo-E3Net (EF, volume and landmark errors, geometric consistency by the method of discs, a plausible long axis;
see the section at the end).

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


def rnc_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
             anchors: slice | None = None) -> torch.Tensor:
    """Rank-N-Contrast loss (module docstring) of ``features [n, C]`` with ``labels [n]`` or ``[n, L]``.

    Computed in float32 at least (bfloat16 features are upcast: its 8-bit mantissa cannot
    resolve distances between nearby embeddings), returned as a float32 (or float64) scalar.
    ``anchors``: average over these anchors ``i`` only (each still ranked against all ``n`` samples), as a
    rank of a distributed run does with the global batch (:func:`echobook.distributed.global_rnc_loss`).
    """
    _check_rnc_inputs(features, labels, temperature)
    compute_dtype = torch.promote_types(features.dtype, torch.float32)
    f = features.to(compute_dtype)
    logits = _drop_diagonal(-feature_distances(f) / temperature)  # [n, n-1], s_ik / t
    dist = _drop_diagonal(label_distances(labels.to(compute_dtype)))  # [n, n-1], d_ik
    if anchors is not None:
        logits, dist = logits[anchors], dist[anchors]

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


# --------------------------------------------------------------------------------------------- Simpson-inspired terms
# Echo-E3Net's objective (Heidari et al., 2025; chapter 10) supervises EF, the volumes and the landmarks, and asks the
# landmarks' geometry to agree with the predictions. Landmarks are ``[..., K, 2]`` normalised (x, y) points in the
# layout of :mod:`echobook.data.landmarks` (apex, the two annulus ends, then M points on each wall); a batch holds
# ``[B, 2, K, 2]``, ED then ES. A target that is NaN (a video without tracings or without volumes) is left out of
# its term; a term with no target left is 0 (and keeps the graph, so a backward pass still works).

def _masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``keep``; 0 (connected to ``values``) when nothing is kept."""
    keep = keep.to(values.dtype)
    return (torch.nan_to_num(values) * keep).sum() / keep.sum().clamp(min=1.0)


def disc_volumes(landmarks: torch.Tensor) -> torch.Tensor:
    """Single-plane method of discs on landmarks ``[..., K, 2]`` -> volumes ``[...]``, in (frame units)^3.

    The long axis ``L`` runs from the apex to the midpoint of the annulus ends; left and right wall point
    ``j`` are the ends of chord ``j`` (diameter ``d_j``) at ``j / (M + 1)`` of ``L``, so each chord is a disc of
    height ``L / (M + 1)``: ``V = sum_j pi / 4 * d_j^2 * L / (M + 1)`` (EchoNet's convention, as
    :func:`echobook.data.geometry.disc_volume_px3`). Normalised coordinates assume square frames.
    """
    from echobook.data.landmarks import ANNULUS_LEFT, ANNULUS_RIGHT, APEX, left_wall, right_wall, wall_points_of

    wall_points = wall_points_of(landmarks.shape[-2])
    mid = 0.5 * (landmarks[..., ANNULUS_LEFT, :] + landmarks[..., ANNULUS_RIGHT, :])
    length = (mid - landmarks[..., APEX, :]).norm(dim=-1)
    diameters = (landmarks[..., left_wall(wall_points), :] - landmarks[..., right_wall(wall_points), :]).norm(dim=-1)
    return torch.pi / 4 * diameters.square().sum(-1) * length / (wall_points + 1)


def long_axis_lengths(landmarks: torch.Tensor) -> torch.Tensor:
    """Apex to the annulus midpoint, ``[..., K, 2]`` -> ``[...]`` (frame units)."""
    from echobook.data.landmarks import ANNULUS_LEFT, ANNULUS_RIGHT, APEX

    mid = 0.5 * (landmarks[..., ANNULUS_LEFT, :] + landmarks[..., ANNULUS_RIGHT, :])
    return (mid - landmarks[..., APEX, :]).norm(dim=-1)


def disc_ef_percent(landmarks: torch.Tensor) -> torch.Tensor:
    """EF (%) by the method of discs from ``[..., 2, K, 2]`` landmarks (ED, ES): ``100 (1 - V_ES / V_ED)``."""
    volumes = disc_volumes(landmarks)
    return 100.0 * (1.0 - volumes[..., 1] / volumes[..., 0].clamp(min=1e-8))


def ef_error(ef_percent_pred: torch.Tensor, ef_percent: torch.Tensor) -> torch.Tensor:
    """Mean absolute EF error, in EF points (NaN targets left out)."""
    pred, true = ef_percent_pred.float().reshape(-1), ef_percent.float().reshape(-1)
    return _masked_mean((pred - true).abs(), ~torch.isnan(true))


def volume_error(volume_ml_pred: torch.Tensor, volume_ml: torch.Tensor) -> torch.Tensor:
    """Mean *relative* absolute volume error ``|pred - true| / true`` (NaN or non-positive targets left out).

    Relative, so EDV and ESV count alike and the term has no unit: an error of 10 % reads 0.1.
    """
    pred, true = volume_ml_pred.float().reshape(-1), volume_ml.float().reshape(-1)
    keep = ~torch.isnan(true) & (torch.nan_to_num(true) > 0)
    return _masked_mean((pred - true).abs() / torch.nan_to_num(true, nan=1.0).clamp(min=1e-6), keep)


def landmark_error(landmarks_pred: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance between predicted and true landmarks ``[..., K, 2]`` (frame units; a point
    whose target is NaN left out)."""
    distance = (landmarks_pred.float() - landmarks.float()).norm(dim=-1)
    return _masked_mean(distance, ~torch.isnan(landmarks.float()).any(-1))


def geometric_consistency(landmarks_pred: torch.Tensor, ef_percent_pred: torch.Tensor,
                          edv_ml_pred: torch.Tensor, esv_ml_pred: torch.Tensor) -> torch.Tensor:
    """Do the predicted landmarks, volumes and EF tell one story? In EF points, mean over the batch of

    ``|EF_discs - EF_pred| + |100 ESV_pred / EDV_pred - 100 V_ES / V_ED|``

    with ``V`` the disc volumes of the predicted ED and ES landmarks ``[B, 2, K, 2]`` (:func:`disc_volumes`).
    The volumes are compared by their ratio, not in mL: EchoNet-Dynamic gives no pixel spacing, so a disc
    volume in frame units and a volume in mL agree only up to an unknown scale per video. Needs no target.
    """
    disc = disc_volumes(landmarks_pred.float())
    # clamped: a collapsed ED shape early in training must not blow the term up
    disc_ratio = (disc[..., 1] / disc[..., 0].clamp(min=1e-8)).clamp(max=2.0)
    ef_gap = (100.0 * (1.0 - disc_ratio) - ef_percent_pred.float()).abs()
    ratio_gap = 100.0 * (esv_ml_pred.float() / edv_ml_pred.float().clamp(min=1e-6) - disc_ratio).abs()
    return (ef_gap + ratio_gap).mean()


def long_axis_plausibility(landmarks_pred: torch.Tensor, min_length: float = 0.2,
                           max_length: float = 0.95) -> torch.Tensor:
    """A plausible long axis for ``[B, 2, K, 2]`` landmarks (ED, ES): mean of hinge penalties, in frame units,

    - each phase's long axis within ``[min_length, max_length]`` of the frame;
    - the ES long axis no longer than the ED one: the ventricle shortens in systole.

    Zero for any plausible pair; grows linearly with how far a pair strays.
    """
    if not 0 <= min_length < max_length:
        raise ValueError(f"need 0 <= min_length < max_length; got {min_length}, {max_length}")
    lengths = long_axis_lengths(landmarks_pred.float())  # [B, 2]
    outside = F.relu(min_length - lengths) + F.relu(lengths - max_length)
    lengthens = F.relu(lengths[..., 1] - lengths[..., 0])
    return outside.sum(-1).mean() + lengthens.mean()
