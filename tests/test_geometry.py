"""Tracings, masks and the method of discs (echobook.data.geometry)."""
import math

import numpy as np
import pytest

from echobook.data import geometry as G


def ellipse_tracing(centre=(56.0, 50.0), a=30.0, b=12.0, angle=0.0):
    """Tracing of an ellipse outline: apex and 'mitral plane' at the two ends of the long axis."""
    contour = G.ellipse_contour(centre, a, b, angle, points=600)
    e = np.array([math.sin(angle), math.cos(angle)])
    apex, tip = np.asarray(centre) - a * e, np.asarray(centre) + a * e
    return G.tracing_from_contour(contour, apex, tip, tip)


def ellipse_mask(shape, centre, a, b, angle=0.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    e = np.array([math.sin(angle), math.cos(angle)])
    dx, dy = xx - centre[0], yy - centre[1]
    u, v = dx * e[0] + dy * e[1], dx * e[1] - dy * e[0]
    return ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.uint8)


@pytest.mark.parametrize("angle", [0.0, 0.25, -0.4])
def test_disc_volume_of_an_ellipse_matches_the_prolate_ellipsoid(angle):
    a, b = 30.0, 12.0
    tracing = ellipse_tracing(a=a, b=b, angle=angle)
    assert tracing.shape == (21, 4)
    assert G.long_axis_length_px(tracing) == pytest.approx(2 * a)
    ellipsoid = 4.0 / 3.0 * math.pi * a * b * b
    assert G.disc_volume_px3(tracing) == pytest.approx(ellipsoid, rel=0.01)


def test_tracing_follows_the_echonet_convention():
    tracing = ellipse_tracing(angle=0.2)
    apex_x, apex_y, mid_x, mid_y = tracing[0]
    assert apex_y < mid_y  # row 0: apex (top) to mitral-plane midpoint
    assert np.all(tracing[1:, 0] < tracing[1:, 2])  # X1 on the image-left wall, X2 on the right
    along = (tracing[1:, :2] + tracing[1:, 2:]) / 2 - tracing[0, :2]
    axis = tracing[0, 2:] - tracing[0, :2]
    assert np.all(np.diff(along @ axis) > 0)  # chords ordered from apex to base
    chords = tracing[1:, 2:] - tracing[1:, :2]
    assert np.allclose(chords @ axis, 0, atol=1e-9)  # perpendicular to the long axis


def test_units_and_ejection_fraction():
    ed = ellipse_tracing(a=30, b=12)
    es = ellipse_tracing(a=30 * 0.8, b=12 * 0.8)  # every length x0.8 -> volume x0.512
    assert G.ejection_fraction_percent(ed, es) == pytest.approx(100 * (1 - 0.8 ** 3), abs=1e-6)
    px3 = G.disc_volume_px3(ed)
    assert G.disc_volume_ml(ed, 2.0) == pytest.approx(px3 * 8 / 1000)
    batch = np.stack([ed, es])
    assert np.allclose(G.disc_volume_px3(batch), [G.disc_volume_px3(ed), G.disc_volume_px3(es)])


def test_polygon_and_mask_follow_echonet():
    tracing = ellipse_tracing(angle=0.1)
    polygon = G.tracing_to_polygon(tracing)
    assert polygon.shape == (40, 2)
    assert np.allclose(polygon[:20], tracing[1:, :2]) and np.allclose(polygon[20:], tracing[1:, 2:][::-1])
    mask = G.tracing_to_mask(tracing, (112, 112))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    perimeter = np.sum(np.hypot(*np.diff(np.vstack([polygon, polygon[:1]]), axis=0).T))
    assert abs(mask.sum() - G.tracing_area_px2(tracing)) < 0.5 * perimeter
    # frames traced twice (42 rows) use the first tracing only
    assert np.array_equal(G.tracing_to_mask(np.vstack([tracing, tracing + 5]), (112, 112)), mask)


