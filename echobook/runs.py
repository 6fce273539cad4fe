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
    """``fit_resumable``; under torchrun (``--gpus N``) through fastai/Accelerate's DDP, rank 0 writing checkpoints."""
    from echobook.distributed import distributed_ctx
    from echobook.training import fit_resumable

    with distributed_ctx(learn):
        if progress:
            fit_resumable(learn, epochs, folder)
            return
        with learn.no_bar(), learn.no_logging():
            fit_resumable(learn, epochs, folder)


def _training_setup(data_dir, size: str, seed: int, device: str):
    """The preset of ``size``, the data folder (None: the synthetic set of that size and seed) and the device;
    seeds everything."""
    from echobook.config import get_preset, resolve_device, seed_everything
    from echobook.distributed import rank_device

    preset = get_preset(size)
    root = Path(data_dir) if data_dir else _synthetic_root(preset, seed)
    device = rank_device(resolve_device(device))  # cuda:LOCAL_RANK under torchrun
    seed_everything(seed)
    return preset, root, device


def scored_split(model, root: Path, preset, split: str, mean: float, std: float, device):
    """Per-video EF of ``model`` on one split, the preset's fixed test clips averaged (the chapters' protocol):
    :func:`echobook.training.evaluate`'s dict. Chapter 10 calibrates its saved model's interval with it."""
    from echobook.data.clips import echonet_split, eval_dataloader
    from echobook.training import evaluate

    loader = eval_dataloader(echonet_split(root, split), clip_frames=preset.clip_frames,
                             clip_stride=preset.clip_stride, batch_size=preset.batch_size, mean=mean, std=std,
                             eval_clips=preset.eval_clips, image_size=preset.crop_size, device=device)
    return evaluate(model, loader)


def _test_and_calibrate(model, root: Path, preset, mean: float, std: float, device) -> tuple[dict, dict, dict]:
    """TEST scores, the conformal interval calibrated on VAL (:func:`conformal_interval`) and the training data's
    description for the card (its root, fingerprint, median frame rate)."""
    from echobook.data.clips import echonet_split

    scores = scored_split(model, root, preset, "TEST", mean, std, device)
    interval = conformal_interval(scored_split(model, root, preset, "VAL", mean, std, device), scores)
    train = echonet_split(root, ("TRAIN", "VAL"))  # what the model saw: its fingerprint and frame rate
    data = {"root": str(root), "fingerprint": _fingerprint(train), "fps": float(np.nanmedian(train.fps)),
            "mean_ef_percent": float(np.mean(train.subset("TRAIN").ef_percent))}
    return scores, interval, data


def ef_card_metrics(scores, interval: dict) -> dict:
    """The EF metrics every EF model's card holds (``echobook predict`` and Appendix A read them)."""
    return {"test_videos": scores["videos"], "mae": scores["mae"], "rmse": scores["rmse"], "r2": scores["r2"],
            "test_interval_coverage": interval["test_coverage"]}


def train_coreecho(data_dir: str | os.PathLike | None, out: str | os.PathLike, *, size: str = "auto", seed: int = 0,
                   device: str = "auto", epochs: int | None = None, probe_epochs: int | None = None,
                   progress: bool = True) -> dict:
    """CoReEcho's two stages at a size's recipe on an EchoNet-style folder (None: the synthetic set of that
    size), scored on its TEST split, saved with a card in ``out``; returns the card."""
    from echobook.data.clips import echonet_dataloaders
    from echobook.distributed import is_main_process
    from echobook.methods import coreecho

    out = Path(out)
    preset, root, device = _training_setup(data_dir, size, seed, device)
    recipe = coreecho.recipe(preset.name)
    recipe = dataclasses.replace(recipe, epochs=epochs or recipe.epochs, probe_epochs=probe_epochs or recipe.probe_epochs)
    two_clips = echonet_dataloaders(root, preset, two_clips=True, device=device, seed=seed)
    one_clip = echonet_dataloaders(root, preset, two_clips=False, device=device, seed=seed)
    if recipe.resident_data and device.type == "cuda":  # the set decoded once into GPU memory, shared by both
        from echobook.data.resident import resident_dataloaders

        two_clips, one_clip = resident_dataloaders(two_clips, one_clip, device=device)
    mean, std = two_clips.normalisation
    stage1 = coreecho.coreecho_stage1_learner(two_clips, recipe.encoder, **recipe.learner_kwargs)
    _quiet_fit(stage1, recipe.epochs, out / "stage1", progress)
    stage2 = coreecho.coreecho_stage2_learner(stage1.model, one_clip, lr=recipe.probe_learning_rate)
    _quiet_fit(stage2, recipe.probe_epochs, out / "stage2", progress)
    if not is_main_process():  # --gpus N: rank 0 alone scores the model and writes the card
        return {}
    card = coreecho_card(stage2.model, root, preset, recipe, seed, mean, std, device, synthetic=not data_dir)
    save_with_card(out, stage2.model.state_dict(), card)
    return card


