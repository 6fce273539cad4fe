"""Landmarks from EchoNet tracings and from label masks (echobook.data.landmarks)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from echobook.data import geometry as G
from echobook.data import landmarks as L
from echobook.losses import disc_volumes

CENTRE_X, BASE_Y, LONG_PX, HALF_WIDTH_PX = 56.0, 80.0, 60.0, 18.0  # a half-ellipse LV on a 112-pixel frame


def half_ellipse_contour(points=800):
    """The upper half of an ellipse (apex at the top) closed by its flat base: an LV-like outline."""
    t = np.linspace(-np.pi / 2, np.pi / 2, points)
    arc = np.stack([CENTRE_X + HALF_WIDTH_PX * np.sin(t), BASE_Y - LONG_PX * np.cos(t)], axis=1)
    return arc  # the closing edge from the last point back to the first is the mitral plane


def lv_tracing():
    apex = np.array([CENTRE_X, BASE_Y - LONG_PX])
    left, right = np.array([CENTRE_X - HALF_WIDTH_PX, BASE_Y]), np.array([CENTRE_X + HALF_WIDTH_PX, BASE_Y])
    return G.tracing_from_contour(half_ellipse_contour(), apex, left, right)


def half_width_at(fraction):
    """The half-ellipse's half-width at ``fraction`` of the long axis from the apex."""
    return HALF_WIDTH_PX * np.sqrt(1 - (1 - fraction) ** 2)


@pytest.mark.parametrize("wall_points", [1, 10, 20])
def test_count_and_order(wall_points):
    landmarks = L.landmarks_px_from_tracing(lv_tracing(), wall_points)
    assert landmarks.shape == (L.landmark_count(wall_points), 2) == (3 + 2 * wall_points, 2)
    assert np.allclose(landmarks[L.APEX], [CENTRE_X, BASE_Y - LONG_PX], atol=1e-6)
    left, right = landmarks[L.left_wall(wall_points)], landmarks[L.right_wall(wall_points)]
    assert np.all(left[:, 0] < CENTRE_X) and np.all(right[:, 0] > CENTRE_X)  # each wall on its side
    assert landmarks[L.ANNULUS_LEFT, 0] < CENTRE_X < landmarks[L.ANNULUS_RIGHT, 0]
    expected_y = BASE_Y - LONG_PX + LONG_PX * L.wall_fractions(wall_points)
    assert np.allclose(left[:, 1], expected_y, atol=1e-6) and np.allclose(right[:, 1], expected_y, atol=1e-6)
    # apex to base; wall points on the outline (the ellipse's half-width at their fraction), within a pixel
    half_widths = half_width_at(L.wall_fractions(wall_points))
    assert np.allclose(CENTRE_X - left[:, 0], half_widths, atol=1.0)
    assert np.allclose(right[:, 0] - CENTRE_X, half_widths, atol=1.0)
    assert L.wall_points_of(len(landmarks)) == wall_points


def test_the_annulus_is_the_last_chord_slid_onto_the_mitral_plane():
    tracing = lv_tracing()
    landmarks = L.landmarks_px_from_tracing(tracing)
    last_left, last_right = tracing[-1, 0:2], tracing[-1, 2:4]
    assert landmarks[L.ANNULUS_LEFT] == pytest.approx([last_left[0], BASE_Y])
    assert landmarks[L.ANNULUS_RIGHT] == pytest.approx([last_right[0], BASE_Y])


def test_normalisation_divides_x_by_width_and_y_by_height():
    tracing = lv_tracing()
    pixels = L.landmarks_px_from_tracing(tracing)
    normalised = L.landmarks_from_tracing(tracing, (112, 112))
    assert np.all((normalised >= 0) & (normalised <= 1))
    assert np.allclose(normalised * 112, pixels)
    wide = L.landmarks_from_tracing(tracing, (112, 224))  # (height, width)
    assert np.allclose(wide[:, 0] * 224, pixels[:, 0]) and np.allclose(wide[:, 1] * 112, pixels[:, 1])
    with pytest.raises(ValueError, match="frame_size_px"):
        L.landmarks_from_tracing(tracing, (0, 112))


def test_a_tracing_listed_base_first_or_with_swapped_ends_gives_the_same_landmarks():
    tracing = lv_tracing()
    expected = L.landmarks_px_from_tracing(tracing)
    reversed_chords = np.vstack([tracing[:1], tracing[1:][::-1]])
    swapped_ends = np.vstack([tracing[:1], tracing[1:][:, [2, 3, 0, 1]]])
    assert np.allclose(L.landmarks_px_from_tracing(reversed_chords), expected)
    assert np.allclose(L.landmarks_px_from_tracing(swapped_ends), expected)


def test_a_mirrored_tracing_mirrors_the_landmarks_and_swaps_the_walls():
    width, wall_points = 112.0, 10
    tracing = lv_tracing()
    mirrored = tracing.copy()
    mirrored[:, [0, 2]] = width - tracing[:, [0, 2]]  # the image flipped left to right
    original = L.landmarks_px_from_tracing(tracing, wall_points)
    flipped = L.landmarks_px_from_tracing(mirrored, wall_points)

    def mirror(points):
        return np.stack([width - points[:, 0], points[:, 1]], axis=1)

    assert np.allclose(flipped[L.left_wall(wall_points)], mirror(original[L.right_wall(wall_points)]))
    assert np.allclose(flipped[L.right_wall(wall_points)], mirror(original[L.left_wall(wall_points)]))
    assert np.allclose(flipped[L.ANNULUS_LEFT], mirror(original[[L.ANNULUS_RIGHT]])[0])
    assert np.all(flipped[L.left_wall(wall_points), 0] < flipped[L.right_wall(wall_points), 0])


