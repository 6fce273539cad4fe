"""The reproduction ledger: every paper claim the book tests, run over seeds, with a verdict per claim.

A chapter tests a claim in one run; a reader who changes ``SEED`` may meet another story. The ledger
writes each claim once as data (:data:`CLAIMS`: the paper's statement and numbers, the glued values the
chapter compares, the direction), runs the chapters over seeds with :func:`echobook.runner.run_chapters`
(:func:`run_ledger`; a finished run is never repeated) and says how firm each claim is
(:func:`summarise`).

The statistics, per claim, on the *gap*: the margin by which a seed's run goes the paper's way
(``worse - better`` for a lower-is-better value, ``better - worse`` for a higher-is-better one; the
threshold stands in for ``worse`` when a claim compares one value with a number), so a positive gap
agrees with the paper:

- ``seeds_agree``: k of n seeds with a positive gap;
- ``sign_test_p``: the two-sided sign test of k of n against a fair coin (``scipy.stats.binomtest``);
  at 5 seeds it cannot go below 2/32 = 0.0625, so it is reported, not used for the verdict;
- ``ci_low``, ``ci_high``: a percentile bootstrap 95 % interval of the mean gap (``scipy.stats.bootstrap``,
  9,999 resamples, fixed generator), narrow-biased at a handful of seeds;
- ``t_low``, ``t_high``: Student's t 95 % interval of the mean gap (n - 1 degrees of freedom), wider than the
  bootstrap's at a handful of seeds (at 5 seeds the bootstrap called a 3-of-5 claim settled that the t
  interval leaves open);
- ``verdict`` (:data:`VERDICT_RULE`), on the union of the two intervals (:func:`verdict_interval`), so that a
  verdict needs both to agree: "holds" when it lies above 0, "does not hold" when it lies below 0, else
  "undecided at n seeds" (also when fewer than :data:`MIN_SEEDS` seeds ran). A verdict is a summary, not a
  proof.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from echobook.runner import book_root, find_chapter, prepare_out_dir, run_chapters

MIN_SEEDS = 3  # below this a bootstrap interval says nothing; the verdict stays undecided
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0  # the interval is itself random: a fixed generator makes the ledger repeat exactly
VERDICT_RULE = ("holds: both the bootstrap and Student's t 95 % intervals of the mean gap lie above 0; does not "
                "hold: both lie below 0; undecided at n seeds: either contains 0, or fewer than 3 seeds ran. The "
                "gap is the margin in the paper's direction (positive: as the paper says).")
RUN_RECORD = "ledger-run.json"  # beside each run's executed notebook: its status, times and glued values
LEDGER_COLUMNS = ["chapter", "size", "seed", "data_seed", "status", "wall_s", "cpu_s", "code", "name", "value"]
PACKAGE_DIR = Path(__file__).resolve().parent
SUMMARY_COLUMNS = ["claim", "chapter", "paper", "statement", "paper_numbers", "compared", "direction", "paper_better",
                   "paper_worse", "seeds", "n_seeds", "seeds_agree", "better_mean", "better_sd", "better_min",
                   "better_max", "worse_mean", "worse_sd", "gap_mean", "gap_sd", "gap_min", "gap_max", "ci_low",
                   "ci_high", "t_low", "t_high", "sign_test_p", "verdict", "why_cpu"]


@dataclass(frozen=True)
class Claim:
    """One paper claim as a chapter tests it.

    ``better`` is the glued value the paper says wins; it is compared with the glued value ``worse``
    or, when ``worse`` is ``None``, with ``threshold``. ``direction`` says which way wins: ``"lower"``
    (an error) or ``"higher"`` (a correlation, a score). ``paper_better`` / ``paper_worse`` are the
    paper's own numbers for the two sides where our notes have them (``None`` where they do not);
    ``paper_numbers`` says them in words.
    """

    id: str
    chapter: str  # the chapter's file stem, e.g. "05_coreecho"
    paper: str
    statement: str
    paper_numbers: str
    better: str
    worse: str | None = None
    threshold: float | None = None
    direction: str = "lower"
    paper_better: float | None = None
    paper_worse: float | None = None
    why_cpu: str = ""  # why the claim may not hold at the CPU sizes

    def __post_init__(self):
        if self.direction not in ("lower", "higher"):
            raise ValueError(f"claim {self.id!r}: direction {self.direction!r} is not 'lower' or 'higher'")
        if (self.worse is None) == (self.threshold is None):
            raise ValueError(f"claim {self.id!r}: give exactly one of worse (a glued name) and threshold")

    @property
    def names(self) -> tuple[str, ...]:
        """The glued names this claim reads."""
        return (self.better,) if self.worse is None else (self.better, self.worse)

    @property
    def compared(self) -> str:
        """``coreecho_mae < l1_only_mae``: the comparison in one line."""
        sign = "<" if self.direction == "lower" else ">"
        other = self.worse if self.worse is not None else f"{self.threshold:g}"
        return f"{self.better} {sign} {other}"

    def gap(self, better_value, worse_value):
        """The margin in the paper's direction: positive where the run agrees with the paper."""
        other = self.threshold if self.worse is None else worse_value
        return (np.asarray(other) - better_value) if self.direction == "lower" else (better_value - np.asarray(other))


