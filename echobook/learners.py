"""fastai Learners for EF regression: the L1 baseline and CoReEcho's two stages, with their callbacks.

- :func:`l1_learner`: a whole model (a UniFormer encoder + CoReEcho head, the R(2+1)D baseline, or
  any module giving ``[B]`` EF) trained end to end with L1: the CoReEcho paper's ablation baseline.
- :func:`coreecho_stage1_learner`: two clips per video; RnC on the encoder's embeddings and L1 on
  the head fed DETACHED embeddings (stop-gradient), AdamW lr 1e-4, weight decay 1e-4, the learning
  rate times 0.1 from 60% of the epochs on (CoReEcho: epoch 15 of 25).
- :func:`coreecho_stage2_learner`: "MLP probing": the encoder frozen and kept in eval mode (its
  BatchNorm statistics frozen too), the head trained with L1 on one clip per video.
- :func:`evaluate`: test-time clip averaging (CoReEcho: 3 fixed clips per video).
- :class:`CheckpointCallback` and :func:`fit_resumable`: the best model by validation MAE and the
  last state (model, optimiser, epoch) each epoch, both written atomically; a fit that an
  interruption does not lose.

Rates, schedule and dropouts default to CoReEcho's. A size preset's ``learner_kwargs`` (see
:mod:`echobook.config`) swap in the recipe a tiny encoder trained from scratch on a CPU needs: a tenfold
rate after a warm-up (:func:`lr_scheduler`'s ``"one_cycle"``) and no dropout.

Batches: ``[B, 1, F, H, W]`` clips (one per video) or ``[B, 2, 1, F, H, W]`` (two per video, stage 1)
with EF targets ``[B]`` in percent, as :mod:`echobook.data.clips` gives them.
On a CUDA device the learners train under bfloat16 autocast (fastai's ``to_bf16``); on a CPU in float32.
"""
from __future__ import annotations

import os
import tempfile
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import TrackerCallback
from fastai.learner import Learner
from fastai.optimizer import OptimWrapper
from torch import nn

from echobook.losses import RnCLoss
from echobook.metrics import average_clips, ef_metrics, ef_prediction, regression_metrics
from echobook.models import ECHONET_MEAN_EF_PERCENT, CoReEchoRegressor, EncoderWithHead, create_model
from echobook.models.uniformer import UNIFORMER_CONFIGS

# CoReEcho's optimiser and schedule (README command and train_first_stage.py defaults).
COREECHO_LR = 1e-4
COREECHO_WEIGHT_DECAY = 1e-4
COREECHO_LR_DROP_FACTOR = 0.1
COREECHO_LR_DROP_AT = 15 / 25  # the drop happens at epoch 15 of 25: 60% of the way through
COREECHO_TEMPERATURE = 1.0  # RnC temperature of the README command (the RnC reference uses 2)
COREECHO_ENCODER_DROP_RATE = 0.1  # UniFormer dropout in CoReEcho's backbone
COREECHO_HEAD_DROPOUT = 0.4  # both dropouts of CoReEcho's MLP head

BEST_FILE = "best.pth"
LAST_FILE = "last.pth"


# --------------------------------------------------------------------------------------------- model

class Stage1Output(tuple):
    """A stage-1 forward's ``(embeddings [k*B, D], ef_percent [k*B])``, clips in video-major order.

    A plain tuple subclass rather than a ``NamedTuple``: fastai rebuilds tuples with
    ``type(x)([items])`` (``to_detach``, ``to_cpu``, ``get_preds``), which a NamedTuple cannot take.
    """

    def __new__(cls, *items):
        items = tuple(items[0]) if len(items) == 1 else items
        if len(items) != 2:
            raise ValueError("Stage1Output holds (embeddings, ef_percent)")
        return super().__new__(cls, items)

    embeddings = property(itemgetter(0))
    ef_percent = property(itemgetter(1))


def flatten_clips(clips: torch.Tensor) -> torch.Tensor:
    """``[B, k, C, F, H, W]`` -> ``[k*B, C, F, H, W]``, the ``k`` clips of a video next to each other."""
    return clips.reshape(-1, *clips.shape[2:])


