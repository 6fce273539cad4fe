"""Do two commits' chapters glue the same numbers? The check that a refactor changed no result.

    python tools/compare_glued.py OLD [NEW] [--chapters 1 2 5] [--size smoke] [--seed 0] [--out runs/compare]

Each commit is checked out in a git worktree (NEW defaults to the working tree itself) and every
chapter of its ``_toc.yml`` (or those named) is executed by papermill with ``SIZE``/``SEED`` set, the
kernel importing that commit's ``echobook`` (``PYTHONPATH``). Runs are kept in
``OUT/<commit>/`` and reused, so an interrupted comparison resumes. Then every glued value is
compared: numbers within ``--rtol`` (default 0: the same bits on a CPU), strings exactly. Timings
(names with ``seconds``, ``per_s``, ``_ms``, ``speedup`` or ``gflops``) are left out. Exit status 1 when anything differs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMING_MARKERS = ("seconds", "per_s", "_ms", "wall_s", "speedup", "gflops")  # machine speed, not results


def is_timing(name: str) -> bool:
    return any(marker in name for marker in TIMING_MARKERS)


def resolve_commit(ref: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=10", ref], check=True,
                          capture_output=True, text=True).stdout.strip()


def checkout(ref: str | None, scratch: Path) -> tuple[str, Path]:
    """(label, folder) of a commit's tree; ``None`` is the working tree as it is."""
    if ref is None:
        return "worktree", ROOT
    commit = resolve_commit(ref)
    folder = scratch / commit
    if not folder.is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), commit], check=True,
                       capture_output=True)
    return commit, folder


def run_tree(label: str, tree: Path, chapters: list[str] | None, parameters: dict, out: Path) -> dict[str, dict]:
    """Glued values per chapter stem; executes only what ``out`` does not hold yet."""
    out.mkdir(parents=True, exist_ok=True)
    record = out / "glued.json"
    # a commit's finished chapters are reused; the working tree may have changed since, so never
    done = json.loads(record.read_text()) if record.is_file() and label != "worktree" else {}
    # the kernel and this process import the tree's package: its runner, its chapters
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    script = (
        "import json, sys; from pathlib import Path; from echobook.runner import run_chapter, toc_chapters, find_chapter;"
        "tree, out, params, refs = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4]);"
        "nbs = [find_chapter(r, tree) for r in refs] if refs else toc_chapters(tree);"
        "res = {}\n"
        "for nb in nbs:\n"
        "    if nb.stem in json.loads(sys.argv[5]): continue\n"
        "    r = run_chapter(nb, out / nb.name, params)\n"
        "    print(r.describe().splitlines()[0], flush=True)\n"
        "    res[nb.stem] = {'ok': r.ok, 'error': r.error, 'glued': r.glued}\n"
        "print('RESULT' + json.dumps(res, default=str))\n"
    )
    with tempfile.TemporaryDirectory() as cache:  # a fresh synthetic-set cache: each tree makes its own data
        env["ECHOBOOK_CACHE"] = cache
        proc = subprocess.run([sys.executable, "-c", script, str(tree), str(out), json.dumps(parameters),
                               json.dumps(chapters or []), json.dumps(sorted(k for k, v in done.items() if v["ok"]))],
                              env=env, cwd=tree, capture_output=True, text=True)
    sys.stdout.write(proc.stdout.rpartition("RESULT")[0])
    if proc.returncode != 0 or "RESULT" not in proc.stdout:
        raise SystemExit(f"{label}: the runner failed\n{proc.stderr[-4000:]}")
    done.update(json.loads(proc.stdout.rpartition("RESULT")[2]))
    record.write_text(json.dumps(done, indent=1, default=str))
    return done


def same(a, b, rtol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))
    return a == b


def compare(old: dict[str, dict], new: dict[str, dict], rtol: float) -> list[str]:
    lines, differences = [], 0
    for stem in sorted(set(old) | set(new)):
        if stem not in old or stem not in new:
            lines.append(f"{stem}: only in {'new' if stem in new else 'old'}")
            differences += 1
            continue
        a, b = old[stem], new[stem]
        if not (a["ok"] and b["ok"]):
            lines.append(f"{stem}: old {'ok' if a['ok'] else a['error']} / new {'ok' if b['ok'] else b['error']}")
            differences += 1
            continue
        names = sorted(n for n in set(a["glued"]) | set(b["glued"]) if not is_timing(n))
        changed = [n for n in names if not same(a["glued"].get(n), b["glued"].get(n), rtol)]
        differences += len(changed)
        lines.append(f"{stem}: {len(names) - len(changed)} of {len(names)} glued values equal")
        lines += [f"    {n}: old {a['glued'].get(n)!r}  new {b['glued'].get(n)!r}" for n in changed]
    lines.append(f"{differences} difference(s)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the commit before the change")
    parser.add_argument("new", nargs="?", default=None, help="the commit after it (default: the working tree)")
    parser.add_argument("--chapters", nargs="*", default=None, help="chapter numbers or stems (default: the toc)")
    parser.add_argument("--size", default="smoke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rtol", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "compare")
    args = parser.parse_args(argv)
    parameters = {"SIZE": args.size, "SEED": args.seed}
    scratch = args.out / "trees"
    scratch.mkdir(parents=True, exist_ok=True)
    results = []
    for ref in (args.old, args.new):
        label, tree = checkout(ref, scratch)
        results.append(run_tree(label, tree, args.chapters, parameters, args.out / f"{label}-{args.size}-seed{args.seed}"))
    if args.chapters:  # a commit's record may hold more chapters than were asked for
        asked = set(results[1])
        results = [{stem: run for stem, run in result.items() if stem in asked} for result in results]
    report = compare(*results, rtol=args.rtol)
    print("\n".join(report))
    return 0 if report[-1].startswith("0 ") else 1


if __name__ == "__main__":
    sys.exit(main())
