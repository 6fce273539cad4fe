"""A procedural generator of apical four-chamber (A4C) echo videos, with an A2C variant and other views.

Video ``i`` of a dataset is made on demand from ``(seed, i)``: its random numbers come from
``numpy.random.SeedSequence(seed, spawn_key=(i,))``, which is exactly child ``i`` of
``SeedSequence(seed).spawn(...)``. The same seed and config give the same bytes.

How one video is made (each step has its module, and chapter 1 shows each one):

1. **Case** (:mod:`.heart`). Heart rate, frame rate, a target EF drawn from EchoNet-Dynamic's
   empirical distribution, an EDV drawn from a lognormal that depends on the EF band, wall-motion
   defects in the six A4C/A2C segments, an image-quality level, and the anatomy's sizes.
2. **Cycle** (:mod:`.cycle`). A contraction curve ``c(phase)`` in [0, 1]: 0 at end-diastole (phase 0),
   a half-cosine ejection over the ejection time (``LVET = 379 - 1.8 HR`` ms, clipped to
   0.28-0.38 of the cycle), a flat isovolumic relaxation, rapid filling, diastasis and the
   atrial kick. The heart rate swings by up to 5 % with breathing (sinus arrhythmia), so
   beats are not exact copies. ``SyntheticConfig(rr_irregularity=0.2)`` gives an atrial-fibrillation-like
   rhythm instead: every RR interval drawn apart (from a stream of its own, so the rest of the video is
   unchanged), diastole stretching and shrinking with it.
3. **Anatomy** (:mod:`.anatomy`). The LV endocardium is a truncated prolate shape along a tilted long
   axis (apex fixed near the transducer, mitral plane descending toward the apex in systole);
   each wall (image-left: septum in A4C, image-right: lateral wall) shortens radially by
   ``r * c * k(segment)`` with ``k`` = 1 (normal), 0.3-0.6 (hypokinetic), 0-0.1 (akinetic);
   ``r`` is solved so that the ES volume gives the target EF. Myocardium, RV, LA, RA,
   septa, mitral and tricuspid leaflets and the pericardium are built around it.
4. **Labels from the rendered contour** (:mod:`.plan`). Every frame's LV contour is traced the EchoNet
   way (long axis + 20 chords); its single-plane disc volume is the volume curve; the pixel
   spacing is chosen so the ED volume equals the drawn EDV; ED/ES are the frames of largest
   and smallest volume within one beat (ES after ED) and EF comes from them. The label maps
   rasterise the same contour, so labels agree with the pixels.
5. **Image formation** (:mod:`.formation`, :mod:`.render`). Amplitude echogenicity x a speckle texture
   (a complex Gaussian field blurred by an anisotropic PSF on the polar beam grid, so grains widen with
   depth) that is *fixed in tissue coordinates* and warped by the motion, so speckle moves with
   the myocardium; depth attenuation with imperfect TGC; near-field haze, dropout,
   acoustic shadows and electronic noise by quality level; log compression; the V-shaped
   sector mask.

Steps 1-4 and the static scene are NumPy (:func:`plan_video`, cheap and shared by every backend,
so labels never depend on the backend). Step 5 is vectorised over frames and written once
against a small array namespace, and runs on one of two backends (:func:`render_plan`):

- NumPy + ``cv2.remap`` (``device=None``, the default and the reference bytes): about 720
  frames/s on one CPU core at 112 px, so a small set takes seconds on two cores;
- torch on any device (``device="cpu"``, ``"cuda"``): ``grid_sample`` samples the texture and a
  ``torch.Generator`` seeded from the video's generator draws the noise, so a device's output is
  deterministic per ``(seed, index)``. Labels, EF, volumes, ED/ES and tracings are identical to
  NumPy's; frames differ by about 2-3 gray levels on average (the other noise draw; without noise
  0.1). For a full set, worker processes make the plans and encode the AVIs while the main process
  forms the images on the GPU (:func:`iter_videos`, ``echobook synth echonet --device cuda``).
  ``benchmarks/bench_synthetic.py`` measures both.

Many videos (:mod:`.sets`): :func:`make_videos`, :func:`iter_videos`, :class:`SyntheticDataset`, and
:func:`synth_echonet`, which writes a set in EchoNet-Dynamic's layout. :func:`cached_synthetic_echonet`
(:mod:`.cache`) makes such a folder once and reuses it, safely across processes. :func:`synthetic_video_table`
holds videos in memory as a :class:`~echobook.data.table.VideoTable` that keeps every frame's true phase
(long unlabelled videos for EchoFM's pretraining, chapter 8).

**Views** (:mod:`.views`). :func:`make_view_video` shows heart ``(seed, index)`` (the case above, drawn as A4C)
in any of :data:`~echobook.data.labels.VIEW_CLASSES`: A4C and A2C exactly as :func:`make_video` makes them (same
bytes), parasternal long axis (PLAX: LV across the image, RV outflow above, aortic root and LA at the right),
parasternal short axis (PSAX, mid-papillary: a contracting ring with papillary muscles, the RV crescent at the
left) and "other" (a subcostal four-chamber view under the liver). Only the pose and the view's own structures are
drawn, from a stream of their own, so every view of a heart beats with the same rate, EF, wall motion and image
formation; ED/ES frames, volumes and EF are the heart's in every view, and mean intensity alone does not tell the
views apart (``tests/test_views.py``). :func:`synthetic_view_set` holds every heart in every view in memory
(:class:`ViewSet`, split by heart) for view identification and segmentation.
The label values (chambers, views, segments, wall motion, quality) live in :mod:`echobook.data.labels`.
"""
from echobook.data.labels import (
    CHAMBER_LABELS, QUALITIES, SEGMENTS, VIEW_CHAMBERS, VIEW_CHOICES, VIEW_CLASSES, VIEWS, WALL_MOTION,
)
from echobook.data.synthetic.anatomy import (
    lv_contours, lv_half_widths, lv_length, lv_tracings, solve_radial_shortening,
)
from echobook.data.synthetic.cache import CACHE_ENV, cached_synthetic_echonet, synthetic_set_key
from echobook.data.synthetic.cycle import (
    cardiac_phase, contraction, ed_es_frames_of_beat, ejection_share_of_cycle, mitral_opening,
)
from echobook.data.synthetic.heart import (
    ECHONET_EDV_MEDIAN_ML, ECHONET_EF_BELOW_40, ECHONET_EF_CDF, ECHONET_EF_MEAN, ECHONET_EF_SD, EDV_LOG_SD,
    QUALITY_LEVELS, HeartCase, QualityLevel, SyntheticConfig, config_for_preset, rng_for, sample_case,
    sample_edv_ml, sample_ef_percent, sample_wall_motion, video_name,
)
from echobook.data.synthetic.plan import VideoPlan, plan_video, speckle_texture
from echobook.data.synthetic.render import (
    SyntheticVideo, attenuation_db, make_video, render_device, render_plan, render_stages,
)
from echobook.data.synthetic.sets import (
    SyntheticDataset, SyntheticVideoTable, benchmark, iter_videos, make_videos, synth_echonet,
    synthetic_video_table, worker_pool,
)
from echobook.data.synthetic.views import ViewSet, make_view_video, plan_view_video, synthetic_view_set


