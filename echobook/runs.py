"""``echobook train METHOD``: a method's recipe outside a notebook, into a run folder with a model card.

A run folder holds the weights and card (:mod:`echobook.cards`) and one checkpoint folder per stage, so a
killed run started again with the same command continues where it stopped
(:func:`echobook.training.fit_resumable`). :func:`load_trained` gives back the model of any run folder,
built from its card, for ``echobook predict`` and the chapters.

``TRAINERS`` and ``BUILDERS`` are the one place where a method's name is dispatched.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from echobook.cards import ef_preprocessing, new_card, read_with_card, save_with_card


def _quiet_fit(learn, epochs: int, folder: Path, progress: bool) -> None:
    from echobook.training import fit_resumable

    if progress:
        fit_resumable(learn, epochs, folder)
        return
    with learn.no_bar(), learn.no_logging():
        fit_resumable(learn, epochs, folder)


def train_coreecho(data_dir: str | os.PathLike | None, out: str | os.PathLike, *, size: str = "auto", seed: int = 0,
                   device: str = "auto", epochs: int | None = None, probe_epochs: int | None = None,
                   progress: bool = True) -> dict:
    """CoReEcho's two stages at a size's recipe on an EchoNet-style folder (None: the synthetic set of that
    size), scored on its TEST split, saved with a card in ``out``; returns the card."""
    from echobook.config import get_preset, resolve_device, seed_everything
    from echobook.data.clips import echonet_dataloaders, echonet_split, eval_dataloader
    from echobook.methods import coreecho
    from echobook.training import evaluate

    preset, out = get_preset(size), Path(out)
    recipe = coreecho.recipe(preset.name)
    recipe = dataclasses.replace(recipe, epochs=epochs or recipe.epochs, probe_epochs=probe_epochs or recipe.probe_epochs)
    root = Path(data_dir) if data_dir else _synthetic_root(preset, seed)
    device = resolve_device(device)
    seed_everything(seed)
    two_clips = echonet_dataloaders(root, preset, two_clips=True, device=device, seed=seed)
    one_clip = echonet_dataloaders(root, preset, two_clips=False, device=device, seed=seed)
    mean, std = two_clips.normalisation
    stage1 = coreecho.coreecho_stage1_learner(two_clips, recipe.encoder, **recipe.learner_kwargs)
    _quiet_fit(stage1, recipe.epochs, out / "stage1", progress)
    stage2 = coreecho.coreecho_stage2_learner(stage1.model, one_clip, lr=recipe.probe_learning_rate)
    _quiet_fit(stage2, recipe.probe_epochs, out / "stage2", progress)
    def scored(split):
        loader = eval_dataloader(echonet_split(root, split), clip_frames=preset.clip_frames,
                                 clip_stride=preset.clip_stride, batch_size=preset.batch_size, mean=mean, std=std,
                                 eval_clips=preset.eval_clips, image_size=preset.crop_size, device=device)
        return evaluate(stage2.model, loader)

    scores, calibration = scored("TEST"), scored("VAL")
    interval = conformal_interval(calibration, scores)
    train = echonet_split(root, ("TRAIN", "VAL"))  # what the model saw: its fingerprint and frame rate
    card = new_card(
        method="coreecho", variant=recipe.encoder, size=preset.name, seed=seed,
        model_kwargs=recipe.model_kwargs, mean_ef_percent=float(np.mean(train.subset("TRAIN").ef_percent)),
        recipe=dataclasses.asdict(recipe),
        preprocessing=ef_preprocessing(preset, mean, std, float(np.nanmedian(train.fps))),
        data={"root": str(root), "synthetic": not data_dir,
              "fingerprint": _fingerprint(train)},
        metrics={"test_videos": scores["videos"], "mae": scores["mae"], "rmse": scores["rmse"], "r2": scores["r2"],
                 "test_interval_coverage": interval["test_coverage"]},
        conformal=interval)
    save_with_card(out, stage2.model.state_dict(), card)
    return card


CONFORMAL_ALPHA = 0.1  # a 90 % interval


def conformal_interval(calibration, test, alpha: float = CONFORMAL_ALPHA) -> dict:
    """The split-conformal EF interval of a trained model: its half-width from the VAL videos' absolute
    errors (the calibration set held with the card), and the share of TEST videos it covers."""
    from echobook.metrics import conformal_half_width, interval_coverage

    width = conformal_half_width(calibration["ef_percent_pred"] - calibration["ef_percent_true"], alpha)
    return {"alpha": alpha, "half_width_percent": width, "calibration_videos": int(calibration["videos"]),
            "test_coverage": interval_coverage(test["ef_percent_pred"], test["ef_percent_true"], width)}


def _fingerprint(table) -> dict:
    from echobook.cards import data_fingerprint

    return data_fingerprint(table.names, table.ef_percent, table.splits)


def _synthetic_root(preset, seed: int) -> Path:
    from echobook.data.synthetic import cached_synthetic_echonet, config_for_preset

    return cached_synthetic_echonet(preset.videos, seed, config_for_preset(preset))


def build_coreecho(card: dict) -> torch.nn.Module:
    from echobook.methods.coreecho import coreecho_model

    return coreecho_model(card["variant"], mean_ef_percent=card["mean_ef_percent"], **card.get("model_kwargs", {}))


def build_e3net(card: dict) -> torch.nn.Module:
    from echobook.methods.e3net import build_from_card

    return build_from_card(card)


TRAINERS = {"coreecho": train_coreecho}
BUILDERS = {"coreecho": build_coreecho, "e3net": build_e3net}


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The model of a run folder (or its weights file), built from its card, in eval mode, and the card.

    A card of a method this version cannot build, or weights that do not fit the card's model, raise a
    :class:`~echobook.training.CheckpointError` naming the file before anything is loaded.
    """
    from echobook.training import CheckpointError, check_state_fits

    checkpoint, card = read_with_card(path)
    if card["method"] not in BUILDERS:
        raise CheckpointError(f"{path}: a {card['method']!r} model; this version builds {sorted(BUILDERS)}")
    model = BUILDERS[card["method"]](card)
    check_state_fits(model, checkpoint["model"], Path(path), f"{card['method']} {card['variant']}")
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), card


