"""Models: one family per file, every variant behind one registry (:mod:`echobook.models.registry`).

- :mod:`~echobook.models.uniformer`: the UniFormer video encoders (``uniformer_s``, ``uniformer_b``,
  ``uniformer_xs``, ``uniformer_xxs``);
- :mod:`~echobook.models.r2plus1d`: EchoNet-Dynamic's R(2+1)D-18 EF regressor (``r2plus1d_18``);
- :mod:`~echobook.models.heads`: heads that read EF from embeddings (CoReEcho's MLP);
- :mod:`~echobook.models.cost`: parameters and multiply-adds of any model.

``create_model(name, **kwargs)`` builds any of them; ``list_models()`` names them.
"""
from echobook.models import r2plus1d, uniformer  # noqa: F401  (importing a family registers its variants)
from echobook.models import e3net  # noqa: F401  (Echo-E3Net's variants: e3net_s, e3net_xs)
from echobook.models import videomae  # noqa: F401  (EchoFM's ViT video masked autoencoder: videomae_*)
from echobook.models import unetr  # noqa: F401  (UNETR segmentation decoders over it: unetr_*)
from echobook.models.heads import HEAD_BIAS_INIT_EF_PERCENT, CoReEchoRegressor, EncoderWithHead
from echobook.models.r2plus1d import R2Plus1DRegressor
from echobook.models.registry import (
    MODEL_KINDS, create_model, is_model, list_models, model_config, model_kind, register_model,
)
from echobook.models.cost import count_multiply_adds, count_parameters
from echobook.models.uniformer import CheckpointMismatchError, UniFormer, UniFormerConfig, load_pretrained

__all__ = [
    "HEAD_BIAS_INIT_EF_PERCENT", "MODEL_KINDS", "CheckpointMismatchError", "CoReEchoRegressor", "EncoderWithHead",
    "R2Plus1DRegressor", "UniFormer", "UniFormerConfig", "count_multiply_adds", "count_parameters", "create_model",
    "is_model", "list_models", "load_pretrained", "model_config", "model_kind", "register_model",
]