def train_coreecho_l1(data_dir: str | os.PathLike | None, out: str | os.PathLike, *, size: str = "auto",
                      seed: int = 0, device: str = "auto", epochs: int | None = None, probe_epochs: int | None = None,
                      progress: bool = True) -> dict:
    """CoReEcho's L1 baseline (chapter 5's ablation (a)): CoReEcho's encoder and head trained end to end with L1 on
    one clip per video, as many epochs as CoReEcho's stage 1, scored and saved like :func:`train_coreecho`; returns
    the card. ``probe_epochs`` is not used (one stage)."""
    from echobook.data.clips import echonet_dataloaders
    from echobook.methods import coreecho

    out = Path(out)
    preset, root, device = _training_setup(data_dir, size, seed, device)
    recipe = coreecho.recipe(preset.name)
    recipe = dataclasses.replace(recipe, epochs=epochs or recipe.epochs)
    one_clip = echonet_dataloaders(root, preset, two_clips=False, device=device, seed=seed)
    mean, std = one_clip.normalisation
    torch.manual_seed(seed)
    learn = coreecho.l1_learner(one_clip, recipe.encoder, **recipe.learner_kwargs)
    _quiet_fit(learn, recipe.epochs, out / "train", progress)
    card = coreecho_card(learn.model, root, preset, recipe, seed, mean, std, device, synthetic=not data_dir,
                         method="coreecho-l1")
    save_with_card(out, learn.model.state_dict(), card)
    return card


def coreecho_card(model, root: Path, preset, recipe, seed: int, mean: float, std: float, device, *,
                  synthetic: bool, method: str = "coreecho") -> dict:
    """A trained CoReEcho model's card: TEST scores and the conformal interval calibrated on VAL of the folder
    ``root``, the recipe, the preprocessing (``mean``, ``std`` of its loaders) and the data's fingerprint. The
    one card of ``echobook train coreecho`` and of chapter 5's model, so ``echobook predict`` reads either;
    ``method`` ``"coreecho-l1"``: the L1 baseline (the same model, trained with L1 alone)."""
    scores, interval, data = _test_and_calibrate(model, Path(root), preset, mean, std, device)
    return new_card(
        method=method, variant=recipe.encoder, size=preset.name, seed=seed,
        model_kwargs=recipe.model_kwargs, mean_ef_percent=data["mean_ef_percent"],
        recipe=dataclasses.asdict(recipe), preprocessing=ef_preprocessing(preset, mean, std, data["fps"]),
        data={"root": data["root"], "synthetic": bool(synthetic), "fingerprint": data["fingerprint"]},
        metrics=ef_card_metrics(scores, interval), conformal=interval)


