"""echobook.interpret: continuity scores, Grad-CAM for video, the focus score, widgets and their static figures."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from echobook.interpret import embeddings as emb

# --------------------------------------------------------------------------------------------- embeddings


def line_embeddings(n: int = 60, dim: int = 16, seed: int = 0):
    """Points on a straight line in ``dim`` dimensions, placed by their EF."""
    rng = np.random.default_rng(seed)
    ef_percent = rng.uniform(20, 80, n)
    direction = rng.normal(size=dim)
    return ef_percent[:, None] * direction + rng.normal(size=dim), ef_percent


def test_a_line_ordered_by_ef_is_perfectly_continuous():
    points, ef_percent = line_embeddings()
    scores = emb.continuity_scores(points, ef_percent, projection=emb.pca_projection(points))
    assert scores["rho_leading"] == pytest.approx(1.0)
    assert scores["knn_mae_percent"] < 1.5  # neighbours on a line at ~1 % EF spacing
    assert scores["trustworthiness"] == pytest.approx(1.0)


def test_noise_is_not_continuous():
    rng = np.random.default_rng(1)
    points, ef_percent = rng.normal(size=(200, 16)), rng.uniform(20, 80, 200)
    scores = emb.continuity_scores(points, ef_percent)
    assert scores["rho_leading"] < 0.2
    # a kNN estimate from unrelated neighbours is about as bad as guessing the spread
    assert scores["knn_mae_percent"] > 12


def test_knn_leave_one_out_does_not_see_itself():
    points = np.array([[0.0], [0.0], [10.0], [10.0]])  # exact duplicates
    ef_percent = np.array([30.0, 40.0, 60.0, 70.0])
    assert emb.knn_ef_mae(points, ef_percent, k=1) == pytest.approx(10.0)
    assert emb.knn_ef_mae(points, ef_percent, k=4) == pytest.approx(10.0)  # clipped to k = 1 < N / 2
    with pytest.raises(ValueError, match="k=0"):
        emb.knn_ef_mae(points, ef_percent, k=0)


def test_clip_position_counts_within_each_video():
    assert emb.clip_position(np.array([0, 0, 0, 1, 1, 1, 2])).tolist() == [0, 1, 2, 0, 1, 2, 0]


def tiny_eval_loader(videos: int = 3, frames: int = 12, size: int = 32, clip_frames: int = 8):
    from echobook.data.clips import ClipDataset, VideoStore, clip_dataloader

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (frames, size, size), dtype=np.uint8) for _ in range(videos)]
    dataset = ClipDataset(VideoStore(arrays=arrays), np.linspace(30, 70, videos), clip_frames, 1, train=False)
    return clip_dataloader(dataset, batch_size=4, mean=128.0, std=64.0, device="cpu")


def tiny_coreecho_model():
    from echobook.methods.coreecho import coreecho_model

    torch.manual_seed(0)
    return coreecho_model("uniformer_xxs")


def test_extract_embeddings_averages_or_picks_test_time_clips():
    loader, model = tiny_eval_loader(), tiny_coreecho_model()
    per_clip, per_clip_ef = emb.clip_embeddings(model, loader)
    assert per_clip.shape == (9, model.encoder.embed_dim) and per_clip_ef.shape == (9,)

    averaged = emb.extract_embeddings(model, loader)
    assert averaged.embeddings.shape == (3, model.encoder.embed_dim) and len(averaged) == 3
    np.testing.assert_allclose(averaged.embeddings[1], per_clip[3:6].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(averaged.ef_pred[1], per_clip_ef[3:6].mean().item(), rtol=1e-5)
    np.testing.assert_allclose(averaged.ef_true, [30, 50, 70])
    assert averaged.ef_error.shape == (3,)

    last = emb.extract_embeddings(model, loader, clip=2)
    np.testing.assert_allclose(last.embeddings[0], per_clip[2].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="test-time clips"):
        emb.extract_embeddings(model, loader, clip=3)


def test_projections_by_name():
    points, _ = line_embeddings(n=30)
    assert emb.project(points, "pca").shape == (30, 2)
    with pytest.raises(ValueError, match="umap"):
        emb.project(points, "tsne")


@pytest.mark.slow
def test_umap_projection_keeps_a_line_ordered():
    points, ef_percent = line_embeddings(n=40)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a chapter's kernel in `make book`, two chapters at once on two cores
    try:
        projection = emb.umap_projection(points)  # CoReEcho's settings: n_neighbors=5
        assert torch.get_num_threads() == 1  # numba's OpenMP pool must not hand torch every core
    finally:
        torch.set_num_threads(threads)
    assert projection.shape == (40, 2)
    assert emb.trustworthiness(points, projection) > 0.9  # neighbourhoods kept ...
    assert emb.knn_ef_mae(projection, ef_percent) < 4  # ... so neighbours share their EF
    # a 1-D UMAP with 5 neighbours may tear a curve into pieces; with more it keeps the order
    assert emb.spearman_abs_rho(emb.leading_coordinate(points, "umap", n_neighbors=15), ef_percent) > 0.9


# --------------------------------------------------------------------------------------------- Grad-CAM

from echobook.interpret import gradcam as gc  # noqa: E402


class TinyConv3dRegressor(nn.Module):
    """Two stride-1 3-D convs (so the CAM needs no upsampling), a mean over T, H, W, one output."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 3, 3, padding=1))
        self.fc = nn.Linear(3, 1)

    def forward(self, clips):
        return self.fc(self.features(clips).mean(dim=(2, 3, 4))).squeeze(-1)  # [B], like the EF heads


