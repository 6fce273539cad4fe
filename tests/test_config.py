import numpy as np
import pytest
import torch

import echobook
from echobook import config


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv(config.SIZE_ENV, raising=False)
    monkeypatch.delenv(config.DATA_ENV, raising=False)


def test_auto_is_full_on_a_gpu_and_small_on_a_cpu():
    assert config.resolve_size("auto", has_gpu=True) == "full"
    assert config.resolve_size("auto", has_gpu=False) == "small"
    assert config.resolve_size("", has_gpu=False) == "small"


def test_environment_fills_in_auto_but_an_explicit_size_wins(monkeypatch):
    monkeypatch.setenv(config.SIZE_ENV, "smoke")
    assert config.resolve_size("auto", has_gpu=True) == "smoke"
    assert config.resolve_size("full") == "full"
    assert config.resolve_size(" Small ") == "small"


def test_unknown_size_names_its_source(monkeypatch):
    with pytest.raises(ValueError, match="SIZE='huge'"):
        config.resolve_size("huge")
    monkeypatch.setenv(config.SIZE_ENV, "tiny")
    with pytest.raises(ValueError, match=r"\$ECHOBOOK_SIZE='tiny'"):
        config.resolve_size("auto")


def test_presets_grow_from_smoke_to_full():
    smoke, small, full = (config.PRESETS[s] for s in config.SIZES)
    for field in ("videos", "clip_frames", "crop_size"):
        assert getattr(smoke, field) <= getattr(small, field) <= getattr(full, field), field
    # the paper's scale (CoReEcho on EchoNet-Dynamic)
    assert (full.videos, full.clip_frames, full.clip_stride, full.crop_size) == (10030, 36, 4, 112)
    for preset in config.PRESETS.values():  # a clip must fit in a synthetic video
        assert (preset.clip_frames - 1) * preset.clip_stride < preset.video_frames


def test_every_clip_spans_a_whole_beat_of_the_synthetic_heart():
    """EF needs both ED and ES in view: a clip must cover the longest beat the engine makes."""
    from echobook.data.synthetic import SyntheticConfig

    for preset in config.PRESETS.values():
        longest_beat_frames = preset.video_frames / SyntheticConfig().min_cycles  # the engine's guarantee
        clip_span_frames = (preset.clip_frames - 1) * preset.clip_stride + 1
        assert clip_span_frames >= longest_beat_frames, preset.name


def test_device_falls_back_to_cpu_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="not available"):
        assert config.resolve_device("cuda") == torch.device("cpu")
    assert config.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device"):
        config.resolve_device("gpu-please")


def test_data_dir_empty_is_synthetic_and_a_missing_path_is_named(tmp_path, monkeypatch):
    assert config.resolve_data_dir("") is None
    assert config.resolve_data_dir(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match="DATA_DIR='/no/such/folder'"):
        config.resolve_data_dir("/no/such/folder")
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path))
    assert config.resolve_data_dir("") == tmp_path


def test_seeding_repeats_python_numpy_and_torch():
    def draw():
        config.seed_everything(7)
        return np.random.rand(3), torch.rand(3), torch.nn.Linear(4, 2).weight.detach().clone()

    first, second = draw(), draw()
    for a, b in zip(first, second):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    config.seed_everything(8)
    assert not torch.equal(torch.rand(3), first[1])


def test_setup_resolves_and_summarises(capsys):
    settings = echobook.setup("smoke", "", 3, "cpu")
    assert settings.size == "smoke" and settings.preset is config.PRESETS["smoke"]
    assert settings.synthetic and settings.seed == 3 and settings.device == torch.device("cpu")
    summary = settings.summary()
    assert summary["size"] == "smoke" and summary["preset.videos"] == config.PRESETS["smoke"].videos
    assert "size=smoke device=cpu data=synthetic seed=3" in capsys.readouterr().out


def test_setup_makes_plotly_figures_carry_no_plotly_js():
    import plotly.graph_objects as go
    import plotly.io as pio

    echobook.setup("smoke", "", 0, "cpu", verbose=False)
    assert pio.renderers.default == "echobook"
    bundle = pio.renderers["echobook"].to_mimebundle(go.Figure(go.Bar(y=[1, 2])).to_dict())
    assert "application/vnd.plotly.v1+json" in bundle
    assert "Plotly.newPlot" in bundle["text/html"] and len(bundle["text/html"]) < 50_000
