"""What every method's training shares: the optimiser, learning-rate schedules, checkpoints and resuming,
a learner factory, and evaluation with test-time clip averaging.

A method module (:mod:`echobook.methods.coreecho`, ...) builds its model and loss and calls
:func:`make_learner`; the rates, schedules and epochs it passes come from its recipe per size.

- :func:`adamw`: torch's AdamW as a fastai ``opt_func`` (decoupled weight decay on every parameter).
- :func:`adamw_decay_matrices_only`: AdamW without weight decay on biases and norms (MAE, EchoFM), and
  :func:`warmup_cosine_scheduler`: linear warm-up then a half-cycle cosine, per step.
- :func:`lr_scheduler`: a schedule as callbacks (``"step"``, ``"one_cycle"``, ``"constant"``), so that a
  plain ``learn.fit(epochs)`` follows it.
- :class:`FrozenEncoderEval` and :func:`freeze_encoder`: probing a frozen encoder (its BatchNorm
  statistics frozen too).
- :class:`CheckpointCallback` and :func:`fit_resumable`: the best model by a validation metric and the
  last state (model, optimiser, epoch) each epoch, both written atomically; a fit that an interruption
  does not lose. Checkpoints are read with ``weights_only=True`` (a crafted file cannot run code) and
  checked against the model and optimiser before anything is replaced (:class:`CheckpointError`).
- :func:`evaluate`: per-video metrics after averaging each video's fixed test-time clips.

On a CUDA device learners train under bfloat16 autocast (fastai's ``to_bf16``); on a CPU in float32.
"""
from __future__ import annotations

import os
import random
import tempfile
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import TrackerCallback
from fastai.learner import Learner
from fastai.optimizer import OptimWrapper
from torch import nn

from echobook.metrics import average_clips, ef_metrics, ef_prediction, regression_metrics
from echobook.models import HEAD_BIAS_INIT_EF_PERCENT

BEST_FILE = "best.pth"
LAST_FILE = "last.pth"
LR_SCHEDULES = ("step", "one_cycle", "constant")


# --------------------------------------------------------------------------------------------- optimiser, schedules

def adamw(weight_decay: float) -> Callable:
    """fastai ``opt_func`` of torch's AdamW (decoupled weight decay on every parameter, eps 1e-8),
    rather than fastai's Adam (eps 1e-5, no decay on norms and biases)."""
    return partial(OptimWrapper, opt=torch.optim.AdamW, weight_decay=weight_decay)


def madgrad(weight_decay: float = 0.0, momentum: float = 0.9) -> Callable:
    """fastai ``opt_func`` of MADGRAD (Defazio & Jelassi 2021, the ``madgrad`` package), the optimiser
    CoReEcho's appendix fine-tunes with on CAMUS and HMC-QU. It sets its own weight decay (an L2 term in the
    gradient, the package's default, not AdamW's decoupled one), so :func:`make_learner` leaves it alone."""
    from madgrad import MADGRAD

    return partial(OptimWrapper, opt=MADGRAD, weight_decay=weight_decay, momentum=momentum)


def step_schedule(lr: float, drop_at: float, factor: float = 0.1):
    """A ParamScheduler schedule: ``lr`` until the fraction ``drop_at`` of training, ``lr * factor`` after.

    fastai sets the position to exactly ``epoch / n_epoch`` at each epoch's start, so with
    ``drop_at = 15 / 25`` the drop falls on the first batch of epoch 15 (0-based), as in CoReEcho.
    """
    def schedule(pos: float) -> float:
        return lr * factor if pos >= drop_at - 1e-9 else lr
    return schedule


def adamw_decay_matrices_only(weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)) -> Callable:
    """fastai ``opt_func`` of torch's AdamW with weight decay on weight matrices, kernels, position tables and
    tokens (tensors of 2 or more dimensions) and none on biases and norm scales (1-D): MAE's and EchoFM's
    ``add_weight_decay``. Pass it to :func:`make_learner` as ``opt_func``."""
    def opt_func(params, lr, **_):
        params = [p for group in params for p in (group if isinstance(group, (list, tuple)) else [group])]
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
        return OptimWrapper([g for g in groups if g["params"]], opt=torch.optim.AdamW, lr=lr, betas=betas,
                            convert_groups=False)
    return opt_func


