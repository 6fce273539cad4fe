"""LV tracings, masks and the single-plane method of discs (EchoNet-Dynamic conventions).

A *tracing* is a float array ``[N + 1, 4]`` of rows ``X1, Y1, X2, Y2`` in pixels
(X = column, Y = row, origin top-left, a pixel's centre at integer coordinates):

- row 0 is the long axis, from the apex ``(X1, Y1)`` to the midpoint of the mitral
  plane ``(X2, Y2)``;
- rows 1..N (N = 20) are chords perpendicular to the long axis, ordered from the
  apex to the base; ``(X1, Y1)`` lies on the image-left wall (the septum in A4C) and
  ``(X2, Y2)`` on the image-right wall.

Single-plane method of discs (the Stanford follow-up code's convention): with ``L``
the long-axis length and ``d_i`` the chord lengths, each chord is a disc of height
``h = L / (N + 1)`` and ``V = sum_i pi (d_i / 2)^2 h``, in pixel^3;
``V_mL = V_px3 * mm_per_pixel^3 / 1000``. (CAMUS uses ``h = L / N`` instead.)

Masks (:func:`polygon_to_mask`) offer two rules. ``"exact"`` (the default) keeps the pixels whose
centre lies inside the polygon as traced. ``"echonet"`` reproduces the official EchoNet loader, which
rounds the vertices to whole pixels before ``skimage.draw.polygon`` and so keeps every pixel centre
on the polygon's border too: its masks are a few per cent larger (about 3.6 % on EchoNet-Dynamic's
tracings; IoU with the exact masks 0.94-0.98).

Every function accepts leading batch dimensions where that is natural
(``[..., 21, 4]`` tracings), so a whole video's tracings are measured at once.
"""
from __future__ import annotations

import numpy as np

N_CHORDS = 20  # EchoNet-Dynamic: 20 short-axis chords per traced frame
TRACING_ROWS = N_CHORDS + 1
MASK_RULES = ("exact", "echonet")  # see polygon_to_mask
VERTEX_TOLERANCE_PX = 1e-7  # skimage's point_in_polygon: a point this close to a vertex is on it


def _as_tracing(tracing, name: str = "tracing") -> np.ndarray:
    array = np.asarray(tracing, dtype=np.float64)
    if array.ndim < 2 or array.shape[-1] != 4 or array.shape[-2] < 2:
        raise ValueError(f"{name} must have shape [..., N + 1, 4] (rows X1, Y1, X2, Y2); got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite coordinates")
    return array


# --------------------------------------------------------------------------- measurements
def long_axis_length_px(tracing) -> np.ndarray:
    """Length of row 0 (apex to mitral-plane midpoint), in pixels."""
    t = _as_tracing(tracing)
    return np.hypot(t[..., 0, 2] - t[..., 0, 0], t[..., 0, 3] - t[..., 0, 1])


def chord_lengths_px(tracing) -> np.ndarray:
    """Lengths of rows 1..N, in pixels: ``[..., N]``."""
    t = _as_tracing(tracing)
    return np.hypot(t[..., 1:, 2] - t[..., 1:, 0], t[..., 1:, 3] - t[..., 1:, 1])


def disc_volume_px3(tracing) -> np.ndarray:
    """Single-plane method of discs: ``sum pi (d_i/2)^2 * L/(N+1)``, in pixel^3."""
    t = _as_tracing(tracing)
    n_chords = t.shape[-2] - 1
    disc_height_px = long_axis_length_px(t) / (n_chords + 1)
    diameters_px = chord_lengths_px(t)
    return np.pi / 4.0 * np.sum(diameters_px ** 2, axis=-1) * disc_height_px


def disc_volume_ml(tracing, mm_per_pixel: float) -> np.ndarray:
    """Method-of-discs volume in mL (1 mL = 1000 mm^3) for a pixel spacing in mm."""
    if not np.all(np.asarray(mm_per_pixel) > 0):
        raise ValueError(f"mm_per_pixel must be positive; got {mm_per_pixel!r}")
    return disc_volume_px3(tracing) * np.asarray(mm_per_pixel, dtype=np.float64) ** 3 / 1000.0