def train_e3net(data_dir: str | os.PathLike | None, out: str | os.PathLike, *, size: str = "auto", seed: int = 0,
                device: str = "auto", epochs: int | None = None, probe_epochs: int | None = None,
                progress: bool = True) -> dict:
    """Echo-E3Net at a size's recipe (chapter 10: landmarks, volumes and EF from the Simpson-inspired loss) on an
    EchoNet-style folder with tracings (None: the synthetic set of that size), scored on TEST (EF, volumes,
    landmarks), the conformal interval calibrated on VAL, saved with its card in ``out``; returns the card.
    ``probe_epochs`` is not used (one stage)."""
    from echobook.methods import e3net

    out = Path(out)
    preset, root, device = _training_setup(data_dir, size, seed, device)
    recipe = e3net.recipe(preset.name)
    dls = e3net.e3net_dataloaders(root, preset, wall_points=recipe.wall_points, device=device, seed=seed)
    mean, std = dls.normalisation
    torch.manual_seed(seed)
    learn = e3net.e3net_learner(dls, recipe.model, **recipe.learner_kwargs)
    _quiet_fit(learn, epochs or recipe.epochs, out / "train", progress)
    scores, interval, data = _test_and_calibrate(learn.model, root, preset, mean, std, device)
    landmarks = e3net.evaluate_e3net(learn.model, e3net.e3net_eval_dataloader(
        root, preset, wall_points=recipe.wall_points, mean=mean, std=std, device=device))
    metrics = {**ef_card_metrics(scores, interval),
               **{k: landmarks[k] for k in ("landmark_error_px", "disc_ef_mae", "edv_rel_error", "esv_rel_error")}}
    card = e3net.e3net_card(learn.model, variant=recipe.model, size=preset.name, seed=seed, metrics=metrics,
                            normalisation=(mean, std), preset=preset, fps=data["fps"],
                            data={"root": data["root"], "synthetic": not data_dir, "fingerprint": data["fingerprint"]})
    card.update(recipe={**dataclasses.asdict(recipe), "epochs": epochs or recipe.epochs}, conformal=interval)
    save_with_card(out, learn.model.state_dict(), card)
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


def build_echofm_segmentation(card: dict) -> torch.nn.Module:
    from echobook.methods.echofm import build_segmentation_model

    return build_segmentation_model(card)


TRAINERS = {"coreecho": train_coreecho, "coreecho-l1": train_coreecho_l1, "e3net": train_e3net}
BUILDERS = {"coreecho": build_coreecho, "coreecho-l1": build_coreecho, "e3net": build_e3net,
            "echofm-seg": build_echofm_segmentation}


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
    train.add_argument("--gpus", type=int, default=1, metavar="N",
                       help=f"train on N GPUs (N CPU processes on a machine without one) through torchrun and "
                            f"fastai/Accelerate's DDP, each with the recipe's batch: {', '.join(DISTRIBUTED_TRAINERS)}")
    train.set_defaults(func=_train)


DISTRIBUTED_TRAINERS = ("coreecho",)  # whose trainer leaves the scoring and the card to rank 0


def _cli_args(args: argparse.Namespace) -> list[str]:
    """This ``echobook train`` command line, for torchrun to start once per rank."""
    argv = ["train", args.method]
    for name, value in vars(args).items():
        if name in ("command", "func", "method", "gpus") or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def _train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"echobook train: --out {str(out)!r} is a file, not a folder", file=sys.stderr)
        return 2
    if args.data and not Path(args.data).is_dir():
        print(f"echobook train: --data {args.data!r}: no such folder", file=sys.stderr)
        return 2
    if args.gpus < 1 or (args.gpus > 1 and args.method not in DISTRIBUTED_TRAINERS):
        print(f"echobook train {args.method}: --gpus {args.gpus}: at least 1, and more only for "
              f"{', '.join(DISTRIBUTED_TRAINERS)}", file=sys.stderr)
        return 2
    from echobook.distributed import is_main_process, relaunch, under_torchrun

    if args.gpus > 1 and not under_torchrun():
        return relaunch(args.gpus, _cli_args(args))
    start = time.perf_counter()
    card = TRAINERS[args.method](args.data or None, out, size=args.size, seed=args.seed, device=args.device,
                                 epochs=args.epochs, probe_epochs=args.probe_epochs, progress=not args.quiet)
    if not is_main_process():
        return 0
    metrics = ", ".join(f"{k} {v:.3g}" for k, v in card.get("metrics", {}).items())
    print(f"{args.method} {card['variant']} ({card['size']}, seed {card['seed']}) trained in "
          f"{time.perf_counter() - start:.0f} s: {metrics}\nweights and card: {out}")
    return 0
