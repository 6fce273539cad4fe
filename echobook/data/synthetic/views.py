"""Every view of a synthetic heart: A4C and A2C as :func:`make_video` makes them, and PLAX, PSAX and "other".

Heart ``(seed, index)`` is the case :func:`~echobook.data.synthetic.heart.sample_case` draws for video ``index``
(as A4C): heart rate, rhythm, EF, EDV, wall motion, image quality and image settings. Each view poses that heart:

- ``"A4C"``, ``"A2C"``: exactly :func:`make_video` with ``config.view`` set to the view (the same bytes);
- ``"PLAX"``: the LV's long axis across the image (apex at the left, septum above, posterior wall below), the RV
  outflow near the transducer, the aortic root (its cusps open in ejection) and the LA behind it at the right,
  the mitral leaflets between them, the descending aorta behind the LA and the bright posterior pericardium;
- ``"PSAX"`` (mid-papillary): a ring of myocardium round the cavity with two papillary muscles, the RV crescent at
  the image left; the ring contracts radially and thickens by the case's radial shortening and wall motion;
- ``"other"``: a subcostal four-chamber view: the liver in the near field, the four chambers across the image
  with the apex at the right, the RV next to the liver.

Each posed view draws only its pose and its own structures, from a stream of its own
(:func:`~echobook.data.synthetic.heart.view_rng`), so every view of a heart beats with the same physiology and the
same image formation (speckle fixed in tissue, attenuation, TGC, quality, log compression, the sector).

Labels are CAMUS's values of what the view shows (:data:`echobook.data.labels.VIEW_CHAMBERS`): LV cavity,
myocardium and LA in A4C, A2C, PLAX and "other"; LV cavity and myocardium in PSAX (the papillary muscles count as
cavity, as in CAMUS). The LV's pose differs but its shape and motion do not, so the ED and ES frames, the volumes
and the EF of every view of a heart are the same: PLAX and "other" trace their own long-axis contour (its disc
volume equals the apical one's, up to the zoom that the pixel spacing undoes); PSAX, whose single-plane disc
volume is not defined, reports the heart's apical volumes and has no tracings. ``wall_motion`` is the heart's, in
the A4C segment order (:data:`echobook.data.labels.SEGMENTS`); PLAX moves its septum and posterior wall by the
septal and lateral segments, PSAX its ring by the mid inferoseptal and mid anterolateral ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from echobook.data import echonet
from echobook.data.labels import VIEW_CLASSES, VIEWS
from echobook.data.synthetic.heart import (
    SyntheticConfig, check_seed_index, sample_case, sample_view_case, view_rng,
)
from echobook.data.synthetic.plan import VideoPlan, plan_from_case, plan_video
from echobook.data.synthetic.render import SyntheticVideo, render_plan
from echobook.data.table import SPLITS, split_names


def _check_view(view: str) -> str:
    if view not in VIEW_CLASSES:
        raise ValueError(f"view={view!r}: choose from {VIEW_CLASSES}")
    return view


def _config(config: SyntheticConfig | None) -> SyntheticConfig:
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise ValueError(f"config must be a SyntheticConfig; got {type(config).__name__}")
    return config


def plan_view_video(seed: int, index: int, view: str, config: SyntheticConfig | None = None) -> VideoPlan:
    """Steps 1-4 of heart ``(seed, index)`` seen in ``view`` (one of :data:`VIEW_CLASSES`)."""
    check_seed_index(seed, index)
    config, view = _config(config), _check_view(view)
    if view in VIEWS:
        return plan_video(seed, index, dataclasses.replace(config, view=view))
    apical = dataclasses.replace(config, view="A4C")  # the heart as drawn; config.view does not change it
    case, rng = sample_case(seed, index, apical)
    posed = sample_view_case(case, view, view_rng(seed, index, view), config.image_size)
    return plan_from_case(seed, index, apical, posed, rng, volume_case=case)


def make_view_video(seed: int, index: int, view: str, config: SyntheticConfig | None = None) -> SyntheticVideo:
    """Heart ``(seed, index)`` seen in ``view``: "A4C", "A2C" (the bytes of :func:`make_video`), "PLAX", "PSAX" or
    "other" (subcostal four-chamber). ``config.view`` is ignored; labels in CAMUS values, every frame."""
    return render_plan(plan_view_video(seed, index, view, config))


@dataclass
class ViewSet:
    """Many videos in memory, every heart in several views: for view identification and segmentation."""

    frames: np.ndarray  # uint8 [N, T, H, W]
    labels: np.ndarray  # uint8 [N, T, H, W] chamber label maps (CAMUS values), every frame
    view_index: np.ndarray  # int64 [N], index into VIEW_CLASSES
    ed_frame: np.ndarray  # int64 [N]
    es_frame: np.ndarray  # int64 [N]
    ef_percent: np.ndarray  # float [N]
    edv_ml: np.ndarray  # float [N]
    esv_ml: np.ndarray  # float [N]
    mm_per_pixel: np.ndarray  # float [N]
    heart_id: np.ndarray  # int64 [N]: the same heart (seed and case) in every view, e.g. A4C + A2C for biplane
    splits: np.ndarray  # str [N] "TRAIN"/"VAL"/"TEST", by heart (no heart in two splits)

    def __post_init__(self):
        count = len(self.frames)
        for f in dataclasses.fields(self):
            if len(getattr(self, f.name)) != count:
                raise ValueError(f"ViewSet.{f.name}: {len(getattr(self, f.name))} entries for {count} videos")

    @property
    def views(self) -> tuple[str, ...]:
        return VIEW_CLASSES

    @property
    def view_names(self) -> np.ndarray:
        """str [N]: each video's view."""
        return np.array(VIEW_CLASSES, dtype=object)[self.view_index]

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, mask_or_split) -> "ViewSet":
        """The videos of a split name (or names, any case) or of a boolean mask / index array."""
        if isinstance(mask_or_split, str) or (isinstance(mask_or_split, (list, tuple))
                                               and all(isinstance(s, str) for s in mask_or_split)):
            keep = np.isin(self.splits, split_names(mask_or_split, SPLITS))
        else:
            keep = np.asarray(mask_or_split)
            if keep.dtype == bool and keep.shape != (len(self),):
                raise ValueError(f"mask_or_split: a boolean mask needs {len(self)} entries; got shape {keep.shape}")
        return ViewSet(**{f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self)})

    def __repr__(self) -> str:
        counts = {v: int(np.sum(self.view_index == i)) for i, v in enumerate(VIEW_CLASSES)}
        return (f"ViewSet({len(self)} videos {self.frames.shape[1:]}, {len(np.unique(self.heart_id))} hearts, "
                f"views {counts})")


