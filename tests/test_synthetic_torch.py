"""The synthetic engine's torch path (make_video(..., device=...)) against the NumPy reference.

Labels, EF, volumes, ED/ES and tracings are made once in NumPy, so they must be identical; the
frames differ by the noise draw (a torch generator instead of NumPy's) and by interpolation
rounding (grid_sample's exact bilinear weights against cv2.remap's 1/32-pixel steps).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from echobook.data import synthetic as S  # noqa: E402
from echobook.data.synthetic import render  # noqa: E402

SMOKE = S.SyntheticConfig(image_size=48, frames=24)
INDICES = range(4)  # with view="mixed" and seed 2: Good A4C, Good A4C, Poor A2C, Medium A2C


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # small tensors: threads only add overhead, and on a busy machine they wait for each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pairs():
    config = S.SyntheticConfig(image_size=48, frames=24, view="mixed")
    return [(S.make_video(2, i, config), S.make_video(2, i, config, device="cpu")) for i in INDICES]


def test_labels_and_ground_truth_identical(pairs):
    for reference, video in pairs:
        assert np.array_equal(reference.labels, video.labels)
        for name in ("name", "ef_percent", "edv_ml", "esv_ml", "ed_frame", "es_frame", "fps", "quality", "view",
                     "mm_per_pixel", "heart_rate_bpm"):
            assert getattr(video, name) == getattr(reference, name), name
        assert np.array_equal(video.volumes_ml, reference.volumes_ml)
        assert np.array_equal(video.all_tracings, reference.all_tracings)
        assert np.array_equal(video.phase, reference.phase)
        assert np.array_equal(video.wall_motion, reference.wall_motion)
        assert set(video.tracings) == set(reference.tracings)
        assert all(np.array_equal(video.tracings[f], reference.tracings[f]) for f in reference.tracings)


def test_frames_close_to_numpy(pairs):
    # measured on these four videos: mean |diff| 1.4, 1.8, 4.2, 3.8 gray levels (mean 2.8), nearly all of it
    # the other noise draw, which log compression magnifies in the dark blood pool; region means within 0.55
    diffs = []
    for reference, video in pairs:
        assert video.frames.dtype == np.uint8 and video.frames.shape == reference.frames.shape
        diff = np.abs(reference.frames.astype(np.int16) - video.frames.astype(np.int16))
        diffs.append(diff.mean())
        assert diff.mean() < 6.0
        for label in range(4):
            region = reference.labels == label
            if region.sum() > 50:
                assert abs(reference.frames[region].mean() - video.frames[region].mean()) < 1.2, label
    assert np.mean(diffs) < 3.5


def test_without_noise_the_two_paths_agree_to_a_tenth_of_a_gray_level(monkeypatch):
    # what remains is interpolation rounding and float32 against float64 (measured: mean 0.12 and 0.08,
    # 0.4 % and 0.03 % of pixels off by more than one level)
    monkeypatch.setattr(render._NumpyOps, "noise", lambda self, rows, shape: np.zeros(shape, np.float32))
    monkeypatch.setattr(render._TorchOps, "noise", lambda self, rows, shape: torch.zeros(shape))
    for index in (0, 3):
        reference, video = S.make_video(1, index, SMOKE), S.make_video(1, index, SMOKE, device="cpu")
        diff = np.abs(reference.frames.astype(np.int16) - video.frames.astype(np.int16))
        assert diff.mean() < 0.2 and np.mean(diff > 1) < 0.01


def test_torch_path_is_deterministic_and_seeded_per_video():
    a, b = S.make_video(4, 1, SMOKE, device="cpu"), S.make_video(4, 1, SMOKE, device=torch.device("cpu"))
    assert a.frames.tobytes() == b.frames.tobytes() and a.labels.tobytes() == b.labels.tobytes()
    assert S.make_video(4, 2, SMOKE, device="cpu").frames.tobytes() != a.frames.tobytes()
    # "numpy" is the reference path, and a plan renders the same however often it is rendered
    assert S.make_video(4, 1, SMOKE, device="numpy").frames.tobytes() == S.make_video(4, 1, SMOKE).frames.tobytes()
    plan = S.plan_video(4, 1, SMOKE)
    for device in (None, "cpu"):
        assert S.render_plan(plan, device).frames.tobytes() == S.render_plan(plan, device).frames.tobytes()


def test_bad_device_is_a_clear_error():
    for device in ("gpu", "cuda:x", 3.5):
        with pytest.raises(ValueError, match="not 'numpy' or a usable torch device"):
            S.make_video(0, 0, SMOKE, device=device)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'"):
            S.make_video(0, 0, SMOKE, device="cuda")


def test_make_videos_with_workers_renders_here_on_the_device():
    serial = S.make_videos(3, [0, 2, 1], SMOKE, device="cpu")
    pooled = S.make_videos(3, [0, 2, 1], SMOKE, workers=2, device="cpu")
    assert [v.index for v in pooled] == [0, 2, 1]
    assert all(a.frames.tobytes() == b.frames.tobytes() for a, b in zip(serial, pooled))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_matches_cpu_labels_and_numpy_statistics():
    config = S.SyntheticConfig(image_size=112, frames=40)
    for index in range(3):
        reference, video = S.make_video(0, index, config), S.make_video(0, index, config, device="cuda")
        assert np.array_equal(reference.labels, video.labels) and video.ef_percent == reference.ef_percent
        assert np.abs(reference.frames.astype(np.int16) - video.frames.astype(np.int16)).mean() < 7.0
        again = S.make_video(0, index, config, device="cuda")
        assert again.frames.tobytes() == video.frames.tobytes()


def test_synth_echonet_on_a_device_writes_a_readable_set(tmp_path):
    from echobook.data.echonet import read_echonet

    config = S.SyntheticConfig(image_size=32, frames=16)
    serial = S.synth_echonet(tmp_path / "serial", videos=3, seed=7, config=config, device="cpu")
    pooled = S.synth_echonet(tmp_path / "pooled", videos=3, seed=7, config=config, device="cpu", workers=2)
    dataset = read_echonet(pooled)
    assert len(dataset) == 3 and len(dataset.traced) == 3 and not dataset.problems
    for index in range(3):
        truth = S.make_video(7, index, config, device="cpu")
        item = dataset[dataset.names.index(truth.name)]
        assert item.ef_percent == pytest.approx(truth.ef_percent, abs=1e-6)
        assert (item.ed_frame, item.es_frame) == (truth.ed_frame, truth.es_frame)
        np.testing.assert_allclose(item.ed_tracing, truth.tracings[truth.ed_frame], atol=1e-5)
        assert item.video.shape == truth.frames.shape
        assert np.abs(item.video.astype(int) - truth.frames).mean() < 6  # MJPG tolerance
    # workers change only the speed: the same files, byte for byte
    for path in serial.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (pooled / path.relative_to(serial)).read_bytes(), path.name


def test_cli_passes_the_device(tmp_path):
    from echobook.cli import main

    out = tmp_path / "synth"
    assert main(["synth", "echonet", str(out), "--videos", "3", "--frames", "12", "--size", "32",
                 "--device", "cpu", "--quiet"]) == 0
    assert len(list((out / "Videos").glob("*.avi"))) == 3
    assert main(["synth", "echonet", str(tmp_path / "bad"), "--videos", "2", "--device", "gpu", "--quiet"]) == 2