SMALL_DATA = "a few dozen (smoke) to about 120 (small) synthetic test videos"
SHORT_TRAINING = "a tiny encoder trained for minutes on a CPU, not UniFormer-S for hours on a GPU"

CLAIMS: tuple[Claim, ...] = (
    # Chapter 2: the baseline and the test protocol
    Claim("baseline_learns", "02_baseline", "EchoNet-Dynamic (Ouyang et al. 2020)",
          "a video network regresses EF from the echo: its error is well below predicting the mean EF",
          "R(2+1)D, one clip: MAE 4.22 (the mean predictor is not reported)",
          better="baseline_mae", worse="mean_predictor_mae", paper_better=4.22,
          why_cpu=SHORT_TRAINING),
    Claim("multi_clip_test", "02_baseline", "EchoNet-Dynamic (Ouyang et al. 2020); CoReEcho's three-clip test",
          "averaging the predictions of several clips of a video beats a single clip",
          "beat by beat MAE 4.05 against one clip 4.22",
          better="baseline_mae", worse="single_clip_mae", paper_better=4.05, paper_worse=4.22,
          why_cpu="smoke and small videos hold about one beat, so the clips overlap and carry little new"),
    # Chapter 4: Rank-N-Contrast on a toy
    Claim("rnc_orders_embedding", "04_rank_n_contrast", "Rank-N-Contrast (Zha et al. 2023); CoReEcho Figure 1",
          "RnC's embedding is ordered by the label, more than an L1 regressor's",
          "shown as embedding plots, no number",
          better="rank_corr_rnc", worse="rank_corr_l1", direction="higher",
          why_cpu="a 1-d toy with a 2-d embedding; an L1 feature can be ordered too when the task is easy"),
    Claim("rnc_toy_mae", "04_rank_n_contrast", "Rank-N-Contrast (Zha et al. 2023)",
          "RnC then a linear probe predicts the label better than L1 end to end",
          "CoReEcho on EchoNet-Dynamic: MAE 3.90 (not a toy number)",
          better="toy_mae_rnc", worse="toy_mae_l1",
          why_cpu="seconds of training on a toy; the probe sees only what the embedding kept"),
    # Chapter 5: CoReEcho's Tables 2 and 3
    Claim("coreecho_learns", "05_coreecho", "CoReEcho (Maani et al. 2024)",
          "CoReEcho regresses EF far better than predicting the training-mean EF",
          "MAE 3.90, RMSE 5.13, R2 82.44 on EchoNet-Dynamic, three clips averaged",
          better="coreecho_mae", worse="mean_ef_mae", paper_better=3.90, why_cpu=SHORT_TRAINING),
    Claim("rnc_plus_l1_beats_l1", "05_coreecho", "CoReEcho Table 2",
          "RnC + L1 in two stages beats L1 alone",
          "CoReEcho MAE 3.90; Table 2's L1 row is not in our notes",
          better="coreecho_mae", worse="l1_only_mae", paper_better=3.90,
          why_cpu=f"{SHORT_TRAINING}; {SMALL_DATA}: a few hundred steps may not let RnC's ordering pay off"),
    Claim("stage2_beats_stage1", "05_coreecho", "CoReEcho Table 2",
          "refitting the head on the frozen encoder (stage 2) beats the head trained with the encoder (stage 1)",
          "Table 2's stage-1 row is not in our notes",
          better="coreecho_mae", worse="stage1_mae", paper_better=3.90,
          why_cpu="stage 2 trains a few epochs; the gain depends on how far stage 1's head lagged"),
    Claim("augmentation_helps", "05_coreecho", "CoReEcho Table 3",
          "pad-and-crop augmentation lowers the test error",
          "Table 3's values are not in our notes",
          better="coreecho_mae", worse="no_augmentation_mae", paper_better=3.90,
          why_cpu="our shift is scaled to 48- or 64-pixel frames; synthetic hearts sit at one place"),
    Claim("two_clips_beat_one", "05_coreecho", "CoReEcho Table 3",
          "two clips a video in stage 1 beat one",
          "Table 3's values are not in our notes",
          better="coreecho_mae", worse="one_clip_mae", paper_better=3.90,
          why_cpu="with one clip RnC has no positive at distance zero; the effect may hide in seed noise"),
    # Chapter 6: CoReEcho's Figures 1 and 3
    Claim("coreecho_beats_baseline", "06_looking_inside", "CoReEcho Table 2",
          "CoReEcho's test error is below the L1 baseline's (the two models chapter 6 looks inside)",
          "CoReEcho MAE 3.90",
          better="coreecho_test_mae", worse="baseline_test_mae", paper_better=3.90, why_cpu=SHORT_TRAINING),
    Claim("embedding_continuity", "06_looking_inside", "CoReEcho Figure 1",
          "CoReEcho's embedding is one curve ordered by EF; an L1 regressor's is fragmented",
          "a UMAP picture, no number",
          better="coreecho_rho", worse="baseline_rho", direction="higher",
          why_cpu="a tiny encoder's L1 embedding can be ordered too; few test videos"),
    Claim("embedding_neighbours", "06_looking_inside", "CoReEcho Figure 1",
          "neighbours in CoReEcho's embedding have similar EF (k-NN error below the baseline's)",
          "a UMAP picture, no number",
          better="coreecho_knn_mae", worse="baseline_knn_mae",
          why_cpu="few test videos: five neighbours span a wide EF range"),
    Claim("gradcam_on_lv", "06_looking_inside", "CoReEcho Figure 3",
          "CoReEcho's Grad-CAM dwells on the left ventricle more than the baseline's",
          "chosen example maps, no number",
          better="coreecho_focus_lv", worse="baseline_focus_lv", direction="higher",
          why_cpu="coarse maps at the last stage of 48- or 64-pixel clips; both models may look at the wall"),
    # Chapter 7: CoReEcho's Tables 4 and 5 (transfer)
    Claim("camus_coreecho_beats_l1", "07_transfer", "CoReEcho Table 4",
          "on CAMUS, fine-tuning the CoReEcho encoder beats fine-tuning an L1-trained one",
          "CoReEcho: r 0.807, MAE 5.29 (Good+Medium); the L1 row is not in our notes",
          better="camus_coreecho_finetune_gm_mae", worse="camus_l1_finetune_gm_mae", paper_better=5.29,
          why_cpu="tens of synthetic patients in two folds; encoders pretrained for minutes"),
    Claim("camus_pretraining_helps", "07_transfer", "CoReEcho Table 4",
          "on CAMUS, an EchoNet-pretrained encoder beats one trained from scratch",
          "CoReEcho: MAE 5.29 (Good+Medium)",
          better="camus_coreecho_finetune_gm_mae", worse="camus_scratch_finetune_gm_mae", paper_better=5.29,
          why_cpu="tens of synthetic patients in two folds; encoders pretrained for minutes"),
    Claim("hmcqu_coreecho_beats_l1", "07_transfer", "CoReEcho Table 5",
          "on HMC-QU, the fine-tuned CoReEcho encoder detects infarction better (F1) than an L1-trained one",
          "CoReEcho: F1 92.91, accuracy 90.64",
          better="hmcqu_coreecho_finetune_f1", worse="hmcqu_l1_finetune_f1", direction="higher",
          paper_better=92.91, why_cpu="a few dozen synthetic videos; F1 jumps with one video"),
    # Chapter 8: EchoFM's periodicity and masking
    Claim("echofm_periodicity", "08_echofm_pretraining", "EchoFM (Kim et al. 2024)",
          "EchoFM's periodic contrastive loss makes embeddings follow the cardiac cycle more than VideoMAE's",
          "shown as TSSM pictures, not measured",
          better="echofm_correlation", worse="videomae_correlation", direction="higher",
          why_cpu="a tiny ViT pretrained for minutes on synthetic hearts"),
    Claim("pixel_prior_positives", "08_echofm_pretraining", "EchoFM's 2026 code",
          "positives chosen by a pixel prior give more periodic embeddings than self-mined ones",
          "no number in our notes",
          better="pixel_prior_correlation", worse="self_mined_correlation", direction="higher",
          why_cpu="a tiny ViT pretrained for minutes on synthetic hearts"),
    Claim("mask_ratio_075_vs_09", "08_echofm_pretraining", "EchoFM Table VIII",
          "the default mask ratio 0.75 gives more periodic embeddings than 0.9",
          "Table VIII's values are not in our notes",
          better="echofm_correlation", worse="ablation_ratio_09_correlation", direction="higher",
          why_cpu="one pretraining per ratio, minutes each (at small a third as long as the main run); synthetic "
                  "hearts move only with the beat, so hiding more of a clip may point the encoder at the cycle sooner"),
    Claim("mask_ratio_075_vs_05", "08_echofm_pretraining", "EchoFM Table VIII",
          "the default mask ratio 0.75 gives more periodic embeddings than 0.5",
          "Table VIII's values are not in our notes",
          better="echofm_correlation", worse="ablation_ratio_05_correlation", direction="higher",
          why_cpu="one pretraining per ratio, minutes each"),
    Claim("mae_reconstructs", "08_echofm_pretraining", "EchoFM (Kim et al. 2024); VideoMAE",
          "masked pretraining learns to reconstruct held-out clips (error below an untrained model's)",
          "loss curves not in our notes",
          better="recon_heldout_echofm", worse="recon_untrained",
          why_cpu="minutes of pretraining"),
    # Chapter 9: EchoFM downstream
    Claim("echofm_views_beat_random", "09_echofm_downstream", "EchoFM (Kim et al. 2024), view identification",
          "a linear probe on the pretrained EchoFM encoder identifies views better than one on a random encoder",
          "view-identification results not in our notes",
          better="view_probe_echofm", worse="view_probe_random", direction="higher",
          why_cpu="a micro encoder pretrained for minutes; even random video features separate five views well"),
    Claim("echofm_views_beat_videomae", "09_echofm_downstream", "EchoFM (Kim et al. 2024), view identification",
          "EchoFM's periodic pretraining gives better view features than plain VideoMAE",
          "view-identification results not in our notes",
          better="view_probe_echofm", worse="view_probe_videomae", direction="higher",
          why_cpu="both pretrained for the same few epochs on a few hundred synthetic videos"),
    Claim("echofm_fewer_labels", "09_echofm_downstream", "EchoFM (Kim et al. 2024), label efficiency",
          "with the fewest labels, segmentation from the EchoFM encoder beats segmentation from a random one",
          "label-efficiency curves not in our notes",
          better="efficiency_echofm_least", worse="efficiency_random_least", direction="higher",
          why_cpu="tens of steps a run: the curve shows how fast each start learns, not how few labels it needs"),
    Claim("simpson_beats_direct", "09_echofm_downstream", "Simpson's rule (the clinical route) vs CoReEcho's direct "
          "regression", "EF from segmented ED and ES masks by the method of discs is closer to the truth than "
          "direct regression on the same clips", "EchoFM reports Dice, not EF from masks",
          better="ef_masks_mae", worse="ef_direct_mae",
          why_cpu="a direct regressor needs far more videos and steps than a segmenter, whose labels are per pixel"),
    # Chapter 10: Echo-E3Net
    Claim("e3net_learns", "10_echo_e3net", "Echo-E3Net (arXiv 2503.17543)",
          "Echo-E3Net regresses EF well below the mean predictor",
          "RMSE 5.20, R2 0.82; MAE 3.93 (a benchmark site)",
          better="e3net_mae", worse="mean_ef_mae", paper_better=3.93, why_cpu=SHORT_TRAINING),
    Claim("e3net_simpson_loss", "10_echo_e3net", "Echo-E3Net (arXiv 2503.17543)",
          "the multi-component (landmark + Simpson) loss beats EF-only supervision",
          "the ablation's values are not in our notes",
          better="ablation_full_mae", worse="ablation_ef_only_mae",
          why_cpu="landmarks on 48- or 64-pixel frames; minutes of training, and the Simpson terms pay off late "
                  "(at 6 epochs a row EF only led)"),
    Claim("e3net_low_ef", "10_echo_e3net", "Echo-E3Net (arXiv 2503.17543)",
          "landmark supervision keeps the error low on hearts with low EF, below CoReEcho's",
          "not reported in our notes",
          better="e3net_low_ef_mae", worse="coreecho_low_ef_mae",
          why_cpu="a handful of low-EF test videos at these sizes"),
    Claim("e3net_cpu_cost", "10_echo_e3net", "Echo-E3Net (arXiv 2503.17543)",
          "Echo-E3Net runs in real time on a CPU, much faster than a UniFormer-S",
          "1.54 M parameters, 8.05 GFLOPs, real time on CPU",
          better="uniformer_over_e3net_latency", threshold=1.0, direction="higher",
          why_cpu="a latency ratio measured on a loaded machine"),
)


