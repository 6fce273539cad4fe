"""The reproduction ledger (echobook.ledger): claims as data, runs over seeds, the verdicts; and DATA_SEED."""
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook
from scipy import stats

import echobook
from echobook import cli, ledger
from echobook.data.synthetic import config_for_preset, make_video
from echobook.ledger import Claim, run_ledger, summarise

REPO = Path(__file__).resolve().parent.parent

# The toy chapter: its glued values are noisy around means chosen here, so the verdicts are known.
TOY_BODY = """
import numpy as np
from myst_nb import glue
rng = np.random.default_rng(SEED)
glue("good_mae", 3.0 + 0.1 * rng.standard_normal(), display=False)  # truly 1 point better than bad_mae
glue("bad_mae", 4.0 + 0.1 * rng.standard_normal(), display=False)
glue("coin", [1.0, -1.0, 0.6, -0.8, 0.3][SEED % 5], display=False)  # mean 0.02: no side
"""
TOY_CLAIMS = (
    Claim("toy_holds", "00_toy", "toy", "good beats bad", "-", better="good_mae", worse="bad_mae"),
    Claim("toy_fails", "00_toy", "toy", "bad beats good", "-", better="bad_mae", worse="good_mae"),
    Claim("toy_undecided", "00_toy", "toy", "the coin is positive", "-", better="coin", threshold=0.0,
          direction="higher"),
)


@pytest.fixture
def toy_book(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    cells = [new_code_cell('SIZE = "auto"\nSEED = 0', metadata={"tags": ["parameters"]}), new_code_cell(TOY_BODY)]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                      "display_name": "Python 3"}}),
                   book / "00_toy.ipynb")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/00_toy\n")
    return tmp_path


@pytest.mark.slow
def test_toy_chapter_over_seeds_gives_the_right_verdicts_and_is_resumable(toy_book):
    out = toy_book / "results"
    ledger_path, summary_path = run_ledger(["0"], "smoke", 5, out, root=toy_book, claims=TOY_CLAIMS, progress=None,
                                           jobs=2)  # two runs at once, in a process pool
    table = ledger.read_ledger(ledger_path)
    assert sorted(set(table["seed"])) == [0, 1, 2, 3, 4] and (table["status"] == "ok").all()
    assert (table["cpu_s"] > 0).all() and (table["wall_s"] > 0).all()
    assert set(table["code"]) == {ledger.package_digest()}  # every run records the code it ran
    summary = pd.read_csv(summary_path).set_index("claim")
    holds, fails, undecided = (summary.loc[c.id] for c in TOY_CLAIMS)
    assert holds["verdict"] == "holds" and holds["seeds_agree"] == 5
    gaps = []  # the toy's gaps by hand, from the same generator the notebook used
    for seed in range(5):
        rng = np.random.default_rng(seed)
        good, bad = 3.0 + 0.1 * rng.standard_normal(), 4.0 + 0.1 * rng.standard_normal()
        gaps.append(bad - good)
    assert holds["gap_mean"] == pytest.approx(np.mean(gaps))
    assert (holds["ci_low"], holds["ci_high"]) == pytest.approx(ledger.bootstrap_interval(np.array(gaps)))
    assert 0.5 < holds["ci_low"] < 1.0 < holds["ci_high"] < 1.5  # the true gap, 1, lies inside
    assert holds["sign_test_p"] == pytest.approx(2 / 32)  # 5 of 5: the smallest two-sided p at 5 seeds
    assert fails["verdict"] == "does not hold" and fails["seeds_agree"] == 0
    assert fails["ci_low"] == pytest.approx(-holds["ci_high"]) and fails["ci_high"] == pytest.approx(-holds["ci_low"])
    assert undecided["verdict"] == "undecided at 5 seeds" and undecided["seeds_agree"] == 3
    assert undecided["ci_low"] < 0 < undecided["ci_high"]
    assert undecided["gap_mean"] == pytest.approx(0.02)

    records = sorted((toy_book / "results" / "runs").rglob(ledger.RUN_RECORD))
    stamps = [p.stat().st_mtime_ns for p in records]
    assert len(records) == 5
    run_ledger(["0"], "smoke", 5, out, root=toy_book, claims=TOY_CLAIMS, progress=None)  # nothing new to run
    assert [p.stat().st_mtime_ns for p in records] == stamps
    assert len(list((toy_book / "results" / "runs").rglob("*.ipynb"))) == 5


