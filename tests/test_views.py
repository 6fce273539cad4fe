"""The synthetic engine's views beyond A4C/A2C (PLAX, PSAX, "other"), their labels, and the view set."""
import hashlib

import numpy as np
import pytest

from echobook.data.labels import (
    BACKGROUND, CHAMBER_LABELS, LEFT_ATRIUM, LV_CAVITY, LV_MYOCARDIUM, VIEW_CHAMBERS, VIEW_CLASSES, VIEWS,
)
from echobook.data.synthetic import (
    SyntheticConfig, ViewSet, make_video, make_view_video, plan_view_video, synthetic_view_set,
)

SMALL = SyntheticConfig(image_size=48, frames=16)

# sha256 (first 32 hex digits) of frames + labels, computed with the engine as it was before the views were
# added: A4C and A2C must keep these bytes (cache keys and every chapter's numbers depend on them)
APICAL_DIGESTS = [
    (0, 0, dict(image_size=48, frames=16), "A4C", "5719ea9b150e5709817bb4560928ddf7"),
    (0, 1, dict(image_size=48, frames=16, view="A2C"), "A2C", "246ce9bea27a692defb29ba1ab9edb94"),
    (3, 5, dict(image_size=64, frames=24, view="mixed"), "A4C", "f403f245801b9a1115b940ae2257d79b"),
    (7, 2, dict(image_size=32, frames=16, rr_irregularity=0.2), "A4C", "693b90b8949d95a567f00a0d7130cb7f"),
    (1, 4, dict(image_size=48, frames=20, view="A2C", quality="Poor"), "A2C", "26f563da888c6d71888f11bef470bcc5"),
]


def digest(video) -> str:
    h = hashlib.sha256()
    h.update(video.frames.tobytes())
    h.update(video.labels.tobytes())
    return h.hexdigest()[:32]


@pytest.mark.parametrize("seed, index, overrides, view, expected", APICAL_DIGESTS)
def test_apical_videos_keep_their_bytes(seed, index, overrides, view, expected):
    config = SyntheticConfig(**overrides)
    video = make_video(seed, index, config)
    assert video.view == view and digest(video) == expected
    # the view API gives the same bytes for the apical views (config.view is replaced by the view asked for)
    assert digest(make_view_video(seed, index, view, config)) == expected


@pytest.fixture(scope="module")
def hearts():
    """Three hearts in every view: {view: [video of heart 0, 1, 2]}."""
    return {view: [make_view_video(2, i, view, SMALL) for i in range(3)] for view in VIEW_CLASSES}


def centroid_and_axes(mask: np.ndarray):
    """(centroid (x, y), long-axis angle from the horizontal in degrees, minor/major axis ratio) of a mask."""
    ys, xs = np.nonzero(mask)
    points = np.stack([xs, ys], axis=1).astype(float)
    centre = points.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov((points - centre).T))
    major = vectors[:, 1]
    angle = np.degrees(np.arctan2(abs(major[1]), abs(major[0])))  # 0 horizontal .. 90 vertical
    return centre, angle, float(np.sqrt(values[0] / values[1]))


def test_every_view_labels_what_it_shows_in_camus_values(hearts):
    assert set(VIEW_CHAMBERS) == set(VIEW_CLASSES) and VIEW_CLASSES[:2] == VIEWS
    for view, videos in hearts.items():
        for video in videos:
            assert video.view == view
            assert video.frames.shape == video.labels.shape == (16, 48, 48)
            assert video.frames.dtype == video.labels.dtype == np.uint8
            present = set(np.unique(video.labels).tolist())
            assert present <= {BACKGROUND, *VIEW_CHAMBERS[view]} <= set(CHAMBER_LABELS), (view, present)
            for label in VIEW_CHAMBERS[view]:  # every chamber the view shows is there at ED and ES
                for frame in (video.ed_frame, video.es_frame):
                    assert np.sum(video.labels[frame] == label) > 20, (view, label, frame)
            # every view of the LV contracts: a smaller cavity at ES than at ED
            cavity = (video.labels == LV_CAVITY).reshape(len(video.labels), -1).sum(axis=1)
            assert cavity[video.es_frame] < 0.85 * cavity[video.ed_frame], view
            assert cavity[video.ed_frame] >= cavity.max() - 0.05 * cavity.max()  # ED is about the largest