def warmup_cosine_schedule(lr: float, warmup_fraction: float, final_lr: float = 0.0):
    """A ParamScheduler schedule: linear from 0 to ``lr`` over the first ``warmup_fraction`` of training, then a
    half cosine from ``lr`` to ``final_lr`` (MAE's and EchoFM's ``lr_sched``, per step)."""
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction={warmup_fraction!r}: must be in [0, 1)")

    def schedule(pos: float) -> float:
        if pos < warmup_fraction:
            return float(lr * pos / warmup_fraction)
        progress = (pos - warmup_fraction) / (1.0 - warmup_fraction)
        return float(final_lr + (lr - final_lr) * 0.5 * (1.0 + np.cos(np.pi * min(progress, 1.0))))
    return schedule


def warmup_cosine_scheduler(lr: float, warmup_fraction: float, final_lr: float = 0.0) -> list[Callback]:
    """:func:`warmup_cosine_schedule` as a callback, so that a plain ``learn.fit(epochs)`` follows it."""
    return [ParamScheduler({"lr": warmup_cosine_schedule(lr, warmup_fraction, final_lr)})]


def lr_scheduler(lr: float, schedule: str = "constant", drop_at: float | None = None,
                 factor: float = 0.1) -> list[Callback]:
    """The learning-rate schedule as callbacks, so that a plain ``learn.fit(epochs)`` follows it.

    - ``"step"``: ``lr``, times ``factor`` from the fraction ``drop_at`` of training on (CoReEcho's);
    - ``"one_cycle"``: fastai's one-cycle shape (a quarter of warm-up from ``lr / 25``, then cosine
      annealing to ``lr / 1e5``). The warm-up matters for a network trained from scratch at a large
      rate: its first steps, taken with random features, otherwise push an L1 output to a constant;
    - ``"constant"`` (or ``"step"`` with ``drop_at=None``): no schedule.
    """
    from fastai.callback.schedule import combined_cos

    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule={schedule!r}: choose one of {LR_SCHEDULES}")
    if schedule == "constant" or (schedule == "step" and drop_at is None):
        return []
    shape = step_schedule(lr, drop_at, factor) if schedule == "step" else combined_cos(0.25, lr / 25, lr, lr / 1e5)
    return [ParamScheduler({"lr": shape})]


# --------------------------------------------------------------------------------------------- frozen encoders

class FrozenEncoderEval(Callback):
    """Keeps ``model.encoder`` in eval mode while training (after TrainEvalCallback's ``model.train()``),
    so dropout is off and its BatchNorm layers neither use batch statistics nor update running ones."""

    order = 0  # after TrainEvalCallback (-10)

    def before_train(self):
        from echobook.distributed import unwrap_model  # the model inside DDP under torchrun

        unwrap_model(self.learn.model).encoder.eval()


def freeze_encoder(model: nn.Module) -> nn.Module:
    """No gradient for ``model.encoder`` and eval mode (see :class:`FrozenEncoderEval` for training)."""
    model.encoder.requires_grad_(False)
    model.encoder.eval()
    return model


# --------------------------------------------------------------------------------------------- checkpoints

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
        from echobook.distributed import is_main_process, unwrap_model

        if not is_main_process():  # under torchrun every rank holds the same weights: rank 0 alone writes
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        model = unwrap_model(self.learn.model)  # no DDP "module." prefix: a checkpoint loads on any number of GPUs
        architecture = describe_model(model)
        if self.new_best:
            atomic_save({"model": model.state_dict(), "epoch": self.epoch, "value": float(self.best),
                         "monitor": self.monitor, "architecture": architecture}, self.folder / BEST_FILE)
        atomic_save({"model": model.state_dict(), "opt": self.learn.opt.state_dict(),
                     "epoch": self.epoch, "best": float(self.best), "monitor": self.monitor,
                     "architecture": architecture, "random": random_states(self.learn.dls)},
                    self.folder / LAST_FILE)


