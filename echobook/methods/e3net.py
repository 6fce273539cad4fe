"""Echo-E3Net (Heidari et al., 2025, arXiv 2503.17543 v3): its figures, data, objective, learner, recipe per size
and the saved model with its card.

- Data: clips with five targets, ``(clips, ef_percent, edv_ml, esv_ml, landmarks [B, 2, K, 2])``, from an
  EchoNet-style folder (:func:`e3net_dataloaders`, :func:`e3net_eval_dataloader`); the landmarks come from the
  ED and ES tracings (:mod:`echobook.data.landmarks`). The training shift moves the landmarks with the pixels.
- Objective: :class:`E3NetLoss`, a weighted sum of the Simpson-inspired terms of :mod:`echobook.losses` (EF
  error, volume errors, landmark error, geometric consistency, plausible long axis); :class:`SimpsonWeights`
  holds the weights, and ``weights.without("landmark", ...)`` gives an ablation.
- :func:`e3net_learner`: a fastai learner (AdamW, the recipe's schedule, EF metrics) on
  :func:`echobook.training.make_learner`; :class:`LossParts` records each term per step.
- :func:`evaluate_e3net`: per-video EF, volume and landmark errors with test-time clip averaging.
- :class:`E3NetRecipe`, :data:`RECIPES`, :func:`recipe`: what to train at each size.
- :func:`save_e3net` and :func:`load_e3net`: the trained network and its card (:mod:`echobook.cards`: size,
  seed, git commit, variant, config, metrics, preprocessing, landmark layout), written atomically, read back
  with ``weights_only=True``; :func:`build_from_card` gives ``echobook predict``'s EF-only network.

The paper's loss weights, clip size, number of landmarks and schedule are not public; every such value below
is this package's choice, measured at the CPU sizes (chapter 10).
"""
from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from torch import nn

from echobook.config import Settings, get_preset, resolve_device, resolve_size
from echobook.data.clips import (
    ClipDataLoader, ClipDataset, VideoStore, average_per_video, echonet_split, normalisation_stats,
    shift_pad_pixels,
)
from echobook.data.landmarks import PHASES, landmark_count, video_landmarks
from echobook.losses import (
    ef_error, geometric_consistency, landmark_error, long_axis_lengths, long_axis_plausibility, volume_error,
)
from echobook.metrics import regression_metrics
from echobook.models import model_config
from echobook.models.e3net import PAPER_E3NET, PAPER_E3NET_V1, E3Net, E3NetConfig, E3NetOutput, E3NetRegressor
from echobook.training import check_state_fits, lr_scheduler, make_learner, training_mean_ef_percent

# The paper's figures (methods-peers.md section 6), re-exported for the chapter.
PAPER = PAPER_E3NET
PAPER_V1 = PAPER_E3NET_V1
LOW_EF_PERCENT = 40.0  # "reduced EF": the range where an error changes the clinical call most
E3NET_WEIGHT_DECAY = 1e-4  # our choice (the paper's optimiser settings are not public)
METHOD = "e3net"  # the cards' method name
LOSS_TERMS = ("ef", "volume", "landmark", "consistency", "long_axis")


# --------------------------------------------------------------------------------------------- objective

@dataclass(frozen=True)
class SimpsonWeights:
    """Weights of the Simpson-inspired terms, chosen so each weighted term reads in about EF points at the
    start: the EF error is in EF points; a 10 % volume error, a landmark error of 1 % of the frame and a 0.05
    frame-unit stray of the long axis each weigh about one EF point. Our choice: the paper's are not public."""

    ef: float = 1.0
    volume: float = 10.0
    landmark: float = 100.0
    consistency: float = 0.5
    long_axis: float = 20.0

    def without(self, *terms: str) -> "SimpsonWeights":
        """These weights with ``terms`` (names of :data:`LOSS_TERMS`) set to 0: an ablation."""
        unknown = set(terms) - set(LOSS_TERMS)
        if unknown:
            raise ValueError(f"unknown loss term(s) {sorted(unknown)}; choose from {LOSS_TERMS}")
        return dataclasses.replace(self, **{term: 0.0 for term in terms})


