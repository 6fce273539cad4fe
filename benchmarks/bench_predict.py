"""Time per recording of ``echobook predict`` for each kind of model, on synthetic scanner-style DICOMs.

    python benchmarks/bench_predict.py                        # every model below, 3 recordings, 2 CPU threads
    python benchmarks/bench_predict.py --models e3net-smoke official-r2plus1d --recordings 5 --threads 1
    python benchmarks/bench_predict.py --no-report            # the CSVs only (no overlay video, no HTML report)

What is timed is the whole per-recording path of ``echobook predict`` (read and mask the DICOM, resample, resize,
every sliding-window clip through the model, beats, CSVs, and unless --no-report the overlay MP4 and the HTML
report): the ``seconds`` column of predictions.csv, and the process CPU time per recording. Inference time does
not depend on what the weights have learnt, so each model is a freshly initialised network of its recipe saved
with the card a trained run of that size would have (its input size, clip frames and stride, frame rate; chapter
9's segmentation model, ``echofm-seg-SIZE``, as chapter 9 saves it); the
official layouts are written as the released files are (echobook.official). The recordings are the engine's
hearts at 112 pixels on a 140 x 210 screen, ``--seconds`` long at the engine's frame rate (30-60 fps).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

MODELS = ("coreecho-smoke", "coreecho-small", "coreecho-full", "e3net-smoke", "e3net-full", "echofm-seg-smoke",
          "echofm-seg-small", "echofm-seg-full", "official-coreecho", "official-r2plus1d")
SYNTHETIC_FPS = 45.0  # the middle of the engine's 30-60 fps: what a trained run's card would say
TRAINING_GRAY = (30.0, 45.0)  # a synthetic set's gray mean and std (the card's normalisation)


def run_folder(name: str, folder: Path) -> Path:
    """A run folder (weights + card) for ``name``: ``METHOD-SIZE`` or ``official-...`` (a released layout)."""
    from echobook.cards import ef_preprocessing, new_card, save_with_card
    from echobook.config import get_preset

    if name == "official-r2plus1d":
        from torchvision.models.video import r2plus1d_18

        state = r2plus1d_18(weights=None, num_classes=1).state_dict()
        path = folder / "best.pt"
        torch.save({"epoch": 0, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
        return path
    if name == "official-coreecho":
        from echobook.methods.coreecho import coreecho_model

        model = coreecho_model("uniformer_s")
        path = folder / "best.pth"
        torch.save({"model": model.encoder.state_dict(), "regressor": model.head.state_dict()}, path)
        return path
    method, size = name.rsplit("-", 1)
    if method == "echofm-seg":
        return segmentation_folder(size, folder)
    preset = get_preset(size)
    preprocessing = ef_preprocessing(preset, *TRAINING_GRAY, SYNTHETIC_FPS)
    if method == "coreecho":
        from echobook.methods import coreecho

        recipe = coreecho.recipe(size)
        model = coreecho.coreecho_model(recipe.encoder, **recipe.model_kwargs)
        card = new_card(method="coreecho", variant=recipe.encoder, size=size, seed=0, model_kwargs=recipe.model_kwargs,
                        mean_ef_percent=55.0, preprocessing=preprocessing)
    else:
        from echobook.methods import e3net

        recipe = e3net.recipe(size)
        model = e3net.e3net_model(recipe.model)
        card = e3net.e3net_card(model, variant=recipe.model, size=size, seed=0, metrics={},
                                normalisation=TRAINING_GRAY, preset=preset, fps=SYNTHETIC_FPS)
    save_with_card(folder, model.state_dict(), card)
    return folder


def segmentation_folder(size: str, folder: Path) -> Path:
    """Chapter 9's segmentation model of ``size`` (its UNETR over a fresh encoder of chapter 8's recipe), saved
    with its card as chapter 9 saves it (clips at the pretraining clips' frame spacing)."""
    from echobook.methods import echofm

    pretraining = echofm.recipe(size)
    encoder, _ = echofm.downstream_encoder("random", size, 0)
    model = echofm.segmentation_model(encoder, echofm.downstream_recipe(size).decoder)
    return echofm.save_segmentation_model(model, size=size, seed=0, encoder_start="random", metrics={},
                                          clip_fps=pretraining.fps / pretraining.clip_stride, path=folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--recordings", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each recording (default 4 s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from echobook.data.dicom import synth_dicom
    from echobook.data.synthetic import SyntheticConfig
    from echobook.predict import predict_paths

    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    frames = int(round(args.seconds * 60))  # at most 60 fps: enough frames for the longest rate
    recordings = synth_dicom(work / "dicom", args.recordings, seed=0,
                             config=SyntheticConfig(image_size=112, frames=frames))
    print(f"{args.recordings} DICOM recordings of {frames} frames (112 px sector), torch threads {args.threads}, "
          f"reports {'off' if args.no_report else 'on'}")
    print(f"{'model':20s} {'s/recording (wall)':>19s} {'CPU s/recording':>16s}")
    for name in args.models:
        folder = work / name
        folder.mkdir()
        model = run_folder(name, folder)
        # an untimed first pass: first-call costs (imports of plotly and the video writer, allocator growth)
        predict_paths([recordings], model, work / f"warm-{name}", progress=False, reports=not args.no_report)
        cpu = time.process_time()
        summary = predict_paths([recordings], model, work / f"out-{name}", progress=False, reports=not args.no_report)
        cpu_per_recording = (time.process_time() - cpu) / len(summary)
        assert (summary["status"] == "ok").all(), summary["error"].tolist()
        print(f"{name:20s} {np.mean(summary['seconds']):19.2f} {cpu_per_recording:16.2f}", flush=True)


if __name__ == "__main__":
    main()
