"""``echobook synth echonet OUT`` and ``echobook check-data echonet DIR``: the data subcommands.

:mod:`echobook.cli` registers them with :func:`add_synth_parser` and :func:`add_check_data_parser`.
"""
from __future__ import annotations

import dataclasses
import json
import sys

from echobook.config import PRESETS
from echobook.data.labels import QUALITIES, VIEW_CHOICES


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
    echonet.add_argument("--preset", choices=list(PRESETS), default=None,
                         help="start from a size preset's synthetic settings (default: the engine's defaults)")
    echonet.add_argument("--frames", type=int, default=None, help="frames per video")
    echonet.add_argument("--size", type=int, default=None, help="pixels per side of each video")
    echonet.add_argument("--quality", choices=list(QUALITIES), default=None,
                         help="force one image quality (default: a mix, mostly Good and Medium)")
    echonet.add_argument("--ef", type=float, default=None, metavar="PERCENT", help="one fixed EF for every video")
    echonet.add_argument("--ef-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                         help="EF drawn uniformly in [LOW, HIGH] percent (default: EchoNet-Dynamic's distribution)")
    echonet.add_argument("--view", choices=list(VIEW_CHOICES), default=None,
                         help="apical view, or mixed: half and half (default: A4C)")
    echonet.add_argument("--workers", type=int, default=1,
                         help="processes making (or, with --device, planning) and encoding the videos (default: 1)")
    echonet.add_argument("--device", default="numpy",
                         help="where the images are formed: numpy (default), or a torch device such as cuda or cpu; "
                              "labels are the same on every device, pixels differ slightly")
    echonet.add_argument("--overwrite", action="store_true",
                         help="replace FileList.csv, VolumeTracings.csv and Videos/*.avi in a non-empty OUT")
    echonet.add_argument("--quiet", action="store_true", help="no progress lines")
    echonet.set_defaults(func=_synth_echonet)


# Command-line option -> SyntheticConfig field.
CONFIG_FIELDS = {"frames": "frames", "size": "image_size", "quality": "quality", "ef": "ef_percent",
                 "ef_range": "ef_range", "view": "view"}


def synthetic_config(args):
    """The ``SyntheticConfig`` the options ask for (a preset's sizes first, then each option given)."""
    from echobook.data import synthetic

    config = synthetic.config_for_preset(PRESETS[args.preset]) if args.preset else synthetic.SyntheticConfig()
    changes = {field: getattr(args, option) for option, field in CONFIG_FIELDS.items()
               if getattr(args, option) is not None}
    if "ef_range" in changes:
        changes["ef_range"] = tuple(changes["ef_range"])
    return dataclasses.replace(config, **changes)


def _synth_echonet(args) -> int:
    from echobook.data.echonet import check_echonet
    from echobook.data.synthetic import synth_echonet

    try:
        out = synth_echonet(args.out, args.videos, args.seed, synthetic_config(args),
                            overwrite=args.overwrite, progress=not args.quiet, workers=args.workers,
                            device=args.device)
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
