"""The synthetic echo engine (echobook.data.synthetic): determinism, labels that match pixels, statistics."""
import re

import cv2
import numpy as np
import pytest

from echobook.config import PRESETS
from echobook.data import geometry as G
from echobook.data import synthetic as S

SMALL = S.SyntheticConfig(image_size=48, frames=32)


@pytest.fixture(scope="module")
def video():
    return S.make_video(0, 3, SMALL)


def test_api_shapes_and_types(video):
    t, size = SMALL.frames, SMALL.image_size
    assert video.frames.shape == (t, size, size) and video.frames.dtype == np.uint8
    assert video.labels.shape == (t, size, size) and video.labels.dtype == np.uint8
    assert set(np.unique(video.labels)) <= {0, 1, 2, 3}
    assert video.phase.shape == (t,) and np.all((video.phase >= 0) & (video.phase < 1))
    assert set(video.tracings) == {video.ed_frame, video.es_frame}
    assert all(tr.shape == (21, 4) and tr.dtype == np.float64 for tr in video.tracings.values())
    assert video.wall_motion.shape == (6,) and set(video.wall_motion) <= {0, 1, 2}
    assert video.quality in S.QUALITIES and video.view == "A4C"
    assert isinstance(video.ed_frame, int) and isinstance(video.es_frame, int)
    assert re.fullmatch(r"0X[0-9A-F]{16}", video.name)
    assert video.fps > 0 and 40 <= video.heart_rate_bpm <= 120 and video.mm_per_pixel > 0
    assert video.esv_ml < video.edv_ml


def test_same_seed_same_bytes_other_seed_differs():
    a, b = S.make_video(5, 7, SMALL), S.make_video(5, 7, SMALL)
    assert a.frames.tobytes() == b.frames.tobytes() and a.labels.tobytes() == b.labels.tobytes()
    assert a.ef_percent == b.ef_percent and a.name == b.name
    other_seed, other_index = S.make_video(6, 7, SMALL), S.make_video(5, 8, SMALL)
    for other in (other_seed, other_index):
        assert other.frames.tobytes() != a.frames.tobytes() and other.name != a.name


def test_video_i_comes_from_child_i_of_the_seed_sequence():
    children = np.random.SeedSequence(11).spawn(4)
    assert np.array_equal(S.rng_for(11, 3).integers(0, 2**32, 8),
                          np.random.default_rng(children[3]).integers(0, 2**32, 8))


def test_labels_agree_with_tracings_and_pixels():
    for index in range(4):
        video = S.make_video(1, index, S.SyntheticConfig(image_size=64, frames=40))
        ed, es = video.tracings[video.ed_frame], video.tracings[video.es_frame]
        # the EF label is exactly the disc method on the stored tracings
        assert G.ejection_fraction_percent(ed, es) == pytest.approx(video.ef_percent, abs=1e-9)
        assert G.disc_volume_ml(ed, video.mm_per_pixel) == pytest.approx(video.edv_ml, rel=1e-9)
        # ED and ES of one beat: ES follows ED by about the ejection time; other beats differ a little
        assert 0 < video.es_frame - video.ed_frame < 0.5 * video.fps * 60 / video.heart_rate_bpm
        assert video.volumes_ml[video.ed_frame] == pytest.approx(video.volumes_ml.max(), rel=0.03)
        assert video.volumes_ml[video.es_frame] == pytest.approx(video.volumes_ml.min(), rel=0.05)
        # ... and close to the disc method on the LV-cavity label map (what a segmentation model sees)
        from_labels = G.ejection_fraction_percent(G.mask_to_tracing(video.labels[video.ed_frame] == 1),
                                                  G.mask_to_tracing(video.labels[video.es_frame] == 1))
        assert from_labels == pytest.approx(video.ef_percent, abs=2.5)
        # the tracing's polygon covers the labelled cavity
        mask = G.tracing_to_mask(ed, video.labels.shape[1:])
        cavity = video.labels[video.ed_frame] == 1
        assert np.sum(mask & cavity) / mask.sum() > 0.95


