"""The three masking strategies: their ratios, per-slice counts, shared spatial masks and the inverse permutation."""
import pytest
import torch

from echobook.models.masking import (
    MASKING_STRATEGIES, consistent_masking, make_masking, masking_from_visible, random_masking,
    uniform_frame_masking, unshuffle, visible_per_slice,
)

B, SLICES, POSITIONS = 5, 8, 16  # [B] clips of 8 time slices x 16 spatial positions = 128 tokens


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("strategy", MASKING_STRATEGIES)
def test_every_strategy_hides_its_share_and_inverts_exactly(strategy):
    m = make_masking(strategy, B, SLICES, POSITIONS, 0.75, generator=_generator())
    tokens = SLICES * POSITIONS
    assert m.ids_keep.shape == (B, tokens // 4) and m.mask.shape == (B, tokens)
    assert torch.all(m.mask.sum(1) == tokens * 3 // 4)
    # visible ids ascending (slices stay together) and exactly the unmasked tokens
    assert torch.all(m.ids_keep[:, 1:] > m.ids_keep[:, :-1])
    assert torch.all(m.mask.gather(1, m.ids_keep) == 0)
    # the un-shuffle is the true inverse: visible tokens, then the masked ones, go back to their places
    values = torch.arange(tokens).float().expand(B, -1)[..., None]  # each token's own index
    masked_ids = torch.argsort(m.mask + torch.arange(tokens) / tokens, dim=1)[:, tokens // 4:]
    shuffled = torch.cat([values.gather(1, m.ids_keep[..., None]), values.gather(1, masked_ids[..., None])], dim=1)
    restored = unshuffle(shuffled, m.ids_restore)
    assert torch.equal(restored, values)
    assert torch.equal(torch.argsort(m.ids_restore, dim=1)[:, :tokens // 4], m.ids_keep)


def test_the_forward_permutation_is_not_the_inverse():
    """EchoFM's first release un-shuffled with argsort(mask): the forward permutation. It scrambles tokens."""
    m = random_masking(B, SLICES, POSITIONS, 0.75, generator=_generator(1))
    ids_shuffle = torch.argsort(m.ids_restore, dim=1)
    values = torch.arange(SLICES * POSITIONS).float().expand(B, -1)[..., None]
    shuffled = values.gather(1, ids_shuffle[..., None])
    assert torch.equal(unshuffle(shuffled, m.ids_restore), values)
    assert not torch.equal(unshuffle(shuffled, ids_shuffle), values)


def test_consistent_masking_shares_one_spatial_mask_across_time():
    m = consistent_masking(B, SLICES, POSITIONS, 0.75, generator=_generator(2))
    per_slice = m.mask.reshape(B, SLICES, POSITIONS)
    assert torch.equal(per_slice, per_slice[:, :1].expand_as(per_slice))
    assert torch.all(visible_per_slice(m, SLICES) == int(POSITIONS * 0.25))
    assert not torch.equal(per_slice[0, 0], per_slice[1, 0])  # clips get their own masks
    # EchoFM's numbers: 196 positions at 0.75 keep int(196 * 0.25) = 49 in each of 8 slices
    big = consistent_masking(2, 8, 196, 0.75)
    assert big.ids_keep.shape == (2, 392)


def test_random_masking_varies_across_time():
    m = random_masking(B, SLICES, POSITIONS, 0.75, generator=_generator(3))
    per_slice = m.mask.reshape(B, SLICES, POSITIONS)
    assert not torch.equal(per_slice, per_slice[:, :1].expand_as(per_slice))
    assert visible_per_slice(m, SLICES).sum(1).eq(SLICES * POSITIONS // 4).all()


def test_uniform_frame_masking_keeps_whole_evenly_spaced_slices():
    m = uniform_frame_masking(64, SLICES, POSITIONS, 0.75, generator=_generator(4))
    counts = visible_per_slice(m, SLICES)
    assert set(counts.unique().tolist()) == {0, POSITIONS}  # a slice is all seen or all hidden
    kept = [torch.nonzero(row).flatten().tolist() for row in counts]
    assert all(len(k) == 2 and k[1] - k[0] == 4 for k in kept)  # 2 of 8 slices, 4 apart
    assert len({k[0] for k in kept}) > 1  # the offset is random


def test_masking_runs_on_the_requested_device_and_rejects_bad_input():
    m = consistent_masking(2, 4, 9, 0.5, device="cpu")
    assert m.ids_keep.device.type == "cpu"
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(2, 4, 9, 1.0)
    with pytest.raises(ValueError, match="slices"):
        consistent_masking(2, 0, 9, 0.5)
    with pytest.raises(ValueError, match="strategy='tube'"):
        make_masking("tube", 2, 4, 9, 0.5)
    with pytest.raises(ValueError, match="same number of visible"):
        masking_from_visible(torch.tensor([[True, False], [True, True]]))