def claims_for(chapters) -> tuple[Claim, ...]:
    """The claims of the given chapter stems, in :data:`CLAIMS` order."""
    stems = set(chapters)
    return tuple(claim for claim in CLAIMS if claim.chapter in stems)


# --- running ----------------------------------------------------------------------------------------

def run_folder(runs_dir: Path, chapter: str, size: str, seed: int, data_seed: int | None) -> Path:
    """Where one (chapter, size, seed, data seed) run keeps its notebook, runs.csv and record."""
    name = f"seed-{seed}" + ("" if data_seed is None else f"-data-{data_seed}")
    return Path(runs_dir) / size / chapter / name


def package_digest() -> str:
    """A digest of the package's Python sources when a run starts (the ledger's ``code`` column).

    Runs of one ledger should share it: code that changes between seeds (the synthetic engine, a recipe)
    mixes two experiments, and the column shows where.
    """
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(notebook: Path, size: str, seed: int, data_seed: int | None, runs_dir: Path,
            cell_timeout_s: float | None = None) -> dict:
    """Run one chapter at one seed unless a finished (ok) record is there; return its record.

    CPU seconds are those of the kernel and the processes it waited for (``RUSAGE_CHILDREN`` of this
    process, taken before and after): right when this process runs one chapter at a time, as each
    worker of :func:`run_ledger` does.
    """
    folder = run_folder(runs_dir, notebook.stem, size, seed, data_seed)
    record_path = folder / RUN_RECORD
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("status") == "ok":
            return {**record, "reused": True}
    parameters = {"SIZE": size, "SEED": seed, **({} if data_seed is None else {"DATA_SEED": data_seed})}
    code, cpu_before, start = package_digest(), _children_cpu_s(), time.perf_counter()
    (result,), _ = run_chapters([str(notebook)], out_dir=folder, parameters=parameters,
                                cell_timeout_s=cell_timeout_s)
    record = {"chapter": notebook.stem, "size": size, "seed": seed, "data_seed": data_seed,
              "status": result.status, "wall_s": round(time.perf_counter() - start, 2),
              "cpu_s": round(_children_cpu_s() - cpu_before, 2), "code": code, "output": str(result.output),
              "error": result.error, "glued": result.glued}
    record_path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return {**record, "reused": False}