def ejection_fraction_percent(ed_tracing, es_tracing) -> float | np.ndarray:
    """``100 (EDV - ESV) / EDV`` from the ED and ES tracings (the pixel spacing cancels)."""
    edv = disc_volume_px3(_as_tracing(ed_tracing, "ed_tracing"))
    esv = disc_volume_px3(_as_tracing(es_tracing, "es_tracing"))
    if np.any(edv <= 0):
        raise ValueError("ed_tracing has zero volume")
    ef = 100.0 * (edv - esv) / edv
    return float(ef) if np.ndim(ef) == 0 else ef


def tracing_to_polygon(tracing) -> np.ndarray:
    """EchoNet's polygon: drop the long axis; ``(X1, Y1)`` of rows 1.. then ``(X2, Y2)`` reversed.

    Returns ``[2N, 2]`` (x, y).
    """
    t = _as_tracing(tracing)
    if t.ndim != 2:
        raise ValueError(f"tracing_to_polygon takes one tracing [N + 1, 4]; got {t.shape}")
    side_1 = t[1:, 0:2]
    side_2 = t[1:, 2:4][::-1]
    return np.concatenate([side_1, side_2], axis=0)


def polygon_area_px2(polygon) -> float | np.ndarray:
    """Shoelace area of a closed polygon ``[..., P, 2]`` (x, y), in pixel^2."""
    p = np.asarray(polygon, dtype=np.float64)
    x, y = p[..., 0], p[..., 1]
    area = 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, axis=-1))
    return float(area) if np.ndim(area) == 0 else area


def tracing_area_px2(tracing) -> float:
    """Area of the tracing's polygon (what EchoNet's loader rasterises), in pixel^2."""
    return polygon_area_px2(tracing_to_polygon(first_tracing(tracing)))


def first_tracing(tracing) -> np.ndarray:
    """The first complete ``[21, 4]`` block of a frame's rows.

    Some EchoNet frames hold 42, 63... rows (several tracings); concatenating them into
    one polygon gives the "strange masks" of echonet/dynamic#20, so take the first.
    """
    t = _as_tracing(tracing)
    if t.ndim != 2:
        raise ValueError(f"expected one frame's rows [K, 4]; got {t.shape}")
    if t.shape[0] < TRACING_ROWS:
        raise ValueError(f"a tracing needs {TRACING_ROWS} rows (long axis + {N_CHORDS} chords); got {t.shape[0]}")
    return t[:TRACING_ROWS]


def polygon_to_mask(polygon, shape: tuple[int, int], rule: str = "exact") -> np.ndarray:
    """uint8 {0, 1} mask ``[H, W]`` of the pixels a polygon ``[P, 2]`` (x, y) covers.

    A pixel is judged by its centre, at integer (x, y); coordinates outside the image are fine.

    - ``rule="exact"`` (default): centres strictly inside the polygon as given, vertices unrounded
      (matplotlib's point-in-path test; a centre exactly on an edge, rare with real-valued
      vertices, may fall either way).
    - ``rule="echonet"``: the official EchoNet-Dynamic loader's masks. It rounds the vertices to
      whole pixels (``np.rint``, halves to even) and calls ``skimage.draw.polygon``, whose test
      (O'Rourke's ray crossing, see :func:`_inside_or_on_border`) keeps centres inside the polygon
      *or on its border*. With integer vertices many centres lie exactly on the border (every
      pixel along a horizontal or vertical edge, every vertex), so these masks are a few per cent
      larger than the exact ones. Non-integer vertices alone would give the exact rule's pixels.
    """
    from matplotlib.path import Path

    if rule not in MASK_RULES:
        raise ValueError(f"rule={rule!r}: choose from {MASK_RULES}")
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"shape must be (H, W) with positive sides; got {shape!r}")
    polygon = np.asarray(polygon, dtype=np.float64)
    if rule == "echonet":
        polygon = np.rint(polygon)
    mask = np.zeros((height, width), dtype=np.uint8)
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
    if x1 < x0 or y1 < y0:
        return mask
    yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    if rule == "echonet":
        inside = _inside_or_on_border(polygon, xx.ravel().astype(np.float64), yy.ravel().astype(np.float64))
    else:
        inside = Path(polygon).contains_points(np.column_stack([xx.ravel(), yy.ravel()]))
    mask[y0:y1 + 1, x0:x1 + 1] = inside.reshape(yy.shape)
    return mask


