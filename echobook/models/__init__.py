"""Models: the UniFormer video family, regression heads and the R(2+1)D baseline."""
from echobook.models.heads import (
    ECHONET_MEAN_EF_PERCENT, CoReEchoRegressor, EncoderWithHead, R2Plus1DRegressor, r2plus1d_18_ef,
)
from echobook.models.uniformer import (
    UNIFORMER_CONFIGS, CheckpointMismatchError, UniFormer, UniFormerConfig, count_multiply_adds,
    count_parameters, load_pretrained,
)
from echobook.models.uniformer import create_model as create_uniformer

BASELINES = {"r2plus1d_18": r2plus1d_18_ef}


def create_model(name: str, **kwargs):
    """Any model of the package by name: a UniFormer variant (``uniformer_s``, ``uniformer_xxs``, ...)
    or a baseline (``r2plus1d_18``)."""
    if name in BASELINES:
        return BASELINES[name](**kwargs)
    if name in UNIFORMER_CONFIGS:
        return create_uniformer(name, **kwargs)
    raise KeyError(f"unknown model {name!r}; choose one of {sorted(UNIFORMER_CONFIGS) + sorted(BASELINES)}")


__all__ = [
    "BASELINES", "ECHONET_MEAN_EF_PERCENT", "UNIFORMER_CONFIGS", "CheckpointMismatchError", "CoReEchoRegressor",
    "EncoderWithHead", "R2Plus1DRegressor", "UniFormer", "UniFormerConfig", "count_multiply_adds",
    "count_parameters", "create_model", "create_uniformer", "load_pretrained", "r2plus1d_18_ef",
]
