"""The ``echobook`` command: ``echobook run`` reruns chapters in batch, and the data commands."""
from __future__ import annotations

import argparse
import sys


def add_run_parser(subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="execute chapters with papermill, one output notebook per run and a CSV of glued values",
        description="Execute chapters with papermill. CHAPTER is a notebook path, a file stem "
                    "(01_echo_data) or a chapter number (1). A failed run is reported and the others go on.")
    run.add_argument("chapters", nargs="+", metavar="CHAPTER")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a chapter parameter (VALUE is read as YAML: 3 is an int, 0.1 a float)")
    run.add_argument("--size", choices=["smoke", "small", "full", "auto"], help="shorthand for -p SIZE S")
    run.add_argument("--out", default="runs", help="folder for executed notebooks and runs.csv (default: runs)")
    run.add_argument("--timeout", type=float, default=None, help="seconds allowed per cell (default: none)")
    run.set_defaults(func=_run)


def _run(args) -> int:
    from echobook.runner import UnknownParameterError, parse_parameters, run_chapters

    parameters = parse_parameters(args.parameter)
    if args.size:
        parameters["SIZE"] = args.size
    try:
        results, csv_path = run_chapters(args.chapters, out_dir=args.out, parameters=parameters,
                                         cell_timeout_s=args.timeout)
    except (UnknownParameterError, NotADirectoryError) as error:
        print(f"echobook run: {error}", file=sys.stderr)
        return 2
    for result in results:
        print(result.describe())
    print(f"runs table: {csv_path}")
    return 0 if all(result.ok for result in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="echobook", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_run_parser(subparsers)
    from echobook.data.commands import add_check_data_parser, add_synth_parser
    add_synth_parser(subparsers)
    add_check_data_parser(subparsers)
    from echobook.bench import add_bench_parser
    add_bench_parser(subparsers)
    from echobook.student import add_student_parser
    add_student_parser(subparsers)
    from echobook.runs import add_train_parser
    add_train_parser(subparsers)
    from echobook.predict import add_predict_parser
    add_predict_parser(subparsers)
    from echobook.ledger import add_ledger_parser
    add_ledger_parser(subparsers)
    from echobook.bookbuild import add_book_execute_parser
    add_book_execute_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
