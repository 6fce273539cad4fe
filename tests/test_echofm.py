"""EchoFM: the periodic head, triplet selection and loss, periodicity measures, the learner, the saved encoder,
and the engine's long videos with an irregular rhythm."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from echobook.config import SIZES
from echobook.data.synthetic import SyntheticConfig, make_video, sample_case, synthetic_video_table
from echobook.methods import echofm
from echobook.training import CheckpointError, atomic_save

TINY = echofm.EchoFMRecipe(encoder="videomae_micro", videos=12, video_frames=40, fps=25.0, hr_range=(70.0, 110.0),
                           clip_stride=2, batch_size=4, epochs=1, learning_rate=1e-3, warmup_fraction=0.1,
                           eval_clips_per_video=1)


def periodic_embeddings(slices=8, cycle=4.0, dim=6):
    """Slice embeddings on a circle: slice i at angle 2 pi i / cycle, plus a constant offset (static anatomy)."""
    angle = 2 * math.pi * torch.arange(slices) / cycle
    circle = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return torch.cat([circle, torch.zeros(slices, dim - 2)], dim=1)[None] + 3.0


def test_tssm_of_a_periodic_sequence_follows_the_phase():
    similarity = echofm.tssm(periodic_embeddings())
    phases = (np.arange(8) / 4.0)[None] % 1.0
    assert np.allclose(similarity.numpy(), echofm.phase_similarity(phases), atol=1e-5)
    # without centring, the shared offset makes every pair look alike
    assert echofm.tssm(periodic_embeddings(), centre=False).min() > 0.9


def test_triplets_on_a_periodic_sequence_are_in_phase_positives_and_out_of_phase_negatives():
    prior = echofm.tssm(periodic_embeddings())
    positives, negatives, valid = echofm.select_triplets(prior, neighbours=1)
    assert valid.all()
    for anchor in range(8):
        pos = set(torch.nonzero(positives[0, anchor]).flatten().tolist())
        neg = set(torch.nonzero(negatives[0, anchor]).flatten().tolist())
        in_phase = {j for j in range(8) if j != anchor and (j - anchor) % 4 == 0}  # a whole beat apart
        opposite = {j for j in range(8) if (j - anchor) % 4 == 2}  # half a beat apart
        assert in_phase <= pos and not (pos & opposite) and opposite <= neg
        assert anchor not in neg and not (neg & {anchor - 1, anchor + 1})  # neighbours excluded
        assert not (pos & neg)


def test_the_triplet_loss_on_a_hand_computed_case():
    embeddings = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])  # centre=True moves them; use raw cosines
    positives = torch.tensor([[[False, True, False], [True, False, False], [False, False, False]]])
    negatives = torch.tensor([[[False, False, True], [False, False, True], [False, False, False]]])
    valid = torch.tensor([[True, True, False]])
    unit = torch.nn.functional.normalize(embeddings - embeddings.mean(1, keepdim=True), dim=-1)[0]
    s = unit @ unit.T
    margin = 0.2
    expected = (max(0.0, s[0, 2] - s[0, 1] + margin) + max(0.0, s[1, 2] - s[1, 0] + margin)) / 2
    loss, active = echofm.triplet_loss(embeddings, positives, negatives, valid, margin)
    assert loss.item() == pytest.approx(float(expected), abs=1e-6)
    assert 0.0 <= active.item() <= 1.0
    none_valid, _ = echofm.triplet_loss(embeddings, positives, negatives, torch.zeros_like(valid), margin)
    assert none_valid.item() == 0.0


def test_pixel_prior_removes_static_anatomy_and_finds_the_beat():
    frames = torch.arange(16).float()
    wave = torch.cos(2 * math.pi * frames / 8.0)  # a beat every 8 frames = 4 slices of 2
    pattern = torch.rand(1, 1, 1, 8, 8)
    clips = 100.0 * torch.rand(1, 1, 1, 8, 8) + pattern * wave[None, None, :, None, None]
    prior = echofm.pixel_similarity(clips, slices=8)
    assert prior.shape == (1, 8, 8)
    assert prior[0, 0, 4] > 0.9 and prior[0, 0, 2] < -0.9


def test_periodicity_scores_of_the_truth_and_of_noise():
    phases = np.stack([np.mod(np.arange(16) / (2 * c), 1.0) for c in (3.5, 4.2, 5.0)])
    truth = echofm.phase_similarity(echofm.slice_phases(phases, 8))
    perfect = echofm.periodicity_scores(truth, phases, tubelet_frames=2)
    assert perfect["correlation"] == pytest.approx(1.0) and perfect["recovered"] == 1.0
    assert np.allclose(perfect["true_cycle"], [3.5, 4.2, 5.0])
    flat = np.broadcast_to(np.eye(8), (3, 8, 8)).copy()
    assert echofm.periodicity_scores(flat, phases, 2)["correlation"] == 0.0
    decaying = np.exp(-np.abs(np.subtract.outer(np.arange(8), np.arange(8))))[None].repeat(3, 0)
    assert np.isnan(echofm.cycle_length_slices(decaying)).all()  # no beat: no cycle length


def test_the_model_checks_its_options():
    with pytest.raises(ValueError, match="masking='random'"):
        echofm.echofm_model("videomae_micro", masking="random")
    with pytest.raises(ValueError, match="positives="):
        echofm.echofm_model("videomae_micro", positives="labels")
    assert echofm.echofm_model("videomae_micro", periodic=False, masking="random").projector is None
    with pytest.raises(ValueError, match="slices=3"):
        echofm.SliceProjector(8, 2)(torch.randn(1, 8, 8), slices=3)


@pytest.fixture(scope="module")
def tiny_tables():
    table = synthetic_video_table(0, TINY.videos, echofm.pretraining_video_config(TINY, 32))
    return table.subset(["TRAIN", "VAL"]), table.subset("TEST")


@pytest.mark.parametrize("periodic,positives", [(True, "self"), (True, "pixel"), (False, "self")])
def test_the_learner_steps_on_a_tiny_batch(tiny_tables, periodic, positives):
    train, test = tiny_tables
    dls = echofm.pretraining_dataloaders(train, test, TINY, device="cpu")
    torch.manual_seed(0)
    parts = echofm.LossParts()
    learn = echofm.echofm_learner(dls, TINY, periodic=periodic, positives=positives, cbs=[parts])
    clips, _ = dls.train.one_batch()
    assert clips.shape == (4, 1, 16, 32, 32) and 0.0 <= float(clips.min()) and float(clips.max()) <= 1.0
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, cbs=[_StopAfterTwoBatches()])  # the warm-up's first step has a rate of 0
    assert len(parts.rows) == 2 and math.isfinite(parts.rows[0]["total"])
    assert (parts.rows[0]["triplet"] > 0) == periodic or parts.rows[0]["active"] == 0
    changed = [k for k, v in learn.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("mae.encoder.blocks") for k in changed)
    assert any(k.startswith("projector") for k in changed) == periodic
    groups = learn.opt.opt.param_groups
    assert [g["weight_decay"] for g in groups] == [echofm.ECHOFM_WEIGHT_DECAY, 0.0]
    assert all(p.ndim <= 1 for p in groups[1]["params"]) and all(p.ndim > 1 for p in groups[0]["params"])
    assert groups[0]["betas"] == echofm.ECHOFM_BETAS


class _StopAfterTwoBatches(echofm.Callback):
    order = 99

    def after_batch(self):
        from fastai.callback.core import CancelFitException
        if self.iter == 1:
            raise CancelFitException


def test_held_out_clips_carry_the_phase_of_their_own_frames(tiny_tables):
    _, test = tiny_tables
    clips, phases = echofm.held_out_clips(test, TINY)
    assert clips.shape == (len(test), 1, 16, 32, 32) and phases.shape == (len(test), 16)
    start = 0  # one clip per video: the first eval start
    assert np.array_equal(phases[0], test.phases[0][start:start + 31:2])
    assert np.allclose(clips[0, 0].numpy(), test.video(0)[start:start + 31:2] / 255.0)
    model = echofm.echofm_model("videomae_micro")
    scores = echofm.periodicity(model, clips, phases)
    assert -1.0 <= scores["correlation"] <= 1.0 and 0.0 <= scores["recovered"] <= 1.0
    assert echofm.reconstruction_loss(model, clips) == echofm.reconstruction_loss(model, clips)  # same masks


def test_the_encoder_is_saved_with_its_card_and_loads_back(tmp_path):
    torch.manual_seed(0)
    model = echofm.echofm_model("videomae_micro")
    path = echofm.save_pretrained_encoder(model, size="smoke", seed=3, variant="echofm-pixel", recipe_used=TINY,
                                          path=tmp_path / "enc")
    encoder, card = echofm.load_pretrained_encoder(path=path)
    assert card["size"] == "smoke" and card["seed"] == 3 and card["variant"] == "echofm-pixel" and card["git_commit"]
    clips = torch.rand(2, 1, 16, 32, 32)
    assert torch.allclose(encoder(clips), model.encoder.eval()(clips), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="run chapter 8"):
        echofm.load_pretrained_encoder(path=tmp_path / "missing")
    broken = torch.load(path / "model.pth", weights_only=True)
    broken["model"].pop("norm.weight")
    atomic_save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="norm.weight"):
        echofm.load_pretrained_encoder(path=tmp_path / "broken.pth")
    assert echofm.pretrained_encoder_path("small", 2).name == "echofm-small-seed2"
    assert echofm.pretrained_encoder_path("small", 2, data_seed=2).name == "echofm-small-seed2"  # DATA_SEED follows SEED
    assert echofm.pretrained_encoder_path("small", 2, data_seed=0).name == "echofm-small-seed2-data0"


def test_a_model_of_another_synthetic_set_has_its_own_folder():
    from echobook.cards import model_folder
    from echobook.config import setup
    from echobook.methods import e3net

    cfg = setup("smoke", "", 1, "cpu", data_seed=0, verbose=False)
    folders = {model_folder("coreecho", "smoke", 1), model_folder("coreecho", "smoke", 1, cfg.data_seed),
               model_folder("coreecho", "smoke", 1, 1), e3net.model_folder("smoke", 1, 0)}
    assert {f.name for f in folders} == {"coreecho-smoke-seed1", "coreecho-smoke-seed1-data0", "e3net-smoke-seed1-data0"}
    assert echofm.videomae_encoder_path("smoke", 1, 0) != echofm.videomae_encoder_path("smoke", 1)


def test_every_size_has_a_recipe_whose_clips_fit_its_encoder():
    for size in SIZES:
        r = echofm.recipe(size)
        assert r.config.clip_frames == r.clip_frames and r.clip_frames * r.clip_stride <= r.video_frames
        beat_slices = [60.0 * r.fps / hr / r.frames_per_slice for hr in r.hr_range]
        assert 3.0 <= min(beat_slices) and max(beat_slices) < r.config.temporal_tokens  # the TSSM can show a beat
    assert echofm.recipe("full").encoder == "videomae_base"
    assert echofm.lr_for_batch(64) == pytest.approx(2.5e-4)


# ------------------------------------------------------------------ the engine: irregular rhythm, phases kept

SMALL = SyntheticConfig(image_size=32, frames=48, fps_range=(25.0, 25.0), hr_range=(70.0, 110.0))


def test_an_irregular_rhythm_varies_the_beats_and_keeps_the_rest_of_the_heart():
    regular, irregular = make_video(0, 3, SMALL), make_video(0, 3, dataclasses.replace(SMALL, rr_irregularity=0.25))
    case_regular, _ = sample_case(0, 3, SMALL)
    case_irregular, _ = sample_case(0, 3, dataclasses.replace(SMALL, rr_irregularity=0.25))
    assert case_regular.beat_times_s is None and case_irregular.beat_times_s is not None
    same = {f.name for f in dataclasses.fields(case_regular)} - {"beat_times_s"}
    for name in same:
        assert np.array_equal(np.asarray(getattr(case_regular, name)), np.asarray(getattr(case_irregular, name)))
    rr = np.diff(case_irregular.beat_times_s)
    assert rr.std() / rr.mean() > 0.1 and rr.min() >= 0.5 * 60 / case_irregular.heart_rate_bpm - 1e-9
    assert not np.array_equal(regular.phase, irregular.phase) and regular.frames.shape == irregular.frames.shape
    beats = np.unwrap(2 * np.pi * irregular.phase) / (2 * np.pi)
    assert np.all(np.diff(beats) > 0) and 0 <= irregular.phase.min() and irregular.phase.max() < 1


def test_the_rhythm_option_is_validated():
    for bad in (-0.1, 0.6, "0.2", True):
        with pytest.raises(ValueError, match="rr_irregularity"):
            SyntheticConfig(rr_irregularity=bad)


def test_a_synthetic_table_keeps_phases_through_subsets():
    table = synthetic_video_table(1, 6, SMALL)
    assert np.isnan(table.ef_percent).all() and len(table.phases) == 6
    test = table.subset("TEST")
    index = table.names.index(test.names[0])
    assert np.array_equal(test.phases[0], table.phases[index]) and np.array_equal(test.video(0), table.video(index))
    only_test = synthetic_video_table(1, 6, SMALL, split="TEST")
    assert only_test.names == test.names and np.array_equal(only_test.video(0), test.video(0))
    assert not np.isnan(synthetic_video_table(1, 3, SMALL, labelled=True).ef_percent).any()
    with pytest.raises(ValueError, match="videos"):
        synthetic_video_table(1, 0, SMALL)