def test_cycle_phase_and_anatomy(video):
    c = S.contraction(video.phase, video.heart_rate_bpm)
    assert c[video.ed_frame] < 0.05 and c[video.es_frame] > 0.95  # ED at c=0, ES at c=1
    # ejection takes about a third of the cycle
    assert 0.25 <= S.ejection_share_of_cycle(video.heart_rate_bpm) <= 0.4
    size = video.frames.shape[1]
    ys, xs = np.nonzero(video.labels[video.ed_frame] == 1)
    la_ys, _ = np.nonzero(video.labels[video.ed_frame] == 3)
    assert xs.mean() > 0.45 * size  # LV on the image right
    assert la_ys.mean() > ys.mean()  # LA below the LV
    tracing = video.tracings[video.ed_frame]
    assert tracing[0, 1] < tracing[0, 3]  # apex above the mitral plane
    assert np.all(video.frames[:, 0, :3] == 0) and np.all(video.frames[:, 0, -3:] == 0)  # outside the sector


def test_ef_distribution_follows_echonet():
    config = S.SyntheticConfig(image_size=16, frames=20)
    ef = np.array([S.make_video(2, i, config).ef_percent for i in range(250)])
    assert 52 <= ef.mean() <= 59 and 9.5 <= ef.std() <= 15
    assert 0.07 <= np.mean(ef < 40) <= 0.2


def test_ef_options():
    fixed_config = S.SyntheticConfig(image_size=16, frames=24, ef_percent=35.0)
    fixed = [S.make_video(0, i, fixed_config).ef_percent for i in range(8)]
    assert np.allclose(fixed, 35.0, atol=1.5)
    ranged_config = S.SyntheticConfig(image_size=16, frames=24, ef_range=(20, 30))
    ranged = [S.make_video(0, i, ranged_config).ef_percent for i in range(8)]
    assert min(ranged) > 18 and max(ranged) < 31


def test_speckle_moves_with_the_tissue():
    video = S.make_video(3, 0, S.SyntheticConfig(image_size=64, frames=16, quality="Good"))
    frames = video.frames.astype(np.float32)
    speckle = np.stack([f - cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames])  # the fine texture only

    def corr(a, b, mask):
        a, b = a[mask] - a[mask].mean(), b[mask] - b[mask].mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    rng = np.random.default_rng(0)
    consecutive, fresh = [], []
    for t in range(len(frames) - 1):
        wall = (video.labels[t] == 2) & (video.labels[t + 1] == 2)
        consecutive.append(corr(speckle[t], speckle[t + 1], wall))
        fresh.append(corr(speckle[t], rng.standard_normal(speckle[t].shape), wall))
    assert np.mean(consecutive) > 0.7 and abs(np.mean(fresh)) < 0.1


def test_quality_levels_degrade_contrast():
    contrast = {}
    for quality in S.QUALITIES:
        video = S.make_video(3, 0, S.SyntheticConfig(image_size=48, frames=4, quality=quality))
        frame, labels = video.frames[0].astype(float), video.labels[0]
        contrast[quality] = frame[labels == 2].mean() - frame[labels == 1].mean()
    assert contrast["Good"] > contrast["Medium"] > contrast["Poor"] > 0


def test_views_wall_motion_and_presets():
    a2c = S.make_video(0, 0, S.SyntheticConfig(image_size=32, frames=8, view="A2C"))
    assert a2c.view == "A2C"
    sick_config = S.SyntheticConfig(image_size=16, frames=8, wall_motion_probability=1.0)
    sick = [S.make_video(0, i, sick_config) for i in range(6)]
    assert all(v.has_infarct for v in sick)
    config = S.config_for_preset(PRESETS["small"])
    assert (config.image_size, config.frames) == (64, 64)
    one_frame = S.make_video(0, 0, S.SyntheticConfig(image_size=16, frames=1))
    assert one_frame.frames.shape == (1, 16, 16)


