"""UniFormer: shapes of each variant, UniFormer-S size and cost, official checkpoint key names."""
import pytest
import torch

from echobook.models import uniformer as U
from echobook.models import (
    CheckpointMismatchError, count_multiply_adds, count_parameters, create_model, load_pretrained, model_config,
)
from echobook.models.uniformer import PAPER_UNIFORMER_S

# a few of the official video checkpoint's key names (Sense-X/UniFormer video_classification)
OFFICIAL_KEYS = [
    "patch_embed1.proj.weight", "patch_embed1.norm.weight", "patch_embed4.proj.bias",
    "blocks1.0.pos_embed.weight", "blocks1.0.norm1.running_mean", "blocks1.0.conv1.weight",
    "blocks1.0.attn.weight", "blocks1.0.conv2.weight", "blocks2.3.mlp.fc1.weight", "blocks2.3.mlp.fc2.bias",
    "blocks3.7.attn.qkv.weight", "blocks3.7.attn.qkv.bias", "blocks3.7.attn.proj.weight", "blocks3.0.norm1.weight",
    "blocks4.2.mlp.fc2.weight", "norm.weight", "norm.running_var", "head.weight", "head.bias",
]


@pytest.fixture(scope="module")
def uniformer_s_k400():
    return create_model("uniformer_s", num_classes=400)


def test_uniformer_s_parameter_count(uniformer_s_k400):
    params_m = count_parameters(uniformer_s_k400) / 1e6
    assert abs(params_m / PAPER_UNIFORMER_S["params_m"] - 1) < 0.02
    assert abs(count_parameters(create_model("uniformer_s")) / 1e6 / PAPER_UNIFORMER_S["params_m"] - 1) < 0.02


def test_uniformer_s_official_layout(uniformer_s_k400):
    keys = uniformer_s_k400.state_dict()
    assert all(k in keys for k in OFFICIAL_KEYS)
    assert keys["patch_embed1.proj.weight"].shape == (64, 3, 3, 4, 4)
    assert keys["blocks1.0.attn.weight"].shape == (64, 1, 5, 5, 5)  # 5x5x5 depthwise local aggregator
    assert keys["blocks3.0.pos_embed.weight"].shape == (320, 1, 3, 3, 3)  # 3x3x3 depthwise DPE
    assert keys["blocks3.0.attn.qkv.weight"].shape == (960, 320)
    assert [len(getattr(uniformer_s_k400, f"blocks{s}")) for s in range(1, 5)] == [3, 4, 8, 3]
    assert [uniformer_s_k400.blocks3[0].attn.num_heads, uniformer_s_k400.blocks4[0].attn.num_heads] == [5, 8]
    assert isinstance(uniformer_s_k400.blocks2[0], U.CBlock) and isinstance(uniformer_s_k400.blocks3[0], U.SABlock)


def test_uniformer_s_multiply_adds_near_published():
    model = create_model("uniformer_s")
    gmacs = count_multiply_adds(model, (1, 3, 16, 224, 224)) / 1e9
    assert abs(gmacs / PAPER_UNIFORMER_S["gmacs_16x224x224"] - 1) < 0.02
    assert abs(count_multiply_adds(model) / 1e9 / PAPER_UNIFORMER_S["gmacs_36x112x112_analytic"] - 1) < 0.02


@pytest.mark.parametrize("name,clip", [
    ("uniformer_xxs", (2, 1, 8, 48, 48)), ("uniformer_xxs", (2, 1, 16, 64, 64)), ("uniformer_xs", (2, 1, 8, 64, 64)),
    ("uniformer_s", (1, 1, 4, 32, 32)), ("uniformer_b", (1, 3, 2, 32, 32)),
])
def test_forward_shapes(name, clip):
    model = create_model(name).eval()
    with torch.no_grad():
        stages = model.forward_stages(torch.randn(clip))
        embedding = model(torch.randn(clip))
    b, _, t, h, w = clip
    assert stages.shape == (b, model_config(name).embed_dim, t // 2, h // 32, w // 32)
    assert embedding.shape == (b, model_config(name).embed_dim)


def test_gray_input_equals_three_identical_channels():
    model = create_model("uniformer_xxs").eval()
    gray = torch.randn(2, 1, 8, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(gray), model(gray.repeat(1, 3, 1, 1, 1)))
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 2, 8, 48, 48))
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        model(torch.randn(1, 8, 48, 48))