def test_summary_numbers_by_hand():
    seeds = [0, 1, 2, 3]
    a, b = [2.0, 3.0, 5.0, 2.5], [3.0, 4.0, 4.0, 4.5]  # gaps b - a: 1, 1, -1, 2
    rows = [{"chapter": "05_x", "size": "smoke", "seed": s, "data_seed": "", "status": "ok", "wall_s": 1.0,
             "cpu_s": 1.0, "code": "abc", "name": name, "value": str(v)}
            for s, va, vb in zip(seeds, a, b) for name, v in (("a_mae", va), ("b_mae", vb))]
    rows.append({"chapter": "05_x", "size": "smoke", "seed": 9, "data_seed": "", "status": "failed",
                 "wall_s": 1.0, "cpu_s": 1.0, "name": "", "value": ""})  # a failed run counts for nothing
    claim = Claim("x", "05_x", "p", "a beats b", "-", better="a_mae", worse="b_mae")
    row = summarise(pd.DataFrame(rows), [claim]).iloc[0]
    gaps = np.array([1.0, 1.0, -1.0, 2.0])
    assert row["n_seeds"] == 4 and row["seeds_agree"] == 3 and row["seeds"] == "0 1 2 3"
    assert row["gap_mean"] == pytest.approx(0.75) and row["gap_sd"] == pytest.approx(gaps.std(ddof=1))
    assert row["gap_min"] == -1.0 and row["gap_max"] == 2.0
    assert row["better_mean"] == pytest.approx(3.125) and row["worse_mean"] == pytest.approx(3.875)
    assert row["sign_test_p"] == pytest.approx(2 * 5 / 16)  # P(X >= 3) = 5/16 for X ~ Bin(4, 1/2), doubled
    # the percentile interval of the mean of 4 values lies within [min, max] of the possible means
    assert -1.0 <= row["ci_low"] <= 0.75 <= row["ci_high"] <= 2.0
    assert row["verdict"] == ("holds" if row["ci_low"] > 0 else "undecided at 4 seeds")


def test_verdict_rule_and_interval_edges():
    assert ledger.verdict(5, 0.1, 0.9) == "holds"
    assert ledger.verdict(5, -0.9, -0.1) == "does not hold"
    assert ledger.verdict(5, -0.1, 0.9) == "undecided at 5 seeds"
    assert ledger.verdict(2, 0.1, 0.9) == "undecided at 2 seeds"  # too few seeds for any verdict
    assert ledger.bootstrap_interval(np.array([0.3, 0.3, 0.3])) == (0.3, 0.3)  # a deterministic number
    assert all(np.isnan(ledger.bootstrap_interval(np.array([0.3]))))
    low, high = ledger.bootstrap_interval(np.arange(20.0))
    t_low, t_high = stats.t.interval(0.95, 19, loc=9.5, scale=stats.sem(np.arange(20.0)))
    assert abs(low - t_low) < 0.6 and abs(high - t_high) < 0.6  # at 20 seeds the bootstrap is near the t interval


def test_threshold_claim_and_clear_errors(tmp_path):
    claim = Claim("t", "10_x", "p", "fast", "-", better="speedup", threshold=1.0, direction="higher")
    assert claim.compared == "speedup > 1" and claim.names == ("speedup",)
    table = pd.DataFrame([{"chapter": "10_x", "size": "smoke", "seed": s, "data_seed": "", "status": "ok",
                           "wall_s": 1, "cpu_s": 1, "name": "speedup", "value": str(v)}
                          for s, v in enumerate([3, 4, 5])])
    row = summarise(table, [claim]).iloc[0]
    assert row["gap_mean"] == pytest.approx(3.0) and row["verdict"] == "holds"
    with pytest.raises(KeyError, match="10_x glued no 'other'.*speedup"):
        summarise(table, [Claim("u", "10_x", "p", "s", "-", better="other", threshold=0.0)])
    with pytest.raises(ValueError, match="exactly one of worse"):
        Claim("bad", "10_x", "p", "s", "-", better="a", worse="b", threshold=1.0)
    with pytest.raises(ValueError, match="direction 'up'"):
        Claim("bad", "10_x", "p", "s", "-", better="a", worse="b", direction="up")
    broken = tmp_path / "ledger-smoke.csv"
    broken.write_text("chapter,seed\n02_baseline,0\n")
    with pytest.raises(ValueError, match=r"ledger-smoke.csv: not a ledger table, missing column.*'status'"):
        ledger.read_ledger(broken)


def test_every_claim_reads_values_its_chapter_glues():
    for claim in ledger.CLAIMS:
        bounds = yaml.safe_load((REPO / "tests" / "bounds" / f"{claim.chapter}.yml").read_text())["glue"]
        for name in claim.names:
            assert name in bounds, f"claim {claim.id}: {claim.chapter} declares no glued value {name!r}"
    assert len({c.id for c in ledger.CLAIMS}) == len(ledger.CLAIMS), "claim ids must be unique"