def hand_gradcam(model: TinyConv3dRegressor, clips: torch.Tensor, sign: float) -> np.ndarray:
    """Grad-CAM written out: channel weights = mean gradient over T, H, W -> ReLU(weighted sum) -> min-max."""
    activations = model.features(clips)
    gradients, = torch.autograd.grad((sign * model.fc(activations.mean(dim=(2, 3, 4)))).sum(), activations)
    weights = gradients.mean(dim=(2, 3, 4), keepdim=True)
    cam = torch.relu((weights * activations).sum(dim=1)).detach().numpy()
    low = cam.min(axis=(1, 2, 3), keepdims=True)
    return (cam - low) / (1e-7 + cam.max(axis=(1, 2, 3), keepdims=True) - low)


@pytest.mark.parametrize("direction, sign", [("raises", 1.0), ("lowers", -1.0)])
def test_gradcam_agrees_with_a_hand_computation(direction, sign):
    torch.manual_seed(0)
    model, clips = TinyConv3dRegressor(), torch.randn(2, 1, 4, 6, 6)
    result = gc.video_gradcam(model, clips, target_layer=model.features[-1], direction=direction)
    expected = hand_gradcam(model, clips, sign)
    assert expected.max() > 0.99  # a map with content, not all zeros
    np.testing.assert_allclose(result.maps, expected, atol=1e-4)
    np.testing.assert_allclose(result.ef_percent, model(clips).detach().numpy(), rtol=1e-5)


def test_gradcam_on_uniformer_stages_gives_frame_maps_at_input_size():
    from echobook.models import create_model

    torch.manual_seed(0)
    model, clips = create_model("uniformer_xxs"), torch.randn(2, 1, 8, 32, 32)
    ef_model = nn.Sequential(model, nn.Linear(model.embed_dim, 1))  # any [B, 1] regressor
    ef_model.train()
    for stage in (1, 2, 4):
        maps, ef_percent = gc.video_gradcam(ef_model, clips, stage=stage, batch_size=1)
        assert maps.shape == (2, 8, 32, 32) and ef_percent.shape == (2,)
        assert maps.min() >= 0 and maps.max() <= 1
    assert ef_model.training, "the model's mode is restored"
    assert all(p.grad is None for p in ef_model.parameters()), "no gradients left behind"
    assert set(gc.uniformer_stage_layers(ef_model)) == {"stage 1", "stage 2", "stage 3", "stage 4"}
    with pytest.raises(ValueError, match="stage"):
        gc.uniformer_target_layer(model, stage=5)


def test_gradcam_works_through_a_frozen_coreecho_model():
    model = tiny_coreecho_model()
    model.encoder.requires_grad_(False)  # MLP probing: nothing upstream of the head needs a gradient
    maps, _ = gc.video_gradcam(model, torch.randn(2, 1, 8, 32, 32), stage=2)
    assert maps.shape == (2, 8, 32, 32) and maps.max() > 0