def _inside_or_on_border(polygon: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each point (x, y) lies inside the closed polygon ``[P, 2]`` or on its border.

    ``skimage.draw.polygon``'s test (O'Rourke, Computational Geometry in C, 1998, ch. 7): cast a
    horizontal ray from the point to each side and count the edges that cross it, an edge counting
    when it straddles the ray's line (one end strictly above, the other not; the left ray uses the
    mirrored rule) and meets it strictly right (or left) of the point. A point on an edge makes the
    two counts differ in parity; inside, both are odd; a point on a vertex is on the border. Here
    all edges and points at once: ``[points, vertices]`` arrays, the edge of vertex i being (i-1, i).
    """
    dx = polygon[None, :, 0] - x[:, None]  # vertex i relative to each point
    dy = polygon[None, :, 1] - y[:, None]
    prev_dx, prev_dy = np.roll(dx, 1, axis=1), np.roll(dy, 1, axis=1)  # vertex i - 1
    on_vertex = ((np.abs(dx) < VERTEX_TOLERANCE_PX) & (np.abs(dy) < VERTEX_TOLERANCE_PX)).any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # horizontal edges never straddle: unused
        crossing_x = (dx * prev_dy - prev_dx * dy) / (prev_dy - dy)  # where the edge meets the ray's line
    right = ((dy > 0) != (prev_dy > 0)) & (crossing_x > 0)
    left = ((dy < 0) != (prev_dy < 0)) & (crossing_x < 0)
    right_odd, left_odd = right.sum(axis=1) % 2 == 1, left.sum(axis=1) % 2 == 1
    return on_vertex | (right_odd != left_odd) | right_odd


def tracing_to_mask(tracing, shape: tuple[int, int], rule: str = "exact") -> np.ndarray:
    """Rasterise a tracing's EchoNet polygon (:func:`tracing_to_polygon`) into a uint8 mask ``(H, W)``.

    ``rule``: ``"exact"`` (default) or ``"echonet"`` (the official loader's masks); see :func:`polygon_to_mask`.
    """
    return polygon_to_mask(tracing_to_polygon(first_tracing(tracing)), shape, rule=rule)


# --------------------------------------------------------------------------- contour -> tracing
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def tracing_from_contour(contour, apex, base_a, base_b, n_chords: int = N_CHORDS) -> np.ndarray:
    """An EchoNet tracing of a closed contour, given its apex and the two ends of the mitral plane.

    contour ``[..., P, 2]`` (x, y) closed polygon; apex, base_a, base_b ``[..., 2]``.
    The long axis runs from the apex to the midpoint of base_a and base_b; chord i
    (i = 1..N) is the line perpendicular to it at ``L * i / (N + 1)`` from the apex, and its
    ends are the contour crossings farthest to each side (left of the axis first).
    A chord line that misses the contour gets NaN coordinates. Returns ``[..., N + 1, 4]``.
    """
    contour = np.asarray(contour, dtype=np.float64)
    apex = np.asarray(apex, dtype=np.float64)
    mid = 0.5 * (np.asarray(base_a, dtype=np.float64) + np.asarray(base_b, dtype=np.float64))
    axis = mid - apex  # [..., 2]
    length = np.linalg.norm(axis, axis=-1)
    if np.any(length <= 0):
        raise ValueError("the apex coincides with the mitral-plane midpoint")
    e = axis / length[..., None]
    # normal pointing to image right for an axis pointing down the image: chord ends X1 left, X2 right
    n = np.stack([e[..., 1], -e[..., 0]], axis=-1)
    fractions = np.arange(1, n_chords + 1) / (n_chords + 1)  # [N]
    centres = apex[..., None, :] + (length[..., None] * fractions)[..., None] * e[..., None, :]  # [..., N, 2]

    # signed distance of every vertex along the axis from each chord line: [..., N, P]
    def offsets(direction):  # [..., N, P]: each vertex's coordinate along `direction`, from each chord centre
        return (np.einsum("...pk,...k->...p", contour, direction)[..., None, :]
                - np.einsum("...nk,...k->...n", centres, direction)[..., :, None])

    along, across = offsets(e), offsets(n)
    along_next = np.roll(along, -1, axis=-1)
    across_next = np.roll(across, -1, axis=-1)
    crosses = (along <= 0) != (along_next <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(crosses, along / (along - along_next), 0.0)
    position = across + lam * (across_next - across)  # where each edge meets the chord line
    left = np.where(crosses, position, np.inf).min(axis=-1)
    right = np.where(crosses, position, -np.inf).max(axis=-1)
    missed = ~np.isfinite(left) | ~np.isfinite(right)
    left = np.where(missed, np.nan, left)
    right = np.where(missed, np.nan, right)
    p1 = centres + left[..., None] * n[..., None, :]
    p2 = centres + right[..., None] * n[..., None, :]
    chords = np.concatenate([p1, p2], axis=-1)  # [..., N, 4]
    long_axis = np.concatenate([apex, mid], axis=-1)[..., None, :]
    return np.concatenate([long_axis, chords], axis=-2)


def mask_contour(mask, upsample: int = 4) -> np.ndarray:
    """Outer boundary of the largest region of a binary mask, ``[P, 2]`` (x, y) in pixels.

    The mask is upsampled ``upsample`` times (nearest) before tracing its border, so the
    contour follows the pixel *edges* to within ``1 / (2 upsample)`` px rather than the
    centres of the border pixels (which would shrink every chord by about one pixel).
    """
    import cv2

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W]; got shape {m.shape}")
    binary = (m > 0).astype(np.uint8)
    if not binary.any():
        raise ValueError("mask is empty: no LV pixels to trace")
    big = np.kron(binary, np.ones((upsample, upsample), dtype=np.uint8))
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    largest = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)
    # centre of upsampled pixel k is at (k + 0.5) / upsample - 0.5 in original pixels
    points = (largest + 0.5) / upsample - 0.5
    return _push_outward(points, 0.5 / upsample)  # from border-pixel centres to their outer edges


def _push_outward(points: np.ndarray, distance: float) -> np.ndarray:
    """Move each vertex of a closed polygon ``distance`` along its outward normal."""
    if len(points) < 3:
        return points
    tangent = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)
    x, y = points[:, 0], points[:, 1]
    signed_area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    # (ty, -tx) points outward for a clockwise polygon in x-right/y-down coordinates
    outward = normal if signed_area > 0 else -normal
    return points + distance * outward


def find_apex_and_mitral_plane(contour, mask=None, iterations: int = 3, band_px: float = 1.0):
    """Apex and the two ends of the mitral plane of an LV contour ``[P, 2]``.

    1. Start from the principal axis of the contour's points, pointed down the image
       (+Y), since echo views are shown with the apex (the transducer side) at the top.
    2. The apex is the contour point with the smallest projection on the axis.
    3. The mitral plane is the flat base: among the contour points within ``band_px``
       of the largest projection, its ends are the two points farthest apart across
       the axis, slid along the axis onto the most basal line; their midpoint is the
       mitral-plane midpoint.
    4. Re-aim the axis from the apex to that midpoint, take as apex the contour point
       farthest from the midpoint, and repeat steps 3-4 ``iterations`` times.
    Returns ``(apex, base_left, base_right)``, each ``[2]`` (x, y).
    """
    pts = np.asarray(contour, dtype=np.float64)
    centre = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - centre, full_matrices=False)
    e = vt[0] if vt[0, 1] >= 0 else -vt[0]
    apex = pts[np.argmin(pts @ e)]
    base_left = base_right = None
    for _ in range(max(1, iterations)):
        n = np.array([e[1], -e[0]])
        along = (pts - apex) @ e
        basal = pts[along >= along.max() - band_px]
        across = (basal - apex) @ n
        base_left, base_right = basal[np.argmin(across)], basal[np.argmax(across)]
        # slide both ends onto the most basal line (perpendicular to the axis): the band's widest
        # points may sit up to band_px above the plane where the walls bulge
        base_left = base_left + (along.max() - (base_left - apex) @ e) * e
        base_right = base_right + (along.max() - (base_right - apex) @ e) * e
        mid = 0.5 * (base_left + base_right)
        apex = pts[np.argmax(np.linalg.norm(pts - mid, axis=1))]
        e = _unit(mid - apex)
    return apex, base_left, base_right


def mask_to_tracing(mask, n_chords: int = N_CHORDS) -> np.ndarray:
    """EchoNet-style tracing ``[N + 1, 4]`` of a binary LV-cavity mask ``[H, W]``.

    The border comes from :func:`mask_contour` (pixel edges), the apex and mitral plane
    from :func:`find_apex_and_mitral_plane`, the chords from :func:`tracing_from_contour`.
    """
    contour = mask_contour(mask)
    apex, base_left, base_right = find_apex_and_mitral_plane(contour)
    tracing = tracing_from_contour(contour, apex, base_left, base_right, n_chords)
    if not np.all(np.isfinite(tracing)):
        raise ValueError("mask_to_tracing: a chord missed the mask's border (is the mask one LV-shaped region?)")
    return tracing


def ellipse_contour(centre, semi_axis_long: float, semi_axis_short: float, angle_rad: float = 0.0,
                    points: int = 400) -> np.ndarray:
    """Closed outline ``[points, 2]`` of an ellipse whose long axis makes ``angle_rad`` with +Y (down)."""
    t = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    e = np.array([np.sin(angle_rad), np.cos(angle_rad)])  # long axis direction
    n = np.array([e[1], -e[0]])
    return (np.asarray(centre, dtype=np.float64) + np.outer(semi_axis_long * np.cos(t), e)
            + np.outer(semi_axis_short * np.sin(t), n))


# --------------------------------------------------------------------------- biplane method of discs
def biplane_volume_ml(tracing_a, tracing_b, mm_per_pixel_a: float, mm_per_pixel_b: float) -> np.ndarray:
    """Biplane method of discs (CAMUS's rule, reference report §2.5), in mL, from two orthogonal views.

    ``tracing_a``, ``tracing_b``: ``[..., N + 1, 4]`` tracings of the same instant in two apical views
    (A2C and A4C), each on square pixels of ``mm_per_pixel_*`` mm. Disc ``i`` is an ellipse with
    diameters ``a_i`` and ``b_i`` (chord ``i`` of each view, in mm), and every disc has the height of
    the longer view, ``h = max(L_a, L_b) / N``: ``V = pi / 4 * h * sum_i a_i b_i``. The chords are
    the tracing's own (EchoNet's placement along the long axis), not CAMUS's fractions 0, 1/20, ...,
    19/20, so volumes differ slightly from CAMUS's script.
    """
    a, b = _as_tracing(tracing_a, "tracing_a"), _as_tracing(tracing_b, "tracing_b")
    if a.shape[-2] != b.shape[-2]:
        raise ValueError(f"the two tracings have {a.shape[-2] - 1} and {b.shape[-2] - 1} chords; they must match")
    for name, spacing in (("mm_per_pixel_a", mm_per_pixel_a), ("mm_per_pixel_b", mm_per_pixel_b)):
        if not np.all(np.asarray(spacing) > 0):
            raise ValueError(f"{name} must be positive; got {spacing!r}")
    n_chords = a.shape[-2] - 1
    length_mm = np.maximum(long_axis_length_px(a) * mm_per_pixel_a, long_axis_length_px(b) * mm_per_pixel_b)
    chord_products_mm2 = chord_lengths_px(a) * mm_per_pixel_a * chord_lengths_px(b) * mm_per_pixel_b
    return np.pi / 4.0 * np.sum(chord_products_mm2, axis=-1) * length_mm / n_chords / 1000.0


# --------------------------------------------------------------------------- volumes and EF from masks
def lv_volume_ml_from_mask(mask, mm_per_pixel: float) -> float:
    """Single-plane method-of-discs LV volume, in mL, of a binary LV-cavity mask ``[H, W]``: its tracing
    (:func:`mask_to_tracing`) measured by :func:`disc_volume_ml`. An empty mask raises a ValueError."""
    return float(disc_volume_ml(mask_to_tracing(mask), mm_per_pixel))


def ef_from_masks_percent(ed_mask, es_mask) -> float:
    """Single-plane EF, in percent, from binary LV-cavity masks at ED and ES (the pixel spacing cancels)."""
    return float(ejection_fraction_percent(mask_to_tracing(ed_mask), mask_to_tracing(es_mask)))


def biplane_ef_from_masks(ed_mask_a, es_mask_a, ed_mask_b, es_mask_b, mm_per_pixel_a: float,
                          mm_per_pixel_b: float) -> dict[str, float]:
    """Biplane method of discs from the LV-cavity masks of two apical views of one heart (A4C and A2C) at
    ED and ES: ``{"edv_ml", "esv_ml", "ef_percent"}`` (:func:`biplane_volume_ml` on each instant's tracings)."""
    edv = float(biplane_volume_ml(mask_to_tracing(ed_mask_a), mask_to_tracing(ed_mask_b), mm_per_pixel_a,
                                  mm_per_pixel_b))
    esv = float(biplane_volume_ml(mask_to_tracing(es_mask_a), mask_to_tracing(es_mask_b), mm_per_pixel_a,
                                  mm_per_pixel_b))
    if edv <= 0:
        raise ValueError("the ED masks give zero volume")
    return {"edv_ml": edv, "esv_ml": esv, "ef_percent": 100.0 * (edv - esv) / edv}