@pytest.mark.parametrize("field, value", [
    ("frames", 0), ("image_size", 8), ("quality", "Excellent"), ("view", "PLAX"),
    ("ef_range", (50, 40)), ("ef_percent", 120.0), ("fps_range", (0, 50)), ("quality_weights", (1, -1, 0)),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        S.SyntheticConfig(**{field: value})


def test_bad_seed_or_index():
    with pytest.raises(ValueError, match="seed"):
        S.make_video(-1, 0, SMALL)
    with pytest.raises(ValueError, match="index"):
        S.make_video(0, 1.5, SMALL)
    with pytest.raises(ValueError, match="config"):
        S.make_video(0, 0, {"frames": 3})


def test_forcing_quality_keeps_the_heart():
    """Options that change the picture draw the same random numbers: the same seed and index give the same heart."""
    base = S.SyntheticConfig(image_size=32, frames=24)
    hearts = [S.make_video(4, 2, S.SyntheticConfig(image_size=32, frames=24, quality=q)) for q in S.QUALITIES]
    default = S.make_video(4, 2, base)
    for video in hearts:
        assert video.ef_percent == default.ef_percent and np.array_equal(video.labels, default.labels)


def test_worker_processes_give_the_same_bytes():
    config = S.SyntheticConfig(image_size=16, frames=8)
    alone = S.make_videos(9, [0, 1, 2], config)
    pooled = S.make_videos(9, 3, config, workers=2)
    assert [v.frames.tobytes() for v in alone] == [v.frames.tobytes() for v in pooled]


def test_dataset_makes_videos_on_demand():
    config = S.SyntheticConfig(image_size=16, frames=8)
    dataset = S.SyntheticDataset(3, 5, config)
    assert len(dataset) == 5
    assert dataset[-1].frames.tobytes() == S.make_video(3, 4, config).frames.tobytes()
    with pytest.raises(IndexError):
        dataset[5]
    with pytest.raises(ValueError, match="videos"):
        S.SyntheticDataset(0, -1)


def test_label_values_have_one_home(video):
    from echobook.data import labels

    assert S.CHAMBER_LABELS is labels.CHAMBER_LABELS
    for name in ("QUALITIES", "VIEWS", "VIEW_CHOICES", "SEGMENTS", "WALL_MOTION"):
        assert getattr(S, name) is getattr(labels, name), name
    assert set(np.unique(video.labels)) <= set(labels.CHAMBER_LABELS)
    assert labels.CHAMBER_LABELS[labels.LV_CAVITY] == "LV cavity" and tuple(S.QUALITY_LEVELS) == labels.QUALITIES


def test_package_exports_the_engine_and_the_set_writers():
    from echobook.data import echonet

    for name in S.__all__:
        assert hasattr(S, name), name
    for name in ("make_video", "plan_video", "render_plan", "render_stages", "sample_case", "lv_contours",
                 "contraction", "config_for_preset", "video_name", "synth_echonet", "cached_synthetic_echonet",
                 "SyntheticDataset"):
        assert name in S.__all__, name
    assert not hasattr(echonet, "synth_echonet") and not hasattr(echonet, "cached_synthetic_echonet")


def test_ejection_share_of_cycle_is_the_ejection_time_over_the_cycle():
    # 75 bpm: LVET = 379 - 1.8 * 75 = 244 ms of an 800 ms cycle
    assert S.ejection_share_of_cycle(75.0) == pytest.approx(0.244 / 0.8)
    assert S.ejection_share_of_cycle(30.0) == S.ejection_share_of_cycle(150.0) == 0.28  # clipped


def test_ed_es_frames_of_beat_come_from_one_whole_beat():
    beats = np.arange(20) / 8.0 + 0.6  # 0.6 .. 2.975 beats: beat 1 is the first one held whole
    volumes = 100.0 - 40.0 * S.contraction(np.mod(beats, 1.0))
    volumes[19] = 200.0  # a larger volume outside beat 1's window is not its ED
    ed, es = S.ed_es_frames_of_beat(beats, volumes)
    assert beats[ed] == pytest.approx(1.0, abs=0.13) and 0 < es - ed <= 4
    short = np.arange(5) / 8.0  # less than a beat: the overall extremes
    assert S.ed_es_frames_of_beat(short, np.array([3.0, 1.0, 5.0, 2.0, 4.0])) == (2, 1)