def run_ledger(chapters, size: str, seeds, out_dir="results", *, runs_dir=None, jobs: int = 1,
               data_seed: int | None = None, cell_timeout_s: float | None = None, root: Path | None = None,
               claims=CLAIMS, progress=print) -> tuple[Path, Path]:
    """Run ``chapters`` at ``size`` for each seed, then write the ledger and its summary.

    ``seeds`` is a count (seeds 0..n-1) or a list. ``data_seed`` fixes the synthetic set
    (``DATA_SEED``) so that only the training varies; ``None`` lets the set follow ``SEED``.
    Runs live in ``runs_dir`` (default ``out_dir/runs``), one folder each; a run whose record says
    ok is reused, not repeated. ``jobs > 1`` runs that many chapters at once in a process pool.
    Returns the paths of ``ledger-<size>.csv`` and ``ledger-<size>-summary.csv``.
    """
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    notebooks = [find_chapter(str(ref), root or book_root()) for ref in chapters]
    out_dir = prepare_out_dir(out_dir)
    runs_dir = prepare_out_dir(runs_dir or out_dir / "runs")
    tasks = [(notebook, size, seed, data_seed, runs_dir, cell_timeout_s) for notebook in notebooks for seed in seeds]
    records = []
    if jobs > 1:
        records = _run_in_parallel(tasks, jobs, progress)
    else:
        for task in tasks:
            records.append(run_one(*task))
            _report(records[-1], progress)
    table = ledger_table(records)
    ledger_path = out_dir / f"ledger-{size}.csv"
    if ledger_path.is_file():  # a ledger grows chapter by chapter: keep the runs this call did not redo
        table = merge_ledgers(read_ledger(ledger_path), table)
    _write_csv(table, ledger_path)
    summary_path = out_dir / f"ledger-{size}-summary.csv"
    _write_csv(summarise(table, claims_for(set(table["chapter"])) if claims is CLAIMS else claims), summary_path)
    return ledger_path, summary_path


