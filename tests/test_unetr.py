"""The UNETR decoder over a video ViT (echobook.models.unetr) and the encoder's intermediate tokens."""
import dataclasses

import pytest
import torch

from echobook.models import create_model, list_models, model_config
from echobook.models.unetr import UNETR, UNETRConfig, unetr_config_for
from echobook.models.videomae import VideoViT


def test_the_variants_are_registered_segmenters():
    assert list_models(kind="segmenter") == ["unetr_base", "unetr_micro", "unetr_tiny"]
    assert model_config("unetr_base").layers == (3, 6, 9, 12)  # UNETR's depths of a ViT-B
    assert model_config("unetr_micro").layers == (1, 1, 2)
    assert model_config("unetr_tiny").layers == (1, 3, 4)


@pytest.mark.parametrize("name", ["unetr_micro", "unetr_tiny", "unetr_base"])
def test_each_variant_gives_per_frame_logits_at_the_input_size(name):
    config = model_config(name)
    # the variant's own clip, except ViT-B's (a quarter of its frames and a 32-pixel image: positions interpolate)
    frames, side = (8, 32) if name == "unetr_base" else (config.encoder.clip_frames, config.encoder.image_size)
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, frames, side, side))
    assert out.shape == (2, 4, frames, side, side)
    assert torch.isfinite(out).all()


def test_a_3d_decoder_and_a_single_stage_decoder():
    encoder = dataclasses.replace(model_config("videomae_micro"), patch_pixels=2, image_size=16)
    model = UNETR(UNETRConfig(encoder, feature_size=4, temporal_kernel=3))  # 2-pixel patches: one doubling
    assert model.config.stages == 1 and model.config.layers == (2,)
    assert model(torch.rand(1, 1, 16, 16, 16)).shape == (1, 4, 16, 16, 16)


def test_layer_tokens_end_with_the_encoders_own_output():
    torch.manual_seed(0)
    encoder = create_model("videomae_micro").eval()
    clips = torch.rand(2, 1, 16, 32, 32)
    with torch.no_grad():
        first, last = encoder.layer_tokens(clips, (1, 2))
        assert torch.allclose(last, encoder.forward_features(clips)[:, 1:], atol=1e-6)
    assert first.shape == last.shape == (2, 8 * 16, 64)
    with pytest.raises(ValueError, match="block number in 1..2"):
        encoder.layer_tokens(clips, (3,))


def test_a_pretrained_encoder_is_used_as_given_and_configs_must_match():
    torch.manual_seed(0)
    encoder = create_model("videomae_micro")
    model = create_model("unetr_micro", encoder=encoder)
    assert model.encoder is encoder
    other = VideoViT(dataclasses.replace(encoder.config, depth=1))
    with pytest.raises(ValueError, match="config differs"):
        UNETR(unetr_config_for(encoder.config), encoder=other)
    with pytest.raises(ValueError, match="power of two"):
        UNETRConfig(dataclasses.replace(encoder.config, patch_pixels=6, image_size=36))
    with pytest.raises(ValueError, match="temporal_kernel"):
        UNETRConfig(encoder.config, temporal_kernel=2)
