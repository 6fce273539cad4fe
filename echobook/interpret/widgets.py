"""Interactive views of embeddings and heatmaps (ipywidgets + plotly), each with a static twin.

- :class:`EmbeddingExplorer`: a 2-D projection coloured by EF (true, predicted or the error);
  choosing a point shows that clip's frames with its Grad-CAM overlaid (opacity slider), its true
  and predicted EF.
- :class:`HeatmapPlayer`: one clip's frames with the Grad-CAM of several models side by side, a
  frame slider with a play button, a layer choice and an opacity slider.

Callbacks are plain methods (``explorer.select(i)``, ``player.show_frame(i)``, ``set_opacity``,
``set_layer``, ``set_colour``) that the widgets call and tests can drive without a browser.

Where they run: plotly's ``FigureWidget`` (click a point, recolour in place) needs ``anywidget``
(plotly >= 6; the ``notebook`` extra installs it) and is unreliable in Colab, so the explorer uses it
only when it can be made, not in Colab, and only where a reader's front end is attached (not in a
batch run, see :func:`front_end_attached`). Otherwise the explorer says why above a plain plotly
figure, which it redraws when the colouring or the chosen point changes; the point slider picks a
point in both modes. Frames are shown as PNGs in ``ipywidgets.Image``, which every front end renders.

Layout: rows of controls wrap, so a widget fits the book's content column and JupyterLab's default
width (the clip panel goes under the scatter when they do not fit side by side), and long
descriptions ("CAM opacity") get the width they need instead of being cut.

The rendered book has no kernel, so ``static_figure()`` gives a plotly figure that needs none: the
scatter with hover details and a colour menu; the player as an animation of small JPEG frames
(downsampled, to keep the page light) with a slider and a play button.
"""
from __future__ import annotations

import base64
import html
import os
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import numpy as np

from echobook.config import in_colab

DISPLAY_PX = 224  # side of the shown frames; small clips are enlarged to it (nearest neighbour)
STATIC_FRAMES = 16  # frames kept in a static animation
STATIC_PX = 96  # side of a static animation's frames
JPEG_QUALITY = 80
STATIC_PANEL_PX, STATIC_PANEL_MARGIN_PX = 260, 60  # a static animation's width per model, plus margins
COLOUR_BY = {"true": "EF true (%)", "predicted": "EF predicted (%)", "error": "EF error (%)"}

# index -> (frames [T, H, W] uint8 or float, Grad-CAM [T, H, W] in [0, 1] or None)
ClipSource = Callable[[int], tuple[np.ndarray, np.ndarray | None]]


# --------------------------------------------------------------------------------------------- pictures

