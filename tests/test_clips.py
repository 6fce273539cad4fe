"""Clip sampling, padding of short videos, device-side augmentation, normalisation, fastai loaders."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from fastai.data.core import DataLoaders

from echobook.data.clips import (
    ClipDataLoader, ClipDataset, VideoStore, average_per_video, clip_dataloaders, clip_indices,
    echonet_dataloaders, echonet_eval_dataloader, eval_dataloader, eval_starts, normalisation_stats, random_shift,
    random_starts, shift_pad_pixels,
)
from echobook.data.echonet import read_echonet
from test_echonet import SIZE, edit_csv, write_fake_set

CLIP_FRAMES, STRIDE = 6, 2


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips") / "echonet"
    write_fake_set(root, count=8)
    return root


def ramp_store(frame_counts=(20, 9), size=8) -> VideoStore:
    """Videos whose frame t is filled with the value t: a clip's values are its frame indices."""
    return VideoStore(arrays=[np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, size, size)).copy()
                              for n in frame_counts])


# --------------------------------------------------------------------------------------------- indices

def test_clip_indices_and_fixed_eval_starts():
    np.testing.assert_array_equal(clip_indices(100, 4, 3, start=10), [10, 13, 16, 19])
    np.testing.assert_array_equal(eval_starts(100, 8, 2, count=3), [0, 42, 85])  # last start 100 - 15
    np.testing.assert_array_equal(eval_starts(176, 36, 4, count=3), [0, 18, 35])  # full size: span 141
    np.testing.assert_array_equal(eval_starts(10, 8, 2, count=3), [0, 0, 0])  # shorter than a clip


def test_random_starts_differ_and_stay_inside():
    rng = random.Random(0)
    for _ in range(50):
        starts = random_starts(20, CLIP_FRAMES, STRIDE, 2, rng)
        assert starts[0] != starts[1] and all(0 <= s <= 20 - 11 for s in starts)
    assert random_starts(5, CLIP_FRAMES, STRIDE, 2, rng) == (0, 0)


def test_short_videos_are_looped():
    store = ramp_store(frame_counts=(9,))
    dataset = ClipDataset(store, [50.0], CLIP_FRAMES, STRIDE, train=False)
    clip, _ = dataset[0]
    assert clip.shape == (1, CLIP_FRAMES, 8, 8)
    np.testing.assert_array_equal(clip[0, :, 0, 0].numpy(), [0, 2, 4, 6, 8, 1])  # frame 10 -> 10 mod 9


# --------------------------------------------------------------------------------------------- datasets

def test_single_and_two_clip_items():
    store = ramp_store()
    single = ClipDataset(store, [40.0, 60.0], CLIP_FRAMES, STRIDE, train=True, clips_per_video=3)
    assert len(single) == 6
    items = single.epoch_items(random.Random(1))
    assert sorted(video for video, _ in items) == [0, 0, 0, 1, 1, 1]
    assert len({starts for video, starts in items if video == 0}) == 3  # different random starts
    clip, ef = single[items[0]]
    assert clip.dtype == torch.uint8 and clip.shape == (1, CLIP_FRAMES, 8, 8) and ef.dtype == torch.float32
    pair = ClipDataset(store, [40.0, 60.0], CLIP_FRAMES, STRIDE, clips_per_item=2, train=True)
    video, starts = pair.epoch_items(random.Random(2))[0]
    clips, _ = pair[(video, starts)]
    assert clips.shape == (2, 1, CLIP_FRAMES, 8, 8)
    assert clips[0, 0, 0, 0, 0] == starts[0] and clips[1, 0, 0, 0, 0] == starts[1] and starts[0] != starts[1]


def test_eval_items_are_fixed_and_averaged_per_video():
    store = ramp_store(frame_counts=(20, 30))
    dataset = ClipDataset(store, [40.0, 60.0], CLIP_FRAMES, STRIDE, train=False, eval_clips=3)
    assert dataset.fixed_items == [(0, (0,)), (0, (4,)), (0, (9,)), (1, (0,)), (1, (10,)), (1, (19,))]
    assert dataset.epoch_items(random.Random(0)) == dataset.epoch_items(random.Random(1))
    np.testing.assert_array_equal(dataset.video_index, [0, 0, 0, 1, 1, 1])
    averaged = average_per_video(torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0]), dataset.video_index)
    torch.testing.assert_close(averaged, torch.tensor([2.0, 20.0]))


# --------------------------------------------------------------------------------------------- device side