def test_ef_output_wrapper_gives_one_column():
    assert gc.EFOutput(TinyConv3dRegressor())(torch.randn(3, 1, 2, 4, 4)).shape == (3, 1)
    with pytest.raises(ValueError, match="direction"):
        gc.ef_targets(2, "sideways")
    from echobook.models import create_model

    with pytest.raises(ValueError, match="values per clip"):  # an encoder alone gives embeddings
        gc.EFOutput(create_model("uniformer_xxs"))(torch.randn(2, 1, 8, 32, 32))


def test_focus_scores_on_hand_made_masks():
    labels = np.zeros((2, 4, 4), dtype=np.uint8)
    labels[:, :2, :2] = gc.LV_CAVITY  # 8 of 32 pixels
    labels[:, :2, 2:] = gc.LV_MYOCARDIUM  # 8 more
    inside = (labels == gc.LV_CAVITY).astype(float)
    outside = (labels == 0).astype(float)
    cams = np.stack([inside, outside, np.ones_like(inside), np.zeros_like(inside)])
    scores = gc.focus_scores(cams, labels)
    np.testing.assert_allclose(scores["lv_cavity"][:3], [1.0, 0.0, 0.25])
    np.testing.assert_allclose(scores["lv_cavity_and_myocardium"][:3], [1.0, 0.0, 0.5])
    assert np.isnan(scores["lv_cavity"][3])  # no energy: no share to speak of
    with pytest.raises(ValueError, match="do not match"):
        gc.focus_scores(cams, labels[:, :2])


def test_clip_labels_follow_the_clip_frames():
    labels = np.arange(10, dtype=np.uint8)[:, None, None] * np.ones((1, 8, 8), dtype=np.uint8)
    chosen = gc.clip_labels(labels, clip_frames=4, clip_stride=3, start=2, image_size=4)
    assert chosen.shape == (4, 4, 4) and chosen[:, 0, 0].tolist() == [2, 5, 8, 1]  # looped past the end


# --------------------------------------------------------------------------------------------- widgets

from echobook.interpret import widgets as wd  # noqa: E402


def tiny_clip_source(index: int):
    """Point i's clip: frames whose brightness encodes i, a CAM on the left half."""
    frames = np.full((6, 16, 16), 20 * index + 10, dtype=np.uint8)
    frames[:, 0, :] = np.arange(6)[:, None] * 40  # the top row tells frames apart
    cam = np.zeros((6, 16, 16), dtype=np.float32)
    cam[:, :, :8] = 1.0
    return frames, cam


def tiny_explorer(**kwargs):
    projection = np.column_stack([np.linspace(0, 1, 5), np.linspace(0, 1, 5) ** 2])
    return wd.EmbeddingExplorer(projection, [30, 40, 50, 60, 70], [35, 40, 45, 65, 70],
                                clip_source=tiny_clip_source, names=list("abcde"), **kwargs)


def test_explorer_select_shows_the_points_ef_and_frames():
    explorer = tiny_explorer()
    explorer.select(1)
    first_info, first_image = explorer.info.value, explorer.image.value
    assert "EF true 40.0" in first_info and "predicted 40.0" in first_info and first_image[:4] == b"\x89PNG"
    explorer.select(3)
    assert "EF true 60.0" in explorer.info.value and "+5.0" in explorer.info.value
    assert explorer.image.value != first_image and explorer.selected == 3
    explorer.point_slider.value = 0  # the reader moves the point slider
    assert explorer.selected == 0 and "EF true 30.0" in explorer.info.value
    with pytest.raises(IndexError):
        explorer.select(5)


def test_explorer_frame_and_opacity_controls_redraw():
    explorer = tiny_explorer()
    explorer.select(2)
    shown = explorer.image.value
    explorer.frame_slider.value = 4  # the reader moves the frame slider
    assert explorer.frame == 4 and explorer.image.value != shown
    assert explorer.frame_slider.max == 5
    shown = explorer.image.value
    explorer.set_opacity(0.0)  # frame alone: the CAM's colours are gone
    assert explorer.image.value != shown and explorer.opacity_slider.value == 0.0
    explorer.colour_buttons.value = "error"
    assert explorer.colour_by == "error"


def test_explorer_widget_builds_without_figurewidget():
    explorer = tiny_explorer(plot="static")
    explorer.select(1)
    box = explorer.widget
    assert explorer._figure_widget is None and box is explorer.widget
    with pytest.raises(ValueError, match="colour_by"):
        wd.EmbeddingExplorer(np.zeros((2, 2)), [40, 50], colour_by="error")
    with pytest.raises(ValueError, match="projection"):
        wd.EmbeddingExplorer(np.zeros((3, 2)), [40, 50])