__all__ = [
    "CACHE_ENV", "CHAMBER_LABELS", "ECHONET_EDV_MEDIAN_ML", "ECHONET_EF_BELOW_40", "ECHONET_EF_CDF", "ECHONET_EF_MEAN",
    "ECHONET_EF_SD", "EDV_LOG_SD", "HeartCase", "QUALITIES", "QUALITY_LEVELS", "QualityLevel", "SEGMENTS",
    "SyntheticConfig", "SyntheticDataset", "SyntheticVideo", "SyntheticVideoTable", "VIEWS", "VIEW_CHAMBERS",
    "VIEW_CHOICES", "VIEW_CLASSES", "VideoPlan", "ViewSet", "WALL_MOTION", "attenuation_db", "benchmark",
    "cached_synthetic_echonet", "cardiac_phase", "config_for_preset", "contraction", "ed_es_frames_of_beat",
    "ejection_share_of_cycle", "iter_videos", "lv_contours", "lv_half_widths", "lv_length", "lv_tracings", "make_video",
    "make_videos", "make_view_video", "mitral_opening", "plan_video", "plan_view_video", "render_device", "render_plan",
    "render_stages", "rng_for", "sample_case", "sample_edv_ml", "sample_ef_percent", "sample_wall_motion",
    "solve_radial_shortening", "speckle_texture", "synth_echonet", "synthetic_set_key", "synthetic_video_table",
    "synthetic_view_set", "video_name", "worker_pool",
]
