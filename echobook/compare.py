"""Chapter 11: the three trained models side by side on the same held-out recordings, and under distribution shift.

Every model is fed as ``echobook predict`` feeds a user's recording (:func:`echobook.predict.predict_recording`:
its card's frame rate, image size and sliding windows; EF per recording the package's), so the comparison is of
what a reader would get, not of three evaluation loops. The recordings are synthetic hearts that none of the
models trained on (seeds of their own, :func:`set_seeds`), and each distribution shift (:data:`SHIFTS`) is the same
hearts again with one of the engine's knobs turned (:class:`~echobook.data.synthetic.SyntheticConfig`): the engine
draws every heart's numbers in a fixed order whatever the options, so a shifted recording differs from its
in-distribution twin by the shift alone.

Sizes come from :func:`recipe` (recordings per set, seeds), as every chapter's do.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echobook.config import Settings, get_preset, resolve_size
from echobook.interpret.shift import DEFAULT_NEIGHBOURS

METHODS = ("coreecho", "e3net", "echofm-seg")  # the cards' method names (echobook.cards.model_folder)
# the chapter that trains and saves each model :func:`load_or_train` gives (chapters 7, 10 and 11 load them)
TRAINED_IN_CHAPTER = {"coreecho": 5, "coreecho-l1": 5, "echofm-seg": 9, "e3net": 10}
METHOD_NAMES = {"coreecho": "CoReEcho", "e3net": "Echo-E3Net", "echofm-seg": "EchoFM + UNETR"}
EF_ROUTES = {"coreecho": "regressed from each clip, the mean over the windows",
             "e3net": "regressed with the ED and ES landmarks, the mean over the windows",
             "echofm-seg": "method of discs on its LV masks of each beat's ED and ES frames"}
COMPARISON_SEED_OFFSET = 20000  # apart from the training sets' seeds (chapter 9 uses +10000)
SEEDS_PER_REPEAT = 10  # each repeat's sets take seeds base + 0 (test), + 1 (calibration), + 2 (reference)


@dataclass(frozen=True)
class ComparisonRecipe:
    """What chapter 11 makes at one size: recordings per set and how many data seeds the cheap parts repeat over."""

    test_recordings: int  # the held-out set, and each shifted copy of it
    calibration_recordings: int  # the in-distribution set the chapter's own 90 % intervals are calibrated on
    reference_recordings: int  # the in-distribution set the shift detectors are fitted to
    data_seeds: int  # repeats of the evaluation and the detectors on fresh hearts (k of n findings)
    neighbours: int = DEFAULT_NEIGHBOURS  # k of the kNN distance


RECIPES = {
    # smoke: a few seconds of prediction per set; 24 calibration recordings allow a finite 90 % interval (>= 9)
    "smoke": ComparisonRecipe(test_recordings=16, calibration_recordings=24, reference_recordings=32, data_seeds=3),
    "small": ComparisonRecipe(test_recordings=32, calibration_recordings=48, reference_recordings=64, data_seeds=3),
    "full": ComparisonRecipe(test_recordings=128, calibration_recordings=256, reference_recordings=256, data_seeds=3),
}


def recipe(size: str | Settings = "auto") -> ComparisonRecipe:
    """Chapter 11's recipe for a size name, ``"auto"``, or a chapter's :class:`~echobook.config.Settings`."""
    return RECIPES[size.size if isinstance(size, Settings) else resolve_size(size)]


@dataclass(frozen=True)
class Shift:
    """One kind of distribution shift: a :class:`~echobook.data.synthetic.SyntheticConfig` field and its values,
    mildest first."""

    name: str
    field: str
    severities: tuple[tuple[str, object], ...]  # (label, the field's value)
    training: str  # what the training sets hold (config_for_preset's defaults)
    meets_it: str  # where a reader meets it

    def overrides(self, severity: int) -> dict:
        """The config overrides of severity ``severity`` (1 = mildest)."""
        if not 1 <= severity <= len(self.severities):
            raise ValueError(f"{self.name}: severity {severity}; choose 1 to {len(self.severities)}")
        return {self.field: self.severities[severity - 1][1]}


# Each shift moves one of the training sets' settings (SyntheticConfig's defaults) outside its range.
SHIFTS = (
    Shift("image quality", "quality", (("all Medium", "Medium"), ("all Poor", "Poor")), "Good/Medium/Poor 45/40/15 %",
          "a hard-to-image patient (obesity, lung disease, a ventilated patient): noise, haze, dropout, shadows"),
    Shift("frame rate", "fps_range", (("20-24 fps", (20.0, 24.0)), ("12-15 fps", (12.0, 15.0))),
          "30-60 fps (lowered so a video holds 1.6 beats)",
          "an older or portable scanner, or a wide sector that lowers the frame rate"),
    Shift("heart rate", "hr_range", (("110-135 bpm", (110.0, 135.0)), ("135-170 bpm", (135.0, 170.0))), "50-110 bpm",
          "tachycardia: sepsis, fever, a stress echo"),
    Shift("view", "view", (("half A2C", "mixed"), ("all A2C", "A2C")), "A4C",
          "a mislabelled or off-axis acquisition: the apical two-chamber view fed as a four-chamber one"),
)


def shift_named(name: str) -> Shift:
    for shift in SHIFTS:
        if shift.name == name:
            return shift
    raise ValueError(f"shift {name!r}: choose one of {[s.name for s in SHIFTS]}")


def set_seeds(data_seed: int, repeat: int = 0) -> dict[str, int]:
    """The seeds of repeat ``repeat``'s test, calibration and reference sets, derived from the chapter's
    ``data_seed`` and apart from every training set's."""
    base = int(data_seed) + COMPARISON_SEED_OFFSET + SEEDS_PER_REPEAT * int(repeat)
    return {"test": base, "calibration": base + 1, "reference": base + 2}


