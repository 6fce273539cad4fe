"""``echobook synth echonet|camus|hmcqu|dicom OUT`` and ``echobook check-data echonet|camus|hmcqu DIR``: the data subcommands.

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
    _add_synth_camus(formats)
    _add_synth_hmcqu(formats)
    _add_synth_dicom(formats)


def _add_engine_options(parser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="take the image size and frames of a size preset (default: the engine's)")
    parser.add_argument("--overwrite", action="store_true", help="replace the dataset's files in a non-empty OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_synth_camus(formats) -> None:
    camus = formats.add_parser(
        "camus", help="CAMUS layout: 2CH and 4CH half sequences, ED/ES label maps, Info_*.cfg",
        description="Write synthetic patients in CAMUS's layout (2019 MetaImage or 2023 NIfTI): both apical views "
                    "of one synthetic heart, CAMUS's image-quality proportions, EF spread with about half below 45 %%.")
    camus.add_argument("out", metavar="OUT", help="folder to write (must be empty or new unless --overwrite)")
    camus.add_argument("--patients", type=int, default=20, help="number of patients (default: 20)")
    camus.add_argument("--release", choices=["2019", "2023"], default="2019",
                       help="2019: training/, testing/, .mhd/.raw, listSubGroups/; 2023: database_nifti/, .nii.gz, "
                            "database_split/ (default: 2019)")
    _add_engine_options(camus)
    camus.set_defaults(func=_synth_camus)


def _add_synth_hmcqu(formats) -> None:
    hmcqu = formats.add_parser(
        "hmcqu", help="HMC-QU layout: A4C.xlsx, HMC-QU/A4C/*.avi, LV wall masks (.mat)",
        description="Write synthetic A4C recordings in HMC-QU's Kaggle layout: about two with a regional "
                    "wall-motion defect (MI) for each normal one, a caption and an ECG strip outside the sector.")
    hmcqu.add_argument("out", metavar="OUT", help="folder to write (must be empty or new unless --overwrite)")
    hmcqu.add_argument("--videos", type=int, default=30, help="number of recordings (default: 30)")
    _add_engine_options(hmcqu)
    hmcqu.set_defaults(func=_synth_hmcqu)


def _add_synth_dicom(formats) -> None:
    from echobook.data.dicom import COLOURS

    dicom = formats.add_parser(
        "dicom", help="scanner-style DICOM cine loops: region tags, colour, burned-in caption, ECG strip",
        description="Write synthetic A4C cine loops as Ultrasound Multi-frame DICOM files, on a wider screen with a "
                    "burned-in caption and an ECG strip outside the sector, and truth.csv (EF, volumes, ED/ES).")
    dicom.add_argument("out", metavar="OUT", help="folder to write (must be empty or new unless --overwrite)")
    dicom.add_argument("--videos", type=int, default=4, help="number of recordings (default: 4)")
    dicom.add_argument("--colour", choices=list(COLOURS), default="RGB as YBR",
                       help="how the pixels are stored (default: 'RGB as YBR', JPEG labelled RGB, DICOM CP 156)")
    dicom.add_argument("--no-region-tags", action="store_true",
                       help="no SequenceOfUltrasoundRegions: the sector must be found from the pixels, spacing unknown")
    dicom.add_argument("--rate-tag", choices=["CineRate", "FrameTime"], default="CineRate",
                       help="the tag holding the frame rate (default: CineRate)")
    _add_engine_options(dicom)
    dicom.set_defaults(func=_synth_dicom)


def _synth_dicom(args) -> int:
    from echobook.data.dicom import synth_dicom

    try:
        out = synth_dicom(args.out, args.videos, args.seed, _engine_config(args), colour=args.colour,
                          region_tags=not args.no_region_tags, rate_tag=args.rate_tag, overwrite=args.overwrite,
                          progress=not args.quiet)
    except (FileExistsError, ValueError) as error:
        print(f"echobook synth dicom: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.videos} DICOM recordings ({args.colour}, "
          f"{'no region tags' if args.no_region_tags else 'region tags'}) and truth.csv to {out}")
    return 0


def _engine_config(args):
    from echobook.data import synthetic

    return synthetic.config_for_preset(PRESETS[args.preset]) if args.preset else synthetic.SyntheticConfig()


def _synth_camus(args) -> int:
    from echobook.data.camus import check_camus, write_camus

    try:
        out = write_camus(args.out, args.patients, args.seed, _engine_config(args), release=args.release,
                          overwrite=args.overwrite, progress=not args.quiet)
    except (FileExistsError, ValueError) as error:
        print(f"echobook synth camus: {error}", file=sys.stderr)
        return 2
    report = check_camus(out)
    counts = ", ".join(f"{split} {n}" for split, n in report.split_counts.items() if n)
    print(f"wrote {sum(report.split_counts.values())} patients to {out} (CAMUS {report.release}: {counts})")
    return 0 if report.usable else 1


def _synth_hmcqu(args) -> int:
    from echobook.data.hmcqu import check_hmcqu, write_hmcqu

    try:
        out = write_hmcqu(args.out, args.videos, args.seed, _engine_config(args), overwrite=args.overwrite,
                          progress=not args.quiet)
    except (FileExistsError, ValueError) as error:
        print(f"echobook synth hmcqu: {error}", file=sys.stderr)
        return 2
    report = check_hmcqu(out, open_videos=False)
    print(f"wrote {report.recordings} recordings to {out} (HMC-QU: MI {report.mi}, normal "
          f"{report.recordings - report.mi}, masks {report.masks})")
    return 0 if report.usable else 1


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
    echonet.add_argument("--no-decode", action="store_true",
                         help="open headers but do not decode each video's last frame (faster on huge folders; "
                              "a truncated video is then found only when a loader reads it)")
    echonet.add_argument("--json", action="store_true", help="print the report as JSON")
    echonet.set_defaults(func=_check_echonet)
    camus = formats.add_parser("camus", help="a CAMUS folder, 2019 (MetaImage) or 2023 (NIfTI) release")
    camus.add_argument("folder", metavar="DIR")
    camus.add_argument("--no-open", action="store_true", help="only read the cfgs and check that files exist")
    camus.add_argument("--json", action="store_true", help="print the report as JSON")
    camus.set_defaults(func=_check_camus)
    hmcqu = formats.add_parser("hmcqu", help="an HMC-QU folder (the Kaggle layout: A4C.xlsx, HMC-QU/A4C/)")
    hmcqu.add_argument("folder", metavar="DIR")
    hmcqu.add_argument("--no-open", action="store_true", help="do not decode the videos nor read the masks")
    hmcqu.add_argument("--json", action="store_true", help="print the report as JSON")
    hmcqu.set_defaults(func=_check_hmcqu)


def _check_echonet(args) -> int:
    from echobook.data.echonet import check_echonet

    report = check_echonet(args.folder, open_videos=not args.no_open, decode=not args.no_decode)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0 if report.usable else 1


def _check_camus(args) -> int:
    from echobook.data.camus import check_camus

    report = check_camus(args.folder, open_files=not args.no_open)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0 if report.usable else 1


def _check_hmcqu(args) -> int:
    from echobook.data.hmcqu import check_hmcqu

    report = check_hmcqu(args.folder, open_videos=not args.no_open)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0 if report.usable else 1
