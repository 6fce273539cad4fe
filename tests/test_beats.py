"""Beat finding (echobook.beats) on curves and videos whose beats are known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echobook.beats import beats_from_curve, beats_from_frames, clips_covering, lv_area_curve, period_frames
from echobook.data.synthetic import SyntheticConfig, make_video


def true_ed_frames(video) -> np.ndarray:
    """Frames where the engine's unwrapped phase passes a whole number: every end-diastole."""
    unwrapped = np.unwrap(2 * np.pi * video.phase) / (2 * np.pi)
    return np.flatnonzero(np.diff(np.floor(unwrapped)) > 0) + 1


def nearest_distance(found, true) -> np.ndarray:
    return np.abs(np.asarray(found)[:, None] - np.asarray(true)[None, :]).min(axis=1)


def test_a_sinusoid_gives_its_maxima_as_ed_and_its_minima_as_es():
    period, frames = 25.0, 130
    t = np.arange(frames)
    curve = 100 + 30 * np.cos(2 * np.pi * (t - 7) / period)  # maxima at 7, 32, 57, ...
    beats = beats_from_curve(curve, period)
    assert beats["ed_frame"].tolist() == [7, 32, 57, 82]
    assert beats["end_frame"].tolist() == [32, 57, 82, 107]
    # the minimum half a period (12.5 frames) later: frame 12 or 13 after ED
    assert set((beats["es_frame"] - beats["ed_frame"]).tolist()) <= {12, 13}
    assert beats["beat"].tolist() == [1, 2, 3, 4]


def test_a_notch_within_a_beat_is_not_a_beat():
    period = 30.0
    t = np.arange(120)
    phase = 2 * np.pi * t / period
    curve = np.cos(phase) + 0.3 * np.cos(2 * phase)  # a small local maximum mid-beat, at 15, 45, 75, 105
    assert beats_from_curve(curve, period)["ed_frame"].tolist() == [30, 60]  # 90 ends the last whole beat


def test_no_period_no_beats():
    assert beats_from_curve(np.sin(np.arange(40.0)), float("nan")).empty


@pytest.mark.parametrize("index", [0, 3])
def test_an_irregular_rhythm_gives_the_engines_beat_times(index):
    video = make_video(2, index, SyntheticConfig(image_size=48, frames=120, rr_irregularity=0.2))
    true = true_ed_frames(video)
    mean_period = float(np.mean(np.diff(true)))
    beats = beats_from_curve(video.volumes_ml, mean_period)
    assert len(beats) == len(true) - 1  # every whole beat, none invented
    assert nearest_distance(beats["ed_frame"], true).max() <= 1
    assert np.std(np.diff(true)) > 0.05 * mean_period  # the rhythm was irregular indeed


@pytest.mark.parametrize("index", [0, 1, 3])
def test_the_tssm_period_and_beats_of_a_synthetic_video(index):
    video = make_video(2, index, SyntheticConfig(image_size=48, frames=120))
    true_period = video.fps * 60 / video.heart_rate_bpm
    assert period_frames(video.frames) == pytest.approx(true_period, rel=0.08)
    beats = beats_from_frames(video.frames)
    true = true_ed_frames(video)
    assert len(beats) >= len(true) - 2 and nearest_distance(beats["ed_frame"], true).max() <= 2
    es_distance = nearest_distance(beats["es_frame"], true + (video.es_frame - video.ed_frame))
    # the least-alike frame of a beat is near its end-systole (the volume stays low through isovolumic relaxation,
    # so "near" is a fifth of a beat)
    assert es_distance.max() <= 0.2 * true_period


def test_the_lv_area_curve_counts_blood_inside_the_outline():
    frames = np.full((3, 20, 20), 200, np.uint8)
    frames[0, 5:15, 5:15] = 0  # 100 dark pixels, all inside
    frames[1, 8:12, 8:12] = 0  # 16
    frames[2, 0:4, 0:4] = 0  # outside the outline: not counted
    square = np.array([[4, 4], [15, 4], [15, 15], [4, 15]], float)
    assert lv_area_curve(frames, square).tolist() == [100, 16, 0]


def test_clips_covering_a_beat():
    clips = pd.DataFrame({"start_frame": [0, 10, 20, 40], "end_frame": [15, 25, 35, 55]})
    beat = pd.Series({"ed_frame": 12, "end_frame": 30})
    assert clips_covering(clips, beat).tolist() == [False, True, True, False]


def test_the_label_area_curve_counts_lv_cavity_pixels_and_its_maxima_are_the_engines_eds():
    from echobook.beats import label_area_curve

    labels = np.zeros((2, 10, 10), np.uint8)
    labels[0, 2:6, 2:6] = 1  # 16 cavity pixels
    labels[0, 6:8, 2:6] = 2  # myocardium: not the cavity
    labels[1, 0:3, 0:3] = 3
    assert label_area_curve(labels).tolist() == [16, 0] and label_area_curve(labels, 3).tolist() == [0, 9]
    video = make_video(2, 1, SyntheticConfig(image_size=48, frames=120))
    period = video.fps * 60 / video.heart_rate_bpm
    beats = beats_from_curve(label_area_curve(video.labels), period)
    assert len(beats) >= 2 and nearest_distance(beats["ed_frame"], true_ed_frames(video)).max() <= 2