def test_random_shift_is_one_crop_per_clip():
    torch.manual_seed(0)
    clips = torch.zeros(16, 2, 1, 4, 12, 12, dtype=torch.uint8)  # [B, 2 clips, C, F, H, W]
    clips[..., 6, 6] = 255  # one bright pixel in every frame
    shifted = random_shift(clips, pad_pixels=12)
    assert shifted.shape == clips.shape and shifted.dtype == torch.uint8
    flat = shifted.reshape(32, 4, 12 * 12)
    assert torch.equal(flat, flat[:, :1].expand_as(flat))  # every frame of a clip moved alike
    positions = []
    for clip in flat[:, 0]:
        where = torch.nonzero(clip.reshape(12, 12))
        assert len(where) <= 1  # a pure translation (or the pixel left the frame)
        positions.append(tuple(where[0].tolist()) if len(where) else None)
    assert len(set(positions)) > 4  # clips got different offsets
    assert all(p is None or (0 <= p[0] <= 12 and 0 <= p[1] <= 12) for p in positions)


def test_normalisation_stats_over_training_videos():
    store = ramp_store()
    mean, std = normalisation_stats(store)
    pixels = np.concatenate([store.arrays[0].ravel(), store.arrays[1].ravel()]).astype(float)
    assert mean == pytest.approx(pixels.mean()) and std == pytest.approx(pixels.std())


# --------------------------------------------------------------------------------------------- loaders

def test_dataloaders_single_clip(fake_root):
    dataset = read_echonet(fake_root)
    train, valid = dataset.subset("TRAIN"), dataset.subset("VAL")
    dls = clip_dataloaders(train, valid, clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=2,
                           clips_per_video=2, device="cpu", seed=0)
    assert isinstance(dls, DataLoaders) and isinstance(dls.train, ClipDataLoader)
    assert len(dls.train.dataset) == 2 * len(train) and len(dls.valid.dataset) == 3 * len(valid)
    x, y = dls.train.one_batch()
    assert x.shape == (2, 1, CLIP_FRAMES, SIZE, SIZE) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.shape == (2,) and y.dtype == torch.float32
    mean, std = dls.normalisation
    assert 0 < mean < 255 and std > 0
    store = VideoStore.from_table(train, cache=True)
    assert (mean, std) == pytest.approx(normalisation_stats(store))
    xv, yv = dls.valid.one_batch()
    assert xv.shape[1:] == (1, CLIP_FRAMES, SIZE, SIZE)
    torch.testing.assert_close(xv.mean(), torch.tensor(0.0), atol=0.5, rtol=0)  # normalised
    assert sum(len(b[0]) for b in dls.train) == 2 * len(train) // 2 * 2  # a whole epoch, full batches


def test_dataloaders_two_clip_mode_and_lazy_reading(fake_root):
    dataset = read_echonet(fake_root)
    dls = clip_dataloaders(dataset.subset("TRAIN"), dataset.subset("VAL"), clip_frames=CLIP_FRAMES,
                           clip_stride=STRIDE, batch_size=2, two_clips=True, cache=False, device="cpu",
                           num_workers=1)  # a worker process decodes
    assert dls.train.dataset.store.arrays is None  # read lazily from the AVIs
    x, y = dls.train.one_batch()
    assert x.shape == (2, 2, 1, CLIP_FRAMES, SIZE, SIZE) and y.shape == (2,)
    assert not torch.equal(x[:, 0], x[:, 1])  # different starts and crops


def test_loader_batches_are_uint8_until_the_transform(fake_root):
    dataset = read_echonet(fake_root, split="TRAIN")
    dl = eval_dataloader(dataset, clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=3, mean=0.0, std=1.0)
    raw = next(iter(dl.create_batches(dl.get_idxs())))
    assert raw[0].dtype == torch.uint8 and raw[0].shape == (3, 1, CLIP_FRAMES, SIZE, SIZE)
    x, _ = next(iter(dl))
    torch.testing.assert_close(x, raw[0].float())  # eval: normalised (here identity), never shifted


def test_same_seed_same_batches(fake_root):
    dataset = read_echonet(fake_root)
    batches = []
    for _ in range(2):
        torch.manual_seed(3)
        dls = clip_dataloaders(dataset.subset("TRAIN"), dataset.subset("VAL"), clip_frames=CLIP_FRAMES,
                               clip_stride=STRIDE, batch_size=2, seed=3)
        batches.append(next(iter(dls.train)))
    torch.testing.assert_close(batches[0], batches[1])


def test_echonet_dataloaders_with_a_preset(fake_root):
    dls = echonet_dataloaders(fake_root, "smoke", batch_size=2)
    x, _ = dls.train.one_batch()
    assert x.shape == (2, 1, 8, 48, 48)  # smoke preset: 8 frames, videos resized 32 -> 48