def synthetic_recordings(seed: int, count: int, preset, **overrides) -> tuple[list, pd.DataFrame]:
    """``count`` synthetic videos of the training sets' kind (:func:`~echobook.data.synthetic.config_for_preset`
    of ``preset``, with ``overrides``) as :class:`~echobook.predict.Recording` s a user's video would become, and
    their truth (name, EF, heart rate, frame rate, quality, view)."""
    from echobook.data.synthetic import config_for_preset, make_videos
    from echobook.predict import Recording

    videos = make_videos(int(seed), int(count), config_for_preset(get_preset(preset), **overrides))
    recordings = [Recording(v.name, Path(f"synthetic/{v.name}"), v.frames, float(v.fps), "video") for v in videos]
    truth = pd.DataFrame({"recording": [v.name for v in videos], "ef_true": [v.ef_percent for v in videos],
                          "heart_rate_bpm": [v.heart_rate_bpm for v in videos], "fps": [v.fps for v in videos],
                          "quality": [v.quality for v in videos], "view": [v.view for v in videos]})
    return recordings, truth


# --------------------------------------------------------------------------------------------- the models

@dataclass
class TrainedModel:
    """A method's trained model as chapter 11 uses it: the model (eval mode), its card, its folder, and whether it
    had to be trained here (and in how many seconds) because its chapter had not saved it."""

    model: torch.nn.Module
    card: dict
    folder: Path
    trained_here: bool
    train_seconds: float = 0.0

    @property
    def note(self) -> str:
        if self.trained_here:
            return f"none saved, so trained here in {self.train_seconds:.0f} s and saved to {self.folder}"
        return f"loaded from {self.folder}"


def load_or_train(method: str, size: str, seed: int, device="cpu", data_seed: int | None = None,
                  data_dir: str | Path | None = None) -> TrainedModel:
    """The model its chapter saved for ``(size, seed, data_seed)`` (:func:`echobook.cards.model_folder`) with its
    card. A missing one is trained here with the package's own trainer at that size and saved where its chapter would
    have saved it (so this happens once); the trainers make their synthetic set from ``seed``, so a missing model of
    another ``data_seed``, or of a reader's own folder ``data_dir``, is an error that says which chapter to run. A
    saved model trained on other data than ``data_dir`` (or than the synthetic set, when it is None) is an error
    too, never silently used."""
    from echobook.cards import MODEL_FILE, model_folder
    from echobook.predict import load_model

    if method not in TRAINED_IN_CHAPTER:
        raise ValueError(f"method {method!r}: choose one of {sorted(TRAINED_IN_CHAPTER)}")
    folder = model_folder(method, size, seed, data_seed)
    trained_here, seconds = not (folder / MODEL_FILE).is_file(), 0.0
    own_data = data_dir is not None and str(data_dir) != ""
    if trained_here and (own_data or (data_seed is not None and int(data_seed) != int(seed))):
        data = f"the folder {data_dir}" if own_data else f"DATA_SEED {data_seed}"
        chapter = TRAINED_IN_CHAPTER[method]
        raise FileNotFoundError(f"{folder}: no {method} model of size {size}, SEED {seed}, {data}; run chapter "
                                f"{chapter} first on the same data (echobook run {chapter} --size {size} -p SEED "
                                f"{seed} " + (f"-p DATA_DIR {data_dir})" if own_data else f"-p DATA_SEED {data_seed})"))
    if trained_here:
        start = time.perf_counter()
        _train(method, folder, size, seed, device)
        seconds = time.perf_counter() - start
    model, card = load_model(folder, device)
    _check_trained_on(card, folder, Path(data_dir) if own_data else None)
    return TrainedModel(model.eval(), card, folder, trained_here, seconds)