def test_twenty_wall_points_are_echonets_chords_and_give_its_disc_volume():
    tracing = lv_tracing()
    landmarks = L.landmarks_px_from_tracing(tracing, 20)
    assert np.allclose(landmarks[L.left_wall(20)], tracing[1:, 0:2])
    assert np.allclose(landmarks[L.right_wall(20)], tracing[1:, 2:4])
    volume = float(disc_volumes(torch.from_numpy(landmarks)))
    assert volume == pytest.approx(float(G.disc_volume_px3(tracing)), rel=1e-9)
    # the discs of the half prolate ellipsoid, summed by hand: chord i at i/21 of the axis has half-width
    # b sqrt(1 - (1 - i/21)^2); each disc is L/21 high (so the last 1/21 of the axis is left out)
    fractions = np.arange(1, 21) / 21
    by_hand = math.pi * HALF_WIDTH_PX ** 2 * (LONG_PX / 21) * np.sum(1 - (1 - fractions) ** 2)
    assert volume == pytest.approx(by_hand, rel=0.01)
    assert volume == pytest.approx(2 / 3 * math.pi * LONG_PX * HALF_WIDTH_PX ** 2, rel=0.06)  # the solid


def test_a_frame_traced_twice_uses_its_first_tracing():
    tracing = lv_tracing()
    doubled = np.vstack([tracing, tracing + 5.0])
    assert np.allclose(L.landmarks_px_from_tracing(doubled), L.landmarks_px_from_tracing(tracing))


def half_ellipse_mask(shape=(112, 112), label=1):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inside = (((xx - CENTRE_X) / HALF_WIDTH_PX) ** 2 + ((yy - BASE_Y) / LONG_PX) ** 2 <= 1) & (yy <= BASE_Y)
    return (inside * label).astype(np.uint8)


def test_landmarks_from_a_mask_match_the_outline_they_came_from():
    from_mask = L.landmarks_px_from_mask(half_ellipse_mask())
    from_tracing = L.landmarks_px_from_tracing(lv_tracing())
    assert np.abs(from_mask - from_tracing).max() < 2.0  # pixels: the mask's staircase border
    assert from_mask[L.ANNULUS_LEFT, 0] < CENTRE_X < from_mask[L.ANNULUS_RIGHT, 0]


def test_a_camus_label_map_takes_the_lv_cavity_label():
    label_map = half_ellipse_mask()
    label_map[:5, :5] = 2  # myocardium and atrium labels elsewhere must not count
    label_map[-5:, -5:] = 3
    assert np.allclose(L.landmarks_from_mask(label_map), L.landmarks_from_mask(half_ellipse_mask()))
    assert np.all((L.landmarks_from_mask(label_map) >= 0) & (L.landmarks_from_mask(label_map) <= 1))


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="wall_points"):
        L.landmarks_px_from_tracing(lv_tracing(), 0)
    with pytest.raises(ValueError, match="no LV pixels"):
        L.landmarks_from_mask(np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        L.landmarks_from_mask(np.zeros((2, 20, 20), np.uint8))
    with pytest.raises(ValueError, match="21 rows"):
        L.landmarks_px_from_tracing(lv_tracing()[:10])
    with pytest.raises(ValueError, match="3 \\+ 2"):
        L.wall_points_of(6)


def test_video_landmarks_stack_ed_then_es_and_leave_untraced_videos_nan():
    tracing = lv_tracing()
    shrunk = tracing.copy()
    shrunk[:, [0, 2]] = CENTRE_X + 0.8 * (tracing[:, [0, 2]] - CENTRE_X)  # a narrower ES
    traced = SimpleNamespace(ed_tracing=tracing, es_tracing=shrunk, frame_height=112, frame_width=112)
    untraced = SimpleNamespace(ed_tracing=None, es_tracing=None, frame_height=112, frame_width=112)
    table = L.video_landmarks([traced, untraced], wall_points=5)
    assert table.shape == (2, 2, L.landmark_count(5), 2) and table.dtype == np.float32
    assert np.allclose(table[0, 0], L.landmarks_from_tracing(tracing, (112, 112), 5))
    assert np.allclose(table[0, 1], L.landmarks_from_tracing(shrunk, (112, 112), 5))
    assert np.isnan(table[1]).all()


def test_the_polygon_goes_round_the_outline():
    landmarks = L.landmarks_px_from_tracing(lv_tracing(), 4)
    polygon = L.landmark_polygon(landmarks)
    assert polygon.shape == (2 * 4 + 4, 2)
    assert np.allclose(polygon[0], polygon[-1])  # closed
    assert G.polygon_area_px2(polygon) == pytest.approx(G.tracing_area_px2(lv_tracing()), rel=0.1)