def unit_gray(frames: np.ndarray) -> np.ndarray:
    """Frames as float32 in [0, 1]: uint8 divided by 255, anything else min-max over the whole clip
    (one scale for all frames, so brightness does not flicker)."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255
    low, high = float(frames.min()), float(frames.max())
    return ((frames - low) / max(high - low, 1e-12)).astype(np.float32)


def cam_overlay(frame: np.ndarray, cam: np.ndarray | None = None, opacity: float = 0.5) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``: a gray frame (in [0, 1], see :func:`unit_gray`) under a jet-coloured
    CAM at ``opacity`` (0: the frame alone, 1: the heatmap alone), by pytorch-grad-cam's
    ``show_cam_on_image``."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.repeat(np.clip(frame, 0, 1)[..., None], 3, axis=-1).astype(np.float32)
    if cam is None or opacity <= 0:
        return np.uint8(np.round(rgb * 255))
    return show_cam_on_image(rgb, np.clip(cam, 0, 1), use_rgb=True, image_weight=1.0 - float(np.clip(opacity, 0, 1)))


def resized(rgb: np.ndarray, side: int) -> np.ndarray:
    """Square ``side`` pixels: enlarged by nearest neighbour (crisp pixels), shrunk by area averaging."""
    import cv2

    if rgb.shape[0] == side and rgb.shape[1] == side:
        return rgb
    interpolation = cv2.INTER_NEAREST if side > rgb.shape[0] else cv2.INTER_AREA
    return cv2.resize(rgb, (side, side), interpolation=interpolation)


def encoded(rgb: np.ndarray, fmt: str = ".png") -> bytes:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == ".jpg" else []
    ok, buffer = cv2.imencode(fmt, np.ascontiguousarray(rgb[..., ::-1]), params)  # OpenCV writes BGR
    if not ok:
        raise RuntimeError(f"could not encode a {rgb.shape} image as {fmt}")
    return buffer.tobytes()


def data_uri(rgb: np.ndarray) -> str:
    """A JPEG data URI, the lightest way to embed a frame in a static plotly figure."""
    return "data:image/jpeg;base64," + base64.b64encode(encoded(rgb, ".jpg")).decode("ascii")


ANYWIDGET_MISSING = ("This scatter is a plain figure: clicking a point and colouring it in place need plotly's "
                     "<code>FigureWidget</code>, which needs <code>anywidget</code> ({reason}). Install it with "
                     "<code>pip install \"anywidget>=0.9\"</code> (or <code>pip install \"echobook[notebook]\"</code>) "
                     "and restart the kernel. Meanwhile the point slider picks a point and the colour buttons "
                     "redraw the figure.")
IN_COLAB = ("In Colab this scatter is a plain figure (plotly's <code>FigureWidget</code> does not work reliably "
            "there): the point slider picks a point and the colour buttons redraw the figure.")
NO_FRONT_END = ("This copy ran without a reader (a batch run: papermill, Jupyter Book), so its scatter does not "
                "answer clicks and its controls need a kernel. Open the chapter in JupyterLab or Colab to click a "
                "point and see its clip.")
FIGURE_PX = (480, 420)  # the live scatter: beside the clip panel in JupyterLab, above it in the book's column
WIDE_LABEL = {"description_width": "initial"}  # a description as wide as its text, never cut


def front_end_attached() -> bool:
    """Whether a reader's front end shows this kernel's widgets: a kernel started by a Jupyter server
    (JupyterLab, Notebook 7, JupyterHub, which set ``$JPY_SESSION_NAME``) or by VS Code (which defines
    ``__vsc_ipynb_file__``). A batch run (papermill, nbclient, Jupyter Book) has no reader, and a
    FigureWidget made there would only add plotly.js (about 5 MB) to the saved notebook and a model the
    rendered book cannot load offline."""
    if os.environ.get("JPY_SESSION_NAME"):
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "__vsc_ipynb_file__" in shell.user_ns


def live_figure(figure):
    """``(FigureWidget, None)`` where clicks can reach the kernel, else ``(None, why not)`` as HTML
    for the reader: a silent fallback would leave controls that do nothing."""
    if in_colab():
        return None, IN_COLAB
    if not front_end_attached():
        return None, NO_FRONT_END
    import plotly.graph_objects as go

    try:
        return go.FigureWidget(figure), None
    except ImportError as error:  # plotly >= 6 needs anywidget for it
        return None, ANYWIDGET_MISSING.format(reason=html.escape(str(error).strip() or "not installed"))


def on_change(control, current: Callable[[], object], callback: Callable[[object], None]) -> None:
    """Call ``callback(new value)`` when ``control``'s value changes to something not already shown."""
    control.observe(lambda change: None if change["new"] == current() else callback(change["new"]), names="value")


def wrapping_row(children):
    """An HBox whose children go to the next line when the row is narrower than they are (the
    book's content column), instead of running past its right edge."""
    import ipywidgets as widgets

    return widgets.HBox(children, layout=widgets.Layout(flex_flow="row wrap", max_width="100%"))


def spaced_indices(count: int, keep: int) -> np.ndarray:
    """At most ``keep`` indices spread evenly over ``range(count)``."""
    return np.unique(np.linspace(0, count - 1, min(count, keep)).round().astype(int))


# --------------------------------------------------------------------------------------------- explorer

