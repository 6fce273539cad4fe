"""EchoNet-Dynamic layout: writing, reading every quirk of the real release, checking, the CLI."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from echobook.data import echonet
from echobook.data.echonet import (
    FILELIST_COLUMNS, TRACING_COLUMNS, EchoNetFormatError, assign_splits, check_echonet, load_video,
    read_echonet, write_echonet,
)
from echobook.data.geometry import tracing_area_px2

SIZE, FRAMES = 32, 20


# --------------------------------------------------------------------------------------------- fixtures

def ellipse_tracing(center_x: float, center_y: float, half_length: float, half_width: float) -> np.ndarray:
    """A [21, 4] EchoNet tracing of a vertical ellipse: the long axis, then 20 horizontal chords, apex first."""
    top, bottom = center_y - half_length, center_y + half_length
    rows = [(center_x, top, center_x, bottom)]
    for i in range(1, 21):
        y = top + i * (bottom - top) / 21
        w = half_width * math.sqrt(max(0.0, 1 - ((y - center_y) / half_length) ** 2))
        rows.append((center_x - w, y, center_x + w, y))
    return np.array(rows, dtype=np.float32)


@dataclass
class FakeVideo:
    """What write_echonet needs from a SyntheticVideo: a pulsing bright ellipse with known ED/ES."""

    name: str
    frames: np.ndarray
    fps: float
    ef_percent: float
    esv_ml: float
    edv_ml: float
    ed_frame: int
    es_frame: int
    tracings: dict = field(default_factory=dict)


def fake_video(index: int, frames: int = FRAMES, size: int = SIZE, fps: float = 50.0) -> FakeVideo:
    rng = np.random.default_rng(index)
    ed_frame, es_frame = 2, 2 + frames // 2 - 1
    scale = 1 - 0.4 * np.sin(np.pi * np.clip((np.arange(frames) - ed_frame) / (es_frame - ed_frame), 0, 2) / 2)
    video = np.zeros((frames, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for t in range(frames):
        inside = ((xx - size / 2) / (size * 0.2 * scale[t])) ** 2 + ((yy - size / 2) / (size * 0.35)) ** 2 <= 1
        video[t][inside] = 200
        video[t] += rng.integers(0, 20, (size, size), dtype=np.uint8)
    edv = 80.0 + index
    esv = edv * (0.4 + 0.01 * index)
    tracings = {f: ellipse_tracing(size / 2, size / 2, size * 0.35, size * 0.2 * scale[f]) for f in (ed_frame, es_frame)}
    return FakeVideo(name=f"0X{index + 0xA0:04X}BEEF", frames=video, fps=fps, ef_percent=100 * (edv - esv) / edv,
                     esv_ml=esv, edv_ml=edv, ed_frame=ed_frame, es_frame=es_frame, tracings=tracings)


def write_fake_set(root: Path, count: int = 6, **kwargs) -> list[FakeVideo]:
    videos = [fake_video(i, **kwargs) for i in range(count)]
    write_echonet(root, videos, assign_splits(count, seed=0))
    return videos


@pytest.fixture
def fake_set(tmp_path) -> tuple[Path, list[FakeVideo]]:
    root = tmp_path / "echonet"
    return root, write_fake_set(root)


def edit_csv(path: Path, change) -> None:
    frame = pd.read_csv(path)
    change(frame).to_csv(path, index=False)


# --------------------------------------------------------------------------------------------- writing

def test_written_layout_matches_the_release(fake_set):
    root, videos = fake_set
    assert (root / "FileList.csv").read_text().splitlines()[0] == ",".join(FILELIST_COLUMNS)
    assert (root / "VolumeTracings.csv").read_text().splitlines()[0] == ",".join(TRACING_COLUMNS)
    filelist = pd.read_csv(root / "FileList.csv")
    tracings = pd.read_csv(root / "VolumeTracings.csv")
    assert not filelist["FileName"].str.endswith(".avi").any()
    assert tracings["FileName"].str.endswith(".avi").all()
    assert set(filelist["Split"]) <= {"TRAIN", "VAL", "TEST"}
    first = tracings[tracings["FileName"] == f"{videos[0].name}.avi"]
    assert len(first) == 42 and first["Frame"].iloc[0] == videos[0].es_frame  # ES block listed first
    capture = cv2.VideoCapture(str(root / "Videos" / f"{videos[0].name}.avi"))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    ok, frame = capture.read()
    capture.release()
    assert fourcc == "MJPG" and ok and frame.shape == (SIZE, SIZE, 3)
    assert np.abs(frame[..., 0].astype(int) - frame[..., 2]).max() <= 2  # 3 gray channels (MJPG rounding)


def test_round_trip(fake_set):
    root, videos = fake_set
    dataset = read_echonet(root)
    assert len(dataset) == len(videos)
    by_name = {item.name: item for item in (dataset[i] for i in range(len(dataset)))}
    for video in videos:
        item = by_name[video.name]
        assert item.ef_percent == pytest.approx(video.ef_percent, abs=1e-6)
        assert item.esv_ml == pytest.approx(video.esv_ml, abs=1e-6) and item.edv_ml == pytest.approx(video.edv_ml, abs=1e-6)
        assert (item.ed_frame, item.es_frame) == (video.ed_frame, video.es_frame)
        np.testing.assert_allclose(item.ed_tracing, video.tracings[video.ed_frame], atol=1e-5)
        np.testing.assert_allclose(item.es_tracing, video.tracings[video.es_frame], atol=1e-5)
        assert item.video.dtype == np.uint8 and item.video.shape == video.frames.shape
        error = np.abs(item.video.astype(int) - video.frames)
        assert error.mean() < 6 and np.percentile(error, 99) < 40  # MJPG is lossy
        assert item.fps == 50 and item.frame_count == FRAMES


def test_masks_come_from_the_tracings(fake_set):
    root, _ = fake_set
    item = read_echonet(root)[0]
    assert item.ed_mask.shape == (SIZE, SIZE)
    assert item.ed_mask.sum() > item.es_mask.sum() > 0
    assert item.ed_mask.sum() == pytest.approx(tracing_area_px2(item.ed_tracing), rel=0.35)
    assert read_echonet(root, mask_rule="echonet")[0].ed_mask.sum() > item.ed_mask.sum()  # the official loader's


def test_written_csvs_are_deterministic(tmp_path):
    digests = []
    for run in range(2):
        root = tmp_path / f"run{run}"
        write_fake_set(root, count=4)
        digests.append([hashlib.sha256((root / name).read_bytes()).hexdigest()
                        for name in ("FileList.csv", "VolumeTracings.csv")])
    assert digests[0] == digests[1]


def test_splits_follow_echonet_proportions_and_seed():
    splits = assign_splits(1003, seed=1)
    counts = {s: splits.count(s) for s in ("TRAIN", "VAL", "TEST")}
    assert counts == {"TRAIN": 746, "VAL": 129, "TEST": 128}
    assert splits == assign_splits(1003, seed=1) and splits != assign_splits(1003, seed=2)
    assert set(assign_splits(3, seed=0)) == {"TRAIN", "VAL", "TEST"}


def test_refuses_to_overwrite(fake_set):
    root, videos = fake_set
    with pytest.raises(FileExistsError, match="not empty"):
        write_echonet(root, videos[:2], ["TRAIN", "VAL"])
    (root / "notes.txt").write_text("keep me")
    write_echonet(root, videos[:2], ["TRAIN", "VAL"], overwrite=True)
    assert len(read_echonet(root)) == 2 and len(list((root / "Videos").iterdir())) == 2
    assert (root / "notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------------------------- quirks

def test_filelist_quirks_extension_case_and_index_column(fake_set):
    root, videos = fake_set

    def quirky(frame):
        frame["FileName"] = frame["FileName"] + np.where(frame.index % 2 == 0, ".avi", "")
        frame["Split"] = frame["Split"].str.lower()
        frame.insert(0, "Unnamed: 0", range(len(frame)))
        return frame

    edit_csv(root / "FileList.csv", quirky)
    dataset = read_echonet(root, split="train")
    assert dataset.chosen_splits == ("TRAIN",) and all(r.split == "TRAIN" for r in dataset.records)
    assert len(read_echonet(root, split="ALL")) == len(videos)
    assert all(r.has_tracings for r in read_echonet(root).records)
    assert dataset.problems[echonet.EXTRA_COLUMNS] == 1
    assert dataset.problems[echonet.FILELIST_WITH_AVI] == 3
    assert dataset.problems[echonet.SPLIT_CASE] == len(videos)


def test_video_without_tracings_is_kept_for_ef(fake_set):
    root, videos = fake_set
    edit_csv(root / "VolumeTracings.csv", lambda f: f[f["FileName"] != f"{videos[1].name}.avi"])
    dataset = read_echonet(root)
    record = next(r for r in dataset.records if r.name == videos[1].name)
    assert not record.has_tracings and record.ed_frame == -1
    assert len(dataset) == len(videos) and len(dataset.traced) == len(videos) - 1
    assert dataset.problems[echonet.NO_TRACINGS] == 1
    item = dataset[dataset.names.index(videos[1].name)]
    assert item.ed_mask is None and item.video.shape[0] == FRAMES
    traced_only = read_echonet(root, require_tracings=True)
    assert len(traced_only) == len(videos) - 1 and traced_only.dropped_untraced == [videos[1].name]


def test_tracings_of_unknown_files_are_ignored_and_counted(fake_set):
    root, videos = fake_set

    def add_stranger(frame):
        stranger = frame[frame["FileName"] == f"{videos[0].name}.avi"].copy()
        stranger["FileName"] = "0X4F8859C8AB4DA9CB.avi"
        return pd.concat([frame, stranger])

    edit_csv(root / "VolumeTracings.csv", add_stranger)
    dataset = read_echonet(root)
    assert len(dataset) == len(videos)
    assert dataset.problems[echonet.TRACING_UNKNOWN_FILE] == 1
    assert "0X4F8859C8AB4DA9CB" in dataset.problems.examples[echonet.TRACING_UNKNOWN_FILE]


def test_frames_traced_twice_use_the_first_tracing(fake_set):
    root, videos = fake_set
    name = f"{videos[0].name}.avi"

    def double_ed(frame):
        ed_rows = frame[(frame["FileName"] == name) & (frame["Frame"] == videos[0].ed_frame)].copy()
        ed_rows[["X1", "X2"]] += 3.0  # a second, different tracing of the same frame
        return pd.concat([frame, ed_rows])  # 42 rows for that frame

    edit_csv(root / "VolumeTracings.csv", double_ed)
    dataset = read_echonet(root)
    record = next(r for r in dataset.records if r.name == videos[0].name)
    np.testing.assert_allclose(record.ed_tracing, videos[0].tracings[videos[0].ed_frame], atol=1e-5)
    assert dataset.problems[echonet.TRACING_EXTRA_ROWS] == 1


def test_short_tracing_blocks_are_ignored(fake_set):
    root, videos = fake_set
    name = f"{videos[0].name}.avi"
    edit_csv(root / "VolumeTracings.csv", lambda f: f.drop(f.index[(f["FileName"] == name)][:5]))
    dataset = read_echonet(root)
    record = next(r for r in dataset.records if r.name == videos[0].name)
    assert not record.has_tracings
    assert dataset.problems[echonet.TRACING_SHORT] == 1 and dataset.problems[echonet.NO_TRACINGS] == 1


def test_coordinates_outside_the_image_are_clipped(fake_set):
    root, videos = fake_set
    name = f"{videos[0].name}.avi"

    def push_out(frame):
        rows = frame.index[frame["FileName"] == name]
        frame.loc[rows[1], "X1"] = -4.1
        frame.loc[rows[2], "X2"] = SIZE + 7.9
        return frame

    edit_csv(root / "VolumeTracings.csv", push_out)
    dataset = read_echonet(root)
    record = next(r for r in dataset.records if r.name == videos[0].name)
    both = np.concatenate([record.es_tracing, record.ed_tracing])
    assert both.min() >= 0 and both.max() <= SIZE - 1
    assert dataset.problems[echonet.TRACING_OUTSIDE] == 2


def test_ed_is_the_larger_area_not_the_first_listed(fake_set):
    root, videos = fake_set

    def ed_first(frame):  # reverse each file's blocks: ED now comes first
        frame["block"] = frame.groupby(["FileName", "Frame"], sort=False).ngroup()
        return frame.sort_values(["FileName", "block"], ascending=[True, False], kind="stable").drop(columns="block")

    edit_csv(root / "VolumeTracings.csv", ed_first)
    dataset = read_echonet(root)
    for video in videos:
        record = next(r for r in dataset.records if r.name == video.name)
        assert (record.ed_frame, record.es_frame) == (video.ed_frame, video.es_frame)
    assert dataset.problems[echonet.ED_LISTED_FIRST] == len(videos)


def test_any_fps_and_another_codec(tmp_path):
    root = tmp_path / "echonet"
    videos = [fake_video(0, fps=23), fake_video(1, fps=138)]
    write_echonet(root, videos, ["TRAIN", "TRAIN"])
    path = root / "Videos" / f"{videos[0].name}.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), 23, (SIZE, SIZE), False)
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write XVID")
    for frame in videos[0].frames:
        writer.write(frame)
    writer.release()
    dataset = read_echonet(root)
    assert sorted(r.fps for r in dataset.records) == [23, 138]
    assert dataset.video(0).shape == (FRAMES, SIZE, SIZE)


def test_multiple_and_single_traced_frames(fake_set):
    root, videos = fake_set

    def change(frame):
        extra = frame[(frame["FileName"] == f"{videos[0].name}.avi") & (frame["Frame"] == videos[0].es_frame)].copy()
        extra["Frame"] = 7  # a third traced frame, same (smallest) area as ES
        one = frame[(frame["FileName"] == f"{videos[1].name}.avi") & (frame["Frame"] == videos[1].es_frame)]
        return pd.concat([frame.drop(one.index), extra])

    edit_csv(root / "VolumeTracings.csv", change)
    dataset = read_echonet(root)
    first = next(r for r in dataset.records if r.name == videos[0].name)
    assert first.ed_frame == videos[0].ed_frame and first.has_tracings
    assert dataset.problems[echonet.MORE_THAN_TWO] == 1 and dataset.problems[echonet.NO_TRACINGS] == 1


# --------------------------------------------------------------------------------------------- bad input

def test_missing_column_names_column_and_file(fake_set):
    root, _ = fake_set
    edit_csv(root / "FileList.csv", lambda f: f.drop(columns="Split"))
    with pytest.raises(EchoNetFormatError, match=r"FileList\.csv.*'Split'"):
        read_echonet(root)
    report = check_echonet(root)
    assert not report.usable and any("'Split'" in kind for kind in report.problems.fatal)


def test_missing_tracing_column(fake_set):
    root, _ = fake_set
    edit_csv(root / "VolumeTracings.csv", lambda f: f.drop(columns="Frame"))
    with pytest.raises(EchoNetFormatError, match=r"VolumeTracings\.csv.*'Frame'"):
        read_echonet(root)


def test_missing_video_names_the_file(fake_set):
    root, videos = fake_set
    missing = root / "Videos" / f"{videos[2].name}.avi"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=videos[2].name):
        read_echonet(root)
    report = check_echonet(root)
    assert not report.usable and report.problems[echonet.MISSING_VIDEO] == 1


def test_unreadable_video_names_the_file(fake_set):
    root, videos = fake_set
    path = root / "Videos" / f"{videos[0].name}.avi"
    path.write_bytes(b"not a video at all")
    dataset = read_echonet(root)
    with pytest.raises(ValueError, match=videos[0].name):
        dataset.video(dataset.names.index(videos[0].name))
    assert check_echonet(root).problems[echonet.UNREADABLE_VIDEO] == 1


def test_missing_files_and_wrong_path(tmp_path, fake_set):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_echonet(tmp_path / "nowhere")
    root, _ = fake_set
    (root / "VolumeTracings.csv").unlink()
    with pytest.raises(FileNotFoundError, match="VolumeTracings.csv"):
        read_echonet(root)
    with pytest.raises(ValueError, match="split"):
        read_echonet(root, split="holdout")
    with pytest.raises(FileNotFoundError, match="nope.avi"):
        load_video(tmp_path / "nope.avi")


# --------------------------------------------------------------------------------------------- check and CLI

def test_check_report_counts_and_statistics(fake_set):
    root, videos = fake_set
    (root / "Videos" / "0XSTRAY.avi").write_bytes(b"")
    report = check_echonet(root)
    assert report.usable
    assert report.split_counts["ALL"] == len(videos)
    assert sum(report.split_counts[s] for s in ("TRAIN", "VAL", "TEST")) == len(videos)
    efs = [v.ef_percent for v in videos]
    assert report.ef_stats["ALL"]["mean"] == pytest.approx(np.mean(efs))
    assert report.problems[echonet.UNLISTED_VIDEO] == 1
    text = str(report)
    assert "TRAIN" in text and "EF mean" in text and "usable: yes" in text


def test_cli_check_data(fake_set, capsys):
    from echobook.cli import main

    root, _ = fake_set
    assert main(["check-data", "echonet", str(root)]) == 0
    out = capsys.readouterr().out
    assert "TRAIN" in out and "usable: yes" in out
    assert main(["check-data", "echonet", str(root / "missing")]) == 1
    edit_csv(root / "FileList.csv", lambda f: f.drop(columns="EF"))
    assert main(["check-data", "echonet", str(root)]) == 1
    assert "'EF'" in capsys.readouterr().out


def test_cli_synth_echonet(tmp_path, capsys):
    pytest.importorskip("echobook.data.synthetic")
    from echobook.cli import main

    out = tmp_path / "synth"
    args = ["synth", "echonet", str(out), "--videos", "3", "--seed", "5", "--frames", "20", "--size", "32", "--quiet"]
    assert main(args) == 0
    dataset = read_echonet(out)
    assert len(dataset) == 3 and dataset.video(0).shape == (20, 32, 32)
    assert all(r.has_tracings for r in dataset.records)
    assert main(args) == 2 and "not empty" in capsys.readouterr().err  # nothing overwritten silently
    first = (out / "FileList.csv").read_bytes()
    assert main(args + ["--overwrite"]) == 0
    assert (out / "FileList.csv").read_bytes() == first  # same seed, same bytes


def test_synthetic_round_trip_with_the_engine(tmp_path):
    synthetic = pytest.importorskip("echobook.data.synthetic")
    from echobook.data.synthetic import synth_echonet

    config = synthetic.SyntheticConfig(image_size=32, frames=20)
    root = synth_echonet(tmp_path / "a", videos=3, seed=11, config=config)
    dataset = read_echonet(root)
    assert len(dataset) == 3 and len(dataset.traced) == 3 and not dataset.problems
    for index in range(3):
        truth = synthetic.make_video(11, index, config)
        item = dataset[dataset.names.index(truth.name)]
        assert item.ef_percent == pytest.approx(truth.ef_percent, abs=1e-6)
        assert item.edv_ml == pytest.approx(truth.edv_ml, abs=1e-6)
        assert (item.ed_frame, item.es_frame) == (truth.ed_frame, truth.es_frame)
        np.testing.assert_allclose(item.ed_tracing, truth.tracings[truth.ed_frame], atol=1e-5)
        assert np.abs(item.video.astype(int) - truth.frames).mean() < 6  # MJPG tolerance
        cavity = truth.labels[truth.ed_frame] == 1
        dice = 2 * (item.ed_mask.astype(bool) & cavity).sum() / (item.ed_mask.sum() + cavity.sum())
        assert dice > 0.8
    again = synth_echonet(tmp_path / "b", videos=3, seed=11, config=config)
    for path in sorted(root.rglob("*.*")):  # one seed, the same bytes
        assert path.read_bytes() == (again / path.relative_to(root)).read_bytes(), path.name


def test_traced_frame_beyond_the_video_is_ignored(fake_set):
    root, videos = fake_set
    name = f"{videos[0].name}.avi"

    def move_es(frame):
        frame.loc[(frame["FileName"] == name) & (frame["Frame"] == videos[0].es_frame), "Frame"] = FRAMES + 3
        return frame

    edit_csv(root / "VolumeTracings.csv", move_es)
    dataset = read_echonet(root)
    assert not next(r for r in dataset.records if r.name == videos[0].name).has_tracings
    assert dataset.problems[echonet.TRACING_BEYOND_VIDEO] == 1


def test_filelist_faults_are_counted(fake_set):
    root, videos = fake_set

    def faults(frame):
        frame.loc[0, "EF"] = np.nan  # no EF: excluded
        frame.loc[1, "Split"] = "HOLDOUT"  # unknown split: excluded
        frame.loc[2, "ESV"] = np.nan  # no volume: kept
        return pd.concat([frame, frame.iloc[[3]]])  # a duplicate row

    edit_csv(root / "FileList.csv", faults)
    text = (root / "FileList.csv").read_text()
    (root / "FileList.csv").write_text("\ufeff" + text, encoding="utf-8")  # a byte-order mark, as Excel writes
    dataset = read_echonet(root)
    assert len(dataset) == len(videos) - 2
    problems = dataset.problems
    assert (problems[echonet.NO_EF], problems[echonet.UNKNOWN_SPLIT], problems[echonet.NO_VOLUMES],
            problems[echonet.DUPLICATE_ROWS]) == (1, 1, 1, 1)
    assert "no EF" not in str(problems) and "duplicate FileName rows in FileList (first kept): 1" in str(problems)


# --------------------------------------------------------------------------------------------- issue 16: findings 1, 6, 7

def truncate_video(path: Path, keep: float = 0.5) -> None:
    """Cut the file's bytes: the header still announces every frame, only the first ones decode."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_truncated_video_is_found_by_check_data_and_refused_by_the_loader(fake_set):
    root, videos = fake_set
    truncate_video(root / "Videos" / f"{videos[0].name}.avi")
    report = check_echonet(root)
    assert report.problems[echonet.TRUNCATED_VIDEO] == 1 and not report.usable
    assert videos[0].name in str(report)
    assert check_echonet(root, decode=False).problems[echonet.TRUNCATED_VIDEO] == 0  # the documented fast path
    dataset = read_echonet(root)
    with pytest.raises(echonet.BrokenVideoError, match=f"{videos[0].name}.*of its {FRAMES} frames"):
        dataset.video(dataset.names.index(videos[0].name))