def random_states(dls) -> dict:
    """Every random-number state a fit draws from, in types ``torch.load(weights_only=True)`` reads back:
    torch (CPU and CUDA), NumPy's and Python's global generators, and each loader's own ``rng`` (fastai
    shuffles with it; the clip loaders draw clip starts from it)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "python": random.getstate(),
        "loaders": [loader.rng.getstate() if hasattr(loader, "rng") else None for loader in dls.loaders],
    }


def restore_random_states(dls, states: dict) -> None:
    """Undo :func:`random_states`: the next epoch draws what it would have drawn in an uninterrupted fit."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    random.setstate(_as_tuples(states["python"]))
    for loader, state in zip(dls.loaders, states["loaders"]):
        if state is not None:
            loader.rng.setstate(_as_tuples(state))


def _as_tuples(state):
    """``random.setstate`` wants the tuples ``getstate`` gave; a checkpoint may hand back lists."""
    return tuple(_as_tuples(item) for item in state) if isinstance(state, (list, tuple)) else state


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


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into this model or learner; the message names the file and why."""


def describe_model(model: nn.Module) -> str:
    """A model's class and, where it has them, its encoder's class and widths: enough to tell variants apart."""
    parts = [type(model).__name__]
    encoder = getattr(model, "encoder", None)
    if encoder is not None:
        config = getattr(encoder, "config", None)
        dims = f" dims={tuple(config.dims)}" if hasattr(config, "dims") else ""
        parts.append(f"encoder {type(encoder).__name__}{dims}")
    return ", ".join(parts)


def load_safely(path: str | os.PathLike, what: str = "checkpoint"):
    """A torch file's contents, read with ``weights_only=True``: tensors and plain values only, so a crafted
    file cannot run code. A missing or unreadable file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle refusing a global, a truncated zip, ...
        raise CheckpointError(f"{path}: not a checkpoint this package can read safely "
                              f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from error


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint of this package (:func:`load_safely`): its ``model`` state dict and training state."""
    checkpoint = load_safely(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise CheckpointError(f"{path}: holds no 'model' state dict")
    return checkpoint


def check_state_fits(model: nn.Module, state: dict, path: Path, saved_from: str | None = None) -> None:
    """Raise :class:`CheckpointError` naming every key that differs, before any weight is replaced."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        saved = f" (saved from {saved_from})" if saved_from else ""
        details = "; ".join(f"{title}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                            for title, keys in (("missing", missing), ("unexpected", unexpected),
                                                ("other shape", wrong_shape)) if keys)
        raise CheckpointError(f"{path}: does not fit {describe_model(model)}{saved}: {details}")


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict:
    """Load a checkpoint's model weights into ``model``; returns the checkpoint (epoch, value, ...).

    A checkpoint of another variant fails with :class:`CheckpointError` before ``model`` is touched.
    """
    checkpoint = read_checkpoint(path)
    check_state_fits(model, checkpoint["model"], Path(path), checkpoint.get("architecture"))
    model.load_state_dict(checkpoint["model"])
    return checkpoint


def check_optimiser_fits(opt, saved_opt_state: dict, path: Path) -> None:
    """The saved optimiser must train as many parameter tensors per group as this one (a stage-2 learner, which
    trains only the head, resuming in a stage-1 folder does not)."""
    saved = [len(group["params"]) for group in saved_opt_state.get("param_groups", [])]
    own = [len(group["params"]) for group in opt.state_dict()["param_groups"]]
    if saved != own:
        raise CheckpointError(f"{path}: saved by a fit that trained {sum(saved)} parameter tensors in groups "
                              f"{saved}; this learner trains {sum(own)} in {own} (another stage or model "
                              "trained in this folder?)")


