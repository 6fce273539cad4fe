"""``echobook synth echonet OUT`` and ``echobook check-data echonet DIR``: the data subcommands.

:mod:`echobook.cli` registers them with :func:`add_synth_parser` and :func:`add_check_data_parser`.
"""
from __future__ import annotations

import dataclasses
import json
import sys


def add_synth_parser(subparsers) -> None:
    synth = subparsers.add_parser(
        "synth", help="write a synthetic dataset in a public dataset's on-disk format",
        description="Write a synthetic dataset in the exact on-disk layout of a public dataset. "
                    "The same seed and options give the same files.")
    formats = synth.add_subparsers(dest="format", required=True)
    echonet = formats.add_parser(
        "echonet", help="EchoNet-Dynamic layout: FileList.csv, VolumeTracings.csv, Videos/*.avi",
        description="Write synthetic echocardiograms in the EchoNet-Dynamic layout.")
    echonet.add_argument("out", metavar="OUT", help="folder to write (must be empty or new unless --overwrite)")
    echonet.add_argument("--videos", type=int, default=48, help="number of videos (default: 48)")
    echonet.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    echonet.add_argument("--preset", choices=["smoke", "small", "full"], default=None,
                         help="start from a size preset's synthetic settings (default: the engine's defaults)")
    echonet.add_argument("--frames", type=int, default=None, help="frames per video")
    echonet.add_argument("--size", type=int, default=None, help="pixels per side of each video")
    echonet.add_argument("--quality", type=float, default=None, help="image quality, 0 (poor) to 1 (good)")
    echonet.add_argument("--ef-mean", type=float, default=None, help="mean ejection fraction, percent")
    echonet.add_argument("--ef-sd", type=float, default=None, help="standard deviation of the EF, percent")
    echonet.add_argument("--overwrite", action="store_true",
                         help="replace FileList.csv, VolumeTracings.csv and Videos/*.avi in a non-empty OUT")
    echonet.add_argument("--quiet", action="store_true", help="no progress lines")
    echonet.set_defaults(func=_synth_echonet)


# Command-line option -> the SyntheticConfig fields it may set (the first one the config has).
CONFIG_FIELDS = {
    "frames": ("frames", "video_frames", "n_frames"),
    "size": ("image_size", "size"),
    "quality": ("quality", "image_quality", "quality_mean"),
    "ef_mean": ("ef_mean", "ef_mean_percent"),
    "ef_sd": ("ef_sd", "ef_sd_percent", "ef_std", "ef_std_percent"),
}


def synthetic_config(args):
    """The ``SyntheticConfig`` the options ask for; an option the engine cannot honour is an error."""
    from echobook.data import synthetic

    config = synthetic.config_for_preset(args.preset) if args.preset else synthetic.SyntheticConfig()
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for option, candidates in CONFIG_FIELDS.items():
        value = getattr(args, option)
        if value is None:
            continue
        name = next((c for c in candidates if c in fields), None)
        if name is None:
            raise SystemExit(f"--{option.replace('_', '-')}: the synthetic engine has no such setting "
                             f"(SyntheticConfig fields: {', '.join(sorted(fields))})")
        changes[name] = value
    return dataclasses.replace(config, **changes)


def _synth_echonet(args) -> int:
    from echobook.data.echonet import check_echonet, synth_echonet

    try:
        out = synth_echonet(args.out, args.videos, args.seed, synthetic_config(args),
                            overwrite=args.overwrite, progress=not args.quiet)
    except (FileExistsError, ValueError) as error:
        print(f"echobook synth echonet: {error}", file=sys.stderr)
        return 2
    report = check_echonet(out)
    counts = ", ".join(f"{split} {report.split_counts[split]}" for split in ("TRAIN", "VAL", "TEST"))
    print(f"wrote {report.split_counts['ALL']} videos to {out} ({counts})")
    return 0 if report.usable else 1


def add_check_data_parser(subparsers) -> None:
    check = subparsers.add_parser(
        "check-data", help="check a dataset folder: counts per split, EF statistics, every problem found",
        description="Check a dataset folder in its published layout. Exits 1 when the folder cannot be used.")
    formats = check.add_subparsers(dest="format", required=True)
    echonet = formats.add_parser("echonet", help="an EchoNet-Dynamic-style folder (real or synthetic)")
    echonet.add_argument("folder", metavar="DIR")
    echonet.add_argument("--no-open", action="store_true",
                         help="only check that videos exist, without opening their headers (faster)")
    echonet.add_argument("--json", action="store_true", help="print the report as JSON")
    echonet.set_defaults(func=_check_echonet)


def _check_echonet(args) -> int:
    from echobook.data.echonet import check_echonet

    report = check_echonet(args.folder, open_videos=not args.no_open)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0 if report.usable else 1