def _run_in_parallel(tasks: list[tuple], jobs: int, progress, run=None, executor=ProcessPoolExecutor) -> list[dict]:
    """``run_one`` over ``tasks`` ``jobs`` at a time, a chapter starting only once the chapters whose saved models it
    loads (:data:`echobook.bookbuild.CHAPTER_NEEDS`) have finished at the same seed, when this call runs them too:
    so it loads their models rather than racing them to train and save its own. Records in the order of ``tasks``.
    ``run`` (default :func:`run_one`) and ``executor`` are there for the tests."""
    from echobook.bookbuild import CHAPTER_NEEDS, run_when_ready

    run = run or run_one
    planned = {(task[0].stem, task[2]) for task in tasks}  # (chapter, seed)
    records = {}

    def ready(pending, done) -> list:
        finished = {(task[0].stem, task[2]) for task in done}
        return [task for task in pending if all((need, task[2]) in finished or (need, task[2]) not in planned
                                                for need in CHAPTER_NEEDS.get(task[0].stem, ()))]

    def finished(task, record) -> None:
        records[id(task)] = record
        _report(record, progress)

    run_when_ready(list(tasks), ready, lambda pool, task: pool.submit(run, *task), jobs, finished, executor=executor)
    return [records[id(task)] for task in tasks]