def test_the_clip_store_never_loops_a_broken_video(fake_set):
    from echobook.data.clips import VideoStore

    root, videos = fake_set
    truncate_video(root / "Videos" / f"{videos[0].name}.avi")
    dataset = read_echonet(root)
    index = dataset.names.index(videos[0].name)
    store = VideoStore(table=dataset)
    with pytest.raises(ValueError, match=videos[0].name):
        store.frames(index, np.arange(FRAMES))
    with pytest.raises(ValueError, match=videos[0].name):
        VideoStore.from_table(dataset, cache=True)


@pytest.mark.parametrize("change, kind", [
    (lambda f: f.assign(EF=np.where(f.index == 0, 650.0, f.EF)), "EF_OUT_OF_RANGE"),
    (lambda f: f.assign(EF=np.where(f.index == 0, -5.0, f.EF)), "EF_OUT_OF_RANGE"),
    (lambda f: f.assign(EDV=np.where(f.index == 0, -3.0, f.EDV)), "BAD_VOLUMES"),
    (lambda f: f.assign(ESV=np.where(f.index == 0, f.EDV + 1, f.ESV)), "BAD_VOLUMES"),
    (lambda f: f.assign(EF=np.where(f.index == 0, 10.0, f.EF)), "EF_VOLUMES_DISAGREE"),
])
def test_labels_are_checked(fake_set, change, kind):
    root, videos = fake_set
    edit_csv(root / "FileList.csv", change)
    report = check_echonet(root)
    assert report.problems[getattr(echonet, kind)] == 1, str(report)
    assert videos[0].name in str(report) and report.split_counts["ALL"] == len(videos) - 1
    dataset = read_echonet(root)  # a wrong label never reaches the training targets: the row is left out
    assert videos[0].name not in dataset.names and len(dataset) == len(videos) - 1
    assert dataset.problems[getattr(echonet, kind)] == 1


