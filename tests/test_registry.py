"""The model registry: every registered model builds, gives what its kind promises, and reports its cost."""
import pytest
import torch

from echobook.models import (
    MODEL_KINDS, count_multiply_adds, count_parameters, create_model, is_model, list_models, model_config,
    model_kind, register_model,
)
from echobook.models.registry import _REGISTRY

CLIP = (2, 1, 4, 32, 32)  # [B, C, T, H, W]: gray, small enough for every model on a CPU


def test_the_registry_knows_every_family():
    assert {"uniformer_s", "uniformer_b", "uniformer_xs", "uniformer_xxs", "r2plus1d_18"} <= set(list_models())
    assert list_models("uniformer_*") == ["uniformer_b", "uniformer_s", "uniformer_xs", "uniformer_xxs"]
    assert {"r2plus1d_18", "e3net_s", "e3net_xs"} <= set(list_models(kind="ef_regressor"))
    assert list_models(family="e3net") == ["e3net_s", "e3net_xs"]
    assert list_models(family="uniformer") == list_models("uniformer_*")
    assert is_model("uniformer_s") and not is_model("uniformer_zzz")


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_gives_what_its_kind_promises(name):
    assert model_kind(name) in MODEL_KINDS
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(CLIP))
    if model_kind(name) == "encoder":
        assert out.shape == (CLIP[0], model.embed_dim)
        assert model_config(name).embed_dim == model.embed_dim
    elif model_kind(name) == "segmenter":
        assert out.shape == (CLIP[0], model.num_classes, *CLIP[2:])
    else:
        assert out.shape == (CLIP[0],)
    assert count_parameters(model) > 0
    assert count_multiply_adds(model, CLIP) > 0


def test_unknown_names_and_double_registration_fail_clearly():
    with pytest.raises(KeyError, match="unknown model 'uniformer_zzz'.*uniformer_s"):
        create_model("uniformer_zzz")
    with pytest.raises(ValueError, match="registered twice"):
        register_model(lambda: None, name="uniformer_s")
    with pytest.raises(ValueError, match="kind="):
        register_model(kind="decoder")


def test_a_new_family_registers_with_one_decorator(monkeypatch):
    monkeypatch.setattr("echobook.models.registry._REGISTRY", dict(_REGISTRY))

    @register_model
    def tiny_encoder(width: int = 4):
        model = torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.LazyLinear(width))
        model.embed_dim = width
        return model

    assert "tiny_encoder" in list_models()
    assert create_model("tiny_encoder", width=3)(torch.randn(CLIP)).shape == (2, 3)
    assert model_config("tiny_encoder") is None
