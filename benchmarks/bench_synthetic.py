"""Throughput of the synthetic echo engine per backend, and the time to write whole sets.

    python benchmarks/bench_synthetic.py                      # frames/s at every preset: numpy and torch-cpu
                                                              # (and cuda when there is a GPU), one CPU core
    python benchmarks/bench_synthetic.py --device numpy cuda  # the backends to compare
    python benchmarks/bench_synthetic.py --sets 2             # also time the smoke and small sets with 2 processes
    python benchmarks/bench_synthetic.py --full-set --workers 15 --device cuda
                                                              # write the full preset's 10,030 videos to a temp folder
    python benchmarks/bench_synthetic.py --full-set --workers 15 --device cuda --videos 1000
                                                              # ... 1,000 of them, and project the whole set

frames/s counts the whole video (NumPy plan + image formation); "image" counts the image
formation alone (plans made beforehand), the part a device takes over while worker processes
make the plans. A GPU run uses the GPU and one CPU core for everything else.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from echobook.config import PRESETS  # noqa: E402
from echobook.data import synthetic  # noqa: E402


def default_devices() -> list[str]:
    import torch

    return ["numpy", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def compare_backends(devices: list[str], videos: int) -> None:
    print(f"{'preset':6s} {'video':>14s} {'device':>6s} {'frames/s':>9s} {'image fr/s':>10s} {'ms/video':>9s} "
          f"{'plan ms':>8s}")
    for name, preset in PRESETS.items():
        config = synthetic.config_for_preset(preset)
        for device in devices:
            r = synthetic.benchmark(config, videos=videos, device=device)
            print(f"{name:6s} {preset.image_size:3d} px x {preset.video_frames:3d} f {r['device']:>6s} "
                  f"{r['frames_per_second']:9.0f} {r['render_frames_per_second']:10.0f} "
                  f"{r['seconds_per_video'] * 1000:9.1f} {r['plan_seconds_per_video'] * 1000:8.1f}"
                  + (f"   full set on one core: {preset.videos * r['seconds_per_video']:.0f} s"
                     if name == "full" else ""))


def time_sets(workers: int) -> None:
    for name in ("smoke", "small"):
        preset = PRESETS[name]
        start = time.perf_counter()
        synthetic.make_videos(0, preset.videos, synthetic.config_for_preset(preset), workers=workers)
        print(f"{name} set ({preset.videos} videos) with {workers} processes: {time.perf_counter() - start:.1f} s")


def time_full_set(workers: int, device: str, videos: int | None) -> None:
    """Write the full preset's set (or its first ``videos``) as `echobook synth echonet` does, timed."""
    preset = PRESETS["full"]
    count = preset.videos if videos is None else min(videos, preset.videos)
    print(f"the same as: echobook synth echonet OUT --preset full --videos {count} --workers {workers} "
          f"--device {device} --quiet")
    with tempfile.TemporaryDirectory(prefix="echobook-full-set-") as out:
        start = time.perf_counter()
        synthetic.synth_echonet(out, count, 0, synthetic.config_for_preset(preset), overwrite=True, workers=workers,
                                device=device)
        elapsed = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) / 1e6
    print(f"full preset ({preset.image_size} px x {preset.video_frames} frames), device {device}, {workers} workers: "
          f"{count} videos in {elapsed:.1f} s ({count / elapsed:.1f} videos/s, "
          f"{count * preset.video_frames / elapsed:.0f} frames/s, {size_mb:.0f} MB on disk)")
    if count < preset.videos:
        print(f"projected for all {preset.videos} videos: {elapsed * preset.videos / count:.0f} s "
              f"(the first seconds start the workers, so this errs high)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", nargs="+", default=None, metavar="DEVICE",
                        help="backends: numpy, cpu (torch), cuda (default: numpy cpu, and cuda if present); "
                             "with --full-set, the one to write with (default: cuda if present, else numpy)")
    parser.add_argument("--videos", type=int, default=None,
                        help="videos timed per preset and backend (default 8); with --full-set, how many of "
                             "the full set to write (default: all 10,030)")
    parser.add_argument("--sets", type=int, default=0, metavar="WORKERS",
                        help="also make the whole smoke and small sets with this many processes")
    parser.add_argument("--full-set", action="store_true",
                        help="time writing the full preset's EchoNet set (only this, not the comparison)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="with --full-set: processes that plan and encode (default: CPU cores - 1)")
    args = parser.parse_args()
    if args.full_set:
        device = args.device[0] if args.device else default_devices()[-1].replace("cpu", "numpy")
        time_full_set(args.workers, device, args.videos)
        return
    compare_backends(args.device or default_devices(), 8 if args.videos is None else args.videos)
    if args.sets:
        time_sets(args.sets)


if __name__ == "__main__":
    main()
