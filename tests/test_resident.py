"""The device-resident data path, tested on a CPU tensor: the same clips, labels and augmented batches as the
CPU loaders for the same random draws, and a fastai learner training on it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echobook.data.clips import ClipDataset, VideoStore, clip_dataloader, clip_dataloaders, clip_indices
from echobook.data.resident import ResidentVideos, resident_dataloaders, resident_loader
from echobook.data.table import ArrayVideoTable

CLIP_FRAMES, STRIDE, SIZE = 5, 3, 12


def random_videos(frame_counts, seed=0, size=SIZE):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (n, size, size), dtype=np.uint8) for n in frame_counts]


def tables():
    """Videos of uneven lengths, some shorter than a clip's span (13 frames), so looping is exercised."""
    counts = [30, 9, 17, 40, 13, 25, 6, 33, 21, 14]
    videos = random_videos(counts)
    ef_percent = np.linspace(25.0, 70.0, len(videos))
    train = ArrayVideoTable(videos[:7], ef_percent[:7])
    valid = ArrayVideoTable(videos[7:], ef_percent[7:], splits="VAL")
    return train, valid


def batches(loader):
    torch.manual_seed(3)  # the pad-and-crop shift draws from torch's generator
    return [(clips.clone(), ef.clone()) for clips, ef in loader]


def test_resident_videos_are_the_store_frames_in_one_tensor():
    store = VideoStore(arrays=random_videos([7, 3, 11]))
    resident = ResidentVideos.from_store(store, "cpu", workers=2)
    assert resident.frames.dtype == torch.uint8 and resident.frames.shape == (21, SIZE, SIZE)
    assert resident.offsets.tolist() == [0, 7, 10] and resident.frame_counts.tolist() == [7, 3, 11]
    assert resident.nbytes == 21 * SIZE * SIZE
    for video in range(3):
        start = int(resident.offsets[video])
        np.testing.assert_array_equal(resident.frames[start:start + store.frame_counts[video]].numpy(),
                                      store.arrays[video])


def test_clips_gather_looped_frame_indices():
    store = VideoStore(arrays=random_videos([20, 9]))
    resident = ResidentVideos.from_store(store, "cpu")
    starts = torch.tensor([[4, 0], [2, 7]])
    clips = resident.clips(torch.tensor([0, 1]), starts, CLIP_FRAMES, STRIDE)
    assert clips.shape == (2, 2, 1, CLIP_FRAMES, SIZE, SIZE)
    for b, video in enumerate([0, 1]):
        for k in range(2):
            indices = clip_indices(int(store.frame_counts[video]), CLIP_FRAMES, STRIDE, int(starts[b, k]))
            np.testing.assert_array_equal(clips[b, k, 0].numpy(), store.arrays[video][indices])


@pytest.mark.parametrize("two_clips", [False, True])
def test_resident_loaders_give_the_cpu_loaders_batches(two_clips):
    train, valid = tables()
    common = dict(clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=3, two_clips=two_clips, device="cpu",
                  seed=7)
    cpu = clip_dataloaders(train, valid, **common)
    (resident,) = resident_dataloaders(clip_dataloaders(train, valid, **common))
    assert resident.normalisation == cpu.normalisation
    for epoch in range(2):  # fresh random starts and a fresh shuffle each epoch, the same in both
        for split in (0, 1):
            expected, got = batches(cpu.loaders[split]), batches(resident.loaders[split])
            assert len(got) == len(expected) > 0
            for (clips, ef), (clips_r, ef_r) in zip(expected, got):
                assert clips_r.dtype == torch.float32 and clips_r.shape == clips.shape
                torch.testing.assert_close(clips_r, clips, rtol=0, atol=0)
                torch.testing.assert_close(ef_r, ef, rtol=0, atol=0)


def test_uint8_batches_before_the_transform_match():
    train, _ = tables()
    store = VideoStore.from_table(train)
    dataset = ClipDataset(store, train.ef_percent, CLIP_FRAMES, STRIDE, clips_per_item=2)
    loader = clip_dataloader(dataset, batch_size=4, mean=0.0, std=1.0, device="cpu", seed=1)
    twin = resident_loader(loader)
    loader.after_batch = twin.after_batch = lambda batch: batch  # the raw batches
    for (clips, ef), (clips_r, ef_r) in zip(loader, twin):
        assert clips_r.dtype == torch.uint8
        torch.testing.assert_close(clips_r, clips, rtol=0, atol=0)
        torch.testing.assert_close(ef_r, ef)


def test_loaders_of_the_same_videos_share_one_copy():
    train, valid = tables()
    common = dict(clip_frames=CLIP_FRAMES, clip_stride=STRIDE, batch_size=3, device="cpu", cache=False)
    two, one = resident_dataloaders(clip_dataloaders(train, valid, two_clips=True, **common),
                                    clip_dataloaders(train, valid, **common))
    assert two.train.videos is one.train.videos and two.valid.videos is one.valid.videos
    assert two.train.videos is not two.valid.videos


def test_bad_resident_input_is_a_clear_error():
    with pytest.raises(ValueError, match="uint8"):
        ResidentVideos(torch.zeros(4, 2, 2), [4])
    with pytest.raises(ValueError, match="add up to 5"):
        ResidentVideos(torch.zeros(4, 2, 2, dtype=torch.uint8), [2, 3])
    with pytest.raises(ValueError, match="at least 1 frame"):
        ResidentVideos(torch.zeros(4, 2, 2, dtype=torch.uint8), [4, 0])


def test_a_learner_trains_on_resident_loaders():
    from echobook.methods.coreecho import coreecho_stage1_learner

    train, valid = tables()
    (dls,) = resident_dataloaders(clip_dataloaders(train, valid, clip_frames=8, clip_stride=1, batch_size=4,
                                                   two_clips=True, device="cpu", image_size=32))
    torch.manual_seed(0)
    learn = coreecho_stage1_learner(dls, "uniformer_xxs", lr=1e-3, schedule="constant", drop_rate=0.0,
                                    head_dropout=0.0)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    train_loss, valid_loss = learn.recorder.values[-1][:2]
    assert np.isfinite(train_loss) and np.isfinite(valid_loss)


def test_the_full_recipe_switches_the_resident_path_on():
    from echobook.methods.coreecho import recipe

    assert recipe("full").resident_data  # used by `echobook train coreecho` at full on CUDA
    assert not recipe("smoke").resident_data and not recipe("small").resident_data