def repeat_per_clip(ef_percent: torch.Tensor, clips_per_video: int) -> torch.Tensor:
    """``[B]`` labels -> ``[k*B]`` in the order of :func:`flatten_clips`."""
    return ef_percent.reshape(-1).repeat_interleave(clips_per_video)


class CoReEchoModel(EncoderWithHead):
    """Encoder + regression head with CoReEcho's stop-gradient.

    - two-clip input ``[B, k, 1, F, H, W]`` (stage 1): a :class:`Stage1Output` of the ``k*B``
      embeddings and the head's EF read from DETACHED embeddings, so no loss on the head's output
      can reach the encoder;
    - one-clip input ``[B, 1, F, H, W]``: the EF ``[B]`` (stage 2, evaluation, deployment).
    """

    def forward(self, clips: torch.Tensor):
        if clips.ndim == 6:
            embeddings = self.encoder(flatten_clips(clips))
            return Stage1Output(embeddings, self.head(embeddings.detach()))
        return self.head(self.encoder(clips))


def _embed_dim(encoder: nn.Module) -> int:
    dim = getattr(encoder, "embed_dim", None)
    if dim is None:
        raise ValueError("the encoder needs an `embed_dim` attribute (the width of its [B, D] embeddings)")
    return int(dim)


def coreecho_model(encoder: str | nn.Module = "uniformer_s", *, mean_ef_percent: float = ECHONET_MEAN_EF_PERCENT,
                   head_dropout: float = COREECHO_HEAD_DROPOUT, **model_kwargs) -> CoReEchoModel:
    """A UniFormer (by name, CoReEcho's dropout 0.1 unless given) or any encoder with ``embed_dim``,
    followed by CoReEcho's MLP head (dropout 0.4 unless given)."""
    if isinstance(encoder, str):
        encoder = create_model(encoder, **{"drop_rate": COREECHO_ENCODER_DROP_RATE, **model_kwargs})
    head = CoReEchoRegressor(_embed_dim(encoder), dropout=head_dropout, mean_ef_percent=mean_ef_percent)
    return CoReEchoModel(encoder, head)


def training_mean_ef_percent(dls) -> float:
    """The training set's mean EF (the head's starting bias), or EchoNet's when the loader does not say."""
    ef_percent = getattr(getattr(dls.train, "dataset", None), "ef_percent", None)
    return float(np.mean(ef_percent)) if ef_percent is not None and len(ef_percent) else ECHONET_MEAN_EF_PERCENT


# --------------------------------------------------------------------------------------------- losses

class L1EFLoss(nn.Module):
    """L1 between EF predictions (a tensor or the EF of a stage-1 output) and ``[B]`` targets;
    two-clip predictions are compared clip by clip with the labels repeated."""

    def forward(self, pred, ef_percent: torch.Tensor) -> torch.Tensor:
        ef_percent_pred = ef_prediction(pred).float().reshape(-1)
        clips_per_video = ef_percent_pred.numel() // ef_percent.numel()
        return F.l1_loss(ef_percent_pred, repeat_per_clip(ef_percent.float(), clips_per_video))