def _check_trained_on(card: dict, folder: Path, data_dir: Path | None) -> None:
    """A card that records its data (``data.synthetic``, ``data.root``) must match what the chapter asks for: a reader's
    folder ``data_dir``, or a synthetic set when None."""
    data = card.get("data") or {}
    if "synthetic" not in data:
        return
    trained_on = "synthetic data" if data["synthetic"] else str(data.get("root"))
    wanted = "synthetic data" if data_dir is None else str(data_dir)
    same_folder = data_dir is not None and not data["synthetic"] and Path(data["root"]).resolve() == data_dir.resolve()
    if (data_dir is None and data["synthetic"]) or same_folder:
        return
    raise ValueError(f"{folder}: card.json says data.root {trained_on}, but this chapter runs on {wanted}; run "
                     f"its chapter ({TRAINED_IN_CHAPTER[card['method']]}) again on this data")


def _train(method: str, folder: Path, size: str, seed: int, device) -> None:
    from echobook.runs import TRAINERS

    if method == "echofm-seg":
        train_echofm_segmentation(size, seed, device, folder)
    else:
        TRAINERS[method](None, folder, size=size, seed=seed, device=str(device), progress=False)


def train_echofm_segmentation(size: str, seed: int, device="cpu", folder: Path | None = None) -> Path:
    """Chapter 9's segmentation model as chapter 9 trains it (its synthetic hearts of ``seed``, the EchoFM encoder
    chapter 8 saved, or pretrained now with chapter 8's code, UNETR fine-tuned on the apical views), saved with its
    card; returns the folder."""
    from echobook.data.labels import CHAMBER_LABELS
    from echobook.methods import echofm

    r_pre, r = echofm.recipe(size), echofm.downstream_recipe(size)
    apical = echofm.downstream_set(r_pre, r, seed).of_views(echofm.APICAL_VIEWS)
    encoder, origin = echofm.downstream_encoder("EchoFM", size, seed, r_pre=r_pre, device=device,
                                                pretrain_epochs=r.pretrain_epochs, data_seed=seed)
    dls = echofm.downstream_dataloaders(apical.subset("TRAIN"), apical.subset("VAL"), "labels",
                                        batch_size=r.batch_size, device=device, seed=seed)
    torch.manual_seed(seed)
    learn = echofm.fit_quietly(echofm.segmentation_learner(dls, encoder.to(device), r), r.seg_epochs)
    test = apical.subset("TEST")
    summary = echofm.segmentation_report(echofm.predict_labels(learn.model, test), test)["summary"]
    metrics = {f"dice_{CHAMBER_LABELS[c]}": summary[CHAMBER_LABELS[c]]["dice"] for c in echofm.SEGMENTED_CLASSES}
    return echofm.save_segmentation_model(learn.model, size=size, seed=seed, encoder_start="EchoFM", metrics=metrics,
                                          clip_fps=r_pre.fps / r_pre.clip_stride, path=folder,
                                          extra={"encoder_origin": origin["note"], "test_clips": len(test),
                                                 "trained_by": "chapter 11 (no model was saved)"})


# --------------------------------------------------------------------------------------------- predictions

def predict_methods(models: dict[str, TrainedModel], recordings: list, truth: pd.DataFrame) -> pd.DataFrame:
    """Every model over every recording through ``echobook predict``'s path: one row per (method, recording) with
    the true and predicted EF, the spread over the recording's clips and the CPU seconds it took
    (``time.process_time``: all of this process's threads). ``models``: method -> :class:`TrainedModel`."""
    from echobook.predict import predict_recording, summarise

    rows = []
    for method, trained in models.items():
        model, card = trained.model, trained.card
        for recording, ef_true in zip(recordings, truth["ef_true"]):
            start = time.process_time()
            row = summarise(predict_recording(model, card, recording), card)
            rows.append({"method": method, "recording": recording.name, "ef_true": float(ef_true),
                         "ef_pred": row["ef_percent"], "ef_sd_over_clips": row["ef_sd_over_clips"],
                         "cpu_seconds": time.process_time() - start})
    return pd.DataFrame(rows)