def _report(record: dict, progress) -> None:
    if progress is None:
        return
    how = "reused" if record["reused"] else f"{record['wall_s']:.0f} s wall, {record['cpu_s']:.0f} s CPU"
    progress(f"{record['chapter']} size={record['size']} seed={record['seed']}: {record['status']} ({how})"
             + (f"\n  {record['error']}" if record["status"] != "ok" else ""))


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")  # write beside and rename: never half a table
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def ledger_table(records) -> pd.DataFrame:
    """One row per chapter x seed x glued value (a failed run: one row, no name); wall and CPU seconds, and the
    digest of the package's code the run started with (empty for runs recorded before it was kept)."""
    rows = []
    for r in records:
        base = {k: r.get(k) for k in ("chapter", "size", "seed", "data_seed", "status", "wall_s", "cpu_s", "code")}
        glued = r.get("glued") or {}
        if not glued or r.get("status") != "ok":
            rows.append({**base, "name": "", "value": ""})
        rows += [{**base, "name": name, "value": value} for name, value in glued.items()
                 if r.get("status") == "ok"]
    return pd.DataFrame(rows, columns=LEDGER_COLUMNS, dtype=object)  # object: a glued int stays an int


def _run_keys(table: pd.DataFrame) -> pd.Series:
    """One key per run (chapter, seed, data seed), alike whether the table was just made or read back."""
    data_seed = table["data_seed"].map(lambda v: "" if v is None or str(v) in ("", "None", "nan") else str(int(float(v))))
    return table["chapter"].astype(str) + "|" + table["seed"].astype(int).astype(str) + "|" + data_seed