def test_a_folder_without_val_is_not_called_usable_and_the_loaders_say_why(fake_set):
    from echobook.data.clips import echonet_dataloaders

    root, _ = fake_set
    edit_csv(root / "FileList.csv", lambda f: f.assign(Split=np.where(f.Split == "VAL", "TRAIN", f.Split)))
    report = check_echonet(root)
    assert not report.usable and "VAL" in str(report) and "no videos" in str(report)
    with pytest.raises(ValueError, match="VAL.*no videos"):
        echonet_dataloaders(root, "smoke")


def test_a_header_only_filelist_says_why_it_is_not_usable(fake_set):
    root, _ = fake_set
    (root / "FileList.csv").write_text(",".join(FILELIST_COLUMNS) + "\n")
    text = str(check_echonet(root))
    assert "usable: NO" in text and "no videos" in text


# --------------------------------------------------------------------------------------------- issue 16: finding 5

def test_synth_checks_every_argument_before_it_touches_the_folder(tmp_path, capsys):
    from echobook.cli import main

    out = tmp_path / "synth"
    args = ["synth", "echonet", str(out), "--videos", "3", "--frames", "12", "--size", "32", "--quiet"]
    assert main(args) == 0
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert main(args[:-1] + ["--seed", "-1", "--overwrite", "--quiet"]) == 2
    assert "seed" in capsys.readouterr().err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before  # nothing deleted
    assert main(["synth", "echonet", str(tmp_path / "two"), "--videos", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "TRAIN, VAL and TEST" in err and not (tmp_path / "two").exists()


def test_overwrite_never_deletes_a_folder_echobook_did_not_write(fake_set):
    root, videos = fake_set
    (root / ".echobook-written").unlink()  # as a downloaded dataset: no writer's mark
    with pytest.raises(FileExistsError, match="did not write"):
        write_echonet(root, videos, assign_splits(len(videos), seed=0), overwrite=True)
    assert len(read_echonet(root)) == len(videos)


def test_check_data_finds_a_truncated_video_unless_told_not_to_decode(fake_set, capsys):
    from echobook.cli import main

    root, videos = fake_set
    truncate_video(root / "Videos" / f"{videos[0].name}.avi")
    assert main(["check-data", "echonet", str(root)]) == 1
    assert "truncated" in capsys.readouterr().out
    assert main(["check-data", "echonet", str(root), "--no-decode"]) == 0