# Chapter 10's loss ablation: each row's name and the terms it switches off
ABLATION_ROWS: dict[str, tuple[str, ...]] = {
    "EF only": ("volume", "landmark", "consistency", "long_axis"),
    "EF + volumes + landmarks": ("consistency", "long_axis"),
    "full Simpson objective": (),
}


class E3NetLoss(nn.Module):
    """``sum_term weight * term`` over :data:`LOSS_TERMS` (see :mod:`echobook.losses`) for an
    :class:`~echobook.models.e3net.E3NetOutput` and the targets ``(ef_percent, edv_ml, esv_ml, landmarks)``.

    ``long_axis_range``: the plausible long-axis lengths, in frame units (e.g. from the training tracings).
    A target missing from the batch (only EF given, or NaN) leaves its term at 0.
    """

    def __init__(self, weights: SimpsonWeights = SimpsonWeights(), long_axis_range: tuple[float, float] = (0.2, 0.95)):
        super().__init__()
        self.weights, self.long_axis_range = weights, tuple(float(v) for v in long_axis_range)

    def parts(self, pred: E3NetOutput, ef_percent: torch.Tensor, edv_ml: torch.Tensor | None = None,
              esv_ml: torch.Tensor | None = None, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every term (unweighted) and ``total`` (weighted)."""
        zero = pred.ef_percent.sum() * 0.0
        terms = {
            "ef": ef_error(pred.ef_percent, ef_percent),
            "volume": zero if edv_ml is None else 0.5 * (volume_error(pred.edv_ml, edv_ml)
                                                         + volume_error(pred.esv_ml, esv_ml)),
            "landmark": zero if landmarks is None else landmark_error(pred.landmarks, landmarks),
            "consistency": geometric_consistency(pred.landmarks, pred.ef_percent, pred.edv_ml, pred.esv_ml),
            "long_axis": long_axis_plausibility(pred.landmarks, *self.long_axis_range),
        }
        terms["total"] = sum(getattr(self.weights, name) * value for name, value in terms.items())
        return terms

    def forward(self, pred: E3NetOutput, *targets: torch.Tensor) -> torch.Tensor:
        return self.parts(pred, *targets)["total"]


class LossParts(Callback):
    """Records every term of the loss (unweighted) at each training step: ``rows`` of dicts with the epoch."""

    def __init__(self):
        self.rows = []

    def after_loss(self):
        if self.training:
            with torch.no_grad():
                parts = self.learn.loss_func.parts(self.learn.pred, *self.learn.yb)
            self.rows.append({"epoch": self.epoch + 1, **{k: float(v) for k, v in parts.items()}})


# --------------------------------------------------------------------------------------------- recipe per size

@dataclass(frozen=True)
class E3NetRecipe:
    """What Echo-E3Net trains at one size."""

    model: str  # a registered E3Net variant (its config sets the landmarks per phase)
    epochs: int
    learning_rate: float
    lr_schedule: str  # see echobook.training.lr_scheduler
    weights: SimpsonWeights = SimpsonWeights()
    ablation_epochs: int = 0  # epochs of each loss-ablation run in chapter 10
    ablation_rows: tuple[str, ...] = tuple(ABLATION_ROWS)  # which rows of ABLATION_ROWS chapter 10 trains
    ablation_seeds: int = 3  # seeds per ablation row in one run of the chapter; the ledger adds runs over seeds
    weight_decay: float = E3NET_WEIGHT_DECAY

    @property
    def wall_points(self) -> int:
        return model_config(self.model).wall_points

    @property
    def learner_kwargs(self) -> dict[str, object]:
        return {"lr": self.learning_rate, "schedule": self.lr_schedule, "weights": self.weights,
                "weight_decay": self.weight_decay}


# A small network trained from scratch on a CPU for a few hundred steps: a large rate after fastai's one-cycle
# warm-up, as chapter 5 found for CoReEcho's tiny encoder; full size trains longer at a lower rate.
RECIPES: dict[str, E3NetRecipe] = {
    "smoke": E3NetRecipe(model="e3net_xs", epochs=10, learning_rate=3e-3, lr_schedule="one_cycle",
                         ablation_epochs=3, ablation_seeds=2),
    # small: the ablation compares the two ends at the main run's length, whose model is then the full objective's
    # row (at 6 epochs a row the full objective was still near the mean, slower to start than EF only: 8.92 against
    # 6.74, three seeds); one ablation seed a run, because the ledger runs the whole chapter over seeds, each run an
    # independent comparison (three a run made run s average seeds s..s+2, overlapping its neighbours'). 16 epochs:
    # at 10, E3Net's EF had not left the training mean (MAE 9.07 against the mean's 9.43, SEED 0)
    "small": E3NetRecipe(model="e3net_xs", epochs=16, learning_rate=3e-3, lr_schedule="one_cycle",
                         ablation_epochs=16, ablation_seeds=1, ablation_rows=("EF only", "full Simpson objective")),
    "full": E3NetRecipe(model="e3net_s", epochs=40, learning_rate=1e-3, lr_schedule="one_cycle",
                        ablation_epochs=20, ablation_seeds=3),
}


def recipe(size: str | Settings = "auto") -> E3NetRecipe:
    """Echo-E3Net's recipe for a size name, ``"auto"``, or a chapter's :class:`~echobook.config.Settings`."""
    return RECIPES[size.size if isinstance(size, Settings) else resolve_size(size)]


# --------------------------------------------------------------------------------------------- data

class LandmarkClipDataset(ClipDataset):
    """A :class:`~echobook.data.clips.ClipDataset` whose items carry the video's EDV, ESV (mL) and ED/ES
    landmarks ``[2, K, 2]`` after the EF: ``(clip, ef_percent, edv_ml, esv_ml, landmarks)``."""

    def __init__(self, store: VideoStore, ef_percent, edv_ml, esv_ml, landmarks, clip_frames: int,
                 clip_stride: int, **kwargs):
        super().__init__(store, ef_percent, clip_frames, clip_stride, **kwargs)
        self.edv_ml = np.asarray(edv_ml, dtype=np.float32)
        self.esv_ml = np.asarray(esv_ml, dtype=np.float32)
        self.landmarks = np.asarray(landmarks, dtype=np.float32)
        if not (len(self.edv_ml) == len(self.esv_ml) == len(self.landmarks) == len(store)):
            raise ValueError(f"{len(store)} videos but {len(self.edv_ml)} EDV, {len(self.esv_ml)} ESV and "
                             f"{len(self.landmarks)} landmark targets")

    def __getitem__(self, item):
        clip, ef_percent = super().__getitem__(item)
        video = self.items[item][0] if isinstance(item, (int, np.integer)) else item[0]
        return (clip, ef_percent, torch.tensor(self.edv_ml[video]), torch.tensor(self.esv_ml[video]),
                torch.from_numpy(self.landmarks[video]))


class LandmarkClipLoader(ClipDataLoader):
    """A :class:`~echobook.data.clips.ClipDataLoader` of five-part items, stacked with NumPy (see its note)."""

    def create_batch(self, items):
        clips = np.stack([item[0].numpy() for item in items])
        scalars = [np.array([item[k].item() for item in items], dtype=np.float32) for k in (1, 2, 3)]
        landmarks = np.stack([item[4].numpy() for item in items])
        return (torch.from_numpy(clips), *(torch.from_numpy(s) for s in scalars), torch.from_numpy(landmarks))


def shift_clips_and_landmarks(clips: torch.Tensor, landmarks: torch.Tensor, pad_pixels: int,
                              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training shift of :func:`echobook.data.clips.random_shift` (zero-pad by ``pad_pixels``, crop back at a
    random offset per clip) applied to ``[B, C, F, H, W]`` clips, with the clip's normalised landmarks
    ``[B, ..., 2]`` moved by the same pixels, so the targets stay on the walls."""
    batch, height, width = clips.shape[0], clips.shape[-2], clips.shape[-1]
    half = pad_pixels // 2
    padded = F.pad(clips, (half, pad_pixels - half, half, pad_pixels - half))
    offsets = torch.randint(0, pad_pixels + 1, (batch, 2), generator=generator)
    shifted = torch.stack([padded[i, ..., int(r):int(r) + height, int(c):int(c) + width]
                           for i, (r, c) in enumerate(offsets.tolist())])
    # a crop starting at offset o shows original pixel (o - half) at 0: content moves by (half - o) pixels
    move = (half - offsets.flip(1).to(landmarks.dtype)) / torch.tensor([width, height], dtype=landmarks.dtype)
    move = move.reshape(batch, *[1] * (landmarks.ndim - 2), 2).to(landmarks.device)
    return shifted, landmarks + move


class LandmarkBatchTransform:
    """fastai ``after_batch``: uint8 clips -> normalised float on the batch's device; in training, the random
    shift with the landmarks moved alike (:func:`shift_clips_and_landmarks`)."""

    def __init__(self, mean: float, std: float, *, train: bool, pad_pixels: int):
        self.mean, self.std, self.train, self.pad_pixels = float(mean), float(std), train, int(pad_pixels)

    def __call__(self, batch):
        clips, ef_percent, edv_ml, esv_ml, landmarks = batch
        if self.train and self.pad_pixels > 0:
            clips, landmarks = shift_clips_and_landmarks(clips, landmarks, self.pad_pixels)
        clips = (clips.float() - self.mean) / self.std
        return clips, ef_percent.float(), edv_ml.float(), esv_ml.float(), landmarks.float()


def _landmark_dataset(table, preset, wall_points: int, *, train: bool, eval_clips: int | None = None):
    store = VideoStore.from_table(table, image_size=preset.crop_size)
    records = table.records
    targets = dict(edv_ml=[r.edv_ml for r in records], esv_ml=[r.esv_ml for r in records],
                   landmarks=video_landmarks(records, wall_points))
    return LandmarkClipDataset(store, table.ef_percent, clip_frames=preset.clip_frames,
                               clip_stride=preset.clip_stride, train=train,
                               eval_clips=eval_clips or preset.eval_clips, **targets)


def _loader(dataset, preset, *, mean, std, device, seed, pad_pixels, batch_size=None) -> LandmarkClipLoader:
    loader = LandmarkClipLoader(
        dataset, bs=batch_size or preset.batch_size, shuffle=dataset.train,
        drop_last=dataset.train and len(dataset) > (batch_size or preset.batch_size), num_workers=0,
        device=resolve_device(device if device is not None else "auto"),
        after_batch=LandmarkBatchTransform(mean, std, train=dataset.train, pad_pixels=pad_pixels))
    loader.rng = random.Random(seed)  # fastai seeds it from the global `random`; make it explicit
    return loader


def e3net_dataloaders(root: str | Path, preset=None, *, wall_points: int, device=None, seed: int = 0,
                      pad_pixels: int | None = None, batch_size: int | None = None) -> DataLoaders:
    """TRAIN/VAL loaders of an EchoNet-style folder with five-part batches (module doc).

    Only videos with two usable tracings are read (the paper's protocol). The result's ``normalisation`` is
    the training videos' (mean, std), ``long_axis_range`` the 1st-99th percentile of the training long axes
    widened by 20 % (for :class:`E3NetLoss`), ``mean_volumes_ml`` the training (EDV, ESV) means and
    ``mean_landmarks`` the training mean shape ``[2, K, 2]`` (where the detector starts).
    """
    preset = get_preset(preset)
    tables = echonet_split(root, ("TRAIN", "VAL"), require_tracings=True)
    train_set = _landmark_dataset(tables.subset("TRAIN"), preset, wall_points, train=True)
    valid_set = _landmark_dataset(tables.subset("VAL"), preset, wall_points, train=False)
    mean, std = normalisation_stats(train_set.store, seed=seed)
    pad = shift_pad_pixels(preset.crop_size) if pad_pixels is None else pad_pixels
    loaders = [_loader(train_set, preset, mean=mean, std=std, device=device, seed=seed, pad_pixels=pad,
                       batch_size=batch_size),
               _loader(valid_set, preset, mean=mean, std=std, device=device, seed=seed, pad_pixels=0,
                       batch_size=batch_size)]
    dls = DataLoaders(*loaders, device=loaders[0].device)
    dls.normalisation = (mean, std)
    lengths = long_axis_lengths(torch.from_numpy(train_set.landmarks)).numpy().ravel()
    low, high = np.nanpercentile(lengths, [1, 99])
    dls.long_axis_range = (float(low) * 0.8, float(min(high * 1.2, 1.0)))
    dls.mean_volumes_ml = (float(np.nanmean(train_set.edv_ml)), float(np.nanmean(train_set.esv_ml)))
    dls.mean_landmarks = np.nanmean(train_set.landmarks, axis=0)  # [2, K, 2]: the detector's starting shape
    return dls


def e3net_eval_dataloader(root: str | Path, preset=None, *, wall_points: int, mean: float, std: float,
                          split: str = "TEST", device=None, batch_size: int | None = None) -> LandmarkClipLoader:
    """Test-time loader of one split with five-part batches: the preset's ``eval_clips`` fixed clips a video
    (the same starts as :func:`echobook.data.clips.eval_dataloader`), no shift."""
    preset = get_preset(preset)
    table = echonet_split(root, split, require_tracings=True)
    loader = _loader(_landmark_dataset(table, preset, wall_points, train=False), preset, mean=mean, std=std,
                     device=device, seed=0, pad_pixels=0, batch_size=batch_size)
    loader.table = table
    return loader


# --------------------------------------------------------------------------------------------- model, learner

def e3net_model(variant: str = "e3net_s", **overrides) -> E3Net:
    """A registered variant's network with the full :class:`~echobook.models.e3net.E3NetOutput` (the registry
    builds the EF-only :class:`~echobook.models.e3net.E3NetRegressor` of the same config)."""
    config = model_config(variant)
    if not isinstance(config, E3NetConfig):
        raise ValueError(f"{variant!r} is not an Echo-E3Net variant (its config is {type(config).__name__})")
    return E3Net(dataclasses.replace(config, **overrides))


def e3net_learner(dls, model: str | nn.Module = "e3net_s", *, lr: float = 1e-3, weight_decay: float = E3NET_WEIGHT_DECAY,
                  schedule: str = "one_cycle", weights: SimpsonWeights = SimpsonWeights(), metrics=None, cbs=None,
                  bf16: bool | None = None, path=None, **overrides) -> Learner:
    """A fastai learner of Echo-E3Net on :func:`e3net_dataloaders`'s batches with :class:`E3NetLoss`.

    ``model``: a variant name (its EF and volume outputs start at the training means, EF scaled by the training
    SD, the landmarks at the training mean shape) or an E3Net.
    ``overrides`` replace fields of the variant's config. Validation metrics: EF MAE, RMSE, R2 per video.
    """
    if isinstance(model, str):
        edv, esv = getattr(dls, "mean_volumes_ml", (None, None))
        starts = {"mean_ef_percent": training_mean_ef_percent(dls)}
        train_ef = getattr(getattr(dls.train, "dataset", None), "ef_percent", None)
        if train_ef is not None and len(train_ef) > 1:
            starts["ef_scale_percent"] = float(np.std(train_ef))
        if edv is not None:
            starts.update(mean_edv_ml=edv, mean_esv_ml=esv)
        model = e3net_model(model, **{**starts, **overrides})
        if getattr(dls, "mean_landmarks", None) is not None:
            model.detector.set_prior(dls.mean_landmarks)
    loss = E3NetLoss(weights, getattr(dls, "long_axis_range", (0.2, 0.95)))
    return make_learner(dls, model, loss, lr=lr, weight_decay=weight_decay, metrics=metrics,
                        cbs=[*lr_scheduler(lr, schedule), *(cbs or [])], bf16=bf16, path=path)


# --------------------------------------------------------------------------------------------- evaluation

def predict_e3net(model: nn.Module, loader) -> dict[str, np.ndarray]:
    """Every output and target over a five-part loader, in order, averaged per video over its clips:
    ``ef_percent_pred``/``_true``, ``edv_ml_pred``/``_true``, ``esv_ml_pred``/``_true``,
    ``landmarks_pred``/``_true`` ``[N, 2, K, 2]``."""
    device = next(model.parameters()).device
    outputs: dict[str, list[torch.Tensor]] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for clips, ef_percent, edv_ml, esv_ml, landmarks in loader:
                pred = model(clips.to(device))
                pairs = {"ef_percent": (pred.ef_percent, ef_percent), "edv_ml": (pred.edv_ml, edv_ml),
                         "esv_ml": (pred.esv_ml, esv_ml), "landmarks": (pred.landmarks, landmarks)}
                for name, (p, t) in pairs.items():
                    outputs.setdefault(f"{name}_pred", []).append(p.float().cpu())
                    outputs.setdefault(f"{name}_true", []).append(t.float().cpu())
    finally:
        model.train(was_training)
    index = np.asarray(loader.dataset.video_index, dtype=np.int64)
    return {name: average_per_video(torch.cat(values), index).numpy() for name, values in outputs.items()}


def low_ef_mae(ef_percent_pred, ef_percent_true, threshold: float = LOW_EF_PERCENT) -> float:
    """MAE over the videos whose true EF is below ``threshold`` (NaN when there is none)."""
    pred, true = np.asarray(ef_percent_pred, dtype=np.float64), np.asarray(ef_percent_true, dtype=np.float64)
    low = true < threshold
    return float(np.abs(pred[low] - true[low]).mean()) if low.any() else float("nan")


def evaluate_e3net(model: nn.Module, loader, frame_pixels: int | None = None) -> dict[str, float]:
    """Per-video metrics: EF (``mae``, ``rmse``, ``r2``, ``pearson_r2``, ``low_ef_mae``, ``low_ef_videos``), volumes
    (``edv_rel_error``, ``esv_rel_error``), landmarks (``landmark_error``, frame units, and ``landmark_error_px`` at
    ``frame_pixels``, default the crop), and ``disc_ef_mae`` (EF by discs of the predicted landmarks)."""
    from echobook.losses import disc_ef_percent

    out = predict_e3net(model, loader)
    pred, true = out["ef_percent_pred"], out["ef_percent_true"]
    landmark_distance = np.linalg.norm(out["landmarks_pred"] - out["landmarks_true"], axis=-1)
    frame_pixels = frame_pixels or loader.dataset.store.image_size or 112
    disc_ef = disc_ef_percent(torch.from_numpy(out["landmarks_pred"])).numpy()
    return {
        **regression_metrics(pred, true),
        "low_ef_mae": low_ef_mae(pred, true), "low_ef_videos": int((true < LOW_EF_PERCENT).sum()),
        "edv_rel_error": float(np.nanmean(np.abs(out["edv_ml_pred"] / out["edv_ml_true"] - 1))),
        "esv_rel_error": float(np.nanmean(np.abs(out["esv_ml_pred"] / out["esv_ml_true"] - 1))),
        "landmark_error": float(np.nanmean(landmark_distance)),
        "landmark_error_px": float(np.nanmean(landmark_distance) * frame_pixels),
        "disc_ef_mae": float(np.nanmean(np.abs(disc_ef - true))),
        "videos": len(pred),
    }


# --------------------------------------------------------------------------------------------- saving

def model_folder(size: str, seed: int, data_seed: int | None = None) -> Path:
    """Where chapter 10 keeps its trained model: :func:`echobook.cards.model_folder` of ``e3net``."""
    from echobook.cards import model_folder as folder_of

    return folder_of(METHOD, size, seed, data_seed)


def e3net_card(model: E3Net, *, variant: str, size: str, seed: int, metrics: dict, normalisation: tuple[float, float],
               preset=None, fps: float | None = None, data: dict | None = None) -> dict:
    """The model's card (:func:`echobook.cards.new_card`: method, variant, size, seed, git commit, date) with its
    config, metrics, landmark layout and ``preprocessing`` (what ``echobook predict`` feeds it: frame size,
    clip frames and stride, the training normalisation, the training frame rate)."""
    from echobook.cards import ef_preprocessing, new_card

    preset = get_preset(preset or size)
    return new_card(
        method=METHOD, variant=variant, size=size, seed=seed, config=dataclasses.asdict(model.config),
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.number))},
        preprocessing=ef_preprocessing(preset, normalisation[0], normalisation[1], fps),
        landmarks={"per_phase": model.config.landmarks, "wall_points": model.config.wall_points,
                   "phases": list(PHASES), "layout": "echobook.data.landmarks", "coordinates": "x/width, y/height"},
        data=data or {})


