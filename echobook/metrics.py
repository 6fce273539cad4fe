"""Metrics of ejection-fraction (EF) regression, as plain functions and as fastai metrics.

Every function takes predictions and targets in EF percent (arrays, lists or tensors of the same
length) and returns a float:

- :func:`mae_percent`, :func:`rmse_percent`: mean absolute and root mean squared error, in EF points.
- :func:`r2_score`: the coefficient of determination ``1 - SS_res / SS_tot`` (scikit-learn's
  ``r2_score``, also what CoReEcho reports through ``torcheval``). It punishes bias and scale
  errors: predicting the targets' mean scores 0, and a worse guess scores below 0.
- :func:`pearson_r2`: the squared Pearson correlation. EchoNet-Dynamic's R analysis script reports
  this one as "R2". It is blind to bias and scale: ``pred = 2 * true + 10`` scores 1.0 although every
  prediction is wrong. It equals :func:`r2_score` only for the least-squares line through the
  points, so a paper's "R2" must say which of the two it is before two numbers are compared.

:func:`regression_metrics` returns all of them in one dict.

Segmentation (chapter 9): :func:`segmentation_scores` gives Dice, IoU, HD95 and ASSD per image and structure of
label maps (MONAI's metrics, with the empty-mask conventions stated at that section), and
:func:`summarise_segmentation` their means per structure.

The fastai metrics (:func:`ef_metrics`) take either a plain EF prediction ``[N]`` or the stage-1
output of :mod:`echobook.methods.coreecho` (a tuple whose ``ef_percent`` is ``[k * B]``: ``k`` clips per
video, video-major), average the ``k`` clips of each video, and with ``per_video=True`` also average
the items of the validation set that belong to one video (the fixed test-time clips of
``ClipDataset``, read from the loader's ``dataset.video_index``).
"""
from __future__ import annotations

import numpy as np
import sklearn.metrics
import torch
from fastai.learner import Metric

METRIC_NAMES = ("mae", "rmse", "r2", "pearson_r2")


