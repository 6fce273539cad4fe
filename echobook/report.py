"""What ``echobook predict`` leaves beside its CSVs: an overlay video and a self-contained HTML report per recording.

- The overlay (MP4, OpenCV's ``mp4v``): the frames the model saw, the scan sector's outline, the LV outlines
  of a landmark model (ED green, ES red, from the clip window covering the frame) or a segmentation model's
  contours of every frame (LV cavity, myocardium, LA; the cavity green on ED frames, red on ES frames), the
  Grad-CAM when asked, ED and ES frames marked, and the EF of the clip windows each frame belongs to.
- The report (one HTML file, plotly drawn offline with plotly.js inlined, no network needed): the EF of every
  clip over time with the conformal interval and each beat's EF, the per-beat table, the summary, the ED and ES
  key frames (with a segmentation model's contours), the model card, and what was masked from the recording. It
  says plainly that this is not a medical device.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from echobook.data.labels import LEFT_ATRIUM, LV_CAVITY, LV_MYOCARDIUM

OVERLAY_FOURCC = "mp4v"
OVERLAY_COLOUR_BGR = (60, 200, 255)  # amber: visible on gray speckle
DISCLAIMER = ("Trained on synthetic hearts unless its card says otherwise. Research and teaching only: not a "
              "medical device, not for diagnosis.")


def clip_ef_per_frame(clips: pd.DataFrame, frame_count: int) -> np.ndarray:
    """The EF shown on each frame: the mean of the clip windows that cover it (NaN where none does)."""
    total, count = np.zeros(frame_count), np.zeros(frame_count)
    for row in clips.itertuples(index=False):
        total[int(row.start_frame):int(row.end_frame) + 1] += row.ef_percent
        count[int(row.start_frame):int(row.end_frame) + 1] += 1
    with np.errstate(invalid="ignore"):
        return total / count


ED_BGR, ES_BGR = (80, 220, 80), (60, 60, 240)  # green and red outlines, labels
# a segmentation model's contours, by label value (echobook.data.labels): cavity sky blue, myocardium pink, LA violet
LABEL_BGR = {LV_CAVITY: (255, 200, 60), LV_MYOCARDIUM: (180, 110, 255), LEFT_ATRIUM: (230, 80, 170)}


def _clip_of_frame(clips: pd.DataFrame, frame_count: int) -> np.ndarray:
    """``[T]`` index of the clip window whose centre is nearest each frame (the one whose landmarks are drawn)."""
    centres = 0.5 * (clips["start_frame"].to_numpy() + clips["end_frame"].to_numpy())
    return np.abs(np.arange(frame_count)[:, None] - centres[None, :]).argmin(axis=1)


def _frame_marks(beats: pd.DataFrame, frame_count: int) -> list[str]:
    marks = [""] * frame_count
    for column, mark in (("ed_frame", "ED"), ("es_frame", "ES"), ("end_frame", "ED")):
        for frame in beats.get(column, pd.Series(dtype=int)).astype(int):
            marks[frame] = mark
    return marks


def _heat(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    colour = cv2.applyColorMap(np.uint8(255 * np.clip(cam, 0, 1)), cv2.COLORMAP_JET)
    colour = cv2.resize(colour, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(image, 0.6, colour, 0.4, 0)


def draw_label_contours(image: np.ndarray, labels: np.ndarray, mark: str = "") -> np.ndarray:
    """Draw on a BGR ``image`` the outer contour of each labelled structure of the label map ``labels`` (resized
    to the image, nearest): :data:`LABEL_BGR`, the LV cavity in the ED or ES colour on a frame marked so."""
    for value, colour in LABEL_BGR.items():
        if value == LV_CAVITY and mark:
            colour = ED_BGR if mark == "ED" else ES_BGR
        region = cv2.resize((labels == value).astype(np.uint8), image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(image, contours, -1, colour, 1, cv2.LINE_AA)
    return image


def write_overlay(path: str | Path, prediction) -> Path:
    """An MP4 of the model's frames (:class:`echobook.predict.Prediction`) with the sector outline, the landmark
    outlines or the segmentation contours, the Grad-CAM, ED/ES marks and each frame's clip EF written on it."""
    from echobook.predict import ed_outline_px

    path, frames, clips = Path(path), prediction.frames, prediction.clips
    scale = max(1, 256 // max(frames.shape[1:]))  # small model inputs are enlarged so the text stays legible
    height, width = frames.shape[1] * scale, frames.shape[2] * scale
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*OVERLAY_FOURCC), float(prediction.fps),
                             (width, height), True)
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an {OVERLAY_FOURCC} video here")
    outline = None
    if prediction.recording.sector is not None:
        big = cv2.resize(prediction.recording.sector.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        outline, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    ef = clip_ef_per_frame(clips, len(frames))
    clip_index = _clip_of_frame(clips, len(frames))
    marks = _frame_marks(prediction.beats, len(frames))
    try:
        for t, gray in enumerate(frames):
            image = cv2.cvtColor(cv2.resize(gray, (width, height), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
            if prediction.cams is not None:
                image = _heat(image, prediction.cams[t])
            if outline is not None:
                cv2.drawContours(image, outline, -1, OVERLAY_COLOUR_BGR, 1)
            if prediction.landmarks is not None:
                for phase, colour in ((0, ED_BGR), (1, ES_BGR)):
                    points = ed_outline_px(prediction.landmarks[clip_index[t], phase], width)
                    cv2.polylines(image, [np.round(points).astype(np.int32)], True, colour, 1, cv2.LINE_AA)
            if prediction.labels is not None:
                draw_label_contours(image, prediction.labels[t], marks[t])
            if marks[t]:
                cv2.putText(image, marks[t], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                            ED_BGR if marks[t] == "ED" else ES_BGR, 2, cv2.LINE_AA)
            label = f"EF {ef[t]:.0f}%" if np.isfinite(ef[t]) else "EF -"
            cv2.putText(image, label, (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, OVERLAY_COLOUR_BGR, 1, cv2.LINE_AA)
            writer.write(image)
    finally:
        writer.release()
    return path


def _png_data_uri(gray: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", gray)
    if not ok:
        raise OSError("OpenCV could not encode a PNG")
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode()


def ef_trace_figure(clips: pd.DataFrame, summary: dict, beats: pd.DataFrame | None = None,
                    clip_label: str = "EF of each clip"):
    """plotly: each clip's EF (``clip_label`` says what it is) at its start time, each beat's EF at its ED, the
    recording's EF and its conformal interval as a band."""
    import plotly.graph_objects as go

    fig = go.Figure()
    low, high = summary.get("ef_low_percent"), summary.get("ef_high_percent")
    x = [float(clips["start_s"].min()), float(clips["start_s"].max())]
    if low is not None and np.isfinite(low) and np.isfinite(high):
        fig.add_scatter(x=x + x[::-1], y=[high, high, low, low], fill="toself", mode="none",
                        fillcolor="rgba(255,170,0,0.2)", name=f"{summary.get('interval_level', 0.9):.0%} interval")
    fig.add_scatter(x=clips["start_s"], y=clips["ef_percent"], mode="lines+markers", name=clip_label)
    fig.add_scatter(x=x, y=[summary["ef_percent"]] * 2, mode="lines", line={"dash": "dash"}, name="recording's EF")
    if beats is not None and len(beats):
        fig.add_scatter(x=beats["ed_s"], y=beats["ef_percent"], mode="markers", marker={"symbol": "diamond", "size": 10},
                        name="EF of each beat (at its ED)")
    fig.update_layout(xaxis_title="time (s)", yaxis_title="EF (%)", height=320,
                      margin={"l": 50, "r": 10, "t": 10, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig


def _table_html(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in table.itertuples(index=False))
    return f"<table class=\"grid\"><tr>{head}</tr>{body}</table>"


KEY_FRAME_PIXELS = 160  # shown this wide; a segmentation's contours are drawn at this size to stay visible


def _key_frame_image(prediction, index: int, mark: str) -> np.ndarray:
    """A key frame as the model saw it: gray, or in colour with a segmentation model's contours on it."""
    gray = prediction.frames[index]
    if prediction.labels is None:
        return gray
    scale = max(1, KEY_FRAME_PIXELS // max(gray.shape))
    image = cv2.cvtColor(cv2.resize(gray, (gray.shape[1] * scale, gray.shape[0] * scale),
                                    interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
    return draw_label_contours(image, prediction.labels[index], mark)


def _key_frames(prediction) -> str:
    """The first beat's ED and ES frames (else four frames spread over the recording), as the model saw them."""
    frames, beats = prediction.frames, prediction.beats
    if len(beats):
        chosen = [(int(beats["ed_frame"].iloc[0]), "ED"), (int(beats["es_frame"].iloc[0]), "ES")]
    else:
        chosen = [(int(i), "") for i in np.linspace(0, len(frames) - 1, 4).round()]
    return "".join(f'<figure><img src="{_png_data_uri(_key_frame_image(prediction, i, mark))}" '
                   f'width="{KEY_FRAME_PIXELS}" alt="frame {i}">'
                   f"<figcaption>{mark} frame {i} ({i / prediction.fps:.2f} s)</figcaption></figure>"
                   for i, mark in chosen)


def write_report(path: str | Path, summary: dict, prediction, card: dict) -> Path:
    """One self-contained HTML page for a recording (plotly.js inlined: it opens without a network)."""
    path, clips, beats = Path(path), prediction.clips, prediction.beats
    figure = ef_trace_figure(clips, summary, beats, prediction.clip_ef_meaning).to_html(full_html=False,
                                                                                         include_plotlyjs=True)
    shown = {k: summary[k] for k in ("recording", "kind", "frames", "fps", "clips", "ef_percent", "ef_sd_over_clips",
                                      "ef_low_percent", "ef_high_percent", "beats", "ef_beats_percent",
                                      "ef_sd_over_beats", "heart_rate_bpm", "edv_ml", "esv_ml", "mm_per_pixel",
                                      "beat_source") if k in summary}
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in shown.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in str(summary.get("notes", "")).split("; ") if n)
    beat_rows = _table_html(beats) if len(beats) else "<p>No whole beat found in this recording.</p>"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>echobook: {html.escape(summary['recording'])}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em}}
figure{{display:inline-block;margin:4px}}th{{text-align:left;padding-right:1em}}
table.grid td,table.grid th{{padding:2px 8px;border-bottom:1px solid #ddd}}
.warn{{background:#fff3cd;padding:.6em;border-radius:4px}}pre{{background:#f6f6f6;padding:.6em;overflow-x:auto}}</style>
</head><body>
<h1>{html.escape(summary['recording'])}: EF {summary['ef_percent']:.1f} %</h1>
<p class="warn">{html.escape(DISCLAIMER)}</p>
<h2>EF over the recording</h2>{figure}
<h2>Summary</h2><table>{rows}</table>
<h2>Beats</h2><p>{html.escape(prediction.beat_source)}</p>{beat_rows}
<h2>What was done to the recording</h2><ul>{notes or '<li>nothing masked (a video file)</li>'}</ul>
<h2>Key frames (as the model saw them)</h2>{_key_frames(prediction)}
<h2>The model</h2><pre>{html.escape(json.dumps(card, indent=1, sort_keys=True))}</pre>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
