"""Segmentation metrics on hand-made masks: identical, disjoint, shifted by one pixel, empty."""
import numpy as np
import pytest

from echobook.metrics import segmentation_scores, summarise_segmentation


def square(top: int, left: int, side: int = 3, value: int = 1, shape=(10, 10)) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[top:top + side, left:left + side] = value
    return labels


def scores_of(pred, true, **kwargs):
    return {k: v[0, 0] for k, v in segmentation_scores(pred, true, classes=(1,), **kwargs).items()}


def test_identical_masks_score_perfectly():
    s = scores_of(square(2, 2), square(2, 2))
    assert s == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}


def test_disjoint_pixels_five_apart():
    pred, true = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    pred[1, 1], true[1, 6] = 1, 1
    s = scores_of(pred, true)
    assert s["dice"] == 0.0 and s["iou"] == 0.0
    assert s["hd95"] == pytest.approx(5.0) and s["assd"] == pytest.approx(5.0)


def test_a_square_shifted_by_one_pixel():
    # 3 x 3 squares, one row apart: overlap 6 of 9 pixels. Dice 2*6/18, IoU 6/12. Border pixels (the centre is
    # not on the border): of the 8 of each square, 4 lie on the other's border (distance 0) and 4 one pixel
    # away, so ASSD = 4/8 and the 95th percentile of the distances is 1.
    s = scores_of(square(3, 2), square(2, 2))
    assert s["dice"] == pytest.approx(2 / 3) and s["iou"] == pytest.approx(0.5)
    assert s["hd95"] == pytest.approx(1.0) and s["assd"] == pytest.approx(0.5)


def test_distances_scale_with_the_pixel_spacing_per_image():
    pred = np.stack([square(3, 2), square(3, 2)])
    true = np.stack([square(2, 2), square(2, 2)])
    s = segmentation_scores(pred, true, classes=(1,), mm_per_pixel=[0.5, 2.0])
    np.testing.assert_allclose(s["hd95"][:, 0], [0.5, 2.0])
    np.testing.assert_allclose(s["dice"][:, 0], [2 / 3, 2 / 3])


def test_empty_masks_follow_the_stated_conventions():
    empty = np.zeros((10, 10), np.uint8)
    assert scores_of(empty, empty) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}
    for pred, true in ((empty, square(2, 2)), (square(2, 2), empty)):
        s = scores_of(pred, true)
        assert s["dice"] == 0.0 and s["iou"] == 0.0
        assert np.isnan(s["hd95"]) and np.isnan(s["assd"])


def test_several_structures_and_the_summary():
    true = square(1, 1, value=1) + square(5, 5, value=3)
    pred = square(1, 1, value=1)  # LA missed; myocardium absent from both
    s = segmentation_scores(pred, true)
    np.testing.assert_allclose(s["dice"][0], [1.0, 1.0, 0.0])
    summary = summarise_segmentation(s, ["LV", "MYO", "LA"])
    assert summary["LV"]["dice"] == 1.0 and summary["LA"]["one_empty"] == 1 and np.isnan(summary["LA"]["hd95"])
    assert summary["MYO"]["hd95"] == 0.0


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="differ in shape"):
        segmentation_scores(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        segmentation_scores(np.zeros(8), np.zeros(8))