def save_e3net(model: E3Net, card: dict, folder: str | os.PathLike) -> Path:
    """Write the weights with the card (``model.pth``) and ``card.json`` into ``folder``, each atomically
    (:func:`echobook.cards.save_with_card`, on :func:`echobook.training.atomic_save`). Returns the weights' path."""
    from echobook.cards import save_with_card

    return save_with_card(folder, model.state_dict(), card)


def _config_of(card: dict, path) -> E3NetConfig:
    from echobook.training import CheckpointError

    if card.get("method") != METHOD or not isinstance(card.get("config"), dict):
        raise CheckpointError(f"{path}: a {card.get('method')!r} model card; expected an {METHOD!r} card with its config")
    fields = {f.name for f in dataclasses.fields(E3NetConfig)}
    return E3NetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in card["config"].items() if k in fields})


def load_e3net(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[E3Net, dict]:
    """The saved network (eval mode, returning landmarks, volumes and EF: :class:`E3NetOutput`) and its card.

    ``path``: the run folder or its ``model.pth``. Read with ``weights_only=True``; a card of another method or
    weights of another shape raise :class:`echobook.training.CheckpointError` before any weight is replaced.
    """
    from echobook.cards import read_with_card

    checkpoint, card = read_with_card(path)
    model = E3Net(_config_of(card, path))
    check_state_fits(model, checkpoint["model"], Path(path), f"{METHOD} {card.get('variant')}")
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), card


