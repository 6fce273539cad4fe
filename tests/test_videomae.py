"""The ViT video masked autoencoder: patchify round trip, position indexing, the decoder's un-shuffle, the loss."""
import dataclasses

import pytest
import torch

from echobook.models import create_model, model_config
from echobook.models.masking import consistent_masking, random_masking
from echobook.models.videomae import (
    VideoViT, masked_reconstruction_loss, patchify, pixel_target, predicted_frame_indices,
    unpatchify, video_mae, videomae_micro, vit_large_config,
)


def test_patchify_and_unpatchify_are_inverse():
    clips = torch.randn(2, 3, 8, 16, 24)
    tokens = patchify(clips, 2, 8)
    assert tokens.shape == (2, 4 * 2 * 3, 2 * 8 * 8 * 3)
    assert torch.equal(unpatchify(tokens, (4, 2, 3), 2, 8, channels=3), clips)
    # token order is time-major and a token holds exactly its tubelet's pixels
    assert torch.equal(tokens[1, 1 * 6 + 1 * 3 + 2].reshape(2, 8, 8, 3).permute(3, 0, 1, 2),
                       clips[1, :, 2:4, 8:16, 16:24])
    with pytest.raises(ValueError, match="patch_pixels=5"):
        patchify(clips, 2, 5)


def test_predicted_frames_are_picked_evenly_as_in_echofm():
    assert predicted_frame_indices(32, 8).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]


def test_pixel_target_is_normalised_per_patch():
    config = videomae_micro()
    clips = torch.rand(2, 1, 16, 32, 32) * 200 + 20
    target = pixel_target(clips, config)
    assert target.shape == (2, 8 * 16, 1 * 8 * 8)
    assert torch.allclose(target.mean(-1), torch.zeros(2, 128), atol=1e-4)
    assert torch.allclose(target.std(-1, unbiased=False), torch.ones(2, 128), atol=1e-3)


def test_every_visible_token_keeps_its_own_time_slice_position():
    """The first release gave every visible token frame 0's temporal position; here a token's position is
    the sum of its slice's and its spatial position's rows, gathered with the token's own index."""
    torch.manual_seed(0)
    encoder = create_model("videomae_micro")
    with torch.no_grad():
        encoder.patch_embed.weight.zero_()
        encoder.patch_embed.bias.zero_()  # tokens are their positions alone
    clips = torch.zeros(3, 1, 16, 32, 32)
    masking = consistent_masking(3, 8, 16, 0.75)
    embedded = encoder.embed(clips)
    visible = embedded.gather(1, masking.ids_keep[..., None].expand(-1, -1, embedded.shape[-1]))
    slices, positions = masking.ids_keep // 16, masking.ids_keep % 16
    expected = encoder.pos_embed.temporal[0][slices] + encoder.pos_embed.spatial[0][positions]
    assert torch.allclose(visible, expected)
    assert slices.unique().numel() == 8  # every slice is present with its own row


def test_position_tables_interpolate_to_other_grids():
    encoder = create_model("videomae_micro")
    table = encoder.pos_embed.table((8, 4, 4))
    assert table.shape == (128, 64)
    assert encoder.pos_embed.table((2, 6, 6)).shape == (72, 64)
    assert encoder(torch.randn(2, 1, 4, 48, 48)).shape == (2, 64)


def test_the_autoencoder_predicts_every_token_and_its_loss_counts_hidden_tokens_only():
    torch.manual_seed(0)
    mae = video_mae("videomae_micro")
    clips = torch.rand(2, 1, 16, 32, 32)
    masking = random_masking(2, 8, 16, 0.75)
    pred, latent = mae(clips, masking)
    assert pred.shape == (2, 128, 64) and latent.shape == (2, 1 + 32, 64)
    target = mae.target(clips)
    loss = masked_reconstruction_loss(pred, target, masking.mask)
    # hand-computed: per token MSE, averaged over hidden tokens; visible tokens changed change nothing
    per_token = ((pred - target) ** 2).mean(-1)
    assert torch.allclose(loss, per_token[masking.mask.bool()].mean())
    moved = pred.clone()
    moved[masking.mask == 0] += 100.0
    assert torch.allclose(masked_reconstruction_loss(moved, target, masking.mask), loss)
    assert mae.reconstruct(pred, clips).shape == (2, 1, 8, 32, 32)
    with pytest.raises(ValueError, match="8-frame clips|clips of 8 frames"):
        mae(torch.rand(2, 1, 8, 32, 32), masking)


def test_the_decoder_unshuffles_with_the_inverse_permutation():
    """A decoder without blocks is position-wise: moving a visible token's content must move its prediction to
    that token's place, which only the inverse permutation does."""
    torch.manual_seed(0)
    mae = video_mae("videomae_micro", decoder_depth=1)
    mae.decoder_blocks = torch.nn.ModuleList()
    latent = torch.randn(1, 1 + 32, 64)
    masking = consistent_masking(1, 8, 16, 0.75)
    pred = mae.forward_decoder(latent, masking.ids_restore, (8, 4, 4))
    expected = mae.decoder_pred(mae.decoder_norm(mae.decoder_embed(latent[:, 1:])
                                                 + mae.decoder_pos_embed.table((8, 4, 4))[masking.ids_keep[0]]))
    assert torch.allclose(pred[0, masking.ids_keep[0]], expected[0], atol=1e-5)


def test_configs_are_checked_and_the_paper_scale_is_described():
    with pytest.raises(ValueError, match="image_size=30"):
        dataclasses.replace(videomae_micro(), image_size=30)
    with pytest.raises(ValueError, match="pred_frames"):
        dataclasses.replace(videomae_micro(), pred_frames=6)
    large = vit_large_config()
    assert (large.temporal_tokens, large.spatial_tokens, large.embed_dim, large.depth) == (8, 196, 1024, 24)
    assert model_config("videomae_base").embed_dim == 768 and model_config("videomae_base").depth == 12
    encoder = VideoViT(dataclasses.replace(videomae_micro(), in_chans=3))
    assert encoder(torch.rand(1, 1, 16, 32, 32)).shape == (1, 64)  # gray expanded to 3 channels
    with pytest.raises(ValueError, match="2 channels"):
        encoder(torch.rand(1, 2, 16, 32, 32))
    with pytest.raises(ValueError, match="encoder module"):
        video_mae(create_model("videomae_micro"), depth=3)
