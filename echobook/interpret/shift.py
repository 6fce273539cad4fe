"""Spotting distribution shift without labels: how far a recording lies from the ones a model was trained on.

Two kinds of per-recording features, one detector:

- **the model's own embedding** (CoReEcho's encoder output, averaged over the recording's clips): what the model
  computes anyway, so a recording it has never seen the like of sits far from the training embeddings;
- **model-free image statistics** (:func:`image_statistics`: brightness, contrast, frame-to-frame change, fine
  texture), which need no model at all.

:class:`MahalanobisDetector` fits a mean and a shrunk covariance (scikit-learn's Ledoit-Wolf estimator: stable when
the features outnumber the reference recordings) to the in-distribution reference features and scores a new
recording by its Mahalanobis distance to them; :func:`knn_distance` is the non-parametric alternative (the mean
distance to the ``k`` nearest reference recordings). :func:`detection_auroc` judges a score by how well it ranks
shifted recordings above in-distribution ones (0.5: no better than chance; 1: every shifted recording scores
higher than every in-distribution one).
"""
from __future__ import annotations

import numpy as np

from echobook.interpret.embeddings import DEFAULT_NEIGHBOURS  # k of the kNN distance, as of chapter 6's kNN estimate

IMAGE_STATISTICS = ("mean_gray", "gray_sd", "frame_change", "fine_texture")  # what image_statistics returns, in order


def feature_matrix(values, name: str = "features", width: int | None = None) -> np.ndarray:
    """``values`` as a finite float64 matrix ``[N, D]`` (a vector is one feature per row), or a ValueError naming
    ``name`` and what is wrong with it."""
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise ValueError(f"{name}: expected a matrix [recordings, features]; got shape {matrix.shape}")
    if len(matrix) == 0:
        raise ValueError(f"{name}: no recordings")
    if not np.isfinite(matrix).all():
        rows = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
        raise ValueError(f"{name}: rows {rows[:5].tolist()} hold NaN or infinite values")
    if width is not None and matrix.shape[1] != width:
        raise ValueError(f"{name}: {matrix.shape[1]} features per recording; the reference has {width}")
    return matrix


class MahalanobisDetector:
    """Mahalanobis distance to in-distribution reference features, with a Ledoit-Wolf covariance.

    ``MahalanobisDetector().fit(reference).score(features)``: ``[N]`` distances (in units of the reference's
    spread: about ``sqrt(D)`` for a recording like the reference ones).
    """

    def __init__(self):
        self.covariance_ = None

    def fit(self, reference) -> "MahalanobisDetector":
        from sklearn.covariance import LedoitWolf

        reference = feature_matrix(reference, "reference")
        if len(reference) < 2:
            raise ValueError(f"reference: {len(reference)} recording; a covariance needs at least 2")
        self.covariance_ = LedoitWolf().fit(reference)
        self.width_ = reference.shape[1]
        return self

    def score(self, features) -> np.ndarray:
        if self.covariance_ is None:
            raise RuntimeError("MahalanobisDetector: call fit(reference) before score(features)")
        features = feature_matrix(features, "features", self.width_)
        return np.sqrt(np.maximum(self.covariance_.mahalanobis(features), 0.0))  # sklearn gives the squared one


def knn_distance(reference, features, k: int = DEFAULT_NEIGHBOURS) -> np.ndarray:
    """``[N]`` mean Euclidean distance of each row of ``features`` to its ``k`` nearest rows of ``reference``."""
    from sklearn.neighbors import NearestNeighbors

    reference = feature_matrix(reference, "reference")
    features = feature_matrix(features, "features", reference.shape[1])
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(reference):
        raise ValueError(f"k={k!r}: must be an integer from 1 to the {len(reference)} reference recordings")
    distances, _ = NearestNeighbors(n_neighbors=int(k)).fit(reference).kneighbors(features)
    return distances.mean(axis=1)


def image_statistics(frames) -> np.ndarray:
    """``[4]`` model-free statistics of a recording's gray frames ``[T, H, W]`` (:data:`IMAGE_STATISTICS`): mean gray
    level (gain), its standard deviation (contrast), the mean absolute change between consecutive frames (how much
    moves from one frame to the next: frame rate and heart rate), and the mean absolute Laplacian of the first frame
    (fine texture: speckle grain and noise)."""
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] < 2 or min(frames.shape[1:]) < 3:
        raise ValueError(f"frames: expected gray frames [T >= 2, H >= 3, W >= 3]; got shape {frames.shape}")
    gray = frames.astype(np.float32)
    change = float(np.abs(np.diff(gray, axis=0)).mean())
    texture = float(np.abs(cv2.Laplacian(gray[0], cv2.CV_32F)).mean())
    return np.array([gray.mean(), gray.std(), change, texture], dtype=np.float64)


def detection_auroc(in_distribution_scores, shifted_scores) -> float:
    """Area under the ROC curve of a score telling shifted recordings (positives) from in-distribution ones: the
    chance that a shifted recording scores higher than an in-distribution one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    inside = feature_matrix(in_distribution_scores, "in_distribution_scores", 1).ravel()
    shifted = feature_matrix(shifted_scores, "shifted_scores", 1).ravel()
    labels = np.r_[np.zeros(len(inside)), np.ones(len(shifted))]
    return float(roc_auc_score(labels, np.r_[inside, shifted]))


__all__ = ["DEFAULT_NEIGHBOURS", "IMAGE_STATISTICS", "MahalanobisDetector", "detection_auroc", "feature_matrix",
           "image_statistics", "knn_distance"]