def as_numpy(values) -> np.ndarray:
    """A flat float64 array from a tensor (any device or dtype), array or sequence."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred, true = as_numpy(pred), as_numpy(true)
    if pred.shape != true.shape:
        raise ValueError(f"{pred.size} predictions for {true.size} targets")
    if pred.size == 0:
        raise ValueError("no predictions to score")
    return pred, true


def mae_percent(pred, true) -> float:
    """Mean absolute error, in EF points."""
    pred, true = _pair(pred, true)
    return float(np.abs(pred - true).mean())


def rmse_percent(pred, true) -> float:
    """Root mean squared error, in EF points."""
    pred, true = _pair(pred, true)
    return float(np.sqrt(np.square(pred - true).mean()))


def r2_score(pred, true) -> float:
    """Coefficient of determination (scikit-learn's ``r2_score(true, pred)``); see the module doc."""
    pred, true = _pair(pred, true)
    if pred.size < 2:
        return float("nan")  # undefined for one sample; sklearn warns and returns nan too
    return float(sklearn.metrics.r2_score(true, pred))


def pearson_r2(pred, true) -> float:
    """Squared Pearson correlation (EchoNet-Dynamic's "R2"); nan when either side is constant."""
    pred, true = _pair(pred, true)
    if pred.size < 2 or pred.std() == 0 or true.std() == 0:
        return float("nan")
    return float(np.corrcoef(pred, true)[0, 1] ** 2)


def pearson_r(pred, true) -> float:
    """Pearson correlation coefficient (CoReEcho's CAMUS table reports it); nan when either side is constant."""
    pred, true = _pair(pred, true)
    if pred.size < 2 or pred.std() == 0 or true.std() == 0:
        return float("nan")
    return float(np.corrcoef(pred, true)[0, 1])


def classification_metrics(pred_labels, true_labels) -> dict[str, float]:
    """Sensitivity (recall of class 1), specificity (recall of class 0), precision, F1 and accuracy, in %,
    of binary labels (scikit-learn); a ratio with a zero denominator is 0 (scikit-learn's ``zero_division``)."""
    pred, true = _pair(pred_labels, true_labels)
    if not set(np.unique(np.concatenate([pred, true])).tolist()) <= {0.0, 1.0}:
        raise ValueError("classification_metrics takes binary labels 0/1")
    pred, true = pred.astype(int), true.astype(int)
    scores = {
        "sensitivity": sklearn.metrics.recall_score(true, pred, pos_label=1, zero_division=0),
        "specificity": sklearn.metrics.recall_score(true, pred, pos_label=0, zero_division=0),
        "precision": sklearn.metrics.precision_score(true, pred, zero_division=0),
        "f1": sklearn.metrics.f1_score(true, pred, zero_division=0),
        "accuracy": sklearn.metrics.accuracy_score(true, pred),
    }
    return {name: 100.0 * float(value) for name, value in scores.items()}


METRIC_FUNCTIONS = {"mae": mae_percent, "rmse": rmse_percent, "r2": r2_score, "pearson_r2": pearson_r2}


def regression_metrics(pred, true) -> dict[str, float]:
    """``{"mae", "rmse", "r2", "pearson_r2"}`` of EF predictions against targets (module doc)."""
    return {name: fn(pred, true) for name, fn in METRIC_FUNCTIONS.items()}


# --------------------------------------------------------------------------------------------- fastai

def ef_prediction(pred) -> torch.Tensor:
    """The EF tensor of a model's output: the tensor itself, or the ``ef_percent`` of a stage-1 output."""
    if isinstance(pred, torch.Tensor):
        return pred
    if hasattr(pred, "ef_percent"):
        return pred.ef_percent
    raise TypeError(f"expected an EF tensor or an output with `ef_percent`, got {type(pred).__name__}")


def flatten_clips(clips: torch.Tensor) -> torch.Tensor:
    """``[B, k, C, F, H, W]`` -> ``[k*B, C, F, H, W]``, the ``k`` clips of a video next to each other (video-major)."""
    return clips.reshape(-1, *clips.shape[2:])


def repeat_per_clip(ef_percent: torch.Tensor, clips_per_video: int) -> torch.Tensor:
    """``[B]`` labels -> ``[k*B]`` in the order of :func:`flatten_clips`."""
    return ef_percent.reshape(-1).repeat_interleave(clips_per_video)


def average_clips(ef_percent_pred: torch.Tensor, videos: int) -> torch.Tensor:
    """``[k * videos]`` predictions, ``k`` consecutive clips per video (video-major) -> ``[videos]``."""
    ef_percent_pred = ef_percent_pred.reshape(-1)
    if ef_percent_pred.numel() % videos:
        raise ValueError(f"{ef_percent_pred.numel()} predictions do not split evenly over {videos} videos")
    return ef_percent_pred.reshape(videos, -1).mean(1)


def _average_by_index(values: np.ndarray, video_index: np.ndarray) -> np.ndarray:
    counts = np.bincount(video_index)
    sums = np.bincount(video_index, weights=values, minlength=len(counts))
    present = counts > 0  # a video with no item (never in a well-formed index) is left out
    return sums[present] / counts[present]


class EFMetric(Metric):
    """One EF metric over a whole validation pass, computed once at the end (R2 and RMSE are not
    averages of per-batch values).

    ``per_video``: items of one video (same ``dataset.video_index``) are averaged first, as at test time.
    """

    def __init__(self, name: str, per_video: bool = True):
        if name not in METRIC_FUNCTIONS:
            raise KeyError(f"unknown EF metric {name!r}; choose one of {METRIC_NAMES}")
        self.metric_name, self.fn, self.per_video = name, METRIC_FUNCTIONS[name], per_video
        self.reset()

    def reset(self):
        self.preds, self.targets, self.video_index = [], [], None

    def accumulate(self, learn):
        target = learn.yb[0].detach().reshape(-1)
        pred = average_clips(ef_prediction(learn.pred).detach().float(), target.numel())
        self.preds.append(pred.cpu())
        self.targets.append(target.float().cpu())
        if self.video_index is None:
            self.video_index = getattr(getattr(learn.dl, "dataset", None), "video_index", None)

    def per_video_values(self) -> tuple[np.ndarray, np.ndarray]:
        """(predictions, targets) per video, or per item when no usable video index is known."""
        pred, true = as_numpy(torch.cat(self.preds)), as_numpy(torch.cat(self.targets))
        index = None if self.video_index is None else np.asarray(self.video_index, dtype=np.int64)
        if self.per_video and index is not None and len(index) == len(pred):
            return _average_by_index(pred, index), _average_by_index(true, index)
        return pred, true

    @property
    def value(self):
        if not self.preds:
            return None
        return self.fn(*self.per_video_values())

    @property
    def name(self):
        return self.metric_name


def ef_metrics(names=("mae", "rmse", "r2"), per_video: bool = True) -> list[EFMetric]:
    """fastai metrics for a Learner, e.g. ``Learner(..., metrics=ef_metrics())``."""
    return [EFMetric(name, per_video) for name in names]


# --------------------------------------------------------------------------------------------- uncertainty
def conformal_half_width(residuals, alpha: float = 0.1) -> float:
    """Split-conformal half-width: with ``residuals = |pred - true|`` of ``n`` calibration videos, the
    ``ceil((n + 1)(1 - alpha))``-th smallest, so that ``[pred - w, pred + w]`` covers a new video's truth with
    probability at least ``1 - alpha`` when it is exchangeable with the calibration set (inf when ``n`` is too
    small for that level)."""
    residuals = np.sort(np.abs(as_numpy(residuals)).astype(np.float64).ravel())
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha}: must be in (0, 1)")
    rank = int(np.ceil((len(residuals) + 1) * (1 - alpha)))
    return float("inf") if rank > len(residuals) else float(residuals[rank - 1])


