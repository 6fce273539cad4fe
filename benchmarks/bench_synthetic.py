"""Throughput of the synthetic echo engine on one CPU core, and the time to make each preset's set.

    python benchmarks/bench_synthetic.py             # frames/s at every preset's size, one core
    python benchmarks/bench_synthetic.py --sets 2    # also time the smoke and small sets with 2 processes
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from echobook.config import PRESETS  # noqa: E402
from echobook.data import synthetic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="videos timed per preset")
    parser.add_argument("--sets", type=int, default=0, metavar="WORKERS",
                        help="also make the whole smoke and small sets with this many processes")
    args = parser.parse_args()
    for name, preset in PRESETS.items():
        result = synthetic.benchmark(synthetic.config_for_preset(preset), videos=args.videos)
        print(f"{name:5s} {preset.image_size:3d} px x {preset.video_frames:3d} frames: "
              f"{result['frames_per_second']:7.0f} frames/s on one core, {result['seconds_per_video'] * 1000:6.0f} ms a video"
              + (f"; the {preset.videos} videos would take {preset.videos * result['seconds_per_video']:.0f} s on one core"
                 if name == "full" else ""))
    if args.sets:
        for name in ("smoke", "small"):
            preset = PRESETS[name]
            start = time.perf_counter()
            synthetic.make_videos(0, preset.videos, synthetic.config_for_preset(preset), workers=args.sets)
            print(f"{name} set ({preset.videos} videos) with {args.sets} processes: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