def _view_job(args) -> SyntheticVideo:
    seed, heart, view, config = args
    return make_view_video(seed, heart, view, config)


def synthetic_view_set(hearts: int, seed: int, config: SyntheticConfig | None = None, *,
                       views=VIEW_CLASSES, workers: int = 1) -> ViewSet:
    """``hearts`` synthetic hearts from ``seed``, each seen in every view of ``views``, held in memory.

    Heart ``h`` is video ``h`` of the set (:func:`make_view_video`); its videos follow one another in ``views``
    order, so classes are balanced and A4C/A2C pairs exist. Splits are by heart, in EchoNet-Dynamic's proportions
    (:func:`echobook.data.echonet.assign_splits` with ``seed``). The result does not depend on ``workers``.
    """
    if not isinstance(hearts, (int, np.integer)) or isinstance(hearts, bool) or hearts < 1:
        raise ValueError(f"hearts must be a positive integer; got {hearts!r}")
    check_seed_index(seed, 0)
    views = tuple(_check_view(v) for v in ((views,) if isinstance(views, str) else views))
    if not views or len(set(views)) != len(views):
        raise ValueError(f"views={views!r}: give one or more distinct views from {VIEW_CLASSES}")
    config = _config(config)
    jobs = [(seed, h, v, config) for h in range(int(hearts)) for v in views]
    if workers <= 1 or len(jobs) < 2:
        videos = [_view_job(job) for job in jobs]
    else:
        from echobook.data.synthetic.sets import worker_pool

        with worker_pool(workers) as pool:
            videos = list(pool.map(_view_job, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    heart_splits = np.array(echonet.assign_splits(int(hearts), seed))
    heart_id = np.repeat(np.arange(int(hearts), dtype=np.int64), len(views))

    def column(name, dtype):
        return np.array([getattr(v, name) for v in videos], dtype=dtype)

    return ViewSet(
        frames=np.stack([v.frames for v in videos]), labels=np.stack([v.labels for v in videos]),
        view_index=np.array([VIEW_CLASSES.index(v.view) for v in videos], dtype=np.int64),
        ed_frame=column("ed_frame", np.int64), es_frame=column("es_frame", np.int64),
        ef_percent=column("ef_percent", np.float64), edv_ml=column("edv_ml", np.float64),
        esv_ml=column("esv_ml", np.float64), mm_per_pixel=column("mm_per_pixel", np.float64),
        heart_id=heart_id, splits=heart_splits[heart_id],
    )
