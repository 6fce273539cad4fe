"""echobook.interpret: continuity scores, Grad-CAM for video, the focus score, widgets and their static figures."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from echobook.interpret import embeddings as emb

# --------------------------------------------------------------------------------------------- embeddings


def line_embeddings(n: int = 60, dim: int = 16, seed: int = 0):
    """Points on a straight line in ``dim`` dimensions, placed by their EF."""
    rng = np.random.default_rng(seed)
    ef_percent = rng.uniform(20, 80, n)
    direction = rng.normal(size=dim)
    return ef_percent[:, None] * direction + rng.normal(size=dim), ef_percent


def test_a_line_ordered_by_ef_is_perfectly_continuous():
    points, ef_percent = line_embeddings()
    scores = emb.continuity_scores(points, ef_percent, projection=emb.pca_projection(points))
    assert scores["rho_leading"] == pytest.approx(1.0)
    assert scores["knn_mae_percent"] < 1.5  # neighbours on a line at ~1 % EF spacing
    assert scores["trustworthiness"] == pytest.approx(1.0)


def test_noise_is_not_continuous():
    rng = np.random.default_rng(1)
    points, ef_percent = rng.normal(size=(200, 16)), rng.uniform(20, 80, 200)
    scores = emb.continuity_scores(points, ef_percent)
    assert scores["rho_leading"] < 0.2
    # a kNN estimate from unrelated neighbours is about as bad as guessing the spread
    assert scores["knn_mae_percent"] > 12


def test_knn_leave_one_out_does_not_see_itself():
    points = np.array([[0.0], [0.0], [10.0], [10.0]])  # exact duplicates
    ef_percent = np.array([30.0, 40.0, 60.0, 70.0])
    assert emb.knn_ef_mae(points, ef_percent, k=1) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="k="):
        emb.knn_ef_mae(points, ef_percent, k=4)


def test_clip_position_counts_within_each_video():
    assert emb.clip_position(np.array([0, 0, 0, 1, 1, 1, 2])).tolist() == [0, 1, 2, 0, 1, 2, 0]


def tiny_eval_loader(videos: int = 3, frames: int = 12, size: int = 32, clip_frames: int = 8):
    from echobook.data.clips import ClipDataset, VideoStore, clip_dataloader

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (frames, size, size), dtype=np.uint8) for _ in range(videos)]
    dataset = ClipDataset(VideoStore(arrays=arrays), np.linspace(30, 70, videos), clip_frames, 1, train=False)
    return clip_dataloader(dataset, batch_size=4, mean=128.0, std=64.0, device="cpu")


def tiny_coreecho_model():
    from echobook.learners import coreecho_model

    torch.manual_seed(0)
    return coreecho_model("uniformer_xxs")


def test_extract_embeddings_averages_or_picks_test_time_clips():
    loader, model = tiny_eval_loader(), tiny_coreecho_model()
    per_clip, per_clip_ef = emb.clip_embeddings(model, loader)
    assert per_clip.shape == (9, model.encoder.embed_dim) and per_clip_ef.shape == (9,)

    averaged = emb.extract_embeddings(model, loader)
    assert averaged.embeddings.shape == (3, model.encoder.embed_dim) and len(averaged) == 3
    np.testing.assert_allclose(averaged.embeddings[1], per_clip[3:6].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(averaged.ef_pred[1], per_clip_ef[3:6].mean().item(), rtol=1e-5)
    np.testing.assert_allclose(averaged.ef_true, [30, 50, 70])
    assert averaged.ef_error.shape == (3,)

    last = emb.extract_embeddings(model, loader, clip=2)
    np.testing.assert_allclose(last.embeddings[0], per_clip[2].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="test-time clips"):
        emb.extract_embeddings(model, loader, clip=3)


def test_projections_by_name():
    points, _ = line_embeddings(n=30)
    assert emb.project(points, "pca").shape == (30, 2)
    with pytest.raises(ValueError, match="umap"):
        emb.project(points, "tsne")


@pytest.mark.slow
def test_umap_projection_keeps_a_line_ordered():
    points, ef_percent = line_embeddings(n=40)
    projection = emb.umap_projection(points)  # CoReEcho's settings: n_neighbors=5
    assert projection.shape == (40, 2)
    assert emb.trustworthiness(points, projection) > 0.9  # neighbourhoods kept ...
    assert emb.knn_ef_mae(projection, ef_percent) < 4  # ... so neighbours share their EF
    # a 1-D UMAP with 5 neighbours may tear a curve into pieces; with more it keeps the order
    assert emb.spearman_abs_rho(emb.leading_coordinate(points, "umap", n_neighbors=15), ef_percent) > 0.9