def test_xxs_trains_a_step_with_dropout_and_drop_path():
    model = create_model("uniformer_xxs", num_classes=1, drop_rate=0.1, drop_path_rate=0.1)
    loss = model(torch.randn(4, 1, 8, 48, 48)).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_registry_errors():
    with pytest.raises(KeyError, match="uniformer_xxs"):
        create_model("uniformer_zzz")
    with pytest.raises(TypeError, match="depth_rate"):
        create_model("uniformer_xxs", depth_rate=1)


def test_load_pretrained_round_trip_skips_head(tmp_path):
    source = create_model("uniformer_xxs", num_classes=400)
    path = tmp_path / "k400.pth"
    torch.save(source.state_dict(), path)
    target = create_model("uniformer_xxs")  # no head, like CoReEcho's encoder
    report = load_pretrained(target, path)
    assert sorted(report["skipped"]) == ["head.bias", "head.weight"]
    clip = torch.randn(1, 1, 8, 48, 48)
    source.eval(), target.eval()
    with torch.no_grad():
        torch.testing.assert_close(target(clip), source.forward_features(clip))


def test_load_pretrained_unwraps_containers():
    source = create_model("uniformer_xxs")
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    target = create_model("uniformer_xxs")
    load_pretrained(target, {"model_state": state})
    torch.testing.assert_close(target.norm.running_var, source.norm.running_var)
    torch.testing.assert_close(target.blocks3[0].attn.qkv.weight, source.blocks3[0].attn.qkv.weight)


def test_load_pretrained_names_every_mismatch():
    state = create_model("uniformer_xxs").state_dict()
    state["blocks1.0.attention.weight"] = state.pop("blocks1.0.attn.weight")  # renamed
    state["blocks3.0.attn.qkv.weight"] = torch.zeros(5, 5)  # wrong shape
    state["extra.weight"] = torch.zeros(1)
    target = create_model("uniformer_xxs")
    before = target.blocks3[0].attn.qkv.weight.clone()
    with pytest.raises(CheckpointMismatchError) as error:
        load_pretrained(target, state)
    message = str(error.value)
    assert "missing (1): blocks1.0.attn.weight" in message
    assert "blocks1.0.attention.weight" in message and "extra.weight" in message
    assert "blocks3.0.attn.qkv.weight: checkpoint (5, 5) vs model (192, 64)" in message
    torch.testing.assert_close(target.blocks3[0].attn.qkv.weight, before)  # nothing half-loaded


def test_load_pretrained_head_kept_when_it_fits():
    source = create_model("uniformer_xxs", num_classes=3)
    target = create_model("uniformer_xxs", num_classes=3)
    assert load_pretrained(target, source.state_dict())["skipped"] == []
    torch.testing.assert_close(target.head.weight, source.head.weight)
    with pytest.raises(CheckpointMismatchError, match="missing"):
        load_pretrained(create_model("uniformer_xxs", num_classes=3), create_model("uniformer_xxs").state_dict())


@pytest.mark.parametrize("kernel, shape", [(3, (2, 4, 5, 6, 7)), (5, (1, 3, 4, 9, 8)), (5, (2, 2, 1, 5, 5))])
def test_depthwise_conv3d_temporal_taps_equal_conv3d(kernel, shape):
    """The GPU path (k depthwise Conv2d over temporal taps) gives Conv3d's output and gradients, forced on a CPU."""
    torch.manual_seed(0)
    conv = U.DepthwiseConv3d(shape[1], kernel)
    x = torch.randn(shape, requires_grad=True)
    expected = torch.nn.functional.conv3d(x, conv.weight, conv.bias, padding=kernel // 2, groups=shape[1])
    grads_expected = torch.autograd.grad(expected.square().sum(), (x, conv.weight, conv.bias))
    conv.temporal_taps = True
    taps = conv(x)
    grads_taps = torch.autograd.grad(taps.square().sum(), (x, conv.weight, conv.bias))
    torch.testing.assert_close(taps, expected, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads_taps, grads_expected):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_depthwise_conv3d_uses_conv3d_on_a_cpu(monkeypatch):
    conv = U.DepthwiseConv3d(4, 3)
    monkeypatch.setattr(conv, "forward_taps", lambda x: pytest.fail("taps on a CPU tensor"))
    assert conv(torch.randn(1, 4, 3, 5, 5)).shape == (1, 4, 3, 5, 5)
    assert isinstance(create_model("uniformer_xxs").blocks1[0].attn, U.DepthwiseConv3d)
