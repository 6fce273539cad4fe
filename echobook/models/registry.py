"""The model registry, in timm's manner: every model of the package by name, in one place.

A model family's file registers each variant with :func:`register_model` (a small function that
builds it); :func:`create_model` builds any of them by name, :func:`list_models` lists them, and
:func:`model_kind` says what a model gives, so a learner knows what to put on top:

- ``"encoder"``: clips ``[B, C, T, H, W]`` -> embeddings ``[B, D]`` (the model has ``embed_dim``);
  a method adds its head (CoReEcho's MLP, a view classifier, ...);
- ``"ef_regressor"``: clips -> EF ``[B]`` in percent, a whole model (EchoNet-Dynamic's R(2+1)D);
- ``"segmenter"``: clips -> per-frame class logits ``[B, K, T, H, W]`` (the model has ``num_classes``; UNETR).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable

from torch import nn

MODEL_KINDS = ("encoder", "ef_regressor", "segmenter")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]
    kind: str
    family: str  # the module that defines it, e.g. "uniformer"
    config: Callable[[], object] | None = None  # the variant's default config, for families that have one


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, kind: str = "encoder", name: str | None = None,
                   config: Callable[[], object] | None = None):
    """Decorator: register ``fn`` under its own name (or ``name``); ``fn(**kwargs)`` builds the model.

    ``config``: for a family whose variants are configs (UniFormer), the function giving the variant's
    default config, so :func:`model_config` can show it without building the model.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind={kind!r}: choose one of {MODEL_KINDS}")

    def register(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        model_name = name or build.__name__
        if model_name in _REGISTRY:
            raise ValueError(f"model {model_name!r} is registered twice ({_REGISTRY[model_name].family} "
                             f"and {build.__module__})")
        family = build.__module__.rsplit(".", 1)[-1]
        _REGISTRY[model_name] = ModelEntry(model_name, build, kind, family, config)
        return build

    return register if fn is None else register(fn)


def _entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose one of {list_models()}")
    return _REGISTRY[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """A registered model by name; keyword arguments go to its variant function.

    >>> create_model("uniformer_s", drop_rate=0.1)   # CoReEcho's backbone
    >>> create_model("r2plus1d_18", mean_ef_percent=55.0)
    """
    return _entry(name).build(**kwargs)


def list_models(pattern: str = "*", *, kind: str | None = None, family: str | None = None) -> list[str]:
    """Registered names matching a shell-style ``pattern``, optionally of one kind or family, sorted."""
    return sorted(entry.name for entry in _REGISTRY.values()
                  if fnmatch.fnmatchcase(entry.name, pattern) and kind in (None, entry.kind)
                  and family in (None, entry.family))


def model_kind(name: str) -> str:
    """``"encoder"`` or ``"ef_regressor"`` (see the module doc)."""
    return _entry(name).kind


def model_config(name: str):
    """A variant's default config (e.g. a ``UniFormerConfig``), or None when its family has none."""
    entry = _entry(name)
    return None if entry.config is None else entry.config()


def is_model(name: str) -> bool:
    return name in _REGISTRY