# --------------------------------------------------------------------------------------------- the command
def add_train_parser(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train a method's recipe on a folder (or the synthetic set) into a run folder with a card",
        description="Train a method as its chapter does, outside a notebook. Started again with the same "
                    "command, a killed run continues from its last epoch.")
    train.add_argument("method", choices=sorted(TRAINERS))
    train.add_argument("--data", default="", help="an EchoNet-style folder (default: the synthetic set of the size)")
    train.add_argument("--out", required=True, help="the run folder (weights, card.json, a checkpoint folder per stage)")
    train.add_argument("--size", default="auto", choices=["smoke", "small", "full", "auto"])
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.add_argument("--epochs", type=int, help="override the recipe's epochs (stage 1)")
    train.add_argument("--probe-epochs", type=int, help="override the recipe's second-stage epochs")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"echobook train: --out {str(out)!r} is a file, not a folder", file=sys.stderr)
        return 2
    if args.data and not Path(args.data).is_dir():
        print(f"echobook train: --data {args.data!r}: no such folder", file=sys.stderr)
        return 2
    start = time.perf_counter()
    card = TRAINERS[args.method](args.data or None, out, size=args.size, seed=args.seed, device=args.device,
                                 epochs=args.epochs, probe_epochs=args.probe_epochs, progress=not args.quiet)
    metrics = ", ".join(f"{k} {v:.3g}" for k, v in card.get("metrics", {}).items())
    print(f"{args.method} {card['variant']} ({card['size']}, seed {card['seed']}) trained in "
          f"{time.perf_counter() - start:.0f} s: {metrics}\nweights and card: {out}")
    return 0
