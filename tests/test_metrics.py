"""EF regression metrics against hand-computed values, and the fastai metric's clip averaging."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import sklearn.metrics
import torch

from echobook.methods.coreecho import Stage1Output
from echobook.metrics import (
    EFMetric, average_clips, ef_metrics, mae_percent, pearson_r2, r2_score, regression_metrics, rmse_percent,
)

TRUE = [40.0, 50.0, 60.0, 70.0]


def test_hand_values():
    pred = [42.0, 48.0, 63.0, 70.0]  # errors 2, -2, 3, 0
    assert mae_percent(pred, TRUE) == pytest.approx(7 / 4)
    assert rmse_percent(pred, TRUE) == pytest.approx(np.sqrt(17 / 4))
    # SS_res = 17, SS_tot = 225 + 25 + 25 + 225 = 500
    assert r2_score(pred, TRUE) == pytest.approx(1 - 17 / 500)
    assert r2_score(pred, TRUE) == pytest.approx(sklearn.metrics.r2_score(TRUE, pred))


def test_r2_and_squared_pearson_differ_on_a_biased_prediction():
    biased = [t + 10.0 for t in TRUE]  # perfectly correlated, every prediction 10 points high
    assert pearson_r2(biased, TRUE) == pytest.approx(1.0)
    # SS_res = 4 * 100 = 400, SS_tot = 500
    assert r2_score(biased, TRUE) == pytest.approx(1 - 400 / 500)
    scaled = [2 * t for t in TRUE]
    assert pearson_r2(scaled, TRUE) == pytest.approx(1.0)
    assert r2_score(scaled, TRUE) < 0  # worse than predicting the mean


def test_mean_prediction_scores_zero_r2_and_nan_pearson():
    mean = [np.mean(TRUE)] * 4
    assert r2_score(mean, TRUE) == pytest.approx(0.0)
    assert np.isnan(pearson_r2(mean, TRUE))


def test_regression_metrics_takes_tensors_and_returns_all():
    values = regression_metrics(torch.tensor(TRUE, dtype=torch.bfloat16), np.array(TRUE))
    assert set(values) == {"mae", "rmse", "r2", "pearson_r2"}
    assert values["mae"] == 0.0  # 40..70 are exact in bfloat16
    assert all(isinstance(v, float) for v in values.values())


def test_bad_input():
    with pytest.raises(ValueError, match="3 predictions for 4 targets"):
        mae_percent([1, 2, 3], TRUE)
    with pytest.raises(ValueError, match="no predictions"):
        rmse_percent([], [])
    with pytest.raises(KeyError):
        EFMetric("accuracy")


def test_average_clips_is_video_major():
    pred = torch.tensor([10.0, 20.0, 30.0, 50.0])  # video 0: 10, 20; video 1: 30, 50
    assert average_clips(pred, 2).tolist() == [15.0, 40.0]
    with pytest.raises(ValueError):
        average_clips(pred, 3)


def _fake_learn(pred, target, video_index=None):
    dataset = SimpleNamespace(video_index=video_index) if video_index is not None else None
    return SimpleNamespace(pred=pred, yb=(target,), dl=SimpleNamespace(dataset=dataset))


def test_fastai_metric_averages_stage1_clips_and_items_per_video():
    mae, r2 = ef_metrics(("mae", "r2"))
    # two batches of a fixed 3-item-per-video loader: items 0-2 video 0 (EF 40), items 3-5 video 1 (EF 60)
    video_index = np.array([0, 0, 0, 1, 1, 1])
    batches = [(torch.tensor([38.0, 41.0, 44.0, 50.0]), torch.tensor([40.0, 40.0, 40.0, 60.0])),
               (torch.tensor([60.0, 70.0]), torch.tensor([60.0, 60.0]))]
    for metric in (mae, r2):
        metric.reset()
        for pred, target in batches:
            metric.accumulate(_fake_learn(pred, target, video_index))
    # per video: (38+41+44)/3 = 41 vs 40; (50+60+70)/3 = 60 vs 60
    assert mae.value == pytest.approx(0.5)
    assert r2.value == pytest.approx(1 - 1 / 200)

    # stage-1 output: two clips per video, averaged before anything else; no video index: per item
    metric = EFMetric("mae")
    metric.accumulate(_fake_learn(Stage1Output(torch.zeros(4, 8), torch.tensor([30.0, 34.0, 70.0, 80.0])),
                                  torch.tensor([30.0, 70.0])))
    assert metric.value == pytest.approx((2 + 5) / 2)