def test_explorer_static_figure_has_hover_details_and_colour_menu():
    figure = tiny_explorer().static_figure()
    scatter = figure.data[0]
    assert len(scatter.x) == 5 and list(scatter.text) == list("abcde")
    assert "EF true" in scatter.hovertemplate and "EF predicted" in scatter.hovertemplate
    assert np.asarray(scatter.customdata).shape == (5, 4)
    assert [b.label for b in figure.layout.updatemenus[0].buttons] == list(wd.COLOUR_BY.values())
    subset = tiny_explorer().static_figure(max_points=3).data[0]
    assert len(subset.x) == 3 and len(subset.marker.color) == 3


def tiny_player():
    frames, cam = tiny_clip_source(2)
    moved = np.roll(cam, 8, axis=2)
    cams = {"CoReEcho": {"stage 2": cam, "stage 4": moved}, "baseline": {"stage 2": moved, "stage 4": cam}}
    return wd.HeatmapPlayer(frames, cams, captions={"CoReEcho": "(RnC)"})


def test_player_slider_layer_and_opacity_change_the_shown_frames():
    player = tiny_player()
    shown = {m: image.value for m, image in player.images.items()}
    assert shown["CoReEcho"] != shown["baseline"]  # their CAMs differ on this layer
    player.frame_slider.value = 3  # the reader moves the slider (the play button moves it too)
    assert player.frame == 3 and player.images["CoReEcho"].value != shown["CoReEcho"]
    player.show_frame(0)
    assert player.frame_slider.value == 0 and player.images["CoReEcho"].value == shown["CoReEcho"]
    player.layer_menu.value = "stage 2"
    assert player.layer == "stage 2" and player.images["CoReEcho"].value == shown["baseline"]
    player.set_opacity(0.0)
    assert player.images["CoReEcho"].value == player.images["baseline"].value  # the bare frame
    assert player.widget is player.widget
    with pytest.raises(IndexError):
        player.show_frame(6)


def test_player_static_animation_is_small_and_has_a_frame_per_step():
    figure = tiny_player().static_figure(max_frames=4)
    assert len(figure.frames) == 4 and len(figure.layout.sliders[0].steps) == 4
    assert len(figure.data) == 2 and figure.data[0].source.startswith("data:image/jpeg;base64,")
    assert len(figure.frames[0].data) == 2
    assert len(figure.to_json()) < 100_000
    assert len(tiny_player().static_figure(max_frames=50).frames) == 6  # never more than the clip has


def test_cam_overlay_respects_opacity():
    frame = np.full((4, 4), 0.5, dtype=np.float32)
    cam = np.ones((4, 4), dtype=np.float32)
    assert (wd.cam_overlay(frame, cam, 0.0) == 128).all()
    assert wd.cam_overlay(frame, cam, 1.0).shape == (4, 4, 3)
    assert not (wd.cam_overlay(frame, cam, 0.5) == 128).all()


def test_gradcam_clip_source_and_stage_cams_feed_the_widgets():
    loader, model = tiny_eval_loader(), tiny_coreecho_model()
    source = wd.gradcam_clip_source(model, loader.dataset, 128.0, 64.0, clip=1, stage=2)
    frames, cam = source(2)
    assert frames.dtype == np.uint8 and frames.shape == cam.shape == (8, 32, 32)
    assert source(2)[1] is cam  # cached
    clip = torch.randn(1, 1, 8, 32, 32)
    cams = wd.stage_cams({"a": model, "b": model}, clip, stages=(2, 3))
    player = wd.HeatmapPlayer(frames, cams)
    assert player.layers == ["stage 2", "stage 3"] and player.layer == "stage 3"


def test_package_exports_load_lazily():
    import importlib

    interpret = importlib.import_module("echobook.interpret")
    assert all(hasattr(interpret, name) for name in interpret.__all__)
    with pytest.raises(AttributeError):
        interpret.no_such_name  # noqa: B018


def test_knn_mae_keeps_neighbours_a_minority_so_the_embedding_matters():
    from echobook.interpret.embeddings import knn_ef_mae

    ef = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    ordered = ef[:, None] / 10
    shuffled = ordered[[3, 0, 5, 1, 4, 2]]
    # k = 5 = N - 1 would average all the others for both embeddings and score them the same
    assert knn_ef_mae(ordered, ef, k=5) < knn_ef_mae(shuffled, ef, k=5)
    with pytest.raises(ValueError, match="at least 3 points"):
        knn_ef_mae(ordered[:2], ef[:2])


