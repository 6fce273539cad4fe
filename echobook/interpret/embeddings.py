"""Encoder embeddings of a dataset, their 2-D projections and how continuously they order EF.

CoReEcho's claim (Maani et al., MICCAI 2024) is that Rank-N-Contrast makes the embedding space
*continuous* in EF: videos lie along a curve ordered by EF instead of in clusters. Its repository
shows this with ``umap.UMAP(n_components=2, n_neighbors=5, init='random', random_state=0)``
(``coreecho/viz.py``); here the same projection, a PCA for comparison, and three numbers that say
how continuous an embedding is:

- ``rho_leading``: |Spearman rho| between EF and the leading 1-D coordinate (PCA's first
  component, or a 1-D UMAP): 1 when the embedding orders videos by EF along one direction;
- ``knn_mae_percent``: the MAE of EF estimated by the mean of the ``k`` nearest neighbours in the
  embedding (leave-one-out): small when neighbours share their EF;
- ``trustworthiness``: :func:`sklearn.manifold.trustworthiness` of a projection, in [0, 1]: how
  far its neighbourhoods are real ones of the embedding (so the picture can be believed).

umap-learn compiles with numba on its first import (~17 s), so it is imported only inside
:func:`umap_projection`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# coreecho/viz.py: umap.UMAP(n_components=2, n_neighbors=5, init='random', random_state=0)
COREECHO_UMAP = {"n_neighbors": 5, "init": "random", "random_state": 0}
DEFAULT_NEIGHBOURS = 5  # the k of the kNN estimate and of trustworthiness, as UMAP's n_neighbors


@dataclass
class Embeddings:
    """Per-video embeddings ``[V, D]`` with their true and predicted EF ``[V]`` (%)."""

    embeddings: np.ndarray
    ef_true: np.ndarray
    ef_pred: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def ef_error(self) -> np.ndarray | None:
        """Predicted minus true EF (%), or None without predictions."""
        return None if self.ef_pred is None else self.ef_pred - self.ef_true


# --------------------------------------------------------------------------------------------- extraction

def encoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """The embedding part of a model and its EF head: ``model.encoder``/``model.head`` for an
    :class:`~echobook.models.EncoderWithHead` (CoReEcho), else the model itself and no head."""
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, nn.Module):
        return encoder, getattr(model, "head", None)
    return model, None


def clip_position(video_index: np.ndarray) -> np.ndarray:
    """The rank of each clip within its video (0, 1, 2 for three test-time clips), clips video-major."""
    video_index = np.asarray(video_index)
    first = np.searchsorted(video_index, video_index, side="left")  # sorted: each video's first item
    return np.arange(len(video_index)) - first


@torch.no_grad()
def clip_embeddings(model: nn.Module, loader, device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings ``[N, D]`` and head predictions ``[N]`` (or None) of every clip the loader yields, in order.

    Runs batched on ``device`` (default: the loader's device), where the model is moved and stays;
    results come back on the CPU.
    """
    encoder, head = encoder_and_head(model)
    device = torch.device(device or getattr(loader, "device", None) or "cpu")
    was_training = model.training
    model.to(device).eval()  # BatchNorm/Dropout in eval mode: deterministic embeddings
    embeddings, predictions = [], []
    try:
        for clips, *_ in loader:
            features = encoder(clips.to(device))
            embeddings.append(features.float().cpu())
            if head is not None:
                predictions.append(head(features).float().reshape(-1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(embeddings), (torch.cat(predictions) if predictions else None)


def extract_embeddings(model: nn.Module, loader, *, clip: int | str = "average", device=None) -> Embeddings:
    """Per-video embeddings of an :func:`~echobook.data.clips.eval_dataloader` (or a ``dls.valid``).

    ``clip="average"``: the mean over each video's test-time clips of the embeddings and of the
    predictions (CoReEcho's 3-clip averaging); an integer ``k``: the ``k``-th clip of each video only.
    All clips are embedded either way (one pass over the loader), then selected.
    """
    from echobook.data.clips import average_per_video

    dataset = loader.dataset
    video_index = dataset.video_index
    features, predictions = clip_embeddings(model, loader, device)
    if clip == "average":
        features = average_per_video(features, video_index)
        predictions = None if predictions is None else average_per_video(predictions, video_index)
    else:
        chosen = clip_position(video_index) == int(clip)
        if chosen.sum() != len(dataset.ef_percent):
            raise ValueError(f"clip={clip!r}: every video needs that many test-time clips "
                             f"(this loader has {int(clip_position(video_index).max()) + 1} per video)")
        features = features[torch.from_numpy(chosen)]
        predictions = None if predictions is None else predictions[torch.from_numpy(chosen)]
    return Embeddings(features.numpy(), np.asarray(dataset.ef_percent, dtype=np.float32),
                      None if predictions is None else predictions.numpy())


# --------------------------------------------------------------------------------------------- projections

def pca_projection(embeddings: np.ndarray, n_components: int = 2, random_state: int = 0) -> np.ndarray:
    """``[N, D] -> [N, n_components]`` by PCA, components ordered by explained variance."""
    from sklearn.decomposition import PCA

    return PCA(n_components=n_components, random_state=random_state).fit_transform(np.asarray(embeddings))


def umap_projection(embeddings: np.ndarray, n_components: int = 2, **umap_kwargs) -> np.ndarray:
    """``[N, D] -> [N, n_components]`` by UMAP with CoReEcho's settings (overridable by keyword).

    n_neighbors is clipped to N - 1 so that small sets work. The first call in a fresh Python
    compiles umap-learn with numba (about 17 s; about 2 s later, from numba's cache).
    """
    settings = {**COREECHO_UMAP, **umap_kwargs}
    embeddings = np.asarray(embeddings, dtype=np.float32)
    settings["n_neighbors"] = max(2, min(settings["n_neighbors"], len(embeddings) - 1))
    torch_threads = torch.get_num_threads()
    try:
        import umap  # heavy: see the module docstring

        return umap.UMAP(n_components=n_components, **settings).fit_transform(embeddings)
    finally:
        # numba's OpenMP pool (umap-learn's) sets the OpenMP runtime torch shares to one thread per core: a kernel
        # given one thread (`make book`, `echobook ledger --jobs 2`) then fought the other chapter for the cores,
        # and chapter 6's Grad-CAM after UMAP ran 4 times slower (2.7 s against 10.6 s for six test videos)
        torch.set_num_threads(torch_threads)


def project(embeddings: np.ndarray, method: str = "umap", n_components: int = 2, **kwargs) -> np.ndarray:
    """A projection by name: ``"umap"`` or ``"pca"``."""
    if method == "umap":
        return umap_projection(embeddings, n_components, **kwargs)
    if method == "pca":
        return pca_projection(embeddings, n_components, **kwargs)
    raise ValueError(f"method={method!r}: choose 'umap' or 'pca'")


# --------------------------------------------------------------------------------------------- continuity

def spearman_abs_rho(coordinate: np.ndarray, ef_percent: np.ndarray) -> float:
    """|Spearman rho| between a 1-D coordinate and EF: the sign of a projection's axis is arbitrary."""
    from scipy.stats import spearmanr

    return float(abs(spearmanr(np.asarray(coordinate).reshape(-1), np.asarray(ef_percent).reshape(-1)).statistic))


def leading_coordinate(embeddings: np.ndarray, method: str = "pca", **kwargs) -> np.ndarray:
    """The leading 1-D coordinate ``[N]``: PCA's first component or a 1-D UMAP.

    A 1-D UMAP with CoReEcho's 5 neighbours may tear a continuous curve into pieces laid out in any
    order (a torn line of 40 points scored |rho| 0.33 here); pass ``n_neighbors=15`` or more for it.
    """
    return project(embeddings, method, n_components=1, **kwargs)[:, 0]


def knn_ef_mae(embeddings: np.ndarray, ef_percent: np.ndarray, k: int = DEFAULT_NEIGHBOURS) -> float:
    """MAE (%) of EF estimated as the mean EF of each point's ``k`` nearest other points (leave-one-out).

    ``k`` is clipped below N / 2 (as for trustworthiness): with k = N - 1 every point's "neighbours"
    would be all the others, and the score would be the same for any embedding.
    """
    from sklearn.neighbors import NearestNeighbors

    embeddings, ef_percent = np.asarray(embeddings), np.asarray(ef_percent, dtype=np.float64)
    if len(embeddings) < 3 or k < 1:
        raise ValueError(f"the kNN EF estimate needs k >= 1 and at least 3 points, got k={k}, {len(embeddings)} points")
    k = min(k, (len(embeddings) - 1) // 2)
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(embeddings).kneighbors(embeddings)
    # Leave each point out. Among exact duplicates it need not come first, so drop it wherever it
    # is, or the farthest neighbour where it was not returned at all.
    others = neighbours != np.arange(len(embeddings))[:, None]
    others[others.all(axis=1), -1] = False
    neighbours = neighbours[others].reshape(len(embeddings), k)
    return float(np.mean(np.abs(ef_percent[neighbours].mean(axis=1) - ef_percent)))


def trustworthiness(embeddings: np.ndarray, projection: np.ndarray, k: int = DEFAULT_NEIGHBOURS) -> float:
    """:func:`sklearn.manifold.trustworthiness` with ``k`` neighbours (clipped below N / 2, as it requires)."""
    from sklearn.manifold import trustworthiness as sklearn_trustworthiness

    k = max(1, min(k, (len(embeddings) - 1) // 2))
    return float(sklearn_trustworthiness(np.asarray(embeddings), np.asarray(projection), n_neighbors=k))


def continuity_scores(embeddings: np.ndarray, ef_percent: np.ndarray, *, projection: np.ndarray | None = None,
                      leading: str = "pca", k: int = DEFAULT_NEIGHBOURS) -> dict[str, float]:
    """How continuously an embedding orders EF: ``rho_leading``, ``knn_mae_percent`` and, given a
    2-D ``projection``, its ``trustworthiness`` (see the module docstring). ``leading``: ``"pca"``
    (fast) or ``"umap"`` (a 1-D UMAP) for the leading coordinate."""
    scores = {
        "rho_leading": spearman_abs_rho(leading_coordinate(embeddings, leading), ef_percent),
        "knn_mae_percent": knn_ef_mae(embeddings, ef_percent, k),
    }
    if projection is not None:
        scores["trustworthiness"] = trustworthiness(embeddings, projection, k)
    return scores