def remove_stale_temporaries(folder: Path) -> None:
    """Delete what killed saves left (``.best.pth.*.tmp``): :func:`atomic_save` removes its own on any error
    it sees, but not after a kill."""
    for name in (BEST_FILE, LAST_FILE):
        for temporary in folder.glob(f".{name}.*.tmp"):
            temporary.unlink(missing_ok=True)


def fit_resumable(learn: Learner, n_epoch: int, folder: str | os.PathLike, lr: float | None = None,
                  monitor: str = "mae", cbs=None, load_best: bool = False) -> Learner:
    """``learn.fit(n_epoch)`` with checkpoints in ``folder``, continuing from ``last.pth`` if one is there.

    A resumed fit restores the model, the optimiser state, the best value so far and every random-number
    state (:func:`random_states`), and skips the finished epochs (fastai's ``start_epoch``), so schedules
    see the same positions and the batches, augmentations and dropout masks are those of an
    uninterrupted run: on a CPU the resumed weights equal the uninterrupted ones exactly. A finished fit called again trains no more. ``load_best`` leaves the best
    checkpoint's weights in the model at the end.
    """
    checkpoint_cb = CheckpointCallback(folder, monitor=monitor)
    last = Path(folder) / LAST_FILE
    start_epoch = 0
    if Path(folder).is_dir():
        remove_stale_temporaries(Path(folder))
    if last.is_file():
        # the model must sit on its training device before the optimiser is built and its state loaded:
        # torch puts loaded optimiser state on the parameters' device of that moment
        learn.model.to(loader_device(learn.dls))
        checkpoint = read_checkpoint(last)
        check_state_fits(learn.model, checkpoint["model"], last, checkpoint.get("architecture"))
        learn.create_opt()
        check_optimiser_fits(learn.opt, checkpoint["opt"], last)
        learn.model.load_state_dict(checkpoint["model"])
        learn.opt.load_state_dict(checkpoint["opt"])
        checkpoint_cb.best = checkpoint["best"]
        start_epoch = int(checkpoint["epoch"]) + 1
        if "random" in checkpoint:  # absent from checkpoints written before it was saved
            restore_random_states(learn.dls, checkpoint["random"])
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


def make_learner(dls, model: nn.Module, loss_func, *, lr: float, weight_decay: float, metrics=None, cbs=None,
                 bf16: bool | None = None, path=None, opt_func: Callable | None = None) -> Learner:
    """A fastai Learner with AdamW, EF metrics by default, and bfloat16 autocast on CUDA (``bf16=None``).

    ``opt_func``: an optimiser that sets its own weight decay per parameter group (such as
    :func:`adamw_decay_matrices_only`); the learner then leaves the decay alone (fastai's ``wd=None``), since
    a learner's ``wd`` would overwrite every group's at each fit.
    """
    learn = Learner(dls, model, loss_func=loss_func, opt_func=opt_func or adamw(weight_decay), lr=lr,
                    wd=weight_decay if opt_func is None else None,
                    metrics=metrics if metrics is not None else ef_metrics(), cbs=cbs, path=path or ".")
    if bf16 is None:
        bf16 = loader_device(dls).type == "cuda"
    if bf16:
        learn.to_bf16()  # fastai's autocast callback; bfloat16 needs no loss scaling
    return learn


def training_mean_ef_percent(dls) -> float:
    """The training set's mean EF (a head's starting bias), or the peer code's 55.6 when the loader does not say."""
    ef_percent = getattr(getattr(dls.train, "dataset", None), "ef_percent", None)
    return float(np.mean(ef_percent)) if ef_percent is not None and len(ef_percent) else HEAD_BIAS_INIT_EF_PERCENT


# --------------------------------------------------------------------------------------------- evaluation

def predict_ef_percent(model: nn.Module, loader, *, bf16: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item EF predictions and targets (CPU float32) over a loader, in order; a multi-clip item's
    clips are averaged."""
    device = next(model.parameters()).device
    preds, targets = [], []
    was_training = model.training
    model.eval()
    try:
        for clips, ef_percent in loader:
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