def test_views_of_a_heart_share_its_physiology(hearts):
    for i in range(3):
        a4c = hearts["A4C"][i]
        for view in VIEW_CLASSES:
            video = hearts[view][i]
            assert (video.ed_frame, video.es_frame, video.fps, video.quality) == (
                a4c.ed_frame, a4c.es_frame, a4c.fps, a4c.quality)
            np.testing.assert_allclose([video.ef_percent, video.edv_ml, video.esv_ml],
                                       [a4c.ef_percent, a4c.edv_ml, a4c.esv_ml], rtol=0.02)
            np.testing.assert_allclose(video.phase, a4c.phase)
        assert hearts["PSAX"][i].tracings == {}  # no long-axis contour to trace
        assert set(hearts["PLAX"][i].tracings) == {a4c.ed_frame, a4c.es_frame}


def test_psax_is_a_round_ring_near_the_middle(hearts):
    for video in hearts["PSAX"]:
        for frame in (video.ed_frame, video.es_frame):
            labels = video.labels[frame]
            (x, y), _, roundness = centroid_and_axes(labels == LV_CAVITY)
            assert roundness > 0.7  # an oval at worst (ellipticity up to 8 %, a hypokinetic segment)
            assert abs(x - 24) < 6 and abs(y - 24) < 6
            # the myocardium surrounds the cavity: every ray from the centre meets myocardium after the cavity
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                ray = [labels[int(round(y + k * dy)), int(round(x + k * dx))] for k in range(0, 20)]
                assert LV_MYOCARDIUM in ray[ray.index(LV_CAVITY):]
        ed, es = (np.sum(video.labels[f] == LV_MYOCARDIUM) for f in (video.ed_frame, video.es_frame))
        assert es > 0.7 * ed  # the wall thickens while the ring shrinks: its area stays about the same


def test_plax_long_axis_runs_across_with_the_la_at_the_base(hearts):
    for video in hearts["PLAX"]:
        labels = video.labels[video.ed_frame]
        (x, y), angle, roundness = centroid_and_axes(labels == LV_CAVITY)
        assert angle < 25 and roundness < 0.7  # an elongated LV lying across the image
        (la_x, _), _, _ = centroid_and_axes(labels == LEFT_ATRIUM)
        assert la_x > x + 8  # the LA at the image right, beyond the base
        column = labels[:, int(round(x))]  # septum above the cavity, posterior wall below
        rows = np.flatnonzero(column == LV_MYOCARDIUM)
        assert rows.min() < y < rows.max()
    for video in hearts["A4C"]:  # the apical LV stands upright, for contrast
        assert centroid_and_axes(video.labels[video.ed_frame] == LV_CAVITY)[1] > 60


def test_other_is_a_subcostal_view_with_the_apex_at_the_right(hearts):
    for video in hearts["other"]:
        labels = video.labels[video.ed_frame]
        (x, y), angle, _ = centroid_and_axes(labels == LV_CAVITY)
        assert 10 < angle < 55  # the long axis slants across the image
        (la_x, la_y), _, _ = centroid_and_axes(labels == LEFT_ATRIUM)
        assert la_x < x and la_y > y  # the atria at the lower left
        near_field = video.frames[:, 3:8, 21:27].astype(float).mean()  # the liver under the transducer: tissue
        blood = video.frames[video.labels == LV_CAVITY].astype(float).mean()
        assert near_field > blood + 30


def test_view_api_rejects_bad_input():
    with pytest.raises(ValueError, match="view"):
        make_view_video(0, 0, "A3C", SMALL)
    with pytest.raises(ValueError, match="index"):
        make_view_video(0, -1, "PLAX", SMALL)
    with pytest.raises(ValueError, match="hearts"):
        synthetic_view_set(0, 0, SMALL)
    with pytest.raises(ValueError, match="views"):
        synthetic_view_set(2, 0, SMALL, views=("PLAX", "PLAX"))