class Stage1Loss(nn.Module):
    """CoReEcho stage 1: ``RnC(embeddings) + l1_weight * L1(head(embeddings.detach()))``.

    The detach happens in :class:`CoReEchoModel`, so the sum trains the encoder by RnC alone and the
    head by L1 alone in one backward pass (the paper's two optimisers, which share lr and weight
    decay, are one AdamW over both: AdamW's update of a parameter depends only on its own gradient).
    """

    def __init__(self, temperature: float = COREECHO_TEMPERATURE, l1_weight: float = 1.0):
        super().__init__()
        self.rnc, self.l1_weight = RnCLoss(temperature), float(l1_weight)

    def parts(self, pred: Stage1Output, ef_percent: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = repeat_per_clip(ef_percent.float(), pred.embeddings.shape[0] // ef_percent.numel())
        # A batch of one clip (a loader's last partial batch, in one-clip validation) has no pair to rank:
        # its RnC term is 0 rather than an error (training loaders drop partial batches, so only validation meets it).
        rnc = self.rnc(pred.embeddings, labels) if labels.numel() > 1 else pred.embeddings.sum() * 0.0
        l1 = F.l1_loss(pred.ef_percent.float().reshape(-1), labels)
        return {"total": rnc + self.l1_weight * l1, "rnc": rnc, "l1": l1}

    def forward(self, pred: Stage1Output, ef_percent: torch.Tensor) -> torch.Tensor:
        return self.parts(pred, ef_percent)["total"]


# --------------------------------------------------------------------------------------------- callbacks

def step_schedule(lr: float, drop_at: float = COREECHO_LR_DROP_AT, factor: float = COREECHO_LR_DROP_FACTOR):
    """A ParamScheduler schedule: ``lr`` until the fraction ``drop_at`` of training, ``lr * factor`` after.

    fastai sets the position to exactly ``epoch / n_epoch`` at each epoch's start, so with
    ``drop_at = 15 / 25`` the drop falls on the first batch of epoch 15 (0-based), as in CoReEcho.
    """
    def schedule(pos: float) -> float:
        return lr * factor if pos >= drop_at - 1e-9 else lr
    return schedule


LR_SCHEDULES = ("step", "one_cycle", "constant")


def lr_scheduler(lr: float, schedule: str = "step", drop_at: float | None = COREECHO_LR_DROP_AT) -> list[Callback]:
    """The learning-rate schedule as callbacks, so that a plain ``learn.fit(epochs)`` follows it.

    - ``"step"``: CoReEcho's: ``lr``, times 0.1 from the fraction ``drop_at`` of training on;
    - ``"one_cycle"``: fastai's one-cycle shape (a quarter of warm-up from ``lr / 25``, then cosine
      annealing to ``lr / 1e5``). The warm-up matters for a network trained from scratch at a large
      rate: its first steps, taken with random features, otherwise push the L1 output to a constant;
    - ``"constant"`` (or ``drop_at=None`` with ``"step"``): no schedule.
    """
    from fastai.callback.schedule import combined_cos

    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule={schedule!r}: choose one of {LR_SCHEDULES}")
    if schedule == "constant" or (schedule == "step" and drop_at is None):
        return []
    shape = step_schedule(lr, drop_at) if schedule == "step" else combined_cos(0.25, lr / 25, lr, lr / 1e5)
    return [ParamScheduler({"lr": shape})]


class FrozenEncoderEval(Callback):
    """Keeps ``model.encoder`` in eval mode while training (after TrainEvalCallback's ``model.train()``),
    so dropout is off and its BatchNorm layers neither use batch statistics nor update running ones."""

    order = 0  # after TrainEvalCallback (-10)

    def before_train(self):
        self.learn.model.encoder.eval()


class CheckpointCallback(TrackerCallback):
    """Each epoch: ``last.pth`` (model, optimiser, epoch, best value) and, when ``monitor`` improved,
    ``best.pth`` (model, epoch, value), both written atomically (:func:`atomic_save`) in ``folder``.

    ``monitor`` is a metric name (default the validation MAE; ``comp`` np.less means lower is better).
    """

    def __init__(self, folder: str | os.PathLike, monitor: str = "mae", comp=np.less):
        super().__init__(monitor=monitor, comp=comp, reset_on_fit=False)
        self.folder = Path(folder)

    def before_epoch(self):
        self.epoch_ran = False

    def after_validate(self):
        self.epoch_ran = True

    def after_epoch(self):
        if not self.epoch_ran:  # an epoch skipped by a resumed fit (SkipToEpoch) has no values
            return
        super().after_epoch()
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.new_best:
            atomic_save({"model": self.learn.model.state_dict(), "epoch": self.epoch, "value": float(self.best),
                         "monitor": self.monitor}, self.folder / BEST_FILE)
        atomic_save({"model": self.learn.model.state_dict(), "opt": self.learn.opt.state_dict(),
                     "epoch": self.epoch, "best": float(self.best), "monitor": self.monitor},
                    self.folder / LAST_FILE)


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: a reader sees the
    old file or the new one, never half of one, even if the process dies mid-write."""
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict:
    """Load a checkpoint's model weights into ``model``; returns the checkpoint (epoch, value, ...)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["model"])
    return checkpoint


def fit_resumable(learn: Learner, n_epoch: int, folder: str | os.PathLike, lr: float | None = None,
                  monitor: str = "mae", cbs=None, load_best: bool = False) -> Learner:
    """``learn.fit(n_epoch)`` with checkpoints in ``folder``, continuing from ``last.pth`` if one is there.

    A resumed fit restores the model, the optimiser state and the best value so far, and skips the
    finished epochs (fastai's ``start_epoch``), so schedules see the same positions as an
    uninterrupted run. A finished fit called again trains no more. ``load_best`` leaves the best
    checkpoint's weights in the model at the end (CoReEcho evaluates that one).
    """
    checkpoint_cb = CheckpointCallback(folder, monitor=monitor)
    last = Path(folder) / LAST_FILE
    start_epoch = 0
    if last.is_file():
        # the model must sit on its training device before the optimiser is built and its state loaded:
        # torch puts loaded optimiser state on the parameters' device of that moment
        learn.model.to(loader_device(learn.dls))
        checkpoint = load_checkpoint(learn.model, last)
        learn.create_opt()
        learn.opt.load_state_dict(checkpoint["opt"])
        checkpoint_cb.best = checkpoint["best"]
        start_epoch = int(checkpoint["epoch"]) + 1
    if start_epoch < n_epoch:
        # fit(reset_opt=False) keeps the optimiser just restored
        learn.fit(n_epoch, lr, cbs=[checkpoint_cb, *(cbs or [])], start_epoch=start_epoch)
    if load_best and (Path(folder) / BEST_FILE).is_file():
        load_checkpoint(learn.model, Path(folder) / BEST_FILE)
    return learn


class CancelAfterEpoch(Callback):
    """Stop a fit after epoch ``epoch`` (0-based) as an interruption would: for tests and demos of resuming."""

    order = 70  # after the checkpoint of that epoch is written

    def __init__(self, epoch: int):
        self.stop_epoch = epoch

    def after_epoch(self):
        if self.epoch == self.stop_epoch:
            raise CancelFitException


# --------------------------------------------------------------------------------------------- learners

def loader_device(dls) -> torch.device:
    """Where the batches go: the DataLoaders' device, or the CPU when it has none (fastai then
    moves neither batches nor model: pass ``device=`` to the loaders to train on a GPU)."""
    device = getattr(dls, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def adamw(weight_decay: float = COREECHO_WEIGHT_DECAY) -> Callable:
    """fastai ``opt_func`` of torch's AdamW (decoupled weight decay on every parameter, eps 1e-8),
    CoReEcho's optimiser, rather than fastai's Adam (eps 1e-5, no decay on norms and biases)."""
    return partial(OptimWrapper, opt=torch.optim.AdamW, weight_decay=weight_decay)


def _learner(dls, model: nn.Module, loss_func, *, lr: float, weight_decay: float, metrics, cbs,
             bf16: bool | None, path) -> Learner:
    learn = Learner(dls, model, loss_func=loss_func, opt_func=adamw(weight_decay), lr=lr, wd=weight_decay,
                    metrics=metrics if metrics is not None else ef_metrics(), cbs=cbs, path=path or ".")
    if bf16 is None:
        bf16 = loader_device(dls).type == "cuda"
    if bf16:
        learn.to_bf16()  # fastai's autocast callback; bfloat16 needs no loss scaling
    return learn


def l1_learner(dls, model: str | nn.Module = "uniformer_s", *, lr: float = COREECHO_LR,
               weight_decay: float = COREECHO_WEIGHT_DECAY, schedule: str = "step",
               lr_drop_at: float | None = COREECHO_LR_DROP_AT,
               metrics=None, cbs=None, bf16: bool | None = None, path=None, **model_kwargs) -> Learner:
    """The whole model trained with L1 on one clip per video: the paper's ablation baseline.

    ``model``: a UniFormer name (gets CoReEcho's head), ``"r2plus1d_18"`` (EchoNet's model), or a
    module giving ``[B]`` EF. The head's bias starts at the training set's mean EF.
    ``model_kwargs`` go to :func:`coreecho_model` (a preset's ``model_kwargs``: the dropouts) or to
    ``create_model``. ``schedule``: see :func:`lr_scheduler` (``"constant"`` to call ``fit_one_cycle``).
    """
    mean_ef_percent = training_mean_ef_percent(dls)
    if isinstance(model, str):
        if model in UNIFORMER_CONFIGS:
            model = coreecho_model(model, mean_ef_percent=mean_ef_percent, **model_kwargs)
        else:
            model = create_model(model, mean_ef_percent=mean_ef_percent, **model_kwargs)
    return _learner(dls, model, L1EFLoss(), lr=lr, weight_decay=weight_decay, metrics=metrics,
                    cbs=[*lr_scheduler(lr, schedule, lr_drop_at), *(cbs or [])], bf16=bf16, path=path)


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
    :func:`fit_resumable`.
    """
    if model is None:
        model = coreecho_model(encoder, mean_ef_percent=training_mean_ef_percent(dls_two_clips), **model_kwargs)
    return _learner(dls_two_clips, model, Stage1Loss(temperature), lr=lr, weight_decay=weight_decay,
                    metrics=metrics, cbs=[*lr_scheduler(lr, schedule, lr_drop_at), *(cbs or [])], bf16=bf16,
                    path=path)


def freeze_encoder(model: nn.Module) -> nn.Module:
    """No gradient for ``model.encoder`` and eval mode (see :class:`FrozenEncoderEval` for training)."""
    model.encoder.requires_grad_(False)
    model.encoder.eval()
    return model


def coreecho_stage2_learner(stage1_model: nn.Module, dls_single_clip, *, lr: float = COREECHO_LR,
                            weight_decay: float = COREECHO_WEIGHT_DECAY, metrics=None, cbs=None,
                            bf16: bool | None = None, path=None) -> Learner:
    """CoReEcho stage 2 ("MLP probing"): the stage-1 model (changed in place) with its encoder frozen
    and in eval mode, the head trained with L1 on one clip per video, constant lr 1e-4 (paper: 5 epochs).

    The optimiser holds only the head's parameters (fastai's default splitter keeps trainable ones).
    """
    model = freeze_encoder(stage1_model)
    return _learner(dls_single_clip, model, L1EFLoss(), lr=lr, weight_decay=weight_decay, metrics=metrics,
                    cbs=[FrozenEncoderEval(), *(cbs or [])], bf16=bf16, path=path)


# --------------------------------------------------------------------------------------------- evaluation

def predict_ef_percent(model: nn.Module, loader, *, bf16: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item EF predictions and targets (CPU float32) over a loader, in order; a two-clip item's
    clips are averaged."""
    device = next(model.parameters()).device
    batches = iter(loader)
    preds, targets = [], []
    was_training = model.training
    model.eval()
    try:
        for clips, ef_percent in batches:
            clips, ef_percent = clips.to(device), ef_percent.to(device)
            use_bf16 = device.type == "cuda" if bf16 is None else bf16
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                pred = ef_prediction(model(clips)).float()
            preds.append(average_clips(pred, ef_percent.numel()).cpu())
            targets.append(ef_percent.float().reshape(-1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(targets)


class Evaluation(dict):
    """``evaluate``'s result: metrics by name (``mae``, ``rmse``, ``r2``, ``pearson_r2``) plus
    ``ef_percent_pred`` and ``ef_percent_true`` (numpy, one value per video) and ``videos``."""

    @property
    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.items() if isinstance(v, float)}


def evaluate(model_or_learner, loader, video_index: np.ndarray | None = None, *,
             bf16: bool | None = None) -> Evaluation:
    """Test-time clip averaging: predict every fixed clip, average the clips of each video
    (``video_index``, default ``loader.dataset.video_index``), then score per video."""
    model = model_or_learner.model if isinstance(model_or_learner, Learner) else model_or_learner
    ef_percent_pred, ef_percent_true = predict_ef_percent(model, loader, bf16=bf16)
    if video_index is None:
        video_index = getattr(getattr(loader, "dataset", None), "video_index", None)
    if video_index is not None:
        from echobook.data.clips import average_per_video

        video_index = np.asarray(video_index, dtype=np.int64)
        if len(video_index) != len(ef_percent_pred):
            raise ValueError(f"video_index has {len(video_index)} items, the loader gave {len(ef_percent_pred)}")
        ef_percent_pred = average_per_video(ef_percent_pred, video_index)
        ef_percent_true = average_per_video(ef_percent_true, video_index)
    pred, true = ef_percent_pred.numpy().astype(np.float64), ef_percent_true.numpy().astype(np.float64)
    return Evaluation(**regression_metrics(pred, true), ef_percent_pred=pred, ef_percent_true=true,
                      videos=len(pred))