def test_ledger_command_is_registered():
    args = cli.build_parser().parse_args(["ledger", "--size", "smoke", "--seeds", "2", "--chapters", "2", "4"])
    assert args.func is ledger._ledger and args.seeds == 2 and args.chapters == ["2", "4"] and args.jobs == 1


# --- DATA_SEED: the synthetic set's seed apart from the training seed --------------------------------

def test_data_seed_picks_the_set_and_seed_alone_does_not():
    follows = echobook.setup("smoke", "", 3, "cpu", verbose=False)
    assert follows.data_seed == 3  # None: the set follows SEED, so the chapters' numbers do not change
    fixed = [echobook.setup("smoke", "", seed, "cpu", data_seed=7, verbose=False) for seed in (0, 1)]
    assert [cfg.data_seed for cfg in fixed] == [7, 7] and [cfg.seed for cfg in fixed] == [0, 1]
    config = config_for_preset(fixed[0].preset)
    same = [make_video(cfg.data_seed, 0, config).frames for cfg in fixed]
    assert np.array_equal(*same)  # SEED changed, DATA_SEED did not: the same video
    other = make_video(echobook.setup("smoke", "", 0, "cpu", data_seed=8, verbose=False).data_seed, 0, config)
    assert not np.array_equal(same[0], other.frames)  # DATA_SEED changed: another video


SET_MAKERS = r"(cached_synthetic_echonet|synth_echonet|make_video|sample_case|render_stages|write_camus|write_hmcqu|" \
             r"synthetic_video_table|video_name|synth_dicom|synthetic_view_set|downstream_set)\(([^()]*)"


@pytest.mark.parametrize("stem", ["01_echo_data", "02_baseline", "03_uniformer", "04_rank_n_contrast", "05_coreecho",
                                  "06_looking_inside", "07_transfer", "08_echofm_pretraining",
                                  "09_echofm_downstream", "10_echo_e3net", "12_your_own_echo"])