def test_config_view_does_not_change_a_posed_view():
    a = make_view_video(0, 1, "PLAX", SyntheticConfig(image_size=32, frames=4))
    b = make_view_video(0, 1, "PLAX", SyntheticConfig(image_size=32, frames=4, view="A2C"))
    assert digest(a) == digest(b)


def test_view_set_is_balanced_split_by_heart_and_deterministic():
    config = SyntheticConfig(image_size=32, frames=8)
    views = synthetic_view_set(12, 5, config)
    assert isinstance(views, ViewSet) and len(views) == 60 and views.views == VIEW_CLASSES
    assert views.frames.shape == views.labels.shape == (60, 8, 32, 32) and views.frames.dtype == np.uint8
    assert np.bincount(views.view_index, minlength=5).tolist() == [12] * 5
    for name in ("view_index", "ed_frame", "es_frame", "heart_id"):
        assert getattr(views, name).dtype == np.int64
    for heart in range(12):  # each heart in one split, seen in every view, A4C and A2C among them
        mine = views.heart_id == heart
        assert len(set(views.splits[mine])) == 1 and sorted(views.view_index[mine]) == list(range(5))
    assert set(views.splits) == {"TRAIN", "VAL", "TEST"}
    train = views.subset("train")
    assert set(train.splits) == {"TRAIN"} and not set(train.heart_id) & set(views.subset(["VAL", "TEST"]).heart_id)
    psax = views.subset(views.view_index == VIEW_CLASSES.index("PSAX"))
    assert len(psax) == 12 and set(psax.view_names) == {"PSAX"}
    # the same bytes again, and from a video made alone
    again = synthetic_view_set(12, 5, config, workers=2)
    assert np.array_equal(views.frames, again.frames) and np.array_equal(views.labels, again.labels)
    alone = make_view_video(5, 3, "PSAX", config)
    k = int(np.flatnonzero((views.heart_id == 3) & (views.view_index == 3))[0])
    assert np.array_equal(views.frames[k], alone.frames) and views.ef_percent[k] == alone.ef_percent
    with pytest.raises(ValueError, match="mask"):
        views.subset(np.ones(3, dtype=bool))


@pytest.fixture(scope="module")
def many_hearts():
    """300 videos: 60 hearts in the five views, small."""
    return synthetic_view_set(60, 0, SyntheticConfig(image_size=32, frames=8))


def test_every_view_contracts_by_the_hearts_ef(many_hearts):
    """The LV cavity's fractional area change (ED to ES) follows the heart's EF in every view showing the LV."""
    from scipy.stats import spearmanr

    rows = np.arange(len(many_hearts))
    ed = np.sum(many_hearts.labels[rows, many_hearts.ed_frame] == LV_CAVITY, axis=(1, 2))
    es = np.sum(many_hearts.labels[rows, many_hearts.es_frame] == LV_CAVITY, axis=(1, 2))
    area_change = 1.0 - es / ed
    for k, view in enumerate(VIEW_CLASSES):
        mine = many_hearts.view_index == k
        assert spearmanr(area_change[mine], many_hearts.ef_percent[mine]).statistic > 0.75, view


def test_views_are_told_apart_by_shape_not_by_brightness(many_hearts):
    """Mean intensity alone stays near chance (5 classes: 20 %), so view identification is a real task; a crude
    shape feature (the clip's mean image at 8 x 8) does far better, so this check can fail."""
    import cv2
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    views = many_hearts
    frames = views.frames.astype(np.float32)
    mean_intensity = frames.mean(axis=(1, 2, 3))[:, None]
    shape = np.stack([cv2.resize(video.mean(axis=0), (8, 8), interpolation=cv2.INTER_AREA).ravel()
                      for video in frames])
    folds = GroupKFold(5)

    def accuracy(features):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        return cross_val_score(model, features, views.view_index, cv=folds, groups=views.heart_id).mean()

    assert accuracy(mean_intensity) < 0.35
    assert accuracy(shape) > 0.8
