"""Transfer to CAMUS and HMC-QU: preprocessing, augmentation, folds, learners, scores."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from echobook.config import SIZES
from echobook.metrics import classification_metrics, pearson_r
from echobook.methods import transfer
from echobook.methods.transfer import (
    TransferSet, camus_scores, centre_crop, cross_validate, finetune_learner, fit_quietly, hmcqu_scores,
    load_encoder, probe_learner, random_affine, resample_time_cubic, stratified_folds, transfer_dataloaders,
)
from echobook.training import atomic_save

ENCODER = "uniformer_xxs"


def tiny_set(task: str = "regression", count: int = 12, frames: int = 4, size: int = 32, seed: int = 0) -> TransferSet:
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 256, size=(count, frames, size, size), dtype=np.uint8)
    if task == "regression":
        targets = rng.uniform(20, 70, count).astype(np.float32)
        groups = np.array(["Good", "Medium", "Poor"])[np.arange(count) % 3]
    else:
        targets = (np.arange(count) % 3 != 0).astype(np.float32)  # two MI for each normal
        groups = np.where(targets > 0, "MI", "normal")
    return TransferSet(clips, targets, groups, [f"item{i}" for i in range(count)], task)


# --------------------------------------------------------------------------------------------- preprocessing

def test_cubic_spline_keeps_a_linear_ramp_linear():
    ramp = (10 + 20 * np.arange(7, dtype=np.float32))[:, None, None] * np.ones((1, 3, 2), np.float32)
    resampled = resample_time_cubic(ramp, 16)
    expected = np.linspace(10, 130, 16, dtype=np.float32)[:, None, None] * np.ones((1, 3, 2), np.float32)
    np.testing.assert_allclose(resampled, expected, atol=1e-4)


def test_cubic_spline_edges_and_short_inputs():
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 255, (9, 4, 4)).astype(np.float32)
    out = resample_time_cubic(frames, 5)
    np.testing.assert_allclose(out[[0, -1]], frames[[0, -1]], atol=1e-4)  # ends kept
    np.testing.assert_allclose(resample_time_cubic(frames, 9), frames, atol=1e-3)  # same count: the frames
    np.testing.assert_allclose(resample_time_cubic(frames[:2], 3)[1], frames[:2].mean(0), atol=1e-4)
    assert resample_time_cubic(frames[:1], 4).shape == (4, 4, 4)
    with pytest.raises(ValueError, match="n_frames"):
        resample_time_cubic(frames, 0)


def test_centre_crop_takes_the_middle_square():
    frames = np.zeros((2, 60, 90), np.uint8)
    frames[:, 6:54, 21:69] = 7
    cropped = centre_crop(frames, 0.8)
    assert cropped.shape == (2, 48, 48) and np.all(cropped == 7)
    with pytest.raises(ValueError):
        centre_crop(frames, 0)


def test_transfer_set_checks_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        TransferSet(np.zeros((3, 2, 4, 4), np.uint8), np.zeros(2), np.array(["a"] * 3), ["a", "b", "c"], "regression")


# --------------------------------------------------------------------------------------------- augmentation

def test_random_affine_is_identity_without_change_and_shared_by_frames():
    clips = torch.rand(3, 1, 5, 16, 16)
    same = random_affine(clips, rotation_deg=0.0, scale=(1.0, 1.0), translate_fraction=0.0)
    torch.testing.assert_close(same, clips, atol=1e-5, rtol=0)
    still = clips[:, :, :1].expand(-1, -1, 5, -1, -1).contiguous()  # five equal frames per clip
    moved = random_affine(still, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(moved, still)
    torch.testing.assert_close(moved, moved[:, :, :1].expand_as(moved))  # one transform for every frame
    assert moved[0].abs().sum() != 0 and not torch.allclose(moved[0], moved[1])  # per clip


def test_loaders_normalise_with_training_statistics_and_augment_only_training():
    train, valid = tiny_set(count=9), tiny_set(count=4, seed=1)
    dls = transfer_dataloaders(train, valid, batch_size=4, device="cpu")
    mean, std = dls.normalisation
    assert mean == pytest.approx(train.clips.mean()) and std == pytest.approx(train.clips.std())
    clips, targets = dls.valid.one_batch()
    assert tuple(clips.shape) == (4, 1, 4, 32, 32) and clips.dtype == torch.float32
    expected = (torch.from_numpy(valid.clips[:4]).float()[:, None] - mean) / std
    torch.testing.assert_close(clips, expected)  # no augmentation in validation
    assert len(dls.train) == 2  # 9 items, batches of 4, the last partial one dropped


# --------------------------------------------------------------------------------------------- folds

def test_stratified_folds_keep_the_class_balance():
    labels = np.array([1] * 20 + [0] * 10)
    folds = stratified_folds(labels, 5, seed=3)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(30))  # every item tested exactly once
    for train, test in folds:
        assert set(train).isdisjoint(test)
        assert labels[test].sum() == 4 and len(test) == 6  # 2:1 in every fold
    with pytest.raises(ValueError, match="n_folds"):
        stratified_folds(labels, 1)


def test_rare_strata_are_merged_rather_than_refused():
    strata = ["a"] * 10 + ["b"] * 10 + ["c"]  # one item of c cannot be in 3 folds
    folds = stratified_folds(strata, 3)
    assert sum(len(test) for _, test in folds) == 21


# --------------------------------------------------------------------------------------------- learners

def test_probing_leaves_the_encoder_weights_and_batchnorm_statistics_unchanged():
    torch.manual_seed(0)
    encoder = transfer.scratch_encoder(ENCODER)
    train = tiny_set(count=8)
    dls = transfer_dataloaders(train, tiny_set(count=4, seed=1), batch_size=4, device="cpu")
    learn = probe_learner(dls, encoder, train, lr=1e-2)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    fit_quietly(learn, 2)
    after = learn.model.state_dict()
    encoder_keys = [k for k in before if k.startswith("encoder.")]
    assert any("running_mean" in k for k in encoder_keys)  # BatchNorm statistics are among them
    assert all(torch.equal(before[k], after[k]) for k in encoder_keys)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))
    # the encoder handed in is never touched: each fold starts from a copy
    assert all(torch.equal(v, encoder.state_dict()[k[len("encoder."):]]) for k, v in before.items()
               if k.startswith("encoder."))


def test_fine_tuning_trains_the_encoder_with_madgrad():
    from madgrad import MADGRAD

    torch.manual_seed(0)
    encoder = transfer.scratch_encoder(ENCODER)
    train = tiny_set("classification", count=8)
    dls = transfer_dataloaders(train, tiny_set("classification", count=3, seed=1), batch_size=4, device="cpu")
    learn = finetune_learner(dls, encoder, train, lr=1e-3)
    fit_quietly(learn, 1)
    assert isinstance(learn.opt.opt, MADGRAD)
    changed = [k for k, v in learn.model.encoder.state_dict().items()
               if v.dtype.is_floating_point and not torch.equal(v, encoder.state_dict()[k])]
    assert changed
    assert isinstance(learn.loss_func, torch.nn.BCEWithLogitsLoss)
    # the head starts at the training set's log-odds of MI
    assert transfer.transfer_model(encoder, train).head[-1].bias.item() == pytest.approx(np.log(5 / 3), rel=1e-4)


def test_cross_validation_predicts_every_item_once():
    torch.manual_seed(0)
    data = tiny_set(count=12)
    folds = stratified_folds(transfer.camus_strata(data), 2)
    predictions = cross_validate(data, folds, transfer.scratch_encoder(ENCODER), "probe", epochs=1, lr=1e-2,
                                 batch_size=4, device="cpu")
    assert sorted(predictions["name"]) == sorted(data.names)
    assert set(predictions["fold"]) == {0, 1}
    with pytest.raises(ValueError, match="strategy"):
        cross_validate(data, folds, transfer.scratch_encoder(ENCODER), "distil", epochs=1, lr=1, batch_size=4)


def test_load_encoder_from_a_whole_model_checkpoint(tmp_path):
    from echobook.models import CoReEchoRegressor, EncoderWithHead

    torch.manual_seed(1)
    encoder = transfer.scratch_encoder(ENCODER)
    model = EncoderWithHead(encoder, CoReEchoRegressor(encoder.embed_dim))
    atomic_save({"model": model.state_dict()}, tmp_path / "best.pth")
    loaded = load_encoder(tmp_path / "best.pth", ENCODER)
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(ValueError, match="do not fit the encoder 'uniformer_xs'"):
        load_encoder(tmp_path / "best.pth", "uniformer_xs")


# --------------------------------------------------------------------------------------------- scores

def test_classification_metrics_of_a_known_confusion_matrix():
    true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    pred = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]  # TP 3, FN 1, FP 1, TN 5
    scores = classification_metrics(pred, true)
    assert scores["sensitivity"] == pytest.approx(75.0) and scores["specificity"] == pytest.approx(500 / 6)
    assert scores["precision"] == pytest.approx(75.0) and scores["f1"] == pytest.approx(75.0)
    assert scores["accuracy"] == pytest.approx(80.0)
    with pytest.raises(ValueError, match="binary"):
        classification_metrics([2, 0], [1, 0])


def test_camus_and_hmcqu_scores_per_fold_and_pooled():
    camus = pd.DataFrame({"fold": [0, 0, 1, 1, 1], "group": ["Good", "Poor", "Medium", "Poor", "Good"],
                          "target": [40.0, 50, 60, 30, 55], "output": [42.0, 45, 61, 35, 50]})
    scores = camus_scores(camus)
    pooled = transfer.pooled(scores).set_index("group")
    good_medium = camus[camus["group"] != "Poor"]
    assert pooled.loc["Good+Medium", "mae"] == pytest.approx((2 + 1 + 5) / 3)
    assert pooled.loc["Good+Medium", "r"] == pytest.approx(pearson_r(good_medium["output"], good_medium["target"]))
    assert pooled.loc["Poor", "n"] == 2 and len(transfer.per_fold(scores)) == 4
    hmcqu = pd.DataFrame({"fold": [0, 0, 1, 1], "target": [1.0, 0, 1, 0], "output": [3.0, -2, -1, -4]})
    scores = hmcqu_scores(hmcqu)
    assert transfer.pooled(scores).loc[0, "accuracy"] == pytest.approx(75.0)
    assert transfer.per_fold(scores).loc[0, "accuracy"] == pytest.approx(100.0)


def test_a_recipe_for_every_size():
    for size in SIZES:
        recipe = transfer.recipe(size)
        assert recipe.camus_folds >= 2 and recipe.hmcqu_folds >= 2
    full = transfer.recipe("full")
    assert (full.camus_frames, full.camus_image_size, full.hmcqu_frames, full.hmcqu_image_size) == (16, 112, 12, 224)