def test_chapters_make_their_set_from_data_seed(stem):
    nb = json.loads((REPO / "book" / f"{stem}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert re.search(r"^DATA_SEED = None\b", code, re.M), f"{stem}: parameters cell lacks DATA_SEED = None"
    assert "data_seed=DATA_SEED" in code, f"{stem}: DATA_SEED does not reach echobook.setup"
    for function, arguments in re.findall(SET_MAKERS, code):
        assert not re.search(r"\bSEED\b", arguments), \
            f"{stem}: {function}({arguments}...) makes data from SEED; pass cfg.data_seed"


def test_a_verdict_needs_the_t_interval_to_agree_with_the_bootstrap():
    # the smoke ledger's "RnC + L1 beats L1": 3 of 5 seeds agree, the percentile bootstrap clears 0, t does not
    gaps = np.array([-0.01, 2.0, 0.32, -0.05, 1.68])
    boot_low, _ = ledger.bootstrap_interval(gaps)
    t_low, t_high = ledger.t_interval(gaps)
    assert boot_low > 0 > t_low
    half_width = stats.t.ppf(0.975, 4) * gaps.std(ddof=1) / np.sqrt(5)  # by hand
    assert (t_low, t_high) == pytest.approx((gaps.mean() - half_width, gaps.mean() + half_width))
    assert ledger.verdict_interval(gaps) == pytest.approx((t_low, max(t_high, ledger.bootstrap_interval(gaps)[1])))
    assert ledger.verdict(5, *ledger.verdict_interval(gaps)) == "undecided at 5 seeds"
    assert ledger.verdict(5, *ledger.verdict_interval(gaps + 3.0)) == "holds"


# --- the chapters' prose cites the committed ledger -------------------------------------------------

def committed_summaries() -> dict:
    return {size: pd.read_csv(REPO / "results" / f"ledger-{size}-summary.csv") for size in ("smoke", "small", "full")
            if (REPO / "results" / f"ledger-{size}-summary.csv").is_file()}


def test_every_citation_in_the_chapters_matches_the_committed_ledger():
    summaries = committed_summaries()
    cited, problems = 0, []
    for path in sorted((REPO / "book").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        cited += len(ledger.CITATION.findall(text))
        problems += ledger.check_citations(text, summaries, where=path.name)
    assert not problems, "\n".join(problems)
    assert cited >= 10, f"the chapters cite the ledger {cited} times; their seed-dependent findings should cite it"


def test_check_citations_catches_a_wrong_count_an_unknown_claim_and_a_missing_size():
    summary = pd.DataFrame([{"claim": "two_clips_beat_one", "seeds_agree": 4, "n_seeds": 5}])
    right = ledger.citation(summary.iloc[0], "small")
    assert right == "ledger `two_clips_beat_one`: 4 of 5 seeds at `small`"
    assert ledger.check_citations(f"As the ({right}) shows.", {"small": summary}) == []
    problems = ledger.check_citations("ledger `two_clips_beat_one`: 5 of 5 seeds at `small`; "
                                      "ledger `no_such_claim`: 1 of 5 seeds at `small`; "
                                      "ledger `two_clips_beat_one`: 4 of 5 seeds at `full`",
                                      {"small": summary}, where="ch.ipynb")
    assert len(problems) == 3
    assert "has 4 of 5" in problems[0] and "'no_such_claim'" in problems[1] and "full ledger" in problems[2]
    assert all(p.startswith("ch.ipynb: ") for p in problems)
    wrapped = "(ledger `two_clips_beat_one`:\n3 of 5 seeds\nat `small`)"  # prose wraps lines inside a citation
    assert len(ledger.check_citations(wrapped, {"small": summary})) == 1


@pytest.mark.slow
def test_a_later_ledger_adds_to_the_committed_one(toy_book):
    out = toy_book / "results"
    out.mkdir()
    committed = pd.DataFrame([{"chapter": "91_other", "size": "smoke", "seed": seed, "data_seed": "", "status": "ok",
                               "wall_s": 1.0, "cpu_s": 1.0, "code": "old", "name": "x", "value": "1.5"}
                              for seed in (0, 1)] +
                             [{"chapter": "00_toy", "size": "smoke", "seed": 1, "data_seed": "", "status": "ok",
                               "wall_s": 1.0, "cpu_s": 1.0, "code": "old", "name": "good_mae", "value": "99"}])
    ledger._write_csv(committed, out / "ledger-smoke.csv")
    ledger_path, summary_path = run_ledger(["0"], "smoke", 2, out, root=toy_book, claims=TOY_CLAIMS, progress=None)
    after = ledger.read_ledger(ledger_path)
    assert list(after.loc[after.chapter == "91_other", "seed"].astype(int)) == [0, 1]  # another chapter's runs kept
    toy = after[after.chapter == "00_toy"]
    assert sorted(set(toy["seed"].astype(int))) == [0, 1] and "99" not in set(toy["value"])  # seed 1 rerun replaced
    assert len(toy) == 2 * 3  # two seeds, three glued values each, none doubled
    assert set(pd.read_csv(summary_path)["claim"]) == {c.id for c in TOY_CLAIMS}


def test_merge_ledgers_keys_runs_alike_whether_made_or_read_back():
    made = ledger.ledger_table([{"chapter": "05_coreecho", "size": "small", "seed": 2, "data_seed": None,
                                 "status": "ok", "wall_s": 1, "cpu_s": 1, "code": "a", "glued": {"m": 1.0}}])
    read_back = made.assign(data_seed="", seed="2", value="7.0")
    merged = ledger.merge_ledgers(read_back, made)
    assert len(merged) == 1 and merged["value"].iloc[0] == 1.0
    other_data_seed = made.assign(data_seed=0)
    assert len(ledger.merge_ledgers(read_back, other_data_seed)) == 2  # a DATA_SEED run is another run


def test_parallel_runs_wait_for_the_chapter_whose_models_they_load_at_the_same_seed():
    """Chapter 7 loads chapter 5's models (CHAPTER_NEEDS): at one seed it starts only after chapter 5 finished, while
    another seed's chapter 5 may still run; records come back in the order of the tasks."""
    import threading
    import time as clock
    from concurrent.futures import ThreadPoolExecutor

    events, lock = [], threading.Lock()

    def fake_run(notebook, size, seed, *rest):
        with lock:
            events.append(("start", notebook.stem, seed))
        clock.sleep(0.3 if (notebook.stem, seed) == ("05_coreecho", 1) else 0.01)  # one slow run
        with lock:
            events.append(("end", notebook.stem, seed))
        return {"chapter": notebook.stem, "seed": seed}

    tasks = [(Path(f"{stem}.ipynb"), "smoke", seed, None, None, None)
             for stem in ("05_coreecho", "07_transfer", "02_baseline") for seed in (0, 1)]
    records = ledger._run_in_parallel(tasks, 2, None, run=fake_run, executor=ThreadPoolExecutor)
    assert [(r["chapter"], r["seed"]) for r in records] == [(t[0].stem, t[2]) for t in tasks]
    for seed in (0, 1):
        assert events.index(("end", "05_coreecho", seed)) < events.index(("start", "07_transfer", seed))
    # while the slow run holds one lane, the other goes on with what is ready (chapter 7 at seed 0, chapter 2)
    assert events.index(("end", "02_baseline", 1)) < events.index(("end", "05_coreecho", 1))