def without_figurewidget(monkeypatch):
    """plotly as installed without anywidget: FigureWidget raises ImportError (plotly >= 6)."""
    import plotly.graph_objects as go

    def no_anywidget(*args, **kwargs):
        raise ImportError("Please install anywidget to use the FigureWidget class")

    monkeypatch.setattr(go, "FigureWidget", no_anywidget)


def test_explorer_without_anywidget_says_why_and_what_to_install(monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "chapter.ipynb")
    without_figurewidget(monkeypatch)
    drawn = []
    monkeypatch.setattr("IPython.display.display", lambda figure: drawn.append(figure))
    explorer = tiny_explorer()
    explorer.widget  # noqa: B018 (builds the widget)
    assert explorer._figure_widget is None
    assert "anywidget" in explorer.notice.value and "pip install" in explorer.notice.value
    assert "Please install anywidget" in explorer.notice.value  # plotly's own reason, passed on
    explorer.colour_buttons.value = "error"  # the reader switches the colouring ...
    assert list(drawn[-1].data[0].marker.color) == [5.0, 0.0, -5.0, 5.0, 0.0]  # ... and the figure is redrawn
    explorer.point_slider.value = 3
    chosen_ring = drawn[-1].data[1]
    assert (chosen_ring.x[0], chosen_ring.y[0]) == tuple(explorer.projection[3])
    with pytest.raises(RuntimeError, match="anywidget"):
        tiny_explorer(plot="figurewidget").widget  # noqa: B018


def test_explorer_in_colab_says_the_scatter_is_plain(monkeypatch):
    monkeypatch.setattr(wd, "in_colab", lambda: True)
    explorer = tiny_explorer()
    monkeypatch.setattr("IPython.display.display", lambda figure: None)
    explorer.widget  # noqa: B018
    assert explorer._figure_widget is None and "Colab" in explorer.notice.value


def test_a_batch_run_explorer_holds_no_output_widget(monkeypatch):
    # papermill / Jupyter Book: nbclient syncing an Output widget back to the kernel can hang the run
    # (jupyter/nbclient#312); the notice says why the scatter is not there, the static twin shows it
    import ipywidgets as widgets

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(wd, "in_colab", lambda: False)
    explorer = tiny_explorer()
    explorer.select(2)
    box = explorer.widget

    def descendants(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from descendants(child)

    assert not any(isinstance(w, widgets.Output) for w in descendants(box))
    assert explorer.notice.value == f"<small>{wd.NO_FRONT_END}</small>"
    explorer.set_colour("error")  # the controls still work, with nothing to redraw
    assert explorer.colour_by == "error" and explorer._plain_output is None


def test_explorer_with_anywidget_is_live_and_recolours_in_place(monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "chapter.ipynb")  # a kernel started by JupyterLab
    explorer = tiny_explorer()
    explorer.select(2)
    explorer.widget  # noqa: B018
    assert explorer._figure_widget is not None and explorer.notice.value == ""
    explorer.set_colour("predicted")
    assert list(explorer._figure_widget.data[0].marker.color) == [35, 40, 45, 65, 70]
    assert explorer._figure_widget.data[1].x == (explorer.projection[2, 0],)


def test_long_labels_are_not_cut_and_rows_wrap():
    player, explorer = tiny_player(), tiny_explorer()
    for slider in (player.opacity_slider, player.frame_slider, explorer.opacity_slider):
        assert slider.style.description_width == "initial"
    controls, _, panels = player.widget.children
    assert controls.layout.flex_flow == panels.layout.flex_flow == "row wrap"
    assert explorer.widget.children[-1].layout.flex_flow == "row wrap"  # the clip panel goes under the scatter
    titles = [a.text for a in tiny_player().static_figure().layout.annotations]
    assert titles[0].startswith("CoReEcho<br>") and titles[1] == "baseline"  # a caption gets its own line


def test_a_batch_run_makes_no_figurewidget_and_says_so(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)  # papermill, nbclient, Jupyter Book
    monkeypatch.setattr("IPython.display.display", lambda figure: None)
    explorer = tiny_explorer()
    explorer.widget  # noqa: B018
    assert explorer._figure_widget is None and "batch run" in explorer.notice.value
