"""What ``echobook predict`` leaves beside its CSVs: an overlay video and a self-contained HTML report per recording.

- The overlay (MP4, OpenCV's ``mp4v``): the frames the model saw, the scan sector's outline, and the EF of the
  clip window each frame belongs to, so a reader can see where the estimate moves.
- The report (one HTML file, plotly drawn offline with plotly.js inlined, no network needed): the EF of every
  clip over time with the conformal interval, the summary, key frames, the model card, and what was masked
  from the recording. It says plainly that this is not a medical device.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

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


def write_overlay(path: str | Path, frames: np.ndarray, fps: float, clips: pd.DataFrame,
                  sector: np.ndarray | None = None) -> Path:
    """An MP4 of gray ``[T, H, W]`` frames with the sector outline and each frame's clip EF written on it."""
    path = Path(path)
    scale = max(1, 256 // max(frames.shape[1:]))  # small model inputs are enlarged so the text stays legible
    height, width = frames.shape[1] * scale, frames.shape[2] * scale
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*OVERLAY_FOURCC), float(fps), (width, height), True)
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an {OVERLAY_FOURCC} video here")
    outline = None
    if sector is not None:
        big = cv2.resize(sector.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        outline, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    ef = clip_ef_per_frame(clips, len(frames))
    try:
        for t, gray in enumerate(frames):
            image = cv2.cvtColor(cv2.resize(gray, (width, height), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
            if outline is not None:
                cv2.drawContours(image, outline, -1, OVERLAY_COLOUR_BGR, 1)
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


def ef_trace_figure(clips: pd.DataFrame, summary: dict):
    """plotly: each clip's EF at its start time, the recording's EF and its conformal interval as a band."""
    import plotly.graph_objects as go

    fig = go.Figure()
    low, high = summary.get("ef_low_percent"), summary.get("ef_high_percent")
    x = [float(clips["start_s"].min()), float(clips["start_s"].max())]
    if low is not None and np.isfinite(low) and np.isfinite(high):
        fig.add_scatter(x=x + x[::-1], y=[high, high, low, low], fill="toself", mode="none",
                        fillcolor="rgba(255,170,0,0.2)", name=f"{summary.get('interval_level', 0.9):.0%} interval")
    fig.add_scatter(x=clips["start_s"], y=clips["ef_percent"], mode="lines+markers", name="EF of each clip")
    fig.add_scatter(x=x, y=[summary["ef_percent"]] * 2, mode="lines", line={"dash": "dash"}, name="recording's EF")
    fig.update_layout(xaxis_title="clip start (s)", yaxis_title="EF (%)", height=320,
                      margin={"l": 50, "r": 10, "t": 10, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig


def write_report(path: str | Path, summary: dict, clips: pd.DataFrame, frames: np.ndarray, card: dict) -> Path:
    """One self-contained HTML page for a recording (plotly.js inlined: it opens without a network)."""
    path = Path(path)
    figure = ef_trace_figure(clips, summary).to_html(full_html=False, include_plotlyjs=True)
    key_frames = "".join(f'<figure><img src="{_png_data_uri(frames[i])}" width="160" alt="frame {i}">'
                         f"<figcaption>frame {i}</figcaption></figure>"
                         for i in np.linspace(0, len(frames) - 1, 4).round().astype(int))
    shown = {k: summary[k] for k in ("recording", "kind", "frames", "fps", "clips", "ef_percent", "ef_sd_over_clips",
                                      "ef_low_percent", "ef_high_percent", "mm_per_pixel") if k in summary}
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in shown.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in str(summary.get("notes", "")).split("; ") if n)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>echobook: {html.escape(summary['recording'])}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em}}
figure{{display:inline-block;margin:4px}}th{{text-align:left;padding-right:1em}}
.warn{{background:#fff3cd;padding:.6em;border-radius:4px}}pre{{background:#f6f6f6;padding:.6em;overflow-x:auto}}</style>
</head><body>
<h1>{html.escape(summary['recording'])}: EF {summary['ef_percent']:.1f} %</h1>
<p class="warn">{html.escape(DISCLAIMER)}</p>
<h2>EF over the recording</h2>{figure}
<h2>Summary</h2><table>{rows}</table>
<h2>What was done to the recording</h2><ul>{notes or '<li>nothing masked (a video file)</li>'}</ul>
<h2>Key frames (as the model saw them)</h2>{key_frames}
<h2>The model</h2><pre>{html.escape(json.dumps(card, indent=1, sort_keys=True))}</pre>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