def test_the_shift_scales_with_the_frame(fake_root):
    """CoReEcho's 112 -> 124 -> 112 pad-and-crop keeps its fraction of the frame at other sizes."""
    assert [shift_pad_pixels(size) for size in (112, 64, 48)] == [12, 7, 5]
    dls = echonet_dataloaders(fake_root, "smoke", batch_size=2)
    assert dls.train.after_batch.pad_pixels == shift_pad_pixels(48)  # validation clips are never shifted
    assert echonet_dataloaders(fake_root, "smoke", batch_size=2, pad_pixels=0).train.after_batch.pad_pixels == 0


def test_fastai_learner_trains_and_predicts_in_order(fake_root):
    from fastai.learner import Learner

    dataset = read_echonet(fake_root)
    dls = clip_dataloaders(dataset.subset("TRAIN"), dataset.subset("VAL"), clip_frames=CLIP_FRAMES,
                           clip_stride=STRIDE, batch_size=2)

    class MeanIntensity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(1, 1)

        def forward(self, clips):
            return self.linear(clips.mean(dim=(1, 2, 3, 4))[:, None]).squeeze(1)

    learn = Learner(dls, MeanIntensity(), loss_func=torch.nn.functional.l1_loss)
    learn.fit(1)
    predictions, targets = learn.get_preds()
    valid = dls.valid.dataset
    assert predictions.shape == (len(valid),)
    expected = torch.as_tensor(dataset.subset("VAL").ef_percent)[valid.video_index]
    torch.testing.assert_close(targets, expected)  # clips come back in item order
    assert average_per_video(predictions, valid.video_index).shape == (len(dataset.subset("VAL")),)


def test_short_and_odd_sized_videos_through_the_loader(tmp_path):
    from echobook.data.echonet import write_echonet
    from test_echonet import fake_video

    videos = [fake_video(0), fake_video(1, frames=5), fake_video(2, size=48), fake_video(3)]
    write_echonet(tmp_path / "e", videos, ["TRAIN"] * 4)
    dataset = read_echonet(tmp_path / "e")
    for cache in (True, False):
        dls = clip_dataloaders(dataset, dataset, clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=4,
                               cache=cache, num_workers=0)
        x, _ = dls.valid.one_batch()
        assert x.shape == (4, 1, CLIP_FRAMES, SIZE, SIZE)  # 48 px resized to the common 32, 5 frames looped


# --------------------------------------------------------------------------------------------- untraced videos

def test_untraced_videos_are_dropped_by_default_and_reported(tmp_path):
    """The paper's protocol: EF loaders of an EchoNet folder leave out videos without two traced frames."""
    root = tmp_path / "echonet"
    write_fake_set(root, count=12)  # 8 TRAIN, 2 VAL, 2 TEST
    everything = read_echonet(root)
    untraced_train, untraced_test = everything.subset("TRAIN").names[0], everything.subset("TEST").names[0]
    untraced = {f"{untraced_train}.avi", f"{untraced_test}.avi"}
    edit_csv(root / "VolumeTracings.csv", lambda frame: frame[~frame["FileName"].isin(untraced)])
    with pytest.warns(UserWarning, match=f"dropped 1 video.*{untraced_train}"):
        dls = echonet_dataloaders(root, "smoke", batch_size=2, device="cpu")
    assert dls.dropped_untraced == [untraced_train] and len(dls.train.dataset.store) == 7
    kept = echonet_dataloaders(root, "smoke", batch_size=2, device="cpu", require_tracings=False)
    assert kept.dropped_untraced == [] and len(kept.train.dataset.store) == 8
    mean, std = dls.normalisation
    with pytest.warns(UserWarning, match=f"dropped 1 video.*{untraced_test}"):
        test_loader = echonet_eval_dataloader(root, "smoke", mean=mean, std=std, device="cpu")
    assert test_loader.dropped_untraced == [untraced_test] and test_loader.table.names == [
        name for name in everything.subset("TEST").names if name != untraced_test]
    assert len(test_loader.dataset) == 1 * test_loader.dataset.eval_clips
    x, _ = test_loader.one_batch()
    assert x.shape[1:] == (1, 8, 48, 48)  # the smoke preset's clips, as echonet_dataloaders gives them


def test_fully_traced_sets_lose_nothing(fake_root, recwarn):
    dls = echonet_dataloaders(fake_root, "smoke", batch_size=2, device="cpu")
    assert dls.dropped_untraced == [] and not [w for w in recwarn if "dropped" in str(w.message)]
    assert len(dls.train.dataset.store) == len(read_echonet(fake_root, "TRAIN"))