def interval_coverage(pred, true, half_width: float) -> float:
    """Share of videos whose truth lies within ``pred +- half_width``."""
    pred, true = _pair(pred, true)
    return float(np.mean(np.abs(pred - true) <= half_width))


# --------------------------------------------------------------------------------------------- segmentation
# Dice, IoU, HD95 and ASSD per structure of label maps, from MONAI's implementations. The conventions for empty
# masks (a structure absent from the prediction, the truth or both) are ours, set explicitly after MONAI's:
# - both empty: Dice 1, IoU 1, HD95 0, ASSD 0 (nothing to find, nothing found: a perfect answer);
# - one empty: Dice 0, IoU 0, HD95 NaN, ASSD NaN (a distance to nothing is undefined). A table reports the
#   distances' mean over the images where both masks exist and says how many had one side empty
#   (:func:`summarise_segmentation`), rather than inventing a distance such as the image diagonal.
SEGMENTATION_METRICS = ("dice", "iou", "hd95", "assd")


def _one_hot_images(labels, classes: tuple[int, ...]) -> torch.Tensor:
    """``[N, H, W]`` (or ``[H, W]``) integer label maps -> float one-hot ``[N, len(classes), H, W]``."""
    maps = torch.as_tensor(np.asarray(labels))
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"label maps must be [N, H, W] (or one [H, W]); got shape {tuple(maps.shape)}")
    return torch.stack([(maps == c) for c in classes], dim=1).float()


def segmentation_scores(pred_labels, true_labels, classes: tuple[int, ...] = (1, 2, 3),
                        mm_per_pixel=None) -> dict[str, np.ndarray]:
    """Dice, IoU, HD95 and ASSD ``[N, len(classes)]`` of predicted against true label maps ``[N, H, W]``, one
    row per image and one column per class value (default CAMUS's LV cavity 1, myocardium 2, LA 3).

    Distances are in pixels, or in mm when ``mm_per_pixel`` (a number, or one per image) is given: HD95 is the
    symmetric 95th percentile of the border-to-border distances (MONAI's ``compute_hausdorff_distance``,
    ``percentile=95``), ASSD the mean of both directions' distances together (``compute_average_surface_distance``,
    ``symmetric=True``). Empty masks follow the conventions in the comment above this section."""
    import warnings

    from monai.metrics import (
        compute_average_surface_distance, compute_dice, compute_hausdorff_distance, compute_iou,
    )

    pred, true = _one_hot_images(pred_labels, classes), _one_hot_images(true_labels, classes)
    if pred.shape != true.shape:
        raise ValueError(f"predicted label maps {tuple(pred.shape)} and true ones {tuple(true.shape)} differ in shape")
    pred_empty, true_empty = pred.sum((2, 3)) == 0, true.sum((2, 3)) == 0
    with warnings.catch_warnings():  # MONAI warns of every empty mask (the conventions below handle them) and,
        warnings.simplefilter("ignore", UserWarning)  # from 1.5 on, of a deprecated argument it passes itself
        warnings.simplefilter("ignore", FutureWarning)
        scores = {
            "dice": compute_dice(pred, true, include_background=True, ignore_empty=False),
            "iou": compute_iou(pred, true, include_background=True, ignore_empty=False),
            "hd95": compute_hausdorff_distance(pred, true, include_background=True, percentile=95),
            "assd": compute_average_surface_distance(pred, true, include_background=True, symmetric=True),
        }
    both, one = pred_empty & true_empty, pred_empty ^ true_empty
    scale = torch.ones(len(pred), 1) if mm_per_pixel is None else torch.as_tensor(
        np.broadcast_to(np.asarray(mm_per_pixel, dtype=np.float32), (len(pred),)).copy())[:, None]
    for name in ("dice", "iou"):
        scores[name] = torch.where(both, 1.0, torch.where(one, 0.0, scores[name].float()))
    for name in ("hd95", "assd"):
        scores[name] = torch.where(both, 0.0, torch.where(one, float("nan"), scores[name].float() * scale))
    return {name: value.double().numpy() for name, value in scores.items()}


def summarise_segmentation(scores: dict[str, np.ndarray], names: dict[int, str] | list[str]) -> dict[str, dict]:
    """Per structure: the mean and std of each metric over the images (distances over the images where both
    masks exist) and ``one_empty``, how many images had one side empty. ``names``: the column names, in order."""
    names = list(names.values()) if isinstance(names, dict) else list(names)
    summary = {}
    for column, name in enumerate(names):
        row = {}
        for metric in SEGMENTATION_METRICS:
            values = scores[metric][:, column]
            finite = values[np.isfinite(values)]
            row[metric] = float(finite.mean()) if finite.size else float("nan")
            row[f"{metric}_std"] = float(finite.std()) if finite.size else float("nan")
        row["one_empty"] = int(np.isnan(scores["hd95"][:, column]).sum())
        summary[name] = row
    return summary