def merge_ledgers(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old``'s runs that ``new`` does not hold, then ``new``'s: running chapters 9 and 10 after 2 to 6 adds
    to the ledger instead of replacing it, and a rerun run replaces its old rows."""
    kept = old[~_run_keys(old).isin(set(_run_keys(new)))]
    merged = pd.concat([kept.astype(object), new.astype(object)], ignore_index=True)
    order = merged.assign(_seed=merged["seed"].astype(int)).sort_values(["chapter", "_seed"], kind="stable").index
    return merged.loc[order].reset_index(drop=True)


def read_ledger(path) -> pd.DataFrame:
    """A ledger CSV, checked: a clear error names the file and the missing column."""
    path = Path(path)
    table = pd.read_csv(path, dtype={"value": str, "name": str}, keep_default_na=False)
    missing = [c for c in LEDGER_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a ledger table, missing column(s) {missing} (expected {LEDGER_COLUMNS})")
    return table


# --- summarising ------------------------------------------------------------------------------------

def _values(table: pd.DataFrame, chapter: str, name: str) -> pd.Series:
    """A glued value per seed (index: seed) from the ok runs of ``chapter``; a clear error if never glued."""
    rows = table[(table["chapter"] == chapter) & (table["status"] == "ok") & (table["name"] == name)]
    if rows.empty:
        glued = sorted(set(table.loc[table["chapter"] == chapter, "name"]) - {""})
        raise KeyError(f"{chapter} glued no {name!r} in the ledger (it glued {glued})")
    values = pd.to_numeric(rows["value"], errors="coerce")
    if values.isna().any():
        raise ValueError(f"{chapter}: glued value {name!r} is not a number in every run: {list(rows['value'])}")
    return pd.Series(values.to_numpy(float), index=rows["seed"].astype(int).to_numpy()).sort_index()


def bootstrap_interval(gaps: np.ndarray) -> tuple[float, float]:
    """The percentile bootstrap 95 % interval of the mean gap (a point when every seed gives one value)."""
    if len(gaps) < 2:
        return float("nan"), float("nan")
    if np.ptp(gaps) == 0:  # nothing to resample: the interval is the value itself
        return float(gaps[0]), float(gaps[0])
    result = stats.bootstrap((gaps,), np.mean, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES,
                             method="percentile", random_state=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def t_interval(gaps: np.ndarray) -> tuple[float, float]:
    """Student's t 95 % interval of the mean gap (n - 1 degrees of freedom; a point when every seed agrees
    exactly)."""
    if len(gaps) < 2:
        return float("nan"), float("nan")
    if np.ptp(gaps) == 0:
        return float(gaps[0]), float(gaps[0])
    low, high = stats.t.interval(CONFIDENCE, len(gaps) - 1, loc=np.mean(gaps), scale=stats.sem(gaps))
    return float(low), float(high)


def verdict_interval(gaps: np.ndarray) -> tuple[float, float]:
    """The interval the verdict reads: the union of the bootstrap and t intervals (both must clear 0)."""
    (b_low, b_high), (t_low, t_high) = bootstrap_interval(gaps), t_interval(gaps)
    return min(b_low, t_low), max(b_high, t_high)


def verdict(n_seeds: int, ci_low: float, ci_high: float) -> str:
    """:data:`VERDICT_RULE` applied."""
    if n_seeds >= MIN_SEEDS and ci_low > 0:
        return "holds"
    if n_seeds >= MIN_SEEDS and ci_high < 0:
        return "does not hold"
    return f"undecided at {n_seeds} seeds"


def paired_values(table: pd.DataFrame, claim: Claim) -> tuple[pd.Series, pd.Series]:
    """The claim's two sides per seed (index: seed), over the seeds where both were glued; the threshold
    stands in for the other side of a one-value claim."""
    better = _values(table, claim.chapter, claim.better)
    if claim.worse is None:
        return better, pd.Series(claim.threshold, index=better.index, dtype=float)
    worse = _values(table, claim.chapter, claim.worse)
    common = better.index.intersection(worse.index)
    return better.loc[common], worse.loc[common]


def summarise_claim(table: pd.DataFrame, claim: Claim) -> dict:
    """One claim's summary row (see the module doc for every statistic)."""
    better, worse = paired_values(table, claim)
    gaps = np.asarray(claim.gap(better.to_numpy(), worse.to_numpy()), dtype=float)
    n, k = len(gaps), int((gaps > 0).sum())
    ci_low, ci_high = bootstrap_interval(gaps)
    t_low, t_high = t_interval(gaps)
    verdict_low, verdict_high = verdict_interval(gaps)
    return {
        "claim": claim.id, "chapter": claim.chapter, "paper": claim.paper, "statement": claim.statement,
        "paper_numbers": claim.paper_numbers, "compared": claim.compared, "direction": claim.direction,
        "paper_better": claim.paper_better, "paper_worse": claim.paper_worse,
        "seeds": " ".join(str(s) for s in better.index), "n_seeds": n, "seeds_agree": k,
        "better_mean": better.mean(), "better_sd": better.std(ddof=1) if n > 1 else float("nan"),
        "better_min": better.min(), "better_max": better.max(),
        "worse_mean": worse.mean(), "worse_sd": worse.std(ddof=1) if n > 1 else float("nan"),
        "gap_mean": gaps.mean(), "gap_sd": gaps.std(ddof=1) if n > 1 else float("nan"),
        "gap_min": gaps.min(), "gap_max": gaps.max(), "ci_low": ci_low, "ci_high": ci_high,
        "t_low": t_low, "t_high": t_high,
        "sign_test_p": stats.binomtest(k, n, 0.5).pvalue if n else float("nan"),
        "verdict": verdict(n, verdict_low, verdict_high), "why_cpu": claim.why_cpu,
    }


def summarise(table: pd.DataFrame, claims=CLAIMS) -> pd.DataFrame:
    """Per claim whose chapter ran ok in ``table``: the paper's numbers, this book's mean and spread over
    seeds, k of n seeds agreeing, the sign test, the bootstrap and t intervals and the verdict."""
    ran = set(table.loc[table["status"] == "ok", "chapter"])
    rows = [summarise_claim(table, claim) for claim in claims if claim.chapter in ran]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# --- the chapters' prose -----------------------------------------------------------------------------

