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
    assert len(soup.select("figure img")) == 4 and ink_fraction(tmp_path / "report.png") > 0.01
