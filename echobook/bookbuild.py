"""Execute the book's chapters into Jupyter Book's execution cache, several at once, before ``jupyter-book build``.

Jupyter Book 1 (myst-nb with ``execute_notebooks: cache``) executes the chapters one after another, each kernel
using every core; at ``small`` on 2 cores that is most of ``make book``'s time, and a chapter's single-threaded
stretches (data making, plotting, the kernel's start) leave a core idle. ``make book`` therefore runs
``echobook book-execute`` first (two chapters at a time on a CPU): each chapter whose code has no entry in
``_build/.jupyter_cache`` runs in its own kernel with the cores shared out (``OMP_NUM_THREADS``), through the same
executor myst-nb uses (``jupyter_cache``'s ``single_nb_execution``, the notebook's folder as working directory), and
its outputs are stored the way myst-nb stores them, so the build that follows finds every chapter cached and only
renders.

A chapter that loads what another chapter saved waits for it (:data:`CHAPTER_NEEDS`), so the two never race and
the later one never trains the model itself. A failed chapter stops the build with its traceback, as
``raise_on_error`` does in ``_config.yml``. The seconds each chapter took go to ``_build/chapter-seconds.csv``.
"""
from __future__ import annotations

import csv
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

# stem -> the chapters whose saved models it loads (chapters 7 and 10: chapter 5's CoReEcho, and chapter 7 its L1
# baseline; chapter 9: chapter 8's encoder; chapter 11: the three methods; Appendix A: chapter 10's Echo-E3Net)
CHAPTER_NEEDS: dict[str, tuple[str, ...]] = {
    "07_transfer": ("05_coreecho",),
    "09_echofm_downstream": ("08_echofm_pretraining",),
    "10_echo_e3net": ("05_coreecho",),
    "11_side_by_side": ("05_coreecho", "09_echofm_downstream", "10_echo_e3net"),
    "12_your_own_echo": ("10_echo_e3net",),
}
CACHE_FOLDER = Path("_build") / ".jupyter_cache"  # Jupyter Book 1's default (execute.cache unset)
TIMES_FILE = Path("_build") / "chapter-seconds.csv"
DEFAULT_CELL_TIMEOUT_S = 1800  # as _config.yml's execute.timeout


@dataclass
class ChapterResult:
    path: Path
    seconds: float
    notebook: object | None  # the executed NotebookNode, or None when it failed
    error: str | None