# How a chapter's prose cites the ledger, e.g. "(ledger `two_clips_beat_one`: 4 of 5 seeds at `small`)": one form,
# so that a test can hold every citation to the committed summary and the prose cannot drift from the data.
CITATION = re.compile(r"ledger\s+`(?P<claim>[a-z0-9_]+)`:\s+(?P<agree>\d+)\s+of\s+(?P<seeds>\d+)\s+seeds\s+at\s+"
                      r"`(?P<size>smoke|small|full)`")  # \s+: prose wraps lines anywhere


def citation(summary_row, size: str) -> str:
    """How a chapter cites one row of the ``size`` ledger's summary, in the form :data:`CITATION` reads back."""
    return (f"ledger `{summary_row['claim']}`: {int(summary_row['seeds_agree'])} of {int(summary_row['n_seeds'])} "
            f"seeds at `{size}`")


def check_citations(text: str, summaries: dict, where: str = "text") -> list[str]:
    """Every ledger citation in ``text`` held to ``summaries`` (size -> summary table): a list of what is
    wrong (an unknown claim, a size with no committed ledger, k or n that differ), empty when all agree."""
    problems = []
    for match in CITATION.finditer(text):
        claim, size = match["claim"], match["size"]
        summary = summaries.get(size)
        if summary is None:
            problems.append(f"{where}: cites the {size} ledger, which is not committed (results/ledger-{size}-summary.csv)")
            continue
        rows = summary[summary["claim"] == claim]
        if rows.empty:
            problems.append(f"{where}: cites claim {claim!r}, which the {size} ledger does not hold")
            continue
        row = rows.iloc[0]
        if (int(match["agree"]), int(match["seeds"])) != (int(row["seeds_agree"]), int(row["n_seeds"])):
            said = " ".join(match[0].split())
            problems.append(f"{where}: says {said!r}, the {size} ledger has {int(row['seeds_agree'])} of "
                            f"{int(row['n_seeds'])}")
    return problems


# --- the command ------------------------------------------------------------------------------------

def add_ledger_parser(subparsers) -> None:
    ledger = subparsers.add_parser(
        "ledger", help="run chapters over seeds and say, per paper claim, how many seeds agree",
        description="Run chapters over seeds with papermill (a finished run is reused), then write "
                    "OUT/ledger-SIZE.csv (every glued value of every run, with wall and CPU seconds) and "
                    "OUT/ledger-SIZE-summary.csv (per claim: the paper's number, mean and spread over seeds, "
                    "k of n seeds agreeing, sign test, bootstrap and t 95 %% intervals, verdict).")
    ledger.add_argument("--size", required=True, choices=["smoke", "small", "full"])
    ledger.add_argument("--seeds", type=int, default=5, help="run seeds 0..N-1 (default: 5)")
    ledger.add_argument("--chapters", nargs="+", default=None, metavar="CHAPTER",
                        help="chapter numbers or stems (default: every chapter that has claims)")
    ledger.add_argument("--jobs", type=int, default=1, help="chapters run at once (default: 1)")
    ledger.add_argument("--data-seed", type=int, default=None,
                        help="fix the synthetic set's seed (DATA_SEED) so that only the training varies")
    ledger.add_argument("--out", default="results", help="folder for the ledger CSVs (default: results)")
    ledger.add_argument("--runs", default="runs/ledger",
                        help="folder for the runs, one per chapter, size and seed (default: runs/ledger, "
                             "which git ignores; a finished run there is reused)")
    ledger.add_argument("--timeout", type=float, default=None, help="seconds allowed per cell (default: none)")
    ledger.set_defaults(func=_ledger)


def _ledger(args) -> int:
    import sys

    from echobook.runner import UnknownParameterError

    if args.seeds < 1 or args.jobs < 1:
        print("echobook ledger: --seeds and --jobs must be at least 1", file=sys.stderr)
        return 2
    chapters = args.chapters or list(dict.fromkeys(claim.chapter for claim in CLAIMS))
    try:
        ledger_path, summary_path = run_ledger(chapters, args.size, args.seeds, args.out, runs_dir=args.runs,
                                               jobs=args.jobs, data_seed=args.data_seed,
                                               cell_timeout_s=args.timeout)
    except (UnknownParameterError, NotADirectoryError, FileNotFoundError) as error:
        print(f"echobook ledger: {error}", file=sys.stderr)
        return 2
    summary = pd.read_csv(summary_path)
    if not summary.empty:
        print(summary[["claim", "seeds_agree", "n_seeds", "gap_mean", "ci_low", "ci_high", "verdict"]]
              .to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"ledger: {ledger_path}\nsummary: {summary_path}")
    table = read_ledger(ledger_path)
    return 0 if (table["status"] == "ok").all() else 1
