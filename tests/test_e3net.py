"""Echo-E3Net: the model's shapes and budget, each Simpson-inspired loss term on hand-made shapes, the objective,
the shift that moves landmarks with the pixels, the recipe, and the saved model with its card."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from echobook.data.landmarks import ANNULUS_LEFT, ANNULUS_RIGHT, APEX, landmark_count, left_wall, right_wall
from echobook.losses import (
    disc_ef_percent, disc_volumes, ef_error, geometric_consistency, landmark_error, long_axis_lengths,
    long_axis_plausibility, volume_error,
)
from echobook.methods import e3net
from echobook.models import count_multiply_adds, count_parameters, create_model, list_models, model_config
from echobook.models.e3net import PARAMETER_BUDGET, E3Net, E3NetConfig, E3NetOutput, E3NetRegressor

CLIP = (2, 1, 4, 32, 32)


# --------------------------------------------------------------------------------------------- hand-made shapes

def cylinder(wall_points=4, diameter=0.2, length=0.5, apex=(0.5, 0.2)):
    """A vertical 'ventricle' with straight walls: every chord has the same diameter."""
    k = landmark_count(wall_points)
    points = torch.zeros(k, 2)
    ax, ay = apex
    fractions = torch.arange(1, wall_points + 1) / (wall_points + 1)
    points[APEX] = torch.tensor([ax, ay])
    points[ANNULUS_LEFT] = torch.tensor([ax - diameter / 2, ay + length])
    points[ANNULUS_RIGHT] = torch.tensor([ax + diameter / 2, ay + length])
    points[left_wall(wall_points)] = torch.stack([torch.full_like(fractions, ax - diameter / 2), ay + length * fractions], 1)
    points[right_wall(wall_points)] = torch.stack([torch.full_like(fractions, ax + diameter / 2), ay + length * fractions], 1)
    return points


def scaled(points, factor):
    """The shape scaled about its apex: lengths x factor, volume x factor^3."""
    return points[APEX] + factor * (points - points[APEX])


def test_disc_volume_of_a_cylinder():
    m, d, length = 4, 0.2, 0.5
    # M discs of height L / (M + 1), each of diameter d (EchoNet's convention leaves one height uncovered)
    expected = m * math.pi / 4 * d ** 2 * length / (m + 1)
    assert float(disc_volumes(cylinder(m, d, length))) == pytest.approx(expected, rel=1e-6)
    assert float(long_axis_lengths(cylinder(m, d, length))) == pytest.approx(length)


def test_disc_ef_of_a_shape_scaled_about_its_apex():
    ed = cylinder()
    for factor in (1.0, 0.9, 0.7):
        pair = torch.stack([ed, scaled(ed, factor)])  # [2, K, 2]: ED, ES
        assert float(disc_ef_percent(pair)) == pytest.approx(100 * (1 - factor ** 3), abs=1e-4)


def test_disc_volume_is_rotation_invariant_and_batched():
    ed = cylinder()
    angle = 0.4
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    rotated = (ed - 0.5) @ rotation.T + 0.5
    both = torch.stack([ed, rotated])
    volumes = disc_volumes(both)
    assert volumes.shape == (2,) and volumes[0] == pytest.approx(float(volumes[1]), rel=1e-5)


def test_ef_error_is_mean_absolute_and_skips_missing_targets():
    pred, true = torch.tensor([50.0, 60.0, 30.0]), torch.tensor([55.0, 58.0, float("nan")])
    assert float(ef_error(pred, true)) == pytest.approx(3.5)


def test_volume_error_is_relative_and_skips_missing_targets():
    pred, true = torch.tensor([110.0, 45.0, 10.0]), torch.tensor([100.0, 50.0, float("nan")])
    assert float(volume_error(pred, true)) == pytest.approx((0.1 + 0.1) / 2)
    nothing = volume_error(pred.requires_grad_(True), torch.full((3,), float("nan")))
    assert float(nothing.detach()) == 0.0
    nothing.backward()  # no target, no NaN: the graph still works
    assert torch.equal(pred.grad, torch.zeros(3))


def test_landmark_error_is_the_mean_distance():
    true = torch.stack([cylinder(), cylinder()])[None]  # [1, 2, K, 2]
    moved = true + torch.tensor([0.03, 0.04])  # every point 0.05 away
    assert float(landmark_error(moved, true)) == pytest.approx(0.05, rel=1e-5)
    partly_missing = true.clone()
    partly_missing[0, 1] = float("nan")  # no ES tracing
    assert float(landmark_error(moved, partly_missing)) == pytest.approx(0.05, rel=1e-5)


def test_geometric_consistency_is_zero_when_landmarks_volumes_and_ef_agree():
    ed = cylinder()
    landmarks = torch.stack([ed, scaled(ed, 0.8)])[None]  # disc EF = 100 (1 - 0.512) = 48.8
    ratio = 0.8 ** 3
    agree = geometric_consistency(landmarks, torch.tensor([100 * (1 - ratio)]), torch.tensor([120.0]),
                                  torch.tensor([120.0 * ratio]))
    assert float(agree) == pytest.approx(0.0, abs=1e-3)
    # EF 5 points off, and volumes whose ratio says EF 10 points off: 5 + 10
    off = geometric_consistency(landmarks, torch.tensor([100 * (1 - ratio) + 5]), torch.tensor([100.0]),
                                torch.tensor([100.0 * ratio - 10.0]))
    assert float(off) == pytest.approx(15.0, rel=1e-4)


def test_long_axis_plausibility():
    ed = cylinder(length=0.5)
    plausible = torch.stack([ed, scaled(ed, 0.9)])[None]
    assert float(long_axis_plausibility(plausible, 0.2, 0.9)) == 0.0
    too_short = torch.stack([scaled(ed, 0.2), scaled(ed, 0.2)])[None]  # both axes 0.1 long
    assert float(long_axis_plausibility(too_short, 0.2, 0.9)) == pytest.approx(2 * 0.1)
    lengthening = torch.stack([ed, scaled(ed, 1.1)])[None]  # ES 0.05 longer than ED
    assert float(long_axis_plausibility(lengthening, 0.2, 0.9)) == pytest.approx(0.05, rel=1e-5)
    with pytest.raises(ValueError, match="min_length"):
        long_axis_plausibility(plausible, 0.9, 0.2)


def fake_output(ef_percent, edv_ml, esv_ml, landmarks, dim=4):
    embeddings = torch.zeros(*landmarks.shape[:-1], dim)
    return E3NetOutput(ef_percent, edv_ml, esv_ml, landmarks, embeddings)


def test_the_objective_weights_every_term_and_ablates_by_name():
    ed = cylinder()
    landmarks = torch.stack([ed, scaled(ed, 0.8)])[None]
    pred = fake_output(torch.tensor([50.0]), torch.tensor([110.0]), torch.tensor([50.0]), landmarks)
    targets = (torch.tensor([45.0]), torch.tensor([100.0]), torch.tensor([50.0]), landmarks + 0.01)
    weights = e3net.SimpsonWeights()
    loss = e3net.E3NetLoss(weights, (0.2, 0.9))
    parts = loss.parts(pred, *targets)
    assert set(parts) == {*e3net.LOSS_TERMS, "total"}
    assert float(parts["ef"]) == pytest.approx(5.0)
    assert float(parts["volume"]) == pytest.approx(0.05)  # (10 % + 0 %) / 2
    assert float(parts["landmark"]) == pytest.approx(0.01 * math.sqrt(2), rel=1e-4)
    weighted = sum(getattr(weights, name) * float(parts[name]) for name in e3net.LOSS_TERMS)
    assert float(parts["total"]) == pytest.approx(weighted, rel=1e-5)
    ef_only = e3net.E3NetLoss(weights.without("volume", "landmark", "consistency", "long_axis"))
    assert float(ef_only(pred, *targets)) == pytest.approx(5.0)
    assert float(loss(pred, targets[0])) == pytest.approx(  # EF alone given: no volume or landmark term
        float(weights.ef * parts["ef"] + weights.consistency * parts["consistency"]), rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss term"):
        weights.without("simpson")


# --------------------------------------------------------------------------------------------- the model

def test_both_variants_are_registered_ef_regressors():
    assert {"e3net_s", "e3net_xs"} <= set(list_models(kind="ef_regressor", family="e3net"))


def test_the_paper_scale_variant_keeps_the_parameter_budget():
    model = create_model("e3net_s")
    assert count_parameters(model) <= PARAMETER_BUDGET
    macs = count_multiply_adds(model, (1, 1, 36, 112, 112))
    assert 1e8 < macs < 8.05e9  # counted, and within the paper's 8.05 G


@pytest.mark.parametrize("variant", ["e3net_xs", "e3net_s"])
def test_output_shapes(variant):
    torch.manual_seed(0)
    config = model_config(variant)
    model = E3Net(config).eval()
    with torch.no_grad():
        out = model(torch.randn(CLIP))
    k = landmark_count(config.wall_points)
    assert isinstance(out, E3NetOutput)
    assert out.ef_percent.shape == out.edv_ml.shape == out.esv_ml.shape == (CLIP[0],)
    assert out.landmarks.shape == (CLIP[0], 2, k, 2)
    assert out.landmark_embeddings.shape == (CLIP[0], 2, k, config.detector_dim)
    assert torch.all((out.landmarks > 0) & (out.landmarks < 1))
    assert torch.all(out.edv_ml > 0) and torch.all(out.esv_ml > 0)


def test_the_registry_model_is_the_same_network_returning_ef():
    torch.manual_seed(0)
    full = E3Net(model_config("e3net_xs")).eval()
    regressor = create_model("e3net_xs").eval()
    assert isinstance(regressor, E3NetRegressor)
    regressor.load_state_dict(full.state_dict())  # same parameter names
    clip = torch.randn(CLIP)
    with torch.no_grad():
        assert torch.equal(regressor(clip), full(clip).ef_percent)
        three_channels = full(clip.expand(-1, 3, -1, -1, -1)).ef_percent
    assert torch.allclose(three_channels, full(clip).ef_percent.detach())  # identical channels averaged


def test_the_detector_starts_at_its_prior_and_keeps_attention():
    torch.manual_seed(0)
    model = E3Net(model_config("e3net_xs")).eval()
    k = model.config.landmarks
    prior = torch.stack([cylinder(model.config.wall_points), scaled(cylinder(model.config.wall_points), 0.8)])
    model.detector.set_prior(prior)
    model.detector.keep_attention()
    with torch.no_grad():
        out = model(torch.randn(CLIP))
    assert torch.allclose(out.landmarks, prior.expand(CLIP[0], 2, k, 2), atol=1e-5)  # the output layer starts at 0
    weights = model.detector.attention()
    tokens = sum(t * h * w for t, h, w in model.tokens.shapes)
    assert weights.shape == (CLIP[0], 2 * k, tokens)
    assert torch.allclose(weights.sum(-1), torch.ones(CLIP[0], 2 * k), atol=1e-5)


def test_bad_input_and_configs_fail_clearly():
    model = E3Net(model_config("e3net_xs"))
    with pytest.raises(ValueError, match="clips"):
        model(torch.randn(2, 4, 32, 32))
    with pytest.raises(ValueError, match="channel"):
        model(torch.randn(2, 2, 4, 32, 32))
    with pytest.raises(ValueError, match="depths"):
        E3NetConfig(dims=(8, 16), depths=(1, 1))
    with pytest.raises(TypeError, match="no field"):
        create_model("e3net_xs", colour=True)
    with pytest.raises(ValueError, match="not an Echo-E3Net"):
        e3net.e3net_model("uniformer_xxs")


# --------------------------------------------------------------------------------------------- method pieces

def test_the_shift_moves_the_landmarks_with_the_pixels():
    height = width = 16
    clips = torch.zeros(3, 1, 2, height, width, dtype=torch.uint8)
    rows, cols = torch.tensor([4, 8, 11]), torch.tensor([5, 9, 3])
    for i in range(3):
        clips[i, 0, :, rows[i], cols[i]] = 255  # one bright pixel per clip, on every frame
    landmarks = torch.stack([cols / width, rows / height], dim=-1).reshape(3, 1, 1, 2).expand(3, 2, 1, 2).clone()
    shifted, moved = e3net.shift_clips_and_landmarks(clips, landmarks, pad_pixels=4,
                                                     generator=torch.Generator().manual_seed(1))
    for i in range(3):
        x, y = (moved[i, 0, 0] * torch.tensor([width, height])).round().long().tolist()
        if 0 <= x < width and 0 <= y < height:
            assert shifted[i, 0, 0, y, x] == 255
    assert not torch.equal(moved, landmarks)  # the seed above moves at least one clip


@pytest.mark.parametrize("size", ["smoke", "small", "full"])
def test_a_recipe_per_size(size):
    r = e3net.recipe(size)
    assert r.model in list_models(family="e3net")
    assert r.wall_points == model_config(r.model).wall_points
    assert r.epochs > 0 and r.ablation_epochs > 0 and r.ablation_seeds >= 1
    # chapter 10 glues the two end rows' MAE: every size trains both
    assert set(r.ablation_rows) <= set(e3net.ABLATION_ROWS)
    assert {"EF only", "full Simpson objective"} <= set(r.ablation_rows)
    assert e3net.SimpsonWeights().without(*e3net.ABLATION_ROWS["full Simpson objective"]) == e3net.SimpsonWeights()
    assert r.learner_kwargs["lr"] == r.learning_rate


def test_low_ef_mae_reads_only_the_low_range():
    assert e3net.low_ef_mae([30, 50, 60], [35, 20, 70]) == pytest.approx((5 + 30) / 2)
    assert math.isnan(e3net.low_ef_mae([50], [60]))


def test_save_and_load_round_trip_with_the_card(tmp_path):
    from echobook.cards import CARD_FILE, MODEL_FILE

    torch.manual_seed(0)
    model = e3net.e3net_model("e3net_xs", mean_ef_percent=58.0).eval()
    card = e3net.e3net_card(model, variant="e3net_xs", size="smoke", seed=0, metrics={"mae": 4.2, "note": "x"},
                            normalisation=(30.0, 40.0), fps=50.0)
    path = e3net.save_e3net(model, card, tmp_path / "run")
    assert path.name == MODEL_FILE and (tmp_path / "run" / CARD_FILE).is_file()
    assert not list((tmp_path / "run").glob(".*.tmp"))  # atomic writes leave no temporaries
    loaded, loaded_card = e3net.load_e3net(tmp_path / "run")
    assert loaded_card["method"] == "e3net" and loaded_card["variant"] == "e3net_xs"
    assert loaded_card["metrics"] == {"mae": 4.2} and loaded_card["seed"] == 0 and loaded_card["git_commit"]
    assert loaded_card["preprocessing"]["clip_frames"] == 8 and loaded_card["preprocessing"]["mean"] == 30.0
    assert loaded.config == model.config
    clip = torch.randn(CLIP)
    with torch.no_grad():
        assert torch.equal(loaded(clip).landmarks, model(clip).landmarks)
        regressor = e3net.build_from_card(loaded_card)  # what `echobook predict` builds: EF only
        regressor.load_state_dict(loaded.state_dict())
        assert torch.equal(regressor.eval()(clip), model(clip).ef_percent)


def test_loading_refuses_another_methods_card_or_weights_of_another_shape(tmp_path):
    from echobook.cards import new_card, save_with_card
    from echobook.training import CheckpointError

    model = e3net.e3net_model("e3net_xs")
    save_with_card(tmp_path / "other", model.state_dict(), new_card(method="coreecho", variant="x", size="smoke", seed=0))
    with pytest.raises(CheckpointError, match="expected an 'e3net' card"):
        e3net.load_e3net(tmp_path / "other")
    card = e3net.e3net_card(model, variant="e3net_xs", size="smoke", seed=0, metrics={}, normalisation=(0, 1))
    card["config"] = dataclasses.asdict(dataclasses.replace(model.config, detector_dim=32))
    save_with_card(tmp_path / "narrow", model.state_dict(), card)
    with pytest.raises(CheckpointError, match="does not fit"):
        e3net.load_e3net(tmp_path / "narrow")
