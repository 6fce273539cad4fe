"""CoReEcho (Maani et al., MICCAI 2024): its constants, model, stage-1 objective, learners and recipe per size.

- :func:`coreecho_model`: a video encoder (UniFormer-S in the paper) and CoReEcho's MLP head;
  :class:`CoReEchoModel` holds the stop-gradient between them.
- :class:`Stage1Loss`: Rank-N-Contrast on the encoder's embeddings plus L1 of the head fed DETACHED
  embeddings, the one stage-1 objective of the package.
- :func:`coreecho_stage1_learner`: two clips per video, AdamW 1e-4, weight decay 1e-4, the rate times 0.1
  from 60 % of the epochs on (CoReEcho: epoch 15 of 25).
- :func:`coreecho_stage2_learner`: "MLP probing": the encoder frozen and kept in eval mode (its BatchNorm
  statistics frozen too), the head trained with L1 on one clip per video.
- :func:`l1_learner`: the whole model trained end to end with L1, the paper's ablation baseline.
- :class:`CoReEchoRecipe` and :func:`recipe`: what to train at each size. ``full`` is the paper's recipe;
  a tiny encoder trained from scratch on a CPU needs a tenfold rate after a warm-up and no dropout
  (chapter 5, section 5.1, gives the measurements).

Batches: ``[B, 1, F, H, W]`` clips (one per video) or ``[B, 2, 1, F, H, W]`` (two per video, stage 1)
with EF targets ``[B]`` in percent, as :mod:`echobook.data.clips` gives them. Evaluation (3-clip test-time
averaging) is :func:`echobook.training.evaluate`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fastai.learner import Learner
from torch import nn

from echobook.config import Settings, resolve_size
from echobook.losses import L1EFLoss, RnCLoss
from echobook.metrics import flatten_clips, repeat_per_clip
from echobook.models import HEAD_BIAS_INIT_EF_PERCENT, CoReEchoRegressor, EncoderWithHead, create_model, model_kind
from echobook.models.outputs import OutputTuple
from echobook.training import (
    FrozenEncoderEval, freeze_encoder, lr_scheduler, make_learner, training_mean_ef_percent,
)

# The paper's optimiser and schedule (the CoReEcho README's command and train_first_stage.py's defaults).
COREECHO_LR = 1e-4
COREECHO_WEIGHT_DECAY = 1e-4
COREECHO_LR_DROP_FACTOR = 0.1
COREECHO_LR_DROP_AT = 15 / 25  # the drop happens at epoch 15 of 25: 60% of the way through
COREECHO_TEMPERATURE = 1.0  # RnC temperature of the README command (the RnC reference uses 2)
COREECHO_ENCODER_DROP_RATE = 0.1  # UniFormer dropout in CoReEcho's backbone
COREECHO_HEAD_DROPOUT = 0.4  # both dropouts of CoReEcho's MLP head
COREECHO_EPOCHS = 25  # stage 1
COREECHO_PROBE_EPOCHS = 5  # stage 2
COREECHO_UMAP_NEIGHBORS = 5  # the paper's UMAP figure


# --------------------------------------------------------------------------------------------- recipe per size

@dataclass(frozen=True)
class CoReEchoRecipe:
    """What CoReEcho trains at one size: the encoder, the epochs, the rates and the dropouts."""

    encoder: str  # a registered encoder (echobook.models.list_models(kind="encoder"))
    epochs: int  # stage 1 (and the L1 baseline)
    probe_epochs: int  # stage 2: the head alone on the frozen encoder
    learning_rate: float  # the whole model: stage 1 and the L1 baseline
    lr_schedule: str  # "step" (CoReEcho: x0.1 from 60 % of the epochs) or "one_cycle" (warm-up, cosine)
    probe_learning_rate: float  # the head alone: stage 2, constant
    encoder_drop_rate: float  # UniFormer dropout
    head_dropout: float  # both dropouts of the MLP head
    umap_neighbors: int = COREECHO_UMAP_NEIGHBORS  # UMAP n_neighbors of the embedding figure
    # the set decoded once into GPU memory, clips sampled and augmented there (echobook.data.resident); on CUDA only
    resident_data: bool = False

    @property
    def model_kwargs(self) -> dict[str, float]:
        """The dropouts, as :func:`coreecho_model` takes them."""
        return {"drop_rate": self.encoder_drop_rate, "head_dropout": self.head_dropout}

    @property
    def learner_kwargs(self) -> dict[str, object]:
        """Rate, schedule and dropouts, as :func:`l1_learner` and :func:`coreecho_stage1_learner` take them."""
        return {"lr": self.learning_rate, "schedule": self.lr_schedule, **self.model_kwargs}


# A tiny encoder trained from scratch for a few hundred CPU steps learns EF only with a 10x rate after a
# warm-up, no dropout and a 100x rate for the head-only second stage (chapter 5, section 5.1).
_CPU = dict(encoder="uniformer_xxs", learning_rate=1e-3, lr_schedule="one_cycle", probe_learning_rate=1e-2,
            encoder_drop_rate=0.0, head_dropout=0.0)
RECIPES: dict[str, CoReEchoRecipe] = {
    "smoke": CoReEchoRecipe(epochs=16, probe_epochs=6, **_CPU),
    "small": CoReEchoRecipe(epochs=12, probe_epochs=4, **_CPU),
    "full": CoReEchoRecipe(encoder="uniformer_s", epochs=COREECHO_EPOCHS, probe_epochs=COREECHO_PROBE_EPOCHS,
                           learning_rate=COREECHO_LR, lr_schedule="step", probe_learning_rate=COREECHO_LR,
                           encoder_drop_rate=COREECHO_ENCODER_DROP_RATE, head_dropout=COREECHO_HEAD_DROPOUT,
                           resident_data=True),
}


def recipe(size: str | Settings = "auto") -> CoReEchoRecipe:
    """CoReEcho's recipe for a size name, ``"auto"``, or a chapter's :class:`~echobook.config.Settings`."""
    return RECIPES[size.size if isinstance(size, Settings) else resolve_size(size)]


# --------------------------------------------------------------------------------------------- model

class Stage1Output(OutputTuple):
    """A stage-1 forward's ``(embeddings [k*B, D], ef_percent [k*B])``, clips in video-major order
    (an :class:`~echobook.models.outputs.OutputTuple`, so fastai's tuple rebuilds keep it)."""

    fields = ("embeddings", "ef_percent")


class CoReEchoModel(EncoderWithHead):
    """Encoder + regression head with CoReEcho's stop-gradient.

    - two-clip input ``[B, k, 1, F, H, W]`` (stage 1): :meth:`stage1` of the ``k*B`` clips;
    - one-clip input ``[B, 1, F, H, W]``: the EF ``[B]`` (stage 2, evaluation, deployment).
    """

    def stage1(self, inputs: torch.Tensor) -> Stage1Output:
        """The embeddings of ``inputs`` and the head's EF read from them DETACHED, so no loss on the head's
        output can reach the encoder."""
        embeddings = self.encoder(inputs)
        return Stage1Output(embeddings, self.head(embeddings.detach()))

    def forward(self, clips: torch.Tensor):
        if clips.ndim == 6:
            return self.stage1(flatten_clips(clips))
        return self.head(self.encoder(clips))


def _embed_dim(encoder: nn.Module) -> int:
    dim = getattr(encoder, "embed_dim", None)
    if dim is None:
        raise ValueError("the encoder needs an `embed_dim` attribute (the width of its [B, D] embeddings)")
    return int(dim)


def coreecho_model(encoder: str | nn.Module = "uniformer_s", *, mean_ef_percent: float = HEAD_BIAS_INIT_EF_PERCENT,
                   head_dropout: float = COREECHO_HEAD_DROPOUT, **model_kwargs) -> CoReEchoModel:
    """A registered encoder (by name, CoReEcho's dropout 0.1 unless given) or any encoder with ``embed_dim``,
    followed by CoReEcho's MLP head (dropout 0.4 unless given)."""
    if isinstance(encoder, str):
        if model_kind(encoder) != "encoder":
            raise ValueError(f"{encoder!r} is a {model_kind(encoder)}, not an encoder; CoReEcho puts its head on "
                             "an encoder's embeddings")
        encoder = create_model(encoder, **{"drop_rate": COREECHO_ENCODER_DROP_RATE, **model_kwargs})
    head = CoReEchoRegressor(_embed_dim(encoder), dropout=head_dropout, mean_ef_percent=mean_ef_percent)
    return CoReEchoModel(encoder, head)


# --------------------------------------------------------------------------------------------- objective

class Stage1Loss(nn.Module):
    """CoReEcho stage 1: ``RnC(embeddings) + l1_weight * L1(head(embeddings.detach()))``.

    The detach happens in :meth:`CoReEchoModel.stage1`, so the sum trains the encoder by RnC alone and the
    head by L1 alone in one backward pass (the paper's two optimisers, which share lr and weight
    decay, are one AdamW over both: AdamW's update of a parameter depends only on its own gradient).

    ``ef_percent``: one label per video (``[B]``, repeated for its ``k`` clips) or one per clip (``[k*B]``).
    Under torchrun the RnC term ranks this rank's embeddings against the global batch
    (:func:`echobook.distributed.global_rnc_loss`: the ranks' mean is the one-process loss).
    """

    def __init__(self, temperature: float = COREECHO_TEMPERATURE, l1_weight: float = 1.0):
        super().__init__()
        self.rnc, self.l1_weight = RnCLoss(temperature), float(l1_weight)

    def parts(self, pred: Stage1Output, ef_percent: torch.Tensor) -> dict[str, torch.Tensor]:
        """``total``, ``rnc`` (the encoder's only gradient) and ``l1`` (the head's only gradient)."""
        labels = repeat_per_clip(ef_percent.float(), pred.embeddings.shape[0] // ef_percent.numel())
        # A batch of one clip (a loader's last partial batch, in one-clip validation) has no pair to rank:
        # its RnC term is 0 rather than an error (training loaders drop partial batches, so only validation meets it).
        rnc = self._rnc(pred.embeddings, labels) if labels.numel() > 1 else pred.embeddings.sum() * 0.0
        l1 = F.l1_loss(pred.ef_percent.float().reshape(-1), labels)
        return {"total": rnc + self.l1_weight * l1, "rnc": rnc, "l1": l1}

    def _rnc(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # under torchrun
            from echobook.distributed import global_rnc_loss

            return global_rnc_loss(embeddings, labels, self.rnc.temperature)
        return self.rnc(embeddings, labels)

    def forward(self, pred: Stage1Output, ef_percent: torch.Tensor) -> torch.Tensor:
        return self.parts(pred, ef_percent)["total"]


# --------------------------------------------------------------------------------------------- learners

def _schedule(lr: float, schedule: str, lr_drop_at: float | None):
    return lr_scheduler(lr, schedule, lr_drop_at, COREECHO_LR_DROP_FACTOR)


def l1_learner(dls, model: str | nn.Module = "uniformer_s", *, lr: float = COREECHO_LR,
               weight_decay: float = COREECHO_WEIGHT_DECAY, schedule: str = "step",
               lr_drop_at: float | None = COREECHO_LR_DROP_AT,
               metrics=None, cbs=None, bf16: bool | None = None, path=None, **model_kwargs) -> Learner:
    """The whole model trained with L1 on one clip per video: the paper's ablation baseline.

    ``model``: a registered encoder (gets CoReEcho's head), a registered EF regressor (``"r2plus1d_18"``,
    EchoNet's model), or a module giving ``[B]`` EF. The head's bias starts at the training set's mean EF.
    ``model_kwargs`` go to :func:`coreecho_model` (a recipe's ``model_kwargs``: the dropouts) or to
    ``create_model``. ``schedule``: see :func:`echobook.training.lr_scheduler`.
    """
    mean_ef_percent = training_mean_ef_percent(dls)
    if isinstance(model, str):
        if model_kind(model) == "encoder":
            model = coreecho_model(model, mean_ef_percent=mean_ef_percent, **model_kwargs)
        else:
            model = create_model(model, mean_ef_percent=mean_ef_percent, **model_kwargs)
    return make_learner(dls, model, L1EFLoss(), lr=lr, weight_decay=weight_decay, metrics=metrics,
                        cbs=[*_schedule(lr, schedule, lr_drop_at), *(cbs or [])], bf16=bf16, path=path)


def coreecho_stage1_learner(dls_two_clips, encoder: str | nn.Module = "uniformer_s", *,
                            model: CoReEchoModel | None = None,
                            lr: float = COREECHO_LR, weight_decay: float = COREECHO_WEIGHT_DECAY,
                            schedule: str = "step", lr_drop_at: float | None = COREECHO_LR_DROP_AT,
                            temperature: float = COREECHO_TEMPERATURE,
                            metrics=None, cbs=None, bf16: bool | None = None, path=None,
                            **model_kwargs) -> Learner:
    """CoReEcho stage 1 on a two-clip loader (``[B, 2, 1, F, H, W]``): RnC on the encoder's embeddings,
    L1 on the head through a stop-gradient (:class:`CoReEchoModel`, :class:`Stage1Loss`).

    Validation metrics average each video's two clips. Train with ``learn.fit(epochs)`` (the
    ``schedule``, CoReEcho's step decay by default, is a ParamScheduler already in the learner) or
    :func:`echobook.training.fit_resumable`.
    """
    if model is None:
        model = coreecho_model(encoder, mean_ef_percent=training_mean_ef_percent(dls_two_clips), **model_kwargs)
    return make_learner(dls_two_clips, model, Stage1Loss(temperature), lr=lr, weight_decay=weight_decay,
                        metrics=metrics, cbs=[*_schedule(lr, schedule, lr_drop_at), *(cbs or [])], bf16=bf16,
                        path=path)


def coreecho_stage2_learner(stage1_model: nn.Module, dls_single_clip, *, lr: float = COREECHO_LR,
                            weight_decay: float = COREECHO_WEIGHT_DECAY, metrics=None, cbs=None,
                            bf16: bool | None = None, path=None) -> Learner:
    """CoReEcho stage 2 ("MLP probing"): the stage-1 model (changed in place) with its encoder frozen
    and in eval mode, the head trained with L1 on one clip per video, constant lr 1e-4 (paper: 5 epochs).

    The optimiser holds only the head's parameters (fastai's default splitter keeps trainable ones).
    """
    model = freeze_encoder(stage1_model)
    return make_learner(dls_single_clip, model, L1EFLoss(), lr=lr, weight_decay=weight_decay, metrics=metrics,
                        cbs=[FrozenEncoderEval(), *(cbs or [])], bf16=bf16, path=path)
