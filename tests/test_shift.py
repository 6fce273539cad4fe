"""Spotting distribution shift (echobook.interpret.shift) and chapter 11's comparison pieces (echobook.compare)."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from echobook import compare
from echobook.interpret.shift import MahalanobisDetector, detection_auroc, image_statistics, knn_distance


def gaussian(seed, n, dim, shift=0.0):
    x = np.random.default_rng(seed).normal(size=(n, dim))
    x[:, 0] += shift
    return x


def test_a_known_gaussian_shift_is_detected_and_no_shift_is_chance():
    detector = MahalanobisDetector().fit(gaussian(0, 400, 8))
    inside = detector.score(gaussian(1, 300, 8))
    assert detection_auroc(inside, detector.score(gaussian(2, 300, 8, shift=6.0))) > 0.99
    assert abs(detection_auroc(inside, detector.score(gaussian(3, 300, 8))) - 0.5) < 0.07
    knn_inside = knn_distance(gaussian(0, 400, 8), gaussian(1, 300, 8))
    assert detection_auroc(knn_inside, knn_distance(gaussian(0, 400, 8), gaussian(2, 300, 8, shift=6.0))) > 0.99


def test_mahalanobis_is_the_distance_in_units_of_the_spread():
    reference = gaussian(0, 20000, 3) * np.array([1.0, 2.0, 0.5])
    distance = MahalanobisDetector().fit(reference).score([[3.0, 0, 0], [0, 6.0, 0], [0, 0, 1.5]])
    np.testing.assert_allclose(distance, 3.0, rtol=0.03)


def test_auroc_is_the_chance_a_shifted_recording_scores_higher():
    assert detection_auroc([0, 1, 2], [3, 4]) == 1.0
    assert detection_auroc([3, 4], [0, 1, 2]) == 0.0
    assert detection_auroc([1, 1], [1, 1]) == 0.5  # ties count half
    # a 1-D Gaussian shift of d: Phi(d / sqrt 2)
    rng = np.random.default_rng(0)
    simulated = detection_auroc(rng.normal(size=20000), rng.normal(1.0, size=20000))
    assert abs(simulated - stats.norm.cdf(1 / 2 ** 0.5)) < 0.01


@pytest.mark.parametrize("call, message", [
    (lambda: MahalanobisDetector().fit(np.ones((1, 3))), "reference: 1 recording"),
    (lambda: MahalanobisDetector().fit(np.zeros((0, 3))), "reference: no recordings"),
    (lambda: MahalanobisDetector().fit([[1.0, np.nan], [2.0, 3.0]]), r"reference: rows \[0\] hold NaN"),
    (lambda: MahalanobisDetector().fit(np.ones((4, 2, 2))), "reference: expected a matrix"),
    (lambda: MahalanobisDetector().fit(gaussian(0, 10, 3)).score(np.ones((2, 4))), "features: 4 features .* has 3"),
    (lambda: knn_distance(gaussian(0, 4, 2), gaussian(1, 3, 2), k=5), "k=5: must be an integer from 1 to the 4"),
    (lambda: detection_auroc([], [1.0]), "in_distribution_scores: no recordings"),
    (lambda: detection_auroc([0.1], [np.inf]), "shifted_scores: rows"),
    (lambda: image_statistics(np.zeros((1, 8, 8))), r"frames: expected gray frames .* got shape \(1, 8, 8\)"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_scoring_before_fitting_is_refused():
    with pytest.raises(RuntimeError, match="call fit"):
        MahalanobisDetector().score(np.ones((2, 2)))


def test_image_statistics_see_gain_contrast_motion_and_texture():
    rng = np.random.default_rng(0)
    still = np.full((6, 16, 16), 100, np.uint8)
    mean, sd, change, texture = image_statistics(still)
    assert (mean, sd, change, texture) == (100.0, 0.0, 0.0, 0.0)
    noisy = rng.integers(0, 255, size=(6, 16, 16)).astype(np.uint8)
    stats_noisy = image_statistics(noisy)
    assert stats_noisy[1] > 50 and stats_noisy[2] > 50 and stats_noisy[3] > 50
    assert image_statistics(noisy // 2)[0] < stats_noisy[0]  # a lower gain, a darker mean


def test_each_shift_changes_only_its_own_field_and_keeps_the_hearts():
    for shift in compare.SHIFTS:
        for severity in range(1, len(shift.severities) + 1):
            assert list(shift.overrides(severity)) == [shift.field]
    with pytest.raises(ValueError, match="severity 3; choose 1 to 2"):
        compare.shift_named("view").overrides(3)
    with pytest.raises(ValueError, match="shift 'gain'"):
        compare.shift_named("gain")
    _, plain = compare.synthetic_recordings(5, 3, "smoke")
    _, poor = compare.synthetic_recordings(5, 3, "smoke", **compare.shift_named("image quality").overrides(2))
    assert (poor["quality"] == "Poor").all()
    np.testing.assert_allclose(poor["ef_true"], plain["ef_true"], atol=1e-9)  # the same hearts, shifted


def test_the_comparison_seeds_are_apart_from_the_training_sets():
    seeds = [compare.set_seeds(0, r) for r in range(3)]
    values = [v for s in seeds for v in s.values()]
    assert len(set(values)) == len(values) and min(values) >= compare.COMPARISON_SEED_OFFSET


def test_method_scores_and_error_correlations():
    truth = np.array([30.0, 45.0, 55.0, 60.0, 65.0, 70.0])
    error = np.array([2.0, -1.0, 3.0, -2.0, 1.0, 0.0])
    table = pd.concat([pd.DataFrame({"method": m, "recording": list("abcdef"), "ef_true": truth,
                                     "ef_pred": truth + sign * error, "ef_sd_over_clips": 0.0, "cpu_seconds": 0.01})
                       for m, sign in (("x", 1), ("y", -1))])
    scores = compare.method_scores(table, {"x": 2.0, "y": 1.0})
    assert scores.loc["x", "mae"] == pytest.approx(1.5)
    assert scores.loc["x", "low_ef_mae"] == pytest.approx(2.0)  # the one truth under 40 %
    assert scores.loc["x", "coverage"] == pytest.approx(5 / 6) and scores.loc["y", "coverage"] == pytest.approx(3 / 6)
    assert compare.error_correlations(table).loc["x", "y"] == pytest.approx(-1.0)
    half_widths = compare.conformal_half_widths(table, alpha=0.5)
    assert half_widths["x"] == pytest.approx(np.sort(np.abs(error))[3])  # rank ceil(7 * 0.5) = 4


def test_every_model_runs_through_the_predict_path_and_embeds_a_recording(tmp_path):
    from echobook.cards import ef_preprocessing
    from echobook.config import get_preset
    from echobook.methods.coreecho import coreecho_model

    torch.manual_seed(0)
    preset = get_preset("smoke")
    card = {"method": "coreecho", "variant": "uniformer_xxs",
            "preprocessing": ef_preprocessing(preset, 48.0, 55.0, 32.0)}
    trained = compare.TrainedModel(coreecho_model("uniformer_xxs").eval(), card, tmp_path, trained_here=False)
    recordings, truth = compare.synthetic_recordings(7, 2, "smoke")
    table = compare.predict_methods({"coreecho": trained}, recordings, truth)
    assert list(table["recording"]) == list(truth["recording"]) and np.isfinite(table["ef_pred"]).all()
    assert (table["cpu_seconds"] > 0).all()
    embedding = compare.recording_embedding(trained.model, card, recordings[0])
    assert embedding.shape == (trained.model.encoder.embed_dim,) and np.isfinite(embedding).all()
    assert trained.note == f"loaded from {tmp_path}"


def test_a_missing_model_of_another_data_seed_says_which_chapter_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHOBOOK_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="run chapter 10 first .* -p DATA_SEED 3"):
        compare.load_or_train("e3net", "smoke", 0, data_seed=3)
    with pytest.raises(ValueError, match="method 'echonet'"):
        compare.load_or_train("echonet", "smoke", 0)