@torch.no_grad()
def recording_embedding(model: torch.nn.Module, card: dict, recording) -> np.ndarray:
    """``[D]`` the model's encoder embedding of a recording: the mean over the same sliding-window clips
    :func:`~echobook.predict.predict_recording` feeds it. For a model with an ``encoder`` giving ``[B, D]``
    (CoReEcho)."""
    from echobook.predict import clips_of, model_frames, normalisation, window_starts

    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise ValueError(f"a {card.get('method')!r} model has no `encoder` attribute to embed with")
    pre = card["preprocessing"]
    frames = model_frames(recording, card)
    clips = clips_of(frames, window_starts(len(frames), pre["clip_frames"], pre["clip_stride"]), pre["clip_frames"],
                     pre["clip_stride"])
    mean, std = normalisation(pre, frames)
    device = next(model.parameters()).device
    embeddings = encoder((torch.from_numpy(clips).to(device).float() - mean) / std)
    if embeddings.ndim != 2:
        raise ValueError(f"the {card.get('method')!r} encoder gives shape {tuple(embeddings.shape)}, not [B, D]")
    return embeddings.float().mean(0).cpu().numpy().astype(np.float64)


# --------------------------------------------------------------------------------------------- scores

def conformal_half_widths(calibration: pd.DataFrame, alpha: float | None = None) -> dict[str, float]:
    """Each method's split-conformal half-width (:func:`echobook.metrics.conformal_half_width`) from its absolute
    errors on the calibration recordings (a :func:`predict_methods` table)."""
    from echobook.metrics import conformal_half_width
    from echobook.runs import CONFORMAL_ALPHA  # the cards' 90 % interval, so that all of them are alike

    alpha = CONFORMAL_ALPHA if alpha is None else alpha
    return {method: conformal_half_width(group["ef_pred"] - group["ef_true"], alpha)
            for method, group in calibration.groupby("method", sort=False)}


def method_scores(table: pd.DataFrame, half_widths: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per method of a :func:`predict_methods` table: MAE, RMSE, R² (:func:`~echobook.metrics.
    regression_metrics`), the low-EF MAE (truth under 40 %), recordings without an EF, CPU seconds per recording,
    and, with ``half_widths``, the share of recordings whose truth lies inside ``EF +- half-width``."""
    from echobook.methods.e3net import LOW_EF_PERCENT, low_ef_mae
    from echobook.metrics import interval_coverage, regression_metrics

    rows = {}
    for method, group in table.groupby("method", sort=False):
        ok = group[np.isfinite(group["ef_pred"])]
        row = {**regression_metrics(ok["ef_pred"], ok["ef_true"]),
               "low_ef_mae": low_ef_mae(ok["ef_pred"], ok["ef_true"]) if (ok["ef_true"] < LOW_EF_PERCENT).any()
               else float("nan"),
               "recordings": len(group), "no_ef": int(len(group) - len(ok)),
               "cpu_seconds": float(group["cpu_seconds"].mean())}
        if half_widths is not None:
            row["half_width"] = half_widths[method]
            covered = interval_coverage(ok["ef_pred"], ok["ef_true"], half_widths[method]) * len(ok)
            row["coverage"] = covered / len(group)  # a recording without an EF is not covered
        rows[method] = row
    return pd.DataFrame(rows).T


def error_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation of the methods' signed errors (predicted minus true EF) over the recordings all of them
    gave an EF for: near 1, they err on the same recordings in the same direction."""
    errors = table.assign(error=table["ef_pred"] - table["ef_true"]).pivot(index="recording", columns="method",
                                                                          values="error")
    return errors.dropna()[list(dict.fromkeys(table["method"]))].corr()


__all__ = ["COMPARISON_SEED_OFFSET", "ComparisonRecipe", "EF_ROUTES", "METHODS", "METHOD_NAMES", "RECIPES", "SHIFTS",
           "Shift", "TRAINED_IN_CHAPTER", "TrainedModel", "conformal_half_widths", "error_correlations",
           "load_or_train", "method_scores", "predict_methods", "recipe", "recording_embedding", "set_seeds",
           "shift_named", "synthetic_recordings", "train_echofm_segmentation"]
