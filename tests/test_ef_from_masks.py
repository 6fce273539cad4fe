"""EF by the method of discs from LV-cavity masks (echobook.data.geometry), on ellipsoids of known volume."""
import math

import numpy as np
import pytest

from echobook.data import geometry as G

MM_PER_PIXEL = 0.4


def ellipse_mask(a: float, b: float, shape=(112, 112), centre=(56.0, 54.0), angle: float = 0.1) -> np.ndarray:
    """The pixels inside an ellipse whose long semi-axis ``a`` makes ``angle`` with the image's +Y."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    e = np.array([math.sin(angle), math.cos(angle)])
    dx, dy = xx - centre[0], yy - centre[1]
    u, v = dx * e[0] + dy * e[1], dx * e[1] - dy * e[0]
    return ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.uint8)


def prolate_ml(a: float, b: float, c: float | None = None) -> float:
    """Volume of the ellipsoid of semi-axes a, b, c (c = b: prolate) in mL at MM_PER_PIXEL."""
    return 4 / 3 * math.pi * a * b * (b if c is None else c) * MM_PER_PIXEL ** 3 / 1000


ED, ES = (36.0, 14.0), (32.0, 10.0)  # (long, short) semi-axes in pixels
TRUE_EF = 100 * (1 - prolate_ml(*ES) / prolate_ml(*ED))  # 54.6 %


def test_single_plane_volume_and_ef_of_a_known_ellipsoid():
    assert G.lv_volume_ml_from_mask(ellipse_mask(*ED), MM_PER_PIXEL) == pytest.approx(prolate_ml(*ED), rel=0.03)
    assert G.ef_from_masks_percent(ellipse_mask(*ED), ellipse_mask(*ES)) == pytest.approx(TRUE_EF, abs=1.5)


def test_biplane_ef_of_an_ellipsoid_seen_from_two_sides():
    # a triaxial ellipsoid: semi-axis b across view A, c across view B (same long axis, same spacing)
    ed_c, es_c = 11.0, 8.0
    result = G.biplane_ef_from_masks(ellipse_mask(*ED), ellipse_mask(*ES), ellipse_mask(ED[0], ed_c),
                                     ellipse_mask(ES[0], es_c), MM_PER_PIXEL, MM_PER_PIXEL)
    true_ef = 100 * (1 - prolate_ml(ES[0], ES[1], es_c) / prolate_ml(ED[0], ED[1], ed_c))
    assert result["ef_percent"] == pytest.approx(true_ef, abs=1.5)
    # the biplane rule's discs are L / N high where the single plane's are L / (N + 1): 5 % more volume
    assert result["edv_ml"] == pytest.approx(prolate_ml(ED[0], ED[1], ed_c) * 21 / 20, rel=0.04)
    assert result["edv_ml"] > result["esv_ml"] > 0


def test_the_same_view_twice_gives_the_single_plane_ef():
    ed, es = ellipse_mask(*ED), ellipse_mask(*ES)
    biplane = G.biplane_ef_from_masks(ed, es, ed, es, MM_PER_PIXEL, MM_PER_PIXEL)
    assert biplane["ef_percent"] == pytest.approx(G.ef_from_masks_percent(ed, es), abs=0.5)


def test_an_empty_mask_says_so():
    with pytest.raises(ValueError, match="empty"):
        G.ef_from_masks_percent(np.zeros((32, 32), np.uint8), ellipse_mask(*ES))
