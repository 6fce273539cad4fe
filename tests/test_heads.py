"""The CoReEcho regressor, the encoder+head wrapper and the R(2+1)D-18 EchoNet baseline."""
import pytest
import torch
from torch import nn

from echobook.models import CoReEchoRegressor, EncoderWithHead, create_model
from echobook.models.r2plus1d import r2plus1d_18


def test_coreecho_regressor_layout_and_bias():
    head = CoReEchoRegressor(512, mean_ef_percent=57.5)
    kinds = [type(m) for m in head]
    assert kinds == [nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Dropout, nn.Linear]
    assert head[1].p == head[5].p == 0.4
    assert head[-1].bias.item() == pytest.approx(57.5)
    assert head[2].in_features == 512 and head[-1].out_features == 1


def test_coreecho_regressor_starts_near_the_mean():
    head = CoReEchoRegressor(16, mean_ef_percent=60.0).eval()
    with torch.no_grad():
        ef = head(torch.randn(32, 16))
    assert ef.shape == (32,)
    assert abs(ef.mean().item() - 60.0) < 5.0
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        head(torch.randn(2, 16, 1))


def test_encoder_with_head_on_uniformer():
    encoder = create_model("uniformer_xxs")
    model = EncoderWithHead(encoder, CoReEchoRegressor(encoder.embed_dim)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 48, 48)).shape == (2,)


def test_r2plus1d_baseline_gray_one_output():
    model = r2plus1d_18(mean_ef_percent=55.6)
    assert model.net.stem[0].in_channels == 1
    assert model.net.fc.out_features == 1 and model.net.fc.bias.item() == pytest.approx(55.6)
    model.eval()
    with torch.no_grad():
        ef = model(torch.randn(2, 1, 4, 32, 32))
    assert ef.shape == (2,)
    with pytest.raises(ValueError, match=r"\[B, 1, T, H, W\]"):
        model(torch.randn(2, 3, 4, 32, 32))
    assert isinstance(create_model("r2plus1d_18"), type(model))
    with pytest.raises(KeyError, match="r2plus1d_18"):
        create_model("resnet50")