class EmbeddingExplorer:
    """A 2-D projection ``[N, 2]`` of embeddings with EF ``[N]``; pick a point to see its clip.

    ``clip_source(i)`` returns point ``i``'s frames and Grad-CAM (see :func:`gradcam_clip_source`);
    without one, picking a point shows its EF only. Display with ``display(explorer)`` or
    ``explorer.widget``; ``explorer.static_figure()`` for the book.
    """

    def __init__(self, projection: np.ndarray, ef_true: np.ndarray, ef_pred: np.ndarray | None = None, *,
                 clip_source: ClipSource | None = None, names: Sequence[str] | None = None, colour_by: str = "true",
                 opacity: float = 0.5, display_px: int = DISPLAY_PX, plot: str = "auto"):
        self.projection = np.asarray(projection, dtype=np.float64)
        self.ef_true = np.asarray(ef_true, dtype=np.float64).reshape(-1)
        self.ef_pred = None if ef_pred is None else np.asarray(ef_pred, dtype=np.float64).reshape(-1)
        count = len(self.ef_true)
        if self.projection.shape != (count, 2) or (self.ef_pred is not None and len(self.ef_pred) != count):
            raise ValueError(f"need a projection [N, 2] and EF [N]: got {self.projection.shape}, {count} "
                             f"true, {None if self.ef_pred is None else len(self.ef_pred)} predicted")
        self.names = [str(n) for n in names] if names is not None else [f"#{i}" for i in range(count)]
        self.clip_source, self.display_px, self.plot = clip_source, display_px, plot
        self.colour_options = ["true"] + (["predicted", "error"] if self.ef_pred is not None else [])
        self.colour_by, self.opacity = colour_by, float(opacity)
        self.selected: int | None = None
        self.frame = 0
        self.frames = self.cam = None
        self._build_controls()
        self.set_colour(colour_by)

    def __len__(self) -> int:
        return len(self.ef_true)

    # -------------------------------------------------------------- data for either figure
    def colour_values(self, by: str) -> dict:
        """Marker colours and their scale for ``by`` in :data:`COLOUR_BY`."""
        if by not in self.colour_options:
            raise ValueError(f"colour_by={by!r}: choose one of {self.colour_options}")
        if by == "error":
            values = self.ef_pred - self.ef_true
            bound = float(np.abs(values).max()) or 1.0
            return {"color": values, "colorscale": "RdBu_r", "cmin": -bound, "cmax": bound}
        values = self.ef_true if by == "true" else self.ef_pred
        return {"color": values, "colorscale": "Viridis", "cmin": float(self.ef_true.min()),
                "cmax": float(self.ef_true.max())}  # one scale for true and predicted, to compare them

    def hover_data(self) -> tuple[np.ndarray, str]:
        """``customdata`` rows (index, EF true, predicted, error) and the hover template."""
        pred = self.ef_pred if self.ef_pred is not None else np.full_like(self.ef_true, np.nan)
        data = np.column_stack([np.arange(len(self)), self.ef_true, pred, pred - self.ef_true])
        template = "point %{customdata[0]}: %{text}<br>EF true %{customdata[1]:.1f} %"
        if self.ef_pred is not None:
            template += "<br>EF predicted %{customdata[2]:.1f} %<br>error %{customdata[3]:+.1f} %"
        return data, template + "<extra></extra>"

    def scatter_trace(self, points: np.ndarray | None = None):
        """The scatter of ``points`` (indices; default all), hover details in ``customdata``."""
        import plotly.graph_objects as go

        points = np.arange(len(self)) if points is None else points
        data, template = self.hover_data()
        colours = self.colour_values(self.colour_by)
        return go.Scatter(
            x=self.projection[points, 0].round(4), y=self.projection[points, 1].round(4), mode="markers",
            text=[self.names[i] for i in points], customdata=data[points].round(2), hovertemplate=template,
            name="videos", marker=dict(size=7, colorbar=dict(title=dict(text=COLOUR_BY[self.colour_by])),
                                       **{k: (v[points].round(2) if isinstance(v, np.ndarray) else v)
                                          for k, v in colours.items()}),
        )

    def static_figure(self, title: str = "Embeddings", width: int = 640, height: int = 520,
                      max_points: int | None = None, seed: int = 0):
        """A kernel-free plotly scatter: hover details per point and a menu to colour by true /
        predicted EF or the error. ``max_points`` keeps a random subset (about 110 bytes a point)."""
        import plotly.graph_objects as go

        points = np.arange(len(self))
        if max_points is not None and max_points < len(self):
            points = np.sort(np.random.default_rng(seed).choice(len(self), max_points, replace=False))
        figure = go.Figure(self.scatter_trace(points))
        buttons = []
        for by in self.colour_options:
            colours = self.colour_values(by)
            buttons.append(dict(label=COLOUR_BY[by], method="restyle", args=[{
                "marker.color": [colours["color"][points].round(2)], "marker.colorscale": [colours["colorscale"]],
                "marker.cmin": [colours["cmin"]], "marker.cmax": [colours["cmax"]],
                "marker.colorbar.title.text": [COLOUR_BY[by]]}]))
        figure.update_layout(
            title=title, width=width, height=height, xaxis_title="dimension 1", yaxis_title="dimension 2",
            updatemenus=[dict(buttons=buttons, direction="down", x=0.0, xanchor="left", y=1.12, yanchor="top")]
            if len(buttons) > 1 else [],
            margin=dict(t=90),
        )
        return figure

    # -------------------------------------------------------------- callbacks
    def select(self, index: int) -> None:
        """Show point ``index``: its EF in :attr:`info`, its frames (with Grad-CAM) in :attr:`image`."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"point {index} is outside 0..{len(self) - 1}")
        self.selected = index
        if self.clip_source is not None:
            self.frames, self.cam = self.clip_source(index)
            self.frames = unit_gray(self.frames)
            self.frame_slider.max = len(self.frames) - 1
        self.point_slider.value = index  # keeps the slider in step with a click; no-op if it was the source
        self.info.value = self.describe(index)
        self._highlight(index)
        self.show_frame(min(self.frame, len(self.frames) - 1) if self.frames is not None else 0)

    def describe(self, index: int) -> str:
        parts = [f"<b>{self.names[index]}</b> (point {index})", f"EF true {self.ef_true[index]:.1f} %"]
        if self.ef_pred is not None:
            error = self.ef_pred[index] - self.ef_true[index]
            parts += [f"predicted {self.ef_pred[index]:.1f} %", f"error {error:+.1f} %"]
        return " · ".join(parts)

    def show_frame(self, i: int) -> None:
        """Show frame ``i`` of the selected clip with its CAM at the current opacity."""
        self.frame = int(i)
        if self.frames is None:
            return
        self.frame_slider.value = self.frame
        cam = None if self.cam is None else self.cam[self.frame]
        self.image.value = encoded(resized(cam_overlay(self.frames[self.frame], cam, self.opacity), self.display_px))

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(opacity)
        self.opacity_slider.value = self.opacity
        self.show_frame(self.frame)

    def set_colour(self, by: str) -> None:
        colours = self.colour_values(by)
        self.colour_by = by
        self.colour_buttons.value = by
        if getattr(self, "_figure_widget", None) is not None:
            with self._figure_widget.batch_update():
                self._figure_widget.data[0].marker.update(**colours, colorbar=dict(title=dict(text=COLOUR_BY[by])))
        self._redraw_plain_figure()

    # -------------------------------------------------------------- widgets
    def _build_controls(self) -> None:
        import ipywidgets as widgets

        self.point_slider = widgets.IntSlider(0, 0, max(len(self) - 1, 0), description="point",
                                              continuous_update=False, style=WIDE_LABEL)
        self.colour_buttons = widgets.ToggleButtons(options=self.colour_options, value=self.colour_options[0],
                                                    description="colour by", style=WIDE_LABEL)
        self.frame_slider = widgets.IntSlider(0, 0, 0, description="frame", style=WIDE_LABEL)
        self.play = widgets.Play(interval=125, min=0, max=0, description="play")
        self.opacity_slider = widgets.FloatSlider(self.opacity, min=0, max=1, step=0.05, description="CAM opacity",
                                                  style=WIDE_LABEL)
        self.image = widgets.Image(format="png", width=self.display_px, height=self.display_px)
        self.info = widgets.HTML("choose a point")
        self.notice = widgets.HTML("")  # why the scatter is not live, when it is not
        widgets.jslink((self.play, "value"), (self.frame_slider, "value"))
        widgets.jslink((self.frame_slider, "max"), (self.play, "max"))
        # A control moved by the reader calls the method; a method moving its control (to stay in
        # step) finds the state already set, so the observer does nothing.
        on_change(self.point_slider, lambda: self.selected, self.select)
        on_change(self.colour_buttons, lambda: self.colour_by, self.set_colour)
        on_change(self.frame_slider, lambda: self.frame, self.show_frame)
        on_change(self.opacity_slider, lambda: self.opacity, self.set_opacity)
        self._figure_widget = self._plain_output = None

    def _highlight(self, index: int) -> None:
        if self._figure_widget is not None:
            self._figure_widget.data[1].update(x=[self.projection[index, 0]], y=[self.projection[index, 1]])
        self._redraw_plain_figure()

    def live_view_figure(self):
        """The scatter of the widget: the static figure without its menu (the toggle buttons colour
        it), sized to sit beside the clip panel, with a red ring on the chosen point."""
        import plotly.graph_objects as go

        width, height = FIGURE_PX
        figure = self.static_figure(width=width, height=height)
        chosen = [] if self.selected is None else [self.selected]
        figure.add_trace(go.Scatter(x=self.projection[chosen, 0], y=self.projection[chosen, 1], mode="markers",
                                    name="chosen", hoverinfo="skip",
                                    marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(width=2, color="red"))))
        figure.layout.updatemenus = ()
        figure.update_layout(showlegend=False, margin=dict(l=50, r=10, t=50, b=50))
        return figure

    def _redraw_plain_figure(self) -> None:
        """The plain figure cannot change in place: draw it again (colouring or chosen point changed)."""
        if self._plain_output is None:
            return
        from IPython.display import display

        self._plain_output.clear_output(wait=True)
        with self._plain_output:
            display(self.live_view_figure())  # the notebook's plotly renderer; never a browser tab

    def _plot_widget(self):
        """A clickable FigureWidget where it can be made (``plot='auto'`` or ``'figurewidget'``), else
        the plain figure in an Output with :attr:`notice` saying why (``plot='static'``, Colab, no
        anywidget)."""
        import ipywidgets as widgets

        if self.plot == "static":
            self._figure_widget, why = None, ""
        else:
            self._figure_widget, why = live_figure(self.live_view_figure())
        if self._figure_widget is None:
            if self.plot == "figurewidget":
                raise RuntimeError(f"plotly's FigureWidget is not available here: {html.unescape(why)}")
            self.notice.value = f"<small>{why}</small>" if why else ""
            if why == NO_FRONT_END:
                # No reader sees a redrawn figure in a batch run, and an Output widget there is worse than
                # useless: nbclient sends its captured outputs back to the kernel on the shell channel while
                # it waits for the cell's reply, and now and then never sees the cell end (jupyter/nbclient#312:
                # chapter 6 at `small` hung in 2 runs of 2, a toy explorer in 1 run of 3). The chapter's static
                # twin shows the scatter instead.
                return widgets.HTML("")
            self._plain_output = widgets.Output()
            self._redraw_plain_figure()
            return self._plain_output
        self._figure_widget.data[0].on_click(lambda trace, points, state: points.point_inds and
                                             self.select(points.point_inds[0]))
        return self._figure_widget

    @property
    def widget(self):
        """The whole explorer as one ipywidgets box (built once)."""
        import ipywidgets as widgets

        if getattr(self, "_widget", None) is None:
            clip_view = widgets.VBox([self.info, self.image, wrapping_row([self.play, self.frame_slider]),
                                      self.opacity_slider], layout=widgets.Layout(max_width="100%"))
            plot = self._plot_widget()
            self._widget = widgets.VBox([self.colour_buttons, self.point_slider, self.notice,
                                         wrapping_row([plot, clip_view])])
            if self.selected is not None:
                self._highlight(self.selected)
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def gradcam_clip_source(model, dataset, mean: float, std: float, *, clip: int = 0, stage: int = 4,
                        direction: str = "raises", cache_size: int = 32) -> ClipSource:
    """A :data:`ClipSource` over a test-time :class:`~echobook.data.clips.ClipDataset`: video ``i``'s
    ``clip``-th clip (uint8 frames) and its Grad-CAM, computed when first asked for and cached."""
    import torch

    from echobook.interpret.gradcam import video_gradcam

    items = {}
    for video, starts in dataset.fixed_items:
        items.setdefault(video, []).append(starts)

    @lru_cache(maxsize=cache_size)
    def source(index: int):
        pixels = dataset.clips(index, items[index][clip])  # uint8 [clips, 1, F, H, W]
        clips = (torch.from_numpy(np.ascontiguousarray(pixels[:1])).float() - mean) / std
        maps, _ = video_gradcam(model, clips, stage=stage, direction=direction)
        return pixels[0, 0], maps[0]

    return source


# --------------------------------------------------------------------------------------------- player

class HeatmapPlayer:
    """One clip's frames ``[T, H, W]`` with Grad-CAMs ``{model: {layer: [T, H, W]}}`` side by side
    (a plain ``{model: [T, H, W]}`` means one layer). Display with ``display(player)``;
    ``player.static_figure()`` for the book."""

    def __init__(self, frames: np.ndarray, cams: Mapping[str, Mapping[str, np.ndarray] | np.ndarray], *,
                 opacity: float = 0.5, display_px: int = DISPLAY_PX, captions: Mapping[str, str] | None = None,
                 frame_interval_ms: int = 125):
        self.frames = unit_gray(frames)
        self.cams = {model: ({"": layers} if isinstance(layers, np.ndarray) else dict(layers))
                     for model, layers in cams.items()}
        self.models = list(self.cams)
        self.layers = [layer for layer in self.cams[self.models[0]] if all(layer in c for c in self.cams.values())]
        if not self.layers:
            raise ValueError("the models share no layer name")
        for model, layers in self.cams.items():
            for layer, cam in layers.items():
                if np.shape(cam) != self.frames.shape:
                    raise ValueError(f"CAM of {model} {layer} has shape {np.shape(cam)}, frames {self.frames.shape}")
        self.captions = dict(captions or {})
        self.display_px, self.opacity, self.layer, self.frame = display_px, float(opacity), self.layers[-1], 0
        self._build_controls(frame_interval_ms)
        self.show_frame(0)

    def __len__(self) -> int:
        return len(self.frames)

    def picture(self, model: str, frame: int, layer: str | None = None, opacity: float | None = None) -> np.ndarray:
        cam = self.cams[model][layer if layer is not None else self.layer][frame]
        return cam_overlay(self.frames[frame], cam, self.opacity if opacity is None else opacity)

    # -------------------------------------------------------------- callbacks
    def show_frame(self, i: int) -> None:
        """Show frame ``i`` for every model."""
        if not 0 <= int(i) < len(self):
            raise IndexError(f"frame {i} is outside 0..{len(self) - 1}")
        self.frame = int(i)
        self.frame_slider.value = self.frame
        for model, image in self.images.items():
            image.value = encoded(resized(self.picture(model, self.frame), self.display_px))

    def set_layer(self, layer: str) -> None:
        if layer not in self.layers:
            raise ValueError(f"layer {layer!r}: choose one of {self.layers}")
        self.layer = layer
        self.layer_menu.value = layer
        self.show_frame(self.frame)

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(opacity)
        self.opacity_slider.value = self.opacity
        self.show_frame(self.frame)

    # -------------------------------------------------------------- widgets
    def _build_controls(self, frame_interval_ms: int) -> None:
        import ipywidgets as widgets

        last = len(self) - 1
        self.frame_slider = widgets.IntSlider(0, 0, last, description="frame", style=WIDE_LABEL)
        self.play = widgets.Play(interval=frame_interval_ms, min=0, max=last, description="play")
        self.layer_menu = widgets.Dropdown(options=self.layers, value=self.layer, description="layer",
                                           style=WIDE_LABEL, layout=widgets.Layout(width="auto"))
        self.opacity_slider = widgets.FloatSlider(self.opacity, min=0, max=1, step=0.05, description="CAM opacity",
                                                  style=WIDE_LABEL)
        self.images = {model: widgets.Image(format="png", width=self.display_px, height=self.display_px)
                       for model in self.models}
        widgets.jslink((self.play, "value"), (self.frame_slider, "value"))
        on_change(self.frame_slider, lambda: self.frame, self.show_frame)
        on_change(self.layer_menu, lambda: self.layer, self.set_layer)
        on_change(self.opacity_slider, lambda: self.opacity, self.set_opacity)

    @property
    def widget(self):
        import ipywidgets as widgets

        if getattr(self, "_widget", None) is None:
            panels = [widgets.VBox([widgets.HTML(f"<b>{model}</b> {self.captions.get(model, '')}"), image])
                      for model, image in self.images.items()]
            controls = [self.play, self.frame_slider] + ([self.layer_menu] if len(self.layers) > 1 else [])
            self._widget = widgets.VBox([wrapping_row(controls), self.opacity_slider, wrapping_row(panels)])
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # -------------------------------------------------------------- static twin
    def static_figure(self, layer: str | None = None, max_frames: int = STATIC_FRAMES, side: int = STATIC_PX,
                      opacity: float | None = None, frame_duration_ms: int = 150):
        """A kernel-free plotly animation of ``layer`` (default: the current one): every model side
        by side, ``max_frames`` frames spread over the clip, as ``side``-pixel JPEGs (a few KB each),
        with a frame slider and a play button."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        layer = layer if layer is not None else self.layer
        kept = spaced_indices(len(self), max_frames)

        def images(frame: int) -> list:
            return [go.Image(source=data_uri(resized(self.picture(model, frame, layer, opacity), side)),
                             hoverinfo="skip") for model in self.models]

        columns = len(self.models)
        # the caption on a line of its own, smaller: side by side in one line, two titles run into each other
        titles = [f"{model}<br><span style='font-size:11px'>{self.captions[model]}</span>"
                  if self.captions.get(model) else model for model in self.models]
        figure = make_subplots(rows=1, cols=columns, subplot_titles=titles, horizontal_spacing=0.03)
        for column, trace in enumerate(images(int(kept[0])), start=1):
            figure.add_trace(trace, row=1, col=column)
        figure.frames = [go.Frame(data=images(int(f)), name=str(f), traces=list(range(columns))) for f in kept]
        step_args = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
        play_args = dict(frame=dict(duration=frame_duration_ms, redraw=True), transition=dict(duration=0),
                         fromcurrent=True)
        figure.update_layout(
            # the top margin holds the title above two-line subplot titles without the two touching
            width=STATIC_PANEL_MARGIN_PX + STATIC_PANEL_PX * columns, height=440, margin=dict(l=10, r=10, t=120, b=10),
            title=f"Grad-CAM{f', {layer}' if layer else ''}",
            # the slider starts right of the play/pause buttons, so they do not cover its label
            sliders=[dict(active=0, currentvalue=dict(prefix="frame "), pad=dict(t=10), x=0.16, len=0.84,
                          steps=[dict(label=str(f), method="animate", args=[[str(f)], step_args]) for f in kept])],
            updatemenus=[dict(type="buttons", showactive=False, x=0.0, y=-0.02, xanchor="left", yanchor="top",
                              buttons=[dict(label="play", method="animate", args=[None, play_args]),
                                       dict(label="pause", method="animate", args=[[None], step_args])])],
        )
        figure.update_xaxes(showticklabels=False)
        figure.update_yaxes(showticklabels=False)
        return figure


def stage_cams(models: Mapping[str, object], clip, stages: Sequence[int] = (1, 2, 3, 4),
               direction: str = "raises") -> dict[str, dict[str, np.ndarray]]:
    """``{model: {"stage s": [T, H, W]}}`` of one normalised clip ``[1, C, T, H, W]``, for the player."""
    from echobook.interpret.gradcam import video_gradcam

    return {name: {f"stage {s}": video_gradcam(model, clip, stage=s, direction=direction).maps[0] for s in stages}
            for name, model in models.items()}