def test_echonet_mask_rule_counted_by_hand():
    """EchoNet's loader rounds the vertices (np.rint) and skimage.draw.polygon keeps border centres too."""
    # Rectangle x 0.4..3.4, y 0.6..2.6. Exact: pixel centres strictly inside are x in {1, 2, 3}
    # (0 < 0.4 is out) and y in {1, 2}: 3 x 2 = 6 pixels. EchoNet: the corners round to x 0 and 3,
    # y 1 and 3, and centres on the border count: x in {0, 1, 2, 3}, y in {1, 2, 3}: 4 x 3 = 12 pixels.
    rectangle = [(0.4, 0.6), (3.4, 0.6), (3.4, 2.6), (0.4, 2.6)]
    exact, echonet = G.polygon_to_mask(rectangle, (6, 6)), G.polygon_to_mask(rectangle, (6, 6), rule="echonet")
    assert exact.sum() == 6 and np.array_equal(np.argwhere(exact)[[0, -1]], [[1, 1], [2, 3]])  # (row, col)
    assert echonet.sum() == 12 and np.array_equal(np.argwhere(echonet)[[0, -1]], [[1, 0], [3, 3]])
    # Right triangle (0.2, 0.3), (4.4, 0.3), (0.2, 4.1). Exact: centres with x >= 1, y >= 1 below the
    # hypotenuse (x - 0.2) / 4.2 + (y - 0.3) / 3.8 < 1: (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1)
    # = 6 pixels ((1, 4) gives 1.16, (2, 3) 1.14, (3, 2) 1.11, (4, 1) 1.09). EchoNet: the corners round
    # to (0, 0), (4, 0), (0, 4), and every centre with x, y >= 0 and x + y <= 4 counts, the border
    # included: 5 + 4 + 3 + 2 + 1 = 15 pixels.
    triangle = [(0.2, 0.3), (4.4, 0.3), (0.2, 4.1)]
    exact, echonet = G.polygon_to_mask(triangle, (8, 8)), G.polygon_to_mask(triangle, (8, 8), rule="echonet")
    assert exact.sum() == 6 and all(exact[y, x] for x, y in [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1)])
    yy, xx = np.mgrid[:8, :8]
    assert echonet.sum() == 15 and np.array_equal(echonet, (xx + yy <= 4).astype(np.uint8))


def test_echonet_masks_are_a_few_percent_larger_and_the_default_is_exact():
    tracing = ellipse_tracing(angle=0.1)
    exact = G.tracing_to_mask(tracing, (112, 112))
    assert np.array_equal(G.tracing_to_mask(tracing, (112, 112), rule="exact"), exact)
    echonet = G.tracing_to_mask(tracing, (112, 112), rule="echonet")
    assert 1.0 < echonet.sum() / exact.sum() < 1.06  # EchoNet-Dynamic's tracings: about 3.6 % larger
    assert 0.94 < np.sum(exact & echonet) / np.sum(exact | echonet) < 0.99
    partly_outside = G.polygon_to_mask([(-3.2, -2.7), (2.4, -2.7), (2.4, 1.6), (-3.2, 1.6)], (4, 4), rule="echonet")
    assert partly_outside.sum() == 3 * 3  # rows 0..2 (y <= 2), columns 0..2 (x <= 2) of the image
    with pytest.raises(ValueError, match="rule='skimage'"):
        G.polygon_to_mask(tracing[1:, :2], (8, 8), rule="skimage")


@pytest.mark.parametrize("angle", [0.0, 0.2])
def test_mask_to_tracing_recovers_the_ellipsoid(angle):
    a, b = 36.0, 14.0
    mask = ellipse_mask((112, 112), (56.0, 52.0), a, b, angle)
    tracing = G.mask_to_tracing(mask)
    assert G.long_axis_length_px(tracing) == pytest.approx(2 * a, abs=1.5)
    assert G.disc_volume_px3(tracing) == pytest.approx(4 / 3 * math.pi * a * b * b, rel=0.03)


def test_mask_tracing_round_trip():
    """A truncated (LV-like) mask -> tracing -> mask keeps the region (Dice) and the volume."""
    yy, xx = np.mgrid[:112, :112]
    lv = ((xx - 60) / 15.0) ** 2 + ((yy - 52) / 36.0) ** 2 <= 1
    lv &= yy <= 75  # a flat mitral plane
    tracing = G.mask_to_tracing(lv)
    assert tracing[0, 3] == pytest.approx(75.5, abs=0.6)  # mitral plane at the mask's lower edge
    again = G.tracing_to_mask(tracing, lv.shape)
    dice = 2 * np.sum(again & lv) / (again.sum() + lv.sum())
    assert dice > 0.93  # the tracing's polygon drops the apex cap and the half-disc at the base
    assert G.disc_volume_px3(G.mask_to_tracing(again)) == pytest.approx(G.disc_volume_px3(tracing), rel=0.12)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="tracing"):
        G.disc_volume_px3(np.zeros((21, 3)))
    with pytest.raises(ValueError, match="NaN"):
        G.disc_volume_px3(np.full((21, 4), np.nan))
    with pytest.raises(ValueError, match="mm_per_pixel"):
        G.disc_volume_ml(ellipse_tracing(), 0.0)
    with pytest.raises(ValueError, match="empty"):
        G.mask_to_tracing(np.zeros((32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="21 rows"):
        G.tracing_to_mask(np.ones((5, 4)), (32, 32))
    with pytest.raises(ValueError, match="ed_tracing"):
        G.ejection_fraction_percent(np.zeros((21, 4)), ellipse_tracing())