def execute_chapter(path: str, cell_timeout_s: int, threads: int) -> ChapterResult:
    """Run one chapter in a fresh kernel (in a worker process) as myst-nb would; never raises."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)  # the kernel inherits these
    notebook = nbformat.read(path, as_version=4)
    result = single_nb_execution(notebook, cwd=str(Path(path).parent), timeout=cell_timeout_s, allow_errors=False,
                                 meta_override=True)
    error = None if result.err is None else result.exc_string or repr(result.err)
    return ChapterResult(Path(path), result.time, None if error else notebook, error)


def uncached_chapters(chapters: list[Path], cache) -> list[Path]:
    import nbformat

    missing = []
    for path in chapters:
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            missing.append(path)
    return missing


def dependents_count(stem: str) -> int:
    """How many chapters wait, directly or not, for ``stem``: those go first."""
    waiting = {later for later, needs in CHAPTER_NEEDS.items() if stem in needs}
    return len(waiting) + sum(dependents_count(later) for later in waiting)


def ready_order(pending: list[Path], done: set[str]) -> list[Path]:
    """The pending chapters whose needs are done, the most waited-for first, then in reading order."""
    ready = [p for p in pending if all(need in done for need in CHAPTER_NEEDS.get(p.stem, ()))]
    return sorted(ready, key=lambda p: -dependents_count(p.stem))


def simulated_seconds(chapter_seconds: dict[str, float], jobs: int = 2) -> float:
    """Wall seconds of :func:`execute_book`'s schedule for chapters (stem -> seconds each takes alone on its share
    of the cores), in reading order of the stems: the budget of ``make book`` from measured chapters, before
    running it. A need missing from ``chapter_seconds`` counts as met."""
    pending = [Path(stem + ".ipynb") for stem in sorted(chapter_seconds)]
    done = {need for needs in CHAPTER_NEEDS.values() for need in needs} - set(chapter_seconds)
    running: list[tuple[float, str]] = []
    now = 0.0
    while pending or running:
        for path in ready_order(pending, done)[:jobs - len(running)]:
            pending.remove(path)
            running.append((now + chapter_seconds[path.stem], path.stem))
        if not running:
            raise RuntimeError(f"chapters {[p.stem for p in pending]} wait for each other (CHAPTER_NEEDS)")
        running.sort()
        now, stem = running.pop(0)
        done.add(stem)
    return now


def store(cache, result: ChapterResult) -> None:
    """Into the cache exactly as myst-nb stores a chapter it executed itself."""
    from jupyter_cache.base import CacheBundleIn

    cache.cache_notebook_bundle(CacheBundleIn(result.notebook, str(result.path.resolve()),
                                              data={"execution_seconds": result.seconds}),
                                check_validity=False, overwrite=True)


def default_jobs() -> int:
    """Two chapters at once on a CPU with two cores or more; one on a GPU (each chapter at ``full`` wants the whole
    card) or a single core."""
    from echobook.config import gpu_available

    return 1 if gpu_available() else max(1, min(2, os.cpu_count() or 1))


def run_when_ready(pending: list, ready, start, jobs: int, on_finished, executor=ProcessPoolExecutor) -> None:
    """The one scheduler of ``book-execute`` and ``echobook ledger --jobs N``: ``start(pool, item)`` (a future) for
    each item, at most ``jobs`` at once, the next ones from ``ready(pending, done)`` (the pending items whose needs
    are in ``done``, the items finished so far, in the order to start them). ``on_finished(item, result)`` returning
    False starts nothing more; the items running then finish. Consumes ``pending``."""
    running, done, stopped = {}, [], False
    with executor(max_workers=jobs) as pool:
        while (pending and not stopped) or running:
            for item in ([] if stopped else ready(pending, done)[:jobs - len(running)]):
                pending.remove(item)
                running[start(pool, item)] = item
            if not running:  # a need that can never be met: a cycle in CHAPTER_NEEDS
                raise RuntimeError(f"{pending} wait for each other (CHAPTER_NEEDS)")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                item = running.pop(future)
                done.append(item)
                stopped = on_finished(item, future.result()) is False or stopped


def execute_book(root: Path, jobs: int = 2, cell_timeout_s: int = DEFAULT_CELL_TIMEOUT_S,
                 log=print) -> list[ChapterResult]:
    """Execute every uncached chapter of ``root/_toc.yml`` (``jobs`` at a time); raises on the first failure."""
    from jupyter_cache import get_cache

    from echobook.runner import toc_chapters

    chapters = toc_chapters(root)
    unknown = [need for needs in CHAPTER_NEEDS.values() for need in needs
               if need not in {p.stem for p in chapters}]
    cache = get_cache(str(root / CACHE_FOLDER))
    pending = uncached_chapters(chapters, cache)
    # a need that is cached, or not in this book's table of contents, is already met
    met = {p.stem for p in chapters if p not in pending} | set(unknown)
    log(f"book-execute: {len(chapters) - len(pending)} of {len(chapters)} chapters cached; running "
        f"{len(pending)}, {jobs} at a time")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    results, failures = [], []

    def start(pool, path):
        log(f"  started {path.stem}")
        return pool.submit(execute_chapter, str(path), cell_timeout_s, threads)

    def finished(path, result) -> bool:
        results.append(result)
        log(f"  {result.path.stem}: {result.seconds:.0f} s{' FAILED' if result.error else ''}")
        if result.error:  # start nothing more; the chapters running finish and are kept
            failures.append(result)
            return False
        store(cache, result)
        met.add(result.path.stem)
        return True

    run_when_ready(pending, lambda waiting, _: ready_order(waiting, met), start, jobs, finished)
    write_times(root / TIMES_FILE, results, threads)
    if failures:
        raise ChapterFailed(failures[0])
    return results


class ChapterFailed(RuntimeError):
    def __init__(self, result: ChapterResult):
        super().__init__(f"{result.path}: the chapter failed after {result.seconds:.0f} s\n{result.error}")
        self.result = result


def write_times(path: Path, results: list[ChapterResult], threads: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["chapter", "seconds", "threads", "size"])
        for result in results:
            writer.writerow([result.path.stem, f"{result.seconds:.1f}", threads,
                             os.environ.get("ECHOBOOK_SIZE", "auto")])


def add_book_execute_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "book-execute", help="execute the uncached chapters into Jupyter Book's cache, several at once",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=None,
                        help="chapters at once (default: 2 on a CPU of two cores or more, 1 on a GPU)")
    parser.add_argument("--root", type=Path, default=None, help="the folder of _toc.yml (default: found upwards)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_CELL_TIMEOUT_S, help="seconds allowed per cell")
    parser.set_defaults(func=_book_execute)


def _book_execute(args) -> int:
    from echobook.runner import book_root

    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        print("echobook book-execute: --jobs must be at least 1", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        execute_book(args.root or book_root(), jobs=jobs, cell_timeout_s=args.timeout)
    except ChapterFailed as failure:
        print(f"echobook book-execute: {failure}", file=sys.stderr)
        return 1
    print(f"book-execute: {time.perf_counter() - start:.0f} s")
    return 0
