"""`echobook train` and `echobook predict`: a run folder with a card, then EF over a user's recordings."""
from __future__ import annotations

import json

import cv2

import numpy as np
import pandas as pd
import pytest
import torch

from echobook.cli import main
from echobook.config import get_preset
from echobook.data.synthetic import SyntheticConfig, make_video, synth_echonet
from echobook.predict import read_recording, resample_frames, window_starts
from echobook.runs import load_trained

SMOKE = get_preset("smoke")
CONFIG = SyntheticConfig(image_size=SMOKE.image_size, frames=SMOKE.video_frames)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """CoReEcho at the smoke recipe for one epoch per stage on 16 synthetic videos, through the command."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("run")
    data = synth_echonet(base / "data", videos=16, seed=5, config=CONFIG)
    run = base / "run"
    args = ["train", "coreecho", "--data", str(data), "--out", str(run), "--size", "smoke", "--epochs", "1",
            "--probe-epochs", "1", "--quiet"]
    assert main(args) == 0
    return data, run


def test_the_run_folder_holds_weights_a_card_and_resumes(trained_run, capsys):
    data, run = trained_run
    card = json.loads((run / "card.json").read_text())
    assert card["method"] == "coreecho" and card["size"] == "smoke" and card["seed"] == 0
    assert card["preprocessing"]["image_size"] == SMOKE.crop_size and card["preprocessing"]["std"] > 0
    assert card["data"]["fingerprint"]["counts"]["videos"] > 0 and card["metrics"]["test_videos"] >= 1
    model, loaded = load_trained(run)
    assert loaded == card and not model.training
    weights = run / "model.pth"
    stamp = weights.stat().st_mtime_ns
    assert main(["train", "coreecho", "--data", str(data), "--out", str(run), "--size", "smoke", "--epochs", "1",
                 "--probe-epochs", "1", "--quiet"]) == 0  # finished stages are not trained again
    assert json.loads((run / "card.json").read_text())["metrics"] == card["metrics"]
    assert weights.stat().st_mtime_ns >= stamp


def test_predict_a_video_a_dicom_and_a_broken_file(trained_run, tmp_path, capsys):
    from echobook.data.dicom import write_dicom

    data, run = trained_run
    recordings = tmp_path / "mine"
    recordings.mkdir()
    video = sorted((data / "Videos").iterdir())[0]
    (recordings / "from_echonet.avi").write_bytes(video.read_bytes())
    heart = make_video(9, 0, SyntheticConfig(image_size=64, frames=50))
    screen = np.zeros((50, 80, 100), np.uint8)
    screen[:, 8:72, 18:82] = heart.frames
    screen[:, 74:78, 10:90] = 255  # a burned-in bar under the sector: masked, never fed to the model
    write_dicom(recordings / "scanner_export", screen, fps=heart.fps, colour="RGB as YBR",
                region=(18, 8, 81, 71), mm_per_pixel=(heart.mm_per_pixel,) * 2)
    (recordings / "broken.avi").write_bytes(b"not a video")
    out = tmp_path / "out"
    assert main(["predict", str(recordings), "--model", str(run), "--out", str(out), "--quiet"]) == 1
    summary = pd.read_csv(out / "predictions.csv").set_index("recording")
    assert summary.loc["broken", "status"] == "failed" and "broken.avi" in summary.loc["broken", "error"]
    for name, kind in (("from_echonet", "video"), ("scanner_export", "DICOM")):
        row = summary.loc[name]
        assert row["status"] == "ok" and row["kind"] == kind and 0 <= row["ef_percent"] <= 100
        clips = pd.read_csv(out / f"{name}.csv")
        assert len(clips) == row["clips"] >= 1 and clips["start_frame"].is_monotonic_increasing
    assert "masked" in summary.loc["scanner_export", "notes"] and "CP 156" in summary.loc["scanner_export", "notes"]
    for name in ("from_echonet", "scanner_export"):  # the overlay video decodes; the report is self-contained
        overlay = cv2.VideoCapture(str(out / f"{name}.mp4"))
        assert overlay.isOpened() and overlay.get(cv2.CAP_PROP_FRAME_COUNT) > 0
        overlay.release()
        page = (out / f"{name}.html").read_text()
        assert "not a medical device" in page and "Plotly.newPlot" in page and "<script src=\"http" not in page
    assert "FAILED" in capsys.readouterr().out


def test_wrong_model_and_paths_are_clear_errors(trained_run, tmp_path, capsys):
    _, run = trained_run
    assert main(["predict", str(tmp_path), "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "empty_dir_missing.avi"), "--model", str(run), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 1
    assert main(["train", "coreecho", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2


def test_windows_cover_the_recording_and_resampling_keeps_time():
    starts = window_starts(100, 8, 2, step=7)
    assert starts[0] == 0 and starts[-1] == 100 - 15 and np.all(np.diff(starts) > 0)
    assert list(window_starts(5, 8, 2)) == [0]  # shorter than a clip: one looped window
    frames = np.arange(100, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)
    halved = resample_frames(frames, fps=50.0, target_fps=25.0)
    assert len(halved) == 50 and list(halved[:3, 0, 0]) == [0, 2, 4]
    assert resample_frames(frames, 50.0, 51.0) is frames  # within 5 %: untouched


def test_read_recording_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt.*not a DICOM file and not a video"):
        read_recording(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="gone.avi"):
        read_recording(tmp_path / "gone.avi")


def test_the_conformal_interval_is_calibrated_and_reported(trained_run, tmp_path):
    _, run = trained_run
    card = json.loads((run / "card.json").read_text())
    interval = card["conformal"]
    assert interval["alpha"] == 0.1 and interval["calibration_videos"] >= 1
    assert interval["half_width_percent"] > 0 and 0 <= interval["test_coverage"] <= 1


def test_split_conformal_covers_its_level_on_exchangeable_data():
    from echobook.metrics import conformal_half_width, interval_coverage

    rng = np.random.default_rng(0)
    coverages = []
    for _ in range(200):
        errors = rng.normal(0, 5, 400)  # pred - true of 100 calibration and 300 test videos
        width = conformal_half_width(errors[:100], alpha=0.1)
        coverages.append(interval_coverage(errors[100:], np.zeros(300), width))
    assert 0.88 <= np.mean(coverages) <= 0.93  # at least 1 - alpha on average, and not far above it
    assert conformal_half_width([1.0, 2.0], alpha=0.1) == float("inf")  # too few to promise 90 %
    assert conformal_half_width(np.arange(1, 10), alpha=0.5) == 5.0  # ceil(10 * 0.5) = the 5th smallest


@pytest.mark.slow
def test_the_report_opens_offline_in_chromium_with_its_plot(trained_run, tmp_path):
    from test_book import find_chromium, ink_fraction, open_page

    if find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run installs it)")
    data, run = trained_run
    video = sorted((data / "Videos").iterdir())[1]
    assert main(["predict", str(video), "--model", str(run), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    soup = open_page(find_chromium(), tmp_path / "out" / f"{video.stem}.html", tmp_path / "report.png")
    assert soup.select("div.plotly-graph-div svg.main-svg"), "the EF trace did not draw offline"
    assert len(soup.select("figure img")) >= 2 and ink_fraction(tmp_path / "report.png") > 0.01


# --------------------------------------------------------------------------------------------- Echo-E3Net, beats
@pytest.fixture(scope="module")
def e3net_run(trained_run, tmp_path_factory):
    """Echo-E3Net at the smoke recipe for one epoch on the same 16 videos, through the command."""
    data, _ = trained_run
    run = tmp_path_factory.mktemp("e3net") / "run"
    assert main(["train", "e3net", "--data", str(data), "--out", str(run), "--size", "smoke", "--epochs", "1",
                 "--quiet"]) == 0
    return run


def test_e3net_trains_into_a_run_folder_with_its_interval(e3net_run):
    card = json.loads((e3net_run / "card.json").read_text())
    assert card["method"] == "e3net" and card["variant"] == "e3net_xs" and card["recipe"]["epochs"] == 1
    assert card["conformal"]["alpha"] == 0.1 and card["metrics"]["test_videos"] >= 1
    assert card["landmarks"]["per_phase"] == 3 + 2 * card["landmarks"]["wall_points"]
    assert card["data"]["fingerprint"]["counts"]["TRAIN"] >= 1 and (e3net_run / "train").is_dir()


def test_e3net_predicts_beats_with_volumes_where_the_spacing_is_known(e3net_run, trained_run, tmp_path):
    from echobook.data.dicom import TRUTH_CSV, synth_dicom

    data, _ = trained_run
    mine = synth_dicom(tmp_path / "mine", videos=1, seed=4, config=SyntheticConfig(image_size=48, frames=90))
    (mine / "as_video.avi").write_bytes(sorted((data / "Videos").iterdir())[0].read_bytes())
    out = tmp_path / "out"
    assert main(["predict", str(mine), "--model", str(e3net_run), "--out", str(out), "--quiet"]) == 0
    truth = pd.read_csv(mine / TRUTH_CSV).iloc[0]
    summary = pd.read_csv(out / "predictions.csv").set_index("recording")
    dicom, video = summary.loc[truth["name"]], summary.loc["as_video"]
    assert dicom["beat_source"].startswith("LV area curve") and dicom["beats"] >= 2
    assert dicom["heart_rate_bpm"] == pytest.approx(truth["heart_rate_bpm"], rel=0.15)
    beats = pd.read_csv(out / f"{truth['name']}_beats.csv")
    assert (beats["ed_frame"] < beats["es_frame"]).all() and (beats["es_frame"] < beats["end_frame"]).all()
    assert beats["edv_ml"].gt(beats["esv_ml"]).all() and beats["edv_ml"].between(5, 1000).all()
    assert np.allclose(beats["ef_percent"], 100 * (1 - beats["esv_ml"] / beats["edv_ml"]))
    assert video["mm_per_pixel"] == "spacing unknown" and np.isnan(video["edv_ml"])
    assert pd.read_csv(out / "as_video_beats.csv")["ef_percent"].notna().all()  # EF only, without volumes
    page = (out / f"{truth['name']}.html").read_text()
    assert "Beats" in page and "edv_ml" in page and "LV area curve" in page


def test_coreecho_beats_come_from_the_tssm_and_gradcam_draws(trained_run, tmp_path):
    from echobook.predict import load_model, predict_recording
    from echobook.report import write_overlay

    from echobook.data.echonet import save_video

    _, run = trained_run
    model, card = load_model(run)
    video = make_video(6, 0, SyntheticConfig(image_size=48, frames=120))
    path = tmp_path / "heart.avi"
    save_video(path, video.frames, video.fps)
    prediction = predict_recording(model, card, read_recording(path), gradcam=True)
    assert prediction.beat_source.startswith("period of the frames' self-similarity")
    assert len(prediction.beats) >= 2 and prediction.beats["ef_percent"].notna().all()
    true_period = video.fps * 60 / video.heart_rate_bpm * card["preprocessing"]["fps"] / video.fps
    assert prediction.period_frames == pytest.approx(true_period, rel=0.15)
    assert prediction.cams.shape == prediction.frames.shape and 0 <= prediction.cams.min() <= prediction.cams.max() <= 1
    overlay = cv2.VideoCapture(str(write_overlay(tmp_path / "overlay.mp4", prediction)))
    assert overlay.get(cv2.CAP_PROP_FRAME_COUNT) == len(prediction.frames)
    overlay.release()


# --------------------------------------------------------------------------------------------- conformal coverage
CALIBRATION_VIDEOS = TEST_VIDEOS = 200
TARGET_COVERAGE = 0.9


def coverage_tolerance(calibration: int, test: int, level: float = TARGET_COVERAGE, sigmas: float = 3.0) -> float:
    """``sigmas`` standard deviations of the measured coverage: the conformal coverage given the calibration set is
    Beta(k, n + 1 - k) with k = ceil((n + 1) level) (sd about sqrt(level (1 - level) / (n + 2))), and the test set
    adds a binomial spread sqrt(level (1 - level) / test)."""
    return sigmas * np.sqrt(level * (1 - level) * (1 / (calibration + 2) + 1 / test))


def test_the_conformal_interval_covers_90_percent_of_a_new_synthetic_set(e3net_run, tmp_path):
    from echobook.data.clips import echonet_split, eval_dataloader
    from echobook.metrics import conformal_half_width, interval_coverage
    from echobook.training import evaluate

    model, card = load_trained(e3net_run)
    pre = card["preprocessing"]

    def scored(seed, videos):
        root = synth_echonet(tmp_path / f"set{seed}", videos=videos, seed=seed, config=CONFIG)
        loader = eval_dataloader(echonet_split(root, ("TRAIN", "VAL", "TEST")), clip_frames=pre["clip_frames"],
                                 clip_stride=pre["clip_stride"], batch_size=64, mean=pre["mean"], std=pre["std"],
                                 eval_clips=pre["eval_clips"], image_size=pre["image_size"], device="cpu")
        return evaluate(model, loader)

    calibration, test = scored(101, CALIBRATION_VIDEOS), scored(102, TEST_VIDEOS)
    width = conformal_half_width(calibration["ef_percent_pred"] - calibration["ef_percent_true"], alpha=0.1)
    coverage = interval_coverage(test["ef_percent_pred"], test["ef_percent_true"], width)
    tolerance = coverage_tolerance(calibration["videos"], test["videos"])  # about 0.09 for 200 and 200
    assert 0 < width < 50 and tolerance < 0.1
    assert abs(coverage - TARGET_COVERAGE) <= tolerance, f"coverage {coverage:.3f}, half-width {width:.1f}"


def test_an_unbounded_interval_is_explained_not_printed_as_infinities():
    from echobook.metrics import conformal_half_width
    from echobook.predict import describe_interval

    residuals = np.arange(8.0)  # 8 calibration videos: too few for a 90 % interval, 9 are enough
    assert np.isinf(conformal_half_width(residuals, 0.1)) and np.isfinite(conformal_half_width(np.arange(9.0), 0.1))
    unbounded = describe_interval(dict(ef_low_percent=-np.inf, ef_high_percent=np.inf, interval_level=0.9))
    assert "inf" not in unbounded and "at least 9" in unbounded
    assert describe_interval(dict(ef_low_percent=41.0, ef_high_percent=59.0, interval_level=0.9)) == \
        "90% interval 41.0-59.0"
    assert "no calibration" in describe_interval(dict(ef_low_percent=np.nan, ef_high_percent=np.nan,
                                                      interval_level=np.nan))


# --------------------------------------------------------------------------------------------- EchoFM segmentation
SUMMARY_COLUMNS = ["recording", "path", "kind", "status", "frames", "fps", "clips", "ef_percent", "ef_sd_over_clips",
                   "ef_low_percent", "ef_high_percent", "interval_level", "ef_min", "ef_max", "beats",
                   "ef_beats_percent", "ef_sd_over_beats", "heart_rate_bpm", "edv_ml", "esv_ml", "beat_source",
                   "mm_per_pixel", "notes", "error", "seconds"]


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    """Chapter 9's segmentation model at smoke size (UNETR micro over a random VideoMAE micro encoder), random
    weights, saved with its card: inference does not depend on what the weights learnt."""
    from echobook.methods import echofm

    torch.manual_seed(0)
    encoder, _ = echofm.downstream_encoder("random", "smoke", 0)
    model = echofm.segmentation_model(encoder, echofm.downstream_recipe("smoke").decoder)
    return echofm.save_segmentation_model(model, size="smoke", seed=0, encoder_start="random", metrics={},
                                          clip_fps=12.5, path=tmp_path_factory.mktemp("seg") / "run")


def test_a_segmentation_model_predicts_beats_from_its_masks_on_a_video_and_a_dicom(seg_run, tmp_path):
    from echobook.data.dicom import synth_dicom
    from echobook.data.echonet import save_video
    from echobook.predict import MASK_BEAT_SOURCE, WINDOW_EF_MEANING

    mine = synth_dicom(tmp_path / "mine", videos=1, seed=4, config=SyntheticConfig(image_size=48, frames=90))
    video = make_video(6, 0, SyntheticConfig(image_size=48, frames=120))
    save_video(mine / "as_video.avi", video.frames, video.fps)
    out = tmp_path / "out"
    assert main(["predict", str(mine), "--model", str(seg_run), "--out", str(out), "--quiet"]) == 0
    summary = pd.read_csv(out / "predictions.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS  # the same table as an EF regressor's
    summary = summary.set_index("recording")
    assert (summary["beat_source"] == MASK_BEAT_SOURCE).all() and sorted(summary["kind"]) == ["DICOM", "video"]
    dicom = summary.loc[summary["kind"] == "DICOM"].iloc[0]
    assert dicom["mm_per_pixel"] != "spacing unknown" and summary.loc["as_video", "mm_per_pixel"] == "spacing unknown"
    for name in summary.index:
        beats, clips = pd.read_csv(out / f"{name}_beats.csv"), pd.read_csv(out / f"{name}.csv")
        assert list(beats.columns) == ["beat", "ed_frame", "ed_s", "es_frame", "es_s", "end_frame", "clips",
                                       "ef_percent", "edv_ml", "esv_ml"]
        assert len(beats) == summary.loc[name, "beats"] and (beats["ed_frame"] < beats["es_frame"]).all()
        assert {"ed_frame", "es_frame"} <= set(clips.columns) and len(clips) == summary.loc[name, "clips"]
        traced = beats.dropna(subset=["ef_percent"])
        if name == "as_video":  # EF only, without volumes
            assert beats["edv_ml"].isna().all()
        elif len(traced):  # EF and volumes from the same masks
            assert np.allclose(traced["ef_percent"], 100 * (1 - traced["esv_ml"] / traced["edv_ml"]))
        if len(traced):  # the recording's EF is its beats' mean, and says so
            assert summary.loc[name, "ef_percent"] == pytest.approx(traced["ef_percent"].mean())
            assert "mean over" in summary.loc[name, "notes"]
        overlay = cv2.VideoCapture(str(out / f"{name}.mp4"))
        assert overlay.get(cv2.CAP_PROP_FRAME_COUNT) >= 16  # the frames at the card's 12.5 fps
        overlay.release()
        page = (out / f"{name}.html").read_text()
        assert WINDOW_EF_MEANING in page and "LV cavity masks" in page and page.count("<figure><img") >= 2


def test_the_overlay_draws_the_segmentation_contours(seg_run, tmp_path):
    from echobook.data.echonet import save_video
    from echobook.predict import load_model, predict_recording
    from echobook.report import LABEL_BGR, write_overlay

    model, card = load_model(seg_run)
    video = make_video(6, 1, SyntheticConfig(image_size=48, frames=60))
    save_video(tmp_path / "heart.avi", video.frames, video.fps)
    prediction = predict_recording(model, card, read_recording(tmp_path / "heart.avi"))
    assert prediction.labels.shape == prediction.frames.shape and prediction.labels.max() <= 3
    prediction.labels[:] = 0
    prediction.labels[:, 8:24, 10:20] = 1  # a known LV cavity: its contour must be drawn, in its colour
    overlay = cv2.VideoCapture(str(write_overlay(tmp_path / "overlay.mp4", prediction)))
    ok, image = overlay.read()
    overlay.release()
    scale = image.shape[0] // prediction.frames.shape[1]
    edge = image[8 * scale:24 * scale, 10 * scale].astype(int)  # the cavity's left border, frame 0
    colours = [LABEL_BGR[1], (80, 220, 80), (60, 60, 240)]  # or ED green / ES red on a marked frame
    assert ok and min(np.abs(edge.mean(axis=0) - np.asarray(c)).max() for c in colours) < 60


def test_masks_of_the_engines_labels_give_its_ef_through_the_area_curve_and_beats():
    from pathlib import Path

    from echobook.predict import Recording, prediction_from_labels, summarise

    for index in (0, 2):
        video = make_video(3, index, SyntheticConfig(image_size=64, frames=90))
        recording = Recording("heart", Path("heart.avi"), video.frames, video.fps, "video",
                              mm_per_pixel=(video.mm_per_pixel,) * 2)
        starts = window_starts(len(video.frames), 16, 1)
        prediction = prediction_from_labels(recording, video.frames, video.fps, video.labels, starts, 16, 1)
        beats = prediction.beats
        assert len(beats) >= 1 and beats["ef_percent"].notna().all()
        period = video.fps * 60 / video.heart_rate_bpm  # ED to ED is one beat of the engine's heart
        assert (beats["end_frame"] - beats["ed_frame"]).to_numpy() == pytest.approx(period, rel=0.15)
        row = summarise(prediction, {})
        assert abs(row["ef_percent"] - video.ef_percent) < 3.0, (row["ef_percent"], video.ef_percent)
        assert beats["edv_ml"].to_numpy() == pytest.approx(video.edv_ml, rel=0.08)
        assert beats["esv_ml"].to_numpy() == pytest.approx(video.esv_ml, rel=0.08)


def test_a_segmentation_card_whose_weights_do_not_fit_is_a_clear_error(seg_run, tmp_path, capsys):
    from echobook.cards import read_with_card, save_with_card
    from echobook.methods import echofm
    from pathlib import Path

    from echobook.predict import Recording, load_model, predict_recording
    from echobook.training import CheckpointError

    _, card = read_with_card(seg_run)
    encoder, _ = echofm.downstream_encoder("random", "smoke", 0)
    wider = echofm.segmentation_model(encoder, "unetr_micro", feature_size=16)
    save_with_card(tmp_path / "bad", wider.state_dict(), card)  # feature_size 16 weights, a card of 8
    with pytest.raises(CheckpointError, match=str(tmp_path / "bad")):
        load_model(tmp_path / "bad")
    assert main(["predict", str(tmp_path), "--model", str(tmp_path / "bad"), "--out", str(tmp_path / "o")]) == 2
    assert "does not fit" in capsys.readouterr().err
    model, card = load_model(seg_run)
    video = make_video(6, 1, SyntheticConfig(image_size=48, frames=40))
    recording = Recording("heart", Path("heart.avi"), video.frames, video.fps, "video")
    with pytest.raises(ValueError, match="Grad-CAM"):
        predict_recording(model, card, recording, gradcam=True)


def test_the_l1_baseline_trains_with_its_own_card_and_predicts(trained_run, tmp_path, capsys):
    """`echobook train coreecho-l1`: chapter 5's ablation (a) as a command; its card builds CoReEcho's model."""
    data, _ = trained_run
    run = tmp_path / "l1"
    assert main(["train", "coreecho-l1", "--data", str(data), "--out", str(run), "--size", "smoke", "--epochs", "1",
                 "--quiet"]) == 0
    card = json.loads((run / "card.json").read_text())
    assert card["method"] == "coreecho-l1" and card["recipe"]["epochs"] == 1 and card["metrics"]["test_videos"] >= 1
    model, loaded = load_trained(run)
    assert loaded == card and hasattr(model, "encoder")
    video = sorted((data / "Videos").iterdir())[0]
    assert main(["predict", str(video), "--model", str(run), "--out", str(tmp_path / "report")]) == 0


def test_a_chapters_saved_model_is_loaded_only_for_the_data_it_was_trained_on(trained_run, tmp_path, monkeypatch):
    """Chapters 7 and 10 load chapter 5's models (compare.load_or_train): a model trained on a reader's folder
    serves that folder, never the synthetic set, and a missing one of a reader's folder names chapter 5."""
    import shutil

    from echobook import compare
    from echobook.cards import model_folder

    data, run = trained_run
    monkeypatch.setenv("ECHOBOOK_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"run chapter 5 first .* -p DATA_DIR"):
        compare.load_or_train("coreecho-l1", "smoke", 0, data_dir=data)
    shutil.copytree(run, model_folder("coreecho", "smoke", 0))
    loaded = compare.load_or_train("coreecho", "smoke", 0, data_dir=data)
    assert not loaded.trained_here and loaded.card["data"]["root"] == str(data)
    with pytest.raises(ValueError, match="card.json says data.root .* but this chapter runs on synthetic data"):
        compare.load_or_train("coreecho", "smoke", 0)  # the synthetic default must not get a model of the folder
