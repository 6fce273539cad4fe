"""Chapter 9's package pieces (echobook.methods.echofm, downstream): the views and their anatomy, the clips around
ED and ES, the view and segmentation learners on tiny data, EF from masks, label efficiency, the saved model."""
import dataclasses

import numpy as np
import pytest
import torch

from echobook.data.labels import LV_CAVITY, VIEW_CLASSES
from echobook.methods import echofm

R = echofm.recipe("smoke")
D = dataclasses.replace(echofm.downstream_recipe("smoke"), hearts=5, batch_size=2, view_epochs=1, seg_epochs=1,
                        efficiency_steps=2)


@pytest.fixture(scope="module")
def data():
    return echofm.downstream_set(R, D, seed=0)


def test_every_heart_in_every_view_with_its_labels(data):
    assert data.views == VIEW_CLASSES and len(data) == D.hearts * len(VIEW_CLASSES)
    assert data.frames.shape == (len(data), R.clip_frames, R.image_size, R.image_size) == data.labels.shape
    for heart in np.unique(data.heart_id):
        views = data.subset(data.heart_id == heart)
        assert sorted(views.view_names) == sorted(VIEW_CLASSES)
        assert len(set(views.splits)) == 1  # a heart never straddles two splits
        assert np.ptp(views.ef_percent) < 1e-6  # one heart, one physiology: the same EF in every view
    present = {view: set(np.unique(data.of_views([view]).labels)) for view in VIEW_CLASSES}
    assert present["A4C"] == present["A2C"] == {0, 1, 2, 3}
    assert 3 not in present["PSAX"]  # a short-axis slice shows no atrium


def test_clips_hold_ed_and_es_and_the_lv_shrinks_between_them(data):
    assert np.all((0 <= data.ed_frame) & (data.ed_frame < data.es_frame) & (data.es_frame < R.clip_frames))
    apical = data.of_views(echofm.APICAL_VIEWS)
    ed_maps, es_maps = echofm.ed_es_maps(apical.labels, apical)
    ed_area, es_area = (ed_maps == LV_CAVITY).sum((1, 2)), (es_maps == LV_CAVITY).sum((1, 2))
    assert np.all(es_area < ed_area)
    with pytest.raises(ValueError, match="holds ED 3 and ES 30"):
        echofm.clip_window(3, 30, 24, 16)


def test_ef_from_the_true_masks_is_close_to_the_truth_and_empty_masks_give_nan(data):
    apical = data.of_views(echofm.APICAL_VIEWS)
    ef = echofm.ef_from_label_maps(apical.labels, apical)
    # 32-pixel masks, and one EF per heart for both views (the engine's, from its finer A4C contour): a few points
    assert np.mean(np.abs(ef["ef_percent"] - apical.ef_percent)) < 5
    biplane = echofm.biplane_ef_from_label_maps(apical.labels, apical)
    assert len(biplane["heart_id"]) == D.hearts and np.all(np.isfinite(biplane["ef_percent"]))
    empty = echofm.ef_from_label_maps(np.zeros_like(apical.labels), apical)
    assert np.isnan(empty["ef_percent"]).all()
    assert echofm.ef_agreement(empty["ef_percent"], apical.ef_percent)["untraced"] == len(apical)


def test_the_probe_keeps_the_encoder_and_fine_tuning_changes_it(data):
    dls = echofm.downstream_dataloaders(data.subset("TRAIN"), data.subset("VAL"), "view", batch_size=4,
                                        device="cpu")
    torch.manual_seed(0)
    encoder = echofm.downstream_encoder("random", "smoke", 0)[0]
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    for probe in (True, False):
        learn = echofm.view_learner(dls, echofm.copy_encoder(encoder), len(VIEW_CLASSES), D, probe=probe)
        head_before = learn.model.head[1].weight.detach().clone()
        echofm.fit_quietly(learn, 1)
        unchanged = all(torch.equal(before[k], v) for k, v in learn.model.encoder.state_dict().items())
        assert unchanged == probe
        assert not torch.equal(head_before, learn.model.head[1].weight)
        predicted = echofm.predict_views(learn.model, data.subset("TEST"))
        assert predicted.shape == (len(data.subset("TEST")),) and set(predicted) <= set(range(len(VIEW_CLASSES)))


