"""Step 2, the cycle: the contraction curve, the cardiac phase of every frame, and which frames are ED and ES."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from echobook.data.synthetic.heart import HeartCase


def ejection_share_of_cycle(heart_rate_bpm: float) -> float:
    """The share of the cardiac cycle (0..1) spent ejecting: LV ejection time over the cycle length.

    Not an ejection fraction: LVET = 379 - 1.8 HR ms (Lance et al.), times beats per second,
    clipped to 0.28-0.38 of the cycle.
    """
    lvet_s = (379.0 - 1.8 * heart_rate_bpm) / 1000.0
    return float(np.clip(lvet_s * heart_rate_bpm / 60.0, 0.28, 0.38))


def relaxation_end_of_cycle(heart_rate_bpm: float) -> float:
    """Phase (0..1) at which isovolumic relaxation ends and the AV valves open: ejection + 70 ms (at most 0.1)."""
    cycle_s = 60.0 / heart_rate_bpm
    return ejection_share_of_cycle(heart_rate_bpm) + min(0.07 / cycle_s, 0.1)


def _ramp(x):
    """0 -> 1 over x in [0, 1], smooth at both ends (a half cosine)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def contraction(phase, heart_rate_bpm: float = 75.0) -> np.ndarray:
    """Contraction ``c`` in [0, 1] (0: end-diastole, 1: end-systole) at ``phase`` in [0, 1).

    Ejection (half-cosine) over the ejection time; isovolumic relaxation (flat, 70 ms);
    rapid filling to 25 % of the stroke; diastasis to 18 %; atrial kick over the last 20 %
    of diastole. The LV volume is ``EDV - (EDV - ESV) c`` to a good approximation.
    """
    p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    ejection = ejection_share_of_cycle(heart_rate_bpm)
    relax_end = relaxation_end_of_cycle(heart_rate_bpm)
    diastole = 1.0 - relax_end
    rapid_end = relax_end + 0.35 * diastole
    kick_start = relax_end + 0.8 * diastole
    c = np.where(p < ejection, _ramp(p / ejection), 1.0)
    c = np.where(p >= relax_end, 1.0 - 0.75 * _ramp((p - relax_end) / (rapid_end - relax_end)), c)
    c = np.where(p >= rapid_end, 0.25 - 0.07 * (p - rapid_end) / (kick_start - rapid_end), c)
    c = np.where(p >= kick_start, 0.18 * (1.0 - _ramp((p - kick_start) / (1.0 - kick_start))), c)
    return c


def cardiac_phase(case: HeartCase, times_s: np.ndarray, unwrapped: bool = False) -> np.ndarray:
    """Phase in [0, 1) (0 = end-diastole) at ``times_s``: the integral of a heart rate that swings with breathing.

    ``unwrapped=True`` counts beats instead (phase 2.3 = 30 % into the third beat). A case with an irregular
    rhythm (``beat_times_s``) follows its own beat times instead (:func:`irregular_beats`).
    """
    t = np.asarray(times_s, dtype=np.float64)
    if case.beat_times_s is not None:
        beats = irregular_beats(case, t)
        return beats if unwrapped else np.mod(beats, 1.0)
    omega = 2 * np.pi / case.breath_s
    swing = case.hr_variation / omega * (np.cos(case.breath_phase) - np.cos(omega * t + case.breath_phase))
    beats = case.phase0 + case.heart_rate_bpm / 60.0 * (t + swing)
    return beats if unwrapped else np.mod(beats, 1.0)


def irregular_beats(case: HeartCase, times_s: np.ndarray) -> np.ndarray:
    """Unwrapped phase at ``times_s`` for a rhythm with given end-diastole times (``case.beat_times_s``).

    Systole and isovolumic relaxation last as long in every beat (as at the mean rate: a heart's ejection
    time varies far less than its RR interval); a short or long beat shortens or stretches diastole. A beat
    too short for that keeps the systole at 85 % of its length.
    """
    edges = case.beat_times_s
    beat = np.clip(np.searchsorted(edges, times_s, side="right") - 1, 0, len(edges) - 2)
    elapsed_s, rr_s = times_s - edges[beat], np.diff(edges)[beat]
    relax_end = relaxation_end_of_cycle(case.heart_rate_bpm)
    systole_s = np.minimum(relax_end * 60.0 / case.heart_rate_bpm, 0.85 * rr_s)
    in_systole = elapsed_s < systole_s
    within = np.where(in_systole, relax_end * elapsed_s / systole_s,
                      relax_end + (1.0 - relax_end) * (elapsed_s - systole_s) / (rr_s - systole_s))
    # beat 0 starts at or before time 0 (``sample_beat_times_s``), so the first frame's phase is below 1
    return beat + np.clip(within, 0.0, np.nextafter(1.0, 0.0))


def ed_es_frames_of_beat(beats: np.ndarray, volumes: np.ndarray) -> tuple[int, int]:
    """ED and ES frames of one beat: the largest and smallest volume of the first beat the video holds whole.

    ``beats`` is the unwrapped phase of every frame. Beat k's ED lies at phase k and its ES at
    the end of ejection (at most 0.38 of a beat later), so the window [k - 0.1, k + 0.42) must be
    inside the video: any video of 1.52 beats or more holds one. A shorter video falls back to
    the largest and smallest volume overall (possibly of different beats).
    """
    first, last = beats[0], beats[-1]
    for k in range(int(np.ceil(first + 0.1)), int(np.floor(last - 0.42)) + 1):
        window = np.flatnonzero((beats >= k - 0.1) & (beats < k + 0.42))
        if len(window) >= 2:
            return int(window[np.argmax(volumes[window])]), int(window[np.argmin(volumes[window])])
    return int(np.argmax(volumes)), int(np.argmin(volumes))


def mitral_opening(phase, heart_rate_bpm: float = 75.0) -> np.ndarray:
    """0 closed .. 1 open: the AV valves open after isovolumic relaxation and close at end-diastole."""
    p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    opens = relaxation_end_of_cycle(heart_rate_bpm)
    ramp = 0.05
    return np.clip((p - opens) / ramp, 0.0, 1.0) * np.clip((1.0 - p) / ramp, 0.0, 1.0)