def build_from_card(card: dict) -> E3NetRegressor:
    """The EF-only network a card describes (weights not loaded): what ``echobook predict``'s model builders
    expect (clips -> EF ``[B]``); :func:`load_e3net` gives the full network with its landmarks."""
    return E3NetRegressor(_config_of(card, "card"))


def landmarks_to_pixels(landmarks, frame_size_px) -> np.ndarray:
    """Normalised landmarks ``[..., 2]`` to pixels of a frame ``(height, width)``."""
    height, width = frame_size_px
    return np.asarray(landmarks, dtype=np.float64) * np.array([width, height], dtype=np.float64)


__all__ = [
    "ABLATION_ROWS", "E3NetLoss", "E3NetRecipe", "LOSS_TERMS", "LOW_EF_PERCENT", "LandmarkBatchTransform",
    "LandmarkClipDataset", "LandmarkClipLoader", "LossParts", "METHOD", "PAPER", "PAPER_V1", "RECIPES",
    "SimpsonWeights", "build_from_card",
    "e3net_card", "e3net_dataloaders", "e3net_eval_dataloader", "e3net_learner", "e3net_model",
    "evaluate_e3net", "landmark_count", "landmarks_to_pixels", "load_e3net", "low_ef_mae",
    "model_folder", "predict_e3net", "recipe", "save_e3net", "shift_clips_and_landmarks",
]