def test_segmentation_learner_label_subsets_and_the_saved_model(data, tmp_path):
    from echobook.runs import load_trained

    apical = data.of_views(echofm.APICAL_VIEWS)
    train, valid, test = apical.subset("TRAIN"), apical.subset("VAL"), apical.subset("TEST")
    dls = echofm.downstream_dataloaders(train, valid, "labels", batch_size=2, device="cpu", steps_per_epoch=3)
    assert len(dls.train) == 3  # an epoch of exactly the steps asked for, the clips repeated in turn
    torch.manual_seed(0)
    learn = echofm.fit_quietly(echofm.segmentation_learner(dls, echofm.downstream_encoder("random", "smoke", 0)[0],
                                                           D), 1)
    assert np.isfinite(learn.recorder.values[-1][:2]).all()
    labels = echofm.predict_labels(learn.model, test)
    assert labels.shape == test.labels.shape and labels.dtype == np.uint8
    summary = echofm.segmentation_report(labels, test)["summary"]
    assert set(summary) == {"LV cavity", "LV myocardium", "LA"} and 0 <= summary["LA"]["dice"] <= 1

    half = echofm.label_subset(train, 0.5, seed=1)
    assert set(np.unique(half.heart_id)) < set(np.unique(train.heart_id)) or len(np.unique(train.heart_id)) <= 2
    assert all(np.sum(half.heart_id == h) == 2 for h in np.unique(half.heart_id))  # both views of a heart
    with pytest.raises(ValueError, match="fraction"):
        echofm.label_subset(train, 0.0, seed=0)

    folder = echofm.save_segmentation_model(learn.model, size="smoke", seed=0, encoder_start="random",
                                            metrics={"dice_LV cavity": summary["LV cavity"]["dice"]}, clip_fps=12.5,
                                            path=tmp_path / "seg")
    model, card = load_trained(folder)
    assert card["method"] == "echofm-seg" and card["preprocessing"]["clip_frames"] == R.clip_frames
    assert np.array_equal(echofm.predict_labels(model, test), labels)


def test_label_efficiency_gives_one_row_per_run(data):
    apical = data.of_views(echofm.APICAL_VIEWS)
    encoders = {"random": echofm.downstream_encoder("random", "smoke", 0)[0]}
    table = echofm.label_efficiency(apical.subset("TRAIN"), apical.subset("VAL"), apical.subset("TEST"), encoders, D,
                                    fractions=(0.5, 1.0), seeds=1, device="cpu")
    assert list(table["fraction"]) == [0.5, 1.0] and (table["steps"] == D.efficiency_steps).all()
    assert table["dice mean"].between(0, 1).all()


def test_a_saved_encoder_is_loaded_and_another_epoch_count_is_pretrained_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHOBOOK_CACHE", str(tmp_path))
    made = []

    # pretraining itself is chapter 8's and its tests'; here only which encoder is loaded or made
    def fake_pretraining(r_pre, *, periodic, seed, epochs, device=None, data_seed=None):
        made.append(epochs)
        return echofm.echofm_model(r_pre.encoder, periodic=periodic)

    monkeypatch.setattr(echofm, "pretrain_encoder", fake_pretraining)
    _, info = echofm.downstream_encoder("VideoMAE", "smoke", 3, pretrain_epochs=2)
    assert made == [2] and info["epochs"] == 2 and "pretrained here" in info["note"]
    _, info = echofm.downstream_encoder("VideoMAE", "smoke", 3, match_epochs=2)
    assert made == [2] and "loaded" in info["note"]
    _, info = echofm.downstream_encoder("VideoMAE", "smoke", 3, match_epochs=5)
    assert made == [2, 5] and info["epochs"] == 5
    with pytest.raises(ValueError, match="start="):
        echofm.downstream_encoder("imagenet", "smoke", 0)


def test_a_camus_folder_of_the_2023_release(tmp_path):
    from echobook.data.camus import write_camus
    from echobook.data.synthetic import SyntheticConfig

    write_camus(tmp_path / "camus", 3, seed=0, config=SyntheticConfig(image_size=48, frames=30), release="2023")
    data = echofm.camus_downstream_set(tmp_path / "camus", R)
    assert len(data) == 6 and set(data.view_names) == {"A4C", "A2C"}
    assert data.frames.shape[1:] == (R.clip_frames, R.image_size, R.image_size)
    assert np.all(data.ed_frame == 0) and np.all(data.es_frame > 0)
    assert set(np.unique(data.labels)) <= {0, 1, 2, 3}
    write_camus(tmp_path / "old", 3, seed=0, config=SyntheticConfig(image_size=48, frames=30), release="2019")
    with pytest.raises(ValueError, match="2023 release"):
        echofm.camus_downstream_set(tmp_path / "old", R)
