"""The VideoTable protocol: EchoNet folders and in-memory tables, and a non-EchoNet table through the loaders."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from echobook.data.clips import (
    average_per_video, clip_dataloaders, common_image_size, eval_dataloader, normalisation_stats, VideoStore,
)
from echobook.data.echonet import EchoNetDataset, read_echonet
from echobook.data.table import ArrayVideoTable, VideoTable
from test_echonet import FRAMES, SIZE, write_fake_set

CLIP_FRAMES, STRIDE = 4, 2


def random_videos(count: int, frames=(12, 9, 15, 7, 11, 10), size: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (frames[i % len(frames)], size, size), dtype=np.uint8) for i in range(count)]


@pytest.fixture
def table() -> ArrayVideoTable:
    """Six videos of different lengths: four TRAIN, one VAL, one TEST."""
    return ArrayVideoTable(random_videos(6), [30.0, 40.0, 50.0, 60.0, 70.0, 55.0], fps=[50, 50, 30, 30, 60, 40],
                           splits=["TRAIN", "train", "TRAIN", "TRAIN", "VAL", "TEST"])


@pytest.fixture(scope="module")
def echonet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("table") / "echonet"
    write_fake_set(root, count=6)
    return root


# --------------------------------------------------------------------------------------------- the protocol

def test_echonet_dataset_is_a_video_table(echonet_root):
    dataset = read_echonet(echonet_root)
    assert isinstance(dataset, VideoTable) and isinstance(dataset.subset("TRAIN"), VideoTable)
    n = len(dataset)
    assert dataset.frame_counts.dtype == np.int64 and list(dataset.frame_counts) == [FRAMES] * n
    assert dataset.fps.shape == (n,) and np.all(dataset.fps == 50)
    assert set(dataset.splits) <= {"TRAIN", "VAL", "TEST"} and len(dataset.splits) == n
    assert dataset.frame_sizes.tolist() == [[SIZE, SIZE]] * n and dataset.has_tracings.all()
    assert dataset.video(0, stop=3).shape == (3, SIZE, SIZE) and dataset.video(0).dtype == np.uint8
    train = dataset.subset("train")
    assert list(train.splits) == ["TRAIN"] * len(train) and train.chosen_splits == ("TRAIN",)


def test_subset_keeps_the_type_and_settings(echonet_root):
    class MyEchoNet(EchoNetDataset):
        pass

    dataset = MyEchoNet(echonet_root, mask_rule="echonet")
    test = dataset.subset("TEST")
    assert type(test) is MyEchoNet and test.mask_rule == "echonet" and test.problems is dataset.problems
    assert test.names == [n for n, s in zip(dataset.names, dataset.splits) if s == "TEST"]


def test_frame_counts_come_from_headers_where_filelist_has_none(echonet_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(echonet_root, root)
    frame = pd.read_csv(root / "FileList.csv")
    frame.drop(columns=["NumberOfFrames", "FrameHeight", "FrameWidth"]).to_csv(root / "FileList.csv", index=False)
    dataset = read_echonet(root)
    assert list(dataset.frame_counts) == [FRAMES] * len(dataset)  # read from each AVI's header
    assert (dataset.frame_sizes == -1).all() and common_image_size(dataset) is None


def test_array_table_fields_and_subset(table):
    assert isinstance(table, VideoTable) and len(table) == 6
    assert table.names == [f"video_{i:04d}" for i in range(6)]
    assert table.frame_counts.tolist() == [12, 9, 15, 7, 11, 10] and table.frame_counts.dtype == np.int64
    assert table.splits.tolist() == ["TRAIN"] * 4 + ["VAL", "TEST"]  # any case in, upper case out
    assert table.fps.tolist() == [50, 50, 30, 30, 60, 40] and table.frame_sizes.tolist() == [[16, 16]] * 6
    assert table.video(2, stop=4).shape == (4, 16, 16) and table.video(2).shape == (15, 16, 16)
    valid = table.subset("VAL")
    assert isinstance(valid, ArrayVideoTable) and valid.names == ["video_0004"] and valid.ef_percent.tolist() == [70.0]
    assert len(table.subset(["TRAIN", "TEST"])) == 5 and len(table.subset("all")) == 6
    unlabelled = ArrayVideoTable(random_videos(2))
    assert np.isnan(unlabelled.ef_percent).all() and np.isnan(unlabelled.fps).all()
    assert list(unlabelled.splits) == ["TRAIN", "TRAIN"]


def test_array_table_bad_input_names_video_and_field():
    videos = random_videos(3)
    with pytest.raises(ValueError, match="3 videos but 2 ef_percent"):
        ArrayVideoTable(videos, [50.0, 60.0])
    with pytest.raises(ValueError, match="3 videos but 1 names"):
        ArrayVideoTable(videos, names=["a"])
    with pytest.raises(ValueError, match=r"b: video must be uint8.*float64"):
        ArrayVideoTable([videos[0], videos[1].astype(float)], names=["a", "b"])
    with pytest.raises(ValueError, match=r"video_0000: video must be uint8 gray frames \[T, H, W\].*\(16, 16\)"):
        ArrayVideoTable([videos[0][0]])
    with pytest.raises(ValueError, match="video_0001: splits='HOLDOUT' is not one of"):
        ArrayVideoTable(videos, splits=["TRAIN", "holdout", "TEST"])
    with pytest.raises(ValueError, match="video_0002: ef_percent='high' is not a float"):
        ArrayVideoTable(videos, [50.0, 60.0, "high"])
    with pytest.raises(ValueError, match="a: names must be unique"):
        ArrayVideoTable(videos, names=["a", "b", "a"])
    with pytest.raises(ValueError, match="split="):
        ArrayVideoTable(videos).subset("holdout")
    own_splits = ArrayVideoTable(videos, splits=["FOLD0", "FOLD1", "FOLD0"], allowed_splits=("FOLD0", "FOLD1"))
    assert len(own_splits.subset("fold0")) == 2


# --------------------------------------------------------------------------------------------- through the loaders

def test_an_array_table_goes_through_the_loaders(table):
    train, valid = table.subset("TRAIN"), table.subset("VAL")
    dls = clip_dataloaders(train, valid, clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=2, device="cpu")
    x, y = dls.train.one_batch()
    assert x.shape == (2, 1, CLIP_FRAMES, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.float32
    assert set(y.tolist()) <= {30.0, 40.0, 50.0, 60.0}
    assert dls.normalisation == pytest.approx(normalisation_stats(VideoStore.from_table(train, cache=True)))
    assert len(dls.valid.dataset) == 3  # 3 fixed clips of the one VAL video
    xv, yv = dls.valid.one_batch()
    assert xv.shape == (2, 1, CLIP_FRAMES, 16, 16) and yv.tolist() == [70.0] * 2
    pairs = clip_dataloaders(train, valid, clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=2, two_clips=True,
                             cache=False, device="cpu", num_workers=0)
    assert pairs.train.dataset.store.arrays is None  # read lazily through table.video
    x2, _ = pairs.train.one_batch()
    assert x2.shape == (2, 2, 1, CLIP_FRAMES, 16, 16) and not torch.equal(x2[:, 0], x2[:, 1])


def test_eval_loader_over_an_array_table_averages_per_video(table):
    test = table.subset(["VAL", "TEST"])
    loader = eval_dataloader(test, clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=4, mean=0.0, std=1.0,
                             eval_clips=3, device="cpu")
    assert loader.table is test
    targets = torch.cat([y for _, y in loader])
    assert targets.tolist() == [70.0] * 3 + [55.0] * 3
    per_video = average_per_video(targets, loader.dataset.video_index)
    torch.testing.assert_close(per_video, torch.tensor([70.0, 55.0]))


def test_videos_of_other_sizes_are_resized_to_the_common_one():
    videos = random_videos(3, size=16) + [np.zeros((8, 24, 20), dtype=np.uint8)]
    mixed = ArrayVideoTable(videos, [40.0, 50.0, 60.0, 70.0])
    assert common_image_size(mixed) == 16
    dls = clip_dataloaders(mixed, mixed, clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=4, device="cpu")
    assert dls.valid.one_batch()[0].shape[-2:] == (16, 16)


def test_training_videos_without_ef_are_refused_validation_ones_give_nan():
    videos = random_videos(5)
    train = ArrayVideoTable(videos, [40.0, np.nan, 60.0, np.nan, 50.0], names=list("abcde"))
    with pytest.raises(ValueError, match=r"train table: 2 of 5 videos have no EF \(NaN\), e.g. b, d"):
        clip_dataloaders(train, train, clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=2, device="cpu")
    labelled = ArrayVideoTable(videos[:2], [40.0, 60.0])
    unlabelled = ArrayVideoTable(videos[2:], None)
    dls = clip_dataloaders(labelled, unlabelled, clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=3,
                           device="cpu")
    assert torch.isnan(dls.valid.one_batch()[1]).all()


def test_a_lazy_store_refuses_empty_videos():
    from types import SimpleNamespace

    header_says_empty = SimpleNamespace(names=["first", "second"], frame_counts=np.array([3, 0]))
    with pytest.raises(ValueError, match="1 video.*no frames.*second"):
        VideoStore(table=header_says_empty)
    with pytest.raises(ValueError, match="either arrays"):
        VideoStore()
