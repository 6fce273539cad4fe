"""Checks of the book's exercises: ``check_exercise("5.2", answer)`` says right, or wrong with a hint.

Every exercise of a chapter has an entry here, keyed ``"<chapter>.<number>"``: what the answer is
(shown in the student edition's stub), the stub itself, and a check. A check judges the answer on
inputs it builds itself where it can (a student's function run on random tracings, a model class run
on a tiny clip, numbers recomputed from the package) and otherwise on the conclusions the exercise
asks for, given as named choices; it never needs the chapter's trained models, so it runs in a second.

A wrong answer raises :class:`WrongAnswer` (an ``AssertionError``), so a check cell fails the way an
nbgrader test cell fails; its message carries a hint and never the solution. In the book the check
cells run after the solutions (and so prove that each check accepts its chapter's solution); the
student edition (``echobook student OUT``, :mod:`echobook.student`) replaces each answer by its stub.
"""
from __future__ import annotations

import contextlib
import math
import os
import shlex
import warnings
from dataclasses import dataclass
from typing import Callable
from unittest import mock

import numpy as np


class WrongAnswer(AssertionError):
    """An answer the check rejects; the message says why and hints, without giving the solution."""


@dataclass(frozen=True)
class Exercise:
    key: str  # "<chapter>.<number>", as the chapter numbers it
    asks_for: str  # the answer's form, in words (the stub's comment)
    stub: str  # the student edition's answer lines: they must define `answer`
    check: Callable[[object], str | None]  # None when right, else a hint

    @property
    def chapter(self) -> int:
        return int(self.key.split(".")[0])


EXERCISES: dict[str, Exercise] = {}


def exercise(key: str, asks_for: str, stub: str | None = None):
    """Register the decorated ``check(answer) -> hint or None`` as exercise ``key``'s check."""
    def register(check):
        if key in EXERCISES:
            raise ValueError(f"exercise {key} is registered twice")
        EXERCISES[key] = Exercise(key, asks_for, stub or "answer = ...  # your answer", check)
        return check
    return register


def exercises_of(chapter: int) -> list[Exercise]:
    return [e for e in EXERCISES.values() if e.chapter == chapter]


def check_exercise(key: str, answer) -> None:
    """Judge ``answer`` to exercise ``key``: print that it is right, or raise :class:`WrongAnswer` with a hint."""
    if key not in EXERCISES:
        raise KeyError(f"no exercise {key!r}; there are {', '.join(EXERCISES)}")
    entry = EXERCISES[key]
    if answer is Ellipsis:
        raise WrongAnswer(f"Exercise {key}: no answer yet. Replace the `...` with {entry.asks_for}.")
    try:
        hint = entry.check(answer)
    except WrongAnswer:
        raise
    except Exception as error:  # the student's function or value broke the check: say how
        raise WrongAnswer(f"Exercise {key}: your answer raised {type(error).__name__}: {error}") from error
    if hint:
        raise WrongAnswer(f"Exercise {key}: not yet. {hint}")
    print(f"Exercise {key}: right.")


# --------------------------------------------------------------------------------------------- helpers

def missing_keys(answer, keys) -> str | None:
    if not isinstance(answer, dict):
        return f"Give a dict with the keys {sorted(keys, key=str)}."
    missing = [k for k in keys if k not in answer]
    return f"Your dict lacks {missing}." if missing else None


def close(value, expected: float, rel: float = 0.02) -> bool:
    try:
        return math.isclose(float(value), expected, rel_tol=rel, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def first_wrong(checks) -> str | None:
    """The hint of the first failed ``(ok, hint)`` pair, or None when all hold."""
    return next((hint for ok, hint in checks if not ok), None)


def as_set(value) -> set:
    return {value} if isinstance(value, str) else set(value)


def parse_echobook_command(line: str):
    """The parsed arguments of an ``echobook ...`` command line, or None when it is not one ``echobook``
    accepts (argparse's usage text is kept off the reader's screen)."""
    from echobook.cli import build_parser

    words = shlex.split(line)
    if not words or words[0] != "echobook":
        return None
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        try:
            return build_parser().parse_args(words[1:])
        except SystemExit:
            return None


def parse_run_command(line: str) -> tuple[str, dict, str]:
    """``(chapter file stem, parameters, out folder)`` of an ``echobook run`` command line."""
    from echobook.runner import find_chapter, parse_parameters

    args = parse_echobook_command(line)
    if args is None:
        raise WrongAnswer(f"`echobook` does not accept {line!r}; try `echobook run --help`")
    if args.command != "run" or len(args.chapters) != 1:
        raise WrongAnswer(f"{line!r}: run one chapter with `echobook run`")
    parameters = parse_parameters(args.parameter)
    if args.size:
        parameters["SIZE"] = args.size
    return find_chapter(args.chapters[0]).stem, parameters, args.out


def check_two_seeded_runs(answer, chapter: int) -> str | None:
    if not isinstance(answer, (list, tuple)) or len(answer) != 2 or not all(isinstance(a, str) for a in answer):
        return "Give a list of the two command lines, as strings."
    runs = [parse_run_command(line) for line in answer]
    stems = {stem for stem, _, _ in runs}
    return first_wrong([
        (all(int(stem.split("_")[0]) == chapter for stem in stems), f"Both runs should execute chapter {chapter}."),
        (runs[0][1].get("SIZE") == runs[1][1].get("SIZE") == "smoke", "Run both at the `smoke` size."),
        (runs[0][1].get("SEED") is not None and runs[0][1].get("SEED") != runs[1][1].get("SEED"),
         "The two runs should differ in their SEED parameter (`-p NAME VALUE`)."),
        (runs[0][2] == runs[1][2], "Write both runs to the same folder, so one table lists both."),
    ])


# --------------------------------------------------------------------------------------------- 0: preface

@exercise("0.1", "the set of `environment` keys whose values change when SIZE becomes 'smoke'")
def _(answer):
    changes = as_set(answer)
    return first_wrong([
        ("size" in changes, "One line names the size itself."),
        ("matmul GFLOP/s" not in changes, "Does the machine multiply faster at another size, or is that noise?"),
        (changes <= {"size", "matmul GFLOP/s"}, "The size changes how much a chapter does, not the machine."),
    ])


@exercise("0.2", "{'environment': {VARIABLE: VALUE} that makes auto resolve to smoke, "
                 "'wins': 'SIZE' or 'environment' when both are set}")
def _(answer):
    from echobook.config import SIZE_ENV, resolve_size

    hint = missing_keys(answer, ["environment", "wins"])
    if hint:
        return hint
    with mock.patch.dict(os.environ):  # restored afterwards
        os.environ.pop(SIZE_ENV, None)  # only the answer's environment counts, not this kernel's
        os.environ.update({str(k): str(v) for k, v in dict(answer["environment"]).items()})
        auto = resolve_size("auto", has_gpu=False)
        explicit_wins = resolve_size("small", has_gpu=False) == "small"
    return first_wrong([
        (auto == "smoke", f"With that environment, SIZE='auto' resolves to {auto!r}. Which variable does "
                          "echobook.setup read? (see the Sizes section)"),
        (answer["wins"] == ("SIZE" if explicit_wins else "environment"), "Try it: set both and read what "
                                                                         "echobook.setup prints."),
    ])


@exercise("0.3", "{'device': the device the chapter runs on, 'outcome': 'error', 'warning' or 'silent'}")
def _(answer):
    import torch

    from echobook.config import resolve_device

    hint = missing_keys(answer, ["device", "outcome"])
    if hint:
        return hint
    with mock.patch.object(torch.cuda, "is_available", return_value=False), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        device = resolve_device("cuda")
    outcome = "warning" if caught else "silent"
    return first_wrong([
        (str(answer["device"]) == device.type, "Where can a machine without a GPU run the chapter?"),
        (answer["outcome"] == outcome, "Run it: does the cell stop, or go on with a message?"),
    ])


@exercise("0.4", "a list of the two `echobook run ...` command lines (strings)")
def _(answer):
    return check_two_seeded_runs(answer, chapter=0)


# --------------------------------------------------------------------------------------------- 1: data

@exercise("1.1", "a function (tracings [B, 21, 4], mm_per_pixel) -> volumes [B] in mL, without a Python loop",
          stub="def disc_volume_ml_batched(tracings, mm_per_pixel):\n    ...  # your code\n\n\n"
               "answer = disc_volume_ml_batched")
def _(answer):
    from echobook.data import geometry

    rng = np.random.default_rng(1)
    tracings = rng.uniform(20, 90, (6, 21, 4))
    mm_per_pixel = 0.37
    expected = np.array([geometry.disc_volume_ml(t, mm_per_pixel) for t in tracings])
    got = np.asarray(answer(tracings, mm_per_pixel), dtype=float)
    if got.shape != expected.shape:
        return f"For tracings of shape {tracings.shape} return {expected.shape[0]} volumes; got shape {got.shape}."
    ratio = float(np.median(got / expected))
    return first_wrong([
        (np.allclose(got, expected, rtol=1e-6), f"Your volumes are {ratio:.3g} times the method of discs'. Check "
                                                "the disc height (how many discs share the long axis?) and the "
                                                "units (1 mL = 1000 mm^3)."),
    ])


@exercise("1.2", "{'ef_label_changes': True or False, 'fade_first': the set of structures that fade first, "
                 "from {'apex', 'lateral wall', 'septum', 'mitral valve', 'atria'}}")
def _(answer):
    from dataclasses import replace

    from echobook.data.synthetic import SyntheticConfig, plan_video

    hint = missing_keys(answer, ["ef_label_changes", "fade_first"])
    if hint:
        return hint
    config = SyntheticConfig(image_size=32, frames=24)
    ef = {q: plan_video(0, 0, replace(config, quality=q)).volumes_ml for q in ("Good", "Poor")}
    label_changes = not np.allclose(ef["Good"], ef["Poor"])
    return first_wrong([
        (bool(answer["ef_label_changes"]) == label_changes, "Does image quality change the heart's motion, or "
                                                            "only how it is imaged?"),
        (as_set(answer["fade_first"]) == {"apex", "lateral wall"}, "Which walls run parallel to the beam, so "
                                                                    "they reflect least?"),
    ])


@exercise("1.3", "{'ejection_share': {50: share, 120: share}, 'more_beats_at': bpm, 'ed_es_closer_at': bpm}")
def _(answer):
    from echobook.data.synthetic import ejection_share_of_cycle

    hint = missing_keys(answer, ["ejection_share", "more_beats_at", "ed_es_closer_at"])
    if hint:
        return hint
    shares = dict(answer["ejection_share"])
    return first_wrong([
        (set(shares) == {50, 120}, "Give the ejection share at 50 and at 120 bpm."),
        (all(close(shares[b], ejection_share_of_cycle(b)) for b in (50, 120) if b in shares),
         "The ejection share is the ejection time (LVET) over the cycle length; the engine has it "
         "(synthetic.ejection_share_of_cycle)."),
        (answer["more_beats_at"] == 120, "In the same number of seconds, which rate fits more beats?"),
        (answer["ed_es_closer_at"] == 120, "A shorter beat leaves fewer frames between ED and ES."),
    ])


# --------------------------------------------------------------------------------------------- 2: baseline

@exercise("2.1", "{'keeps_lowering_forever': True or False, 'why_it_stops': a set from {'overlapping clips', "
                 "'errors shared by every clip of a video', 'overfitting', 'the learning rate'}}")
def _(answer):
    hint = missing_keys(answer, ["keeps_lowering_forever", "why_it_stops"])
    if hint:
        return hint
    return first_wrong([
        (answer["keeps_lowering_forever"] is False, "Look at the MAE from 3 to 5 clips: how much did it gain?"),
        (as_set(answer["why_it_stops"]) == {"overlapping clips", "errors shared by every clip of a video"},
         "Averaging removes only what differs between clips: what do more clips of one short video share?"),
    ])


@exercise("2.2", "{'metrics': a function (true, pred) -> (R2, squared Pearson r), 'notices': {'R2': set of "
                 "flaws, 'Pearson r2': set of flaws}}, flaws from {'bias', 'shrinkage'}")
def _(answer):
    from sklearn.metrics import r2_score

    hint = missing_keys(answer, ["metrics", "notices"])
    if hint:
        return hint
    true = np.random.default_rng(2).uniform(20, 75, 40)
    for guess in (0.5 * true + 0.5 * true.mean(), true + 10):
        r2, pearson_r2 = answer["metrics"](true, guess)
        if not (close(r2, r2_score(true, guess), 1e-6) and close(pearson_r2, np.corrcoef(true, guess)[0, 1] ** 2, 1e-6)):
            return "Your metrics differ from R² = 1 - SS_res / SS_tot and the square of Pearson's r."
    notices = {name: as_set(flaws) for name, flaws in dict(answer["notices"]).items()}
    return first_wrong([
        (notices.get("R2") == {"bias", "shrinkage"}, "Compute R² for both guesses: which flaws lower it?"),
        (notices.get("Pearson r2") == set(), "Pearson r of a line a*x + b with a > 0 is always 1."),
    ])


@exercise("2.3", "{'time_factor': how many times longer an epoch takes with 4 clips per video, "
                 "'cheaper_way_to_learn': 'more videos' or 'more clips per video'}")
def _(answer):
    hint = missing_keys(answer, ["time_factor", "cheaper_way_to_learn"])
    if hint:
        return hint
    return first_wrong([
        (close(answer["time_factor"], 4, rel=0.15), "Four clips per video make four times the steps per epoch."),
        (answer["cheaper_way_to_learn"] == "more videos", "New clips of the same videos add views, not hearts; "
                                                          "and what does a synthetic video cost?"),
    ])


@exercise("2.4", "{'params_m': R(2+1)D-18's parameters in millions, 'times_the_cpu_uniformer': that over "
                 "uniformer_xxs's parameters}")
def _(answer):
    import torch

    from echobook.models import create_model
    from echobook.models.cost import count_parameters

    hint = missing_keys(answer, ["params_m", "times_the_cpu_uniformer"])
    if hint:
        return hint
    with torch.device("meta"):  # parameter counts need shapes only: no memory, no initialisation
        r2plus1d, uniformer = (count_parameters(create_model(name)) for name in ("r2plus1d_18", "uniformer_xxs"))
    return first_wrong([
        (close(answer["params_m"], r2plus1d / 1e6), "Count the parameters with echobook.models.cost.count_parameters."),
        (close(answer["times_the_cpu_uniformer"], r2plus1d / uniformer),
         "Divide by the parameters of the CPU sizes' encoder, uniformer_xxs."),
    ])


# --------------------------------------------------------------------------------------------- 3: UniFormer

@exercise("3.1", "{'runs_on_any_size': True or False, 'dpe_gives': one of 'where a token is', 'the EF', "
                 "'the frame rate', 'nothing'}")
def _(answer):
    hint = missing_keys(answer, ["runs_on_any_size", "dpe_gives"])
    if hint:
        return hint
    return first_wrong([
        (answer["runs_on_any_size"] is True, "Does any layer left in the block depend on the clip's size?"),
        (answer["dpe_gives"] == "where a token is", "Self-attention is permutation invariant: what can it not "
                                                    "tell without the DPE?"),
    ])


@exercise("3.2", "{'threshold_tokens': N above which 2N²C > 12NC² for C = 320, 'tokens_36x112': stage-3 "
                 "tokens of a 36×112×112 clip, 'tokens_16x224': of a 16×224×224 clip}")
def _(answer):
    hint = missing_keys(answer, ["threshold_tokens", "tokens_36x112", "tokens_16x224"])
    if hint:
        return hint
    channels, stage3_stride = 320, 16  # UniFormer-S stage 3: 320 channels, space divided by 16, time by 2

    def tokens(frames, side):
        return frames // 2 * (side // stage3_stride) ** 2

    return first_wrong([
        (close(answer["threshold_tokens"], 12 * channels / 2, rel=1e-3), "Divide both sides of 2N²C > 12NC² by 2NC."),
        (answer["tokens_36x112"] == tokens(36, 112), "Stage 3 halves time and divides each side by 16."),
        (answer["tokens_16x224"] == tokens(16, 224), "Stage 3 halves time and divides each side by 16."),
    ])


@exercise("3.3", "a function (3-channel stem nn.Conv3d) -> 1-channel nn.Conv3d giving the same tokens on gray "
                 "clips", stub="def gray_stem(rgb_stem):\n    ...  # your code\n\n\nanswer = gray_stem")
def _(answer):
    import torch
    from torch import nn

    torch.manual_seed(3)
    rgb = nn.Conv3d(3, 8, (3, 4, 4), (2, 4, 4), (1, 0, 0))
    gray_clip = torch.randn(2, 1, 4, 16, 16)
    gray = answer(rgb)
    if not isinstance(gray, nn.Module) or getattr(gray, "in_channels", None) != 1:
        return "Return an nn.Conv3d that takes 1 input channel."
    with torch.no_grad():
        difference = (gray(gray_clip) - rgb(gray_clip.expand(-1, 3, -1, -1, -1))).abs().max().item()
    return None if difference < 1e-5 else (f"Your stem's tokens differ by up to {difference:.3g}. A gray clip "
                                           "expanded to 3 channels feeds the same pixel to every input channel.")


@exercise("3.4", "{112: stage-4 shape of a 36×112×112 clip, 128: of a 36×128×128 clip, 'pixels_read_at_112': "
                 "how many rows (and columns) of the input the last merge reads}")
def _(answer):
    import torch

    from echobook.models import create_model

    hint = missing_keys(answer, [112, 128, "pixels_read_at_112"])
    if hint:
        return hint
    with torch.device("meta"):
        model = create_model("uniformer_s")
        shapes = {size: tuple(model.forward_stages(torch.empty(1, 1, 36, size, size)).shape) for size in (112, 128)}
    return first_wrong([
        (all(tuple(answer[s]) == shapes[s] for s in (112, 128)), "Run forward_stages on the meta device and read "
                                                                 "the shapes."),
        (answer["pixels_read_at_112"] == shapes[112][-1] * 32, "Each stage-4 cell covers 32 input pixels: how "
                                                               "many cells are there?"),
    ])


# --------------------------------------------------------------------------------------------- 4: RnC

@exercise("4.1", "{'embedding_scale_at_small_tau': 'smaller' or 'larger', 'ordering_survives': True or False}")
def _(answer):
    hint = missing_keys(answer, ["embedding_scale_at_small_tau", "ordering_survives"])
    if hint:
        return hint
    return first_wrong([
        (answer["embedding_scale_at_small_tau"] == "smaller", "The loss sees distances divided by τ: how far must "
                                                              "samples be to look far at a small τ?"),
        (answer["ordering_survives"] is True, "Compare the ranking score at both temperatures."),
    ])


@exercise("4.2", "{'row_max': the largest entry of each row of s/τ, 'reached_by': 'the anchor itself', "
                 "'the positive' or 'the hardest negative'}")
def _(answer):
    import torch

    hint = missing_keys(answer, ["row_max", "reached_by"])
    if hint:
        return hint
    features = torch.randn(16, 8, generator=torch.Generator().manual_seed(4))
    row_max = float((-torch.cdist(features, features) / 2.0).max(dim=1).values.abs().max())
    return first_wrong([
        (close(answer["row_max"], row_max, rel=1e-6), "Compute -cdist(f, f) / τ and take each row's maximum."),
        (answer["reached_by"] == "the anchor itself", "Which sample is at distance 0 from the anchor?"),
    ])


@exercise("4.3", "{'fraction': the term's fraction for the anchor's own second view, 'term': its -log, "
                 "'views_pulled_together': True or False}")
def _(answer):
    hint = missing_keys(answer, ["fraction", "term", "views_pulled_together"])
    if hint:
        return hint
    return first_wrong([
        (close(answer["fraction"], 1.0, 1e-9), "With >, which samples are left in the denominator of a positive at "
                                               "label distance 0?"),
        (close(answer["term"], 0.0, 1e-9) or abs(float(answer["term"])) < 1e-9, "What is -log of that fraction?"),
        (answer["views_pulled_together"] is False, "A term that is always the same has no gradient."),
    ])


@exercise("4.4", "{'mask_bytes': bytes of rnc_vectorised's boolean mask at 2N = 512, 'sorted_tensor_bytes': "
                 "bytes of one n × n float32 tensor of the sorted form}")
def _(answer):
    hint = missing_keys(answer, ["mask_bytes", "sorted_tensor_bytes"])
    if hint:
        return hint
    n = 512
    return first_wrong([
        (close(answer["mask_bytes"], n ** 3, 0.01), "The mask has one boolean (1 byte) per (anchor, positive, "
                                                    "other) triple."),
        (close(answer["sorted_tensor_bytes"], n * n * 4, 0.01), "A float32 takes 4 bytes."),
    ])


# --------------------------------------------------------------------------------------------- 5: CoReEcho

@exercise("5.1", "a list of the two `echobook run ...` command lines (strings)")
def _(answer):
    return check_two_seeded_runs(answer, chapter=5)


@exercise("5.2", "a CoReEchoModel subclass whose stage-1 forward lets the head's L1 gradient reach the encoder",
          stub="from echobook.methods.coreecho import CoReEchoModel\n\n\nclass NoStopGradient(CoReEchoModel):\n"
               "    ...  # your code\n\n\nanswer = NoStopGradient")
def _(answer):
    import torch

    from echobook.methods.coreecho import CoReEchoModel, coreecho_model

    if not (isinstance(answer, type) and issubclass(answer, CoReEchoModel)):
        return "Give a subclass of CoReEchoModel (the class itself, not an instance)."
    torch.manual_seed(5)
    base = coreecho_model("uniformer_xxs", head_dropout=0.0, drop_rate=0.0)
    model = answer(base.encoder, base.head)
    two_clips = torch.randn(2, 2, 1, 8, 32, 32)  # [B, k, C, F, H, W]: stage 1's input
    embeddings, ef_percent = model(two_clips)
    if tuple(embeddings.shape) != (4, base.encoder.embed_dim) or tuple(ef_percent.reshape(-1).shape) != (4,):
        return "Keep stage 1's output: (embeddings [k*B, D], EF [k*B]) of the flattened clips."
    ef_percent.abs().sum().backward()  # an L1 loss on the head's output alone
    reached = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    return None if reached else "The head's L1 gradient still stops before the encoder: find the detach."


@exercise("5.3", "'more clips help most when' one of 'single-clip predictions vary with the start', "
                 "'the model is large', 'the videos are long', 'never'")
def _(answer):
    return None if answer == "single-clip predictions vary with the start" else \
        "Averaging shrinks only what differs from clip to clip."


@exercise("5.4", "{'predictions': 'spread wider', 'narrow band around the training mean' or 'unchanged', "
                 "'because': 'too few steps for that rate', 'overfitting' or 'the encoder is frozen'}")
def _(answer):
    hint = missing_keys(answer, ["predictions", "because"])
    if hint:
        return hint
    return first_wrong([
        (answer["predictions"] == "narrow band around the training mean", "Look at the scatter: where do the "
                                                                          "predictions sit?"),
        (answer["because"] == "too few steps for that rate", "How far can AdamW move a weight in a few hundred "
                                                             "steps at 1e-4?"),
    ])


# --------------------------------------------------------------------------------------------- 6: inside

@exercise("6.1", "{'cells_a_side_at_48px': {stage: cells for stages 1-4}, 'area_fraction_stage': the stage whose "
                 "focus is the area fraction}")
def _(answer):
    import torch

    from echobook.models import create_model

    hint = missing_keys(answer, ["cells_a_side_at_48px", "area_fraction_stage"])
    if hint:
        return hint
    from echobook.interpret.gradcam import UNIFORMER_STAGES, uniformer_target_layer

    cells = {}
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = create_model("uniformer_xxs")
        for stage in UNIFORMER_STAGES:
            uniformer_target_layer(model, stage).register_forward_hook(
                lambda module, inputs, output, stage=stage: cells.__setitem__(stage, output.shape[-1]))
        model.forward_stages(torch.empty(1, 1, 8, 48, 48))
    given = {int(k): v for k, v in dict(answer["cells_a_side_at_48px"]).items()}
    return first_wrong([
        (given == cells, "Stage s divides each side by 2^(s+1)."),
        (answer["area_fraction_stage"] == 4, "Which stage has a single cell, so its map is flat in every frame?"),
    ])


def quality_table():
    """A small focus table in the chapter's layout: two models and the uniform map, one region, 6 videos."""
    import pandas as pd

    rng = np.random.default_rng(6)
    rows = []
    for video in range(6):
        quality, area = ("Good", "Medium", "Poor")[video % 3], rng.uniform(0.05, 0.15)
        for model in ("CoReEcho", "L1 baseline", "uniform map"):
            focus = area if model == "uniform map" else area * rng.uniform(0.8, 2.5)
            for region, share in (("LV cavity", focus), ("LV cavity + myocardium", 2 * focus)):
                rows.append({"model": model, "region": region, "video": f"v{video}", "quality": quality,
                             "focus": share})
    return pd.DataFrame(rows)


@exercise("6.2", "a function (focus table, model names) -> mean lift (focus over the uniform map's) per quality "
                 "and model, as a DataFrame indexed by quality",
          stub="def lift_by_quality(focus, model_names):\n    ...  # your code\n\n\nanswer = lift_by_quality")
def _(answer):
    table = quality_table()
    cavity = table[table.region == "LV cavity"].pivot(index="video", columns="model", values="focus")
    quality = table.drop_duplicates("video").set_index("video").quality
    models = ["CoReEcho", "L1 baseline"]
    expected = cavity[models].div(cavity["uniform map"], axis=0).groupby(quality).mean()
    got = answer(table, models)
    got = got.xs("mean", axis=1, level=1) if getattr(got.columns, "nlevels", 1) == 2 else got
    try:
        matches = np.allclose(got.loc[expected.index, models].to_numpy(float), expected.to_numpy(), rtol=1e-6)
    except KeyError:
        return "Index the result by quality (Good, Medium, Poor) with a column per model."
    return None if matches else ("Divide each video's focus by the uniform map's focus of the same video (the LV's "
                                 "area differs between videos), in the LV cavity, then average per quality.")


@exercise("6.3", "{'lowers_explains': 'the gradient of -y' or 'a different layer', 'both_maps_positive_at_once': "
                 "True or False (before upsampling)}")
def _(answer):
    hint = missing_keys(answer, ["lowers_explains", "both_maps_positive_at_once"])
    if hint:
        return hint
    return first_wrong([
        (answer["lowers_explains"] == "the gradient of -y", "Read video_gradcam's direction argument."),
        (answer["both_maps_positive_at_once"] is False, "The weights of -y are minus those of y: what does the ReLU "
                                                        "keep of a sum and of its negative?"),
    ])


@exercise("6.4", "the set of continuity_scores keys that depend on the 2-D projection")
def _(answer):
    from echobook.interpret.embeddings import continuity_scores, pca_projection

    rng = np.random.default_rng(7)
    embeddings, ef_percent = rng.normal(size=(30, 6)), rng.uniform(20, 75, 30)
    by_pca = continuity_scores(embeddings, ef_percent, projection=pca_projection(embeddings))
    by_noise = continuity_scores(embeddings, ef_percent, projection=rng.normal(size=(30, 2)))
    depends = {key for key in by_pca if not np.isclose(by_pca[key], by_noise[key])}
    return None if as_set(answer) == depends else "Compute the scores with two projections and compare them."


# --------------------------------------------------------------------------------------------- 7: transfer

@exercise("7.1", "a list of the two `echobook run ...` command lines (strings)")
def _(answer):
    return check_two_seeded_runs(answer, chapter=7)


@exercise("7.2", "{'split_sizes': {'TRAIN': n, 'VAL': n, 'TEST': n} of 20 synthetic patients, 'val_patients': a "
                 "function (root of a 2023 CAMUS folder) -> the patient names of its VAL subset, read by read_camus}",
          stub="def val_patients(root):\n    ...  # your code\n\n\n"
               "answer = {\"split_sizes\": ..., \"val_patients\": val_patients}")
def _(answer):
    import tempfile
    from pathlib import Path

    from echobook.data.camus import read_camus, write_camus
    from echobook.data.synthetic import SyntheticConfig

    hint = missing_keys(answer, ["split_sizes", "val_patients"])
    if hint:
        return hint
    if not isinstance(answer["split_sizes"], dict):
        return "Give 'split_sizes' as a dict {'TRAIN': n, 'VAL': n, 'TEST': n}."
    with tempfile.TemporaryDirectory() as folder:  # small frames: the split, not the pictures, is checked
        root = write_camus(Path(folder) / "camus-2023", 20, 7, SyntheticConfig(image_size=32, frames=12),
                           release="2023")
        dataset = read_camus(root)
        sizes = {name: len(dataset.subset(name)) for name in ("TRAIN", "VAL", "TEST")}
        listed = (root / "database_split" / "subgroup_validation.txt").read_text().split()
        names = answer["val_patients"](root)
        got = None if names is None else [str(name) for name in names]
    given = {str(k).upper(): v for k, v in answer["split_sizes"].items()}
    return first_wrong([
        (got is not None, "Your val_patients returns nothing yet: return the names."),
        (given == sizes, "The writer keeps CAMUS's proportions of training, validation and test patients: "
                         "what do they give for 20?"),
        (got == listed, "Read the folder with read_camus and take the names of the subset called 'VAL'; they "
                        "should be the patients listed in database_split/subgroup_validation.txt."),
    ])


@exercise("7.3", "{'same_at_ed_and_es': True or False, 'differ_most': one of 'at ED and ES', 'where the motion "
                 "curves fastest', 'where the heart is still', 'equally everywhere'}")
def _(answer):
    from echobook.methods.transfer import resample_time_cubic

    hint = missing_keys(answer, ["same_at_ed_and_es", "differ_most"])
    if hint:
        return hint
    times = np.linspace(0, 1, 9)
    frames = (np.cos(np.pi * times)[:, None, None] * np.ones((1, 3, 3))).astype(np.float32)  # a curved motion
    new_times = np.linspace(0, 1, 16)
    linear = np.stack([np.interp(new_times, times, frames[:, i, j]) for i in range(3) for j in range(3)], -1)
    difference = np.abs(resample_time_cubic(frames, 16).reshape(16, -1) - linear).mean(-1)
    ends_agree = bool(difference[0] < 1e-6 and difference[-1] < 1e-6)
    return first_wrong([
        (answer["same_at_ed_and_es"] is ends_agree, "Do both interpolations pass through the first and last stored "
                                                    "frames?"),
        (answer["differ_most"] == "where the motion curves fastest", "A straight line between two stored frames "
                                                                     "is exact when the motion is a straight line: "
                                                                     "where is it least like one?"),
    ])


@exercise("7.4", "{'best_threshold': a function (probability, target) -> the threshold of np.linspace(0.05, 0.95, "
                 "19) with the highest F1, 'optimistic_because': one of 'the threshold is fitted to the predictions "
                 "it is scored on', 'F1 ignores true negatives', 'the folds are small', 'MI is rare'}",
          stub="def best_threshold(probability, target):\n    ...  # your code\n\n\n"
               "answer = {\"best_threshold\": best_threshold, \"optimistic_because\": ...}")
def _(answer):
    from echobook.metrics import classification_metrics

    hint = missing_keys(answer, ["best_threshold", "optimistic_because"])
    if hint:
        return hint
    rng = np.random.default_rng(74)
    target = (rng.uniform(size=60) < 0.4).astype(int)
    probability = np.clip(0.25 + 0.3 * target + rng.normal(0, 0.2, 60), 0.01, 0.99)
    thresholds = np.linspace(0.05, 0.95, 19)

    def f1(threshold):
        return classification_metrics((probability > threshold).astype(int), target)["f1"]

    best = max(f1(t) for t in thresholds)
    chosen = answer["best_threshold"](probability, target)
    if chosen is None:
        return "Your best_threshold returns nothing yet: return one threshold."
    chosen = float(chosen)
    return first_wrong([
        (np.isclose(thresholds, chosen).any(), "Choose among np.linspace(0.05, 0.95, 19)."),
        (close(f1(chosen), best, 1e-9), "Score each threshold by the F1 of (probability > threshold) against the "
                                        "targets and keep the best."),
        (answer["optimistic_because"] == "the threshold is fitted to the predictions it is scored on",
         "Which predictions chose the threshold, and which ones are then scored?"),
    ])


# --------------------------------------------------------------------------------------------- 8: EchoFM

@exercise("8.1", "{'loss_near_0_means': one of 'the TSSM follows the phase', 'the embedding agrees with itself', "
                 "'the learning rate is too high' or 'the model overfits', 'phase_correlation': 'high' or 'low'}")
def _(answer):
    hint = missing_keys(answer, ["loss_near_0_means", "phase_correlation"])
    if hint:
        return hint
    return first_wrong([
        (answer["loss_near_0_means"] == "the embedding agrees with itself", "Where do the self-mined triplets come "
                                                                            "from, and what does the loss compare "
                                                                            "them with?"),
        (answer["phase_correlation"] == "low", "Read the correlation of the self-mined model's TSSM with the true "
                                               "phase."),
    ])


@exercise("8.2", "{'most_differences': 'beyond the seed spread' or 'within the seed spread', 'compare_with': one of "
                 "'the spread across seeds', 'the training loss', 'the paper's numbers'}")
def _(answer):
    hint = missing_keys(answer, ["most_differences", "compare_with"])
    if hint:
        return hint
    return first_wrong([
        (answer["compare_with"] == "the spread across seeds", "A difference means something when it is larger "
                                                              "than what changes from seed to seed."),
        (answer["most_differences"] == "within the seed spread", "Put each ratio's mean next to its std: how many "
                                                                 "gaps stand out at this size?"),
    ])


@exercise("8.3", "{'lowest_loss': 'random', 'uniform_frame' or 'consistent', 'unfair_because': one of 'each model "
                 "is scored under its own masking', 'consistent masking trains longer', 'random masking sees more "
                 "clips'}")
def _(answer):
    hint = missing_keys(answer, ["lowest_loss", "unfair_because"])
    if hint:
        return hint
    return first_wrong([
        (answer["lowest_loss"] == "random", "Which masking leaves a hidden position visible in a neighbouring "
                                            "slice, to copy?"),
        (answer["unfair_because"] == "each model is scored under its own masking", "Are the three losses measured "
                                                                                   "on the same task?"),
    ])


@exercise("8.4", "{'correlation': 'close to the regular-rhythm model's', 'near 0' or 'negative', 'because': one "
                 "of 'the pixel prior needs no regular rhythm', 'irregular beats are rarer', 'the encoder is frozen'}")
def _(answer):
    hint = missing_keys(answer, ["correlation", "because"])
    if hint:
        return hint
    return first_wrong([
        (answer["correlation"] == "close to the regular-rhythm model's", "Compare the two correlations the "
                                                                         "solution prints with the sinus-rhythm "
                                                                         "model's."),
        (answer["because"] == "the pixel prior needs no regular rhythm", "Where do EchoFM's positives come from "
                                                                         "in this chapter?"),
    ])


# --------------------------------------------------------------------------------------------- 9: EchoFM downstream

@exercise("9.1", "{'hardest': one of 'LV cavity', 'LV myocardium' or 'LA', 'because': one of 'a thin structure', "
                 "'a rare structure', 'a moving structure'}")
def _(answer):
    hint = missing_keys(answer, ["hardest", "because"])
    if hint:
        return hint
    return first_wrong([
        (answer["hardest"] == "LV myocardium", "Which row of the table has the lowest Dice?"),
        (answer["because"] == "a thin structure", "How many pixels wide is that structure, and what does a "
                                                  "one-pixel error on each border do to its overlap?"),
    ])


def _scores_match(given, expected: dict) -> bool:
    if not isinstance(given, dict) or set(given) != set(expected):
        return False
    for key, value in expected.items():
        got = given[key]
        if isinstance(value, str):  # "nan"
            try:
                if not math.isnan(float(got)):
                    return False
            except (TypeError, ValueError):
                return False
        elif not close(got, value):
            return False
    return True


@exercise("9.2", "{'both_empty': {'dice': number, 'hd95': number}, 'one_empty': {'dice': number, 'hd95': number "
                 "or 'nan'}}")
def _(answer):
    hint = missing_keys(answer, ["both_empty", "one_empty"])
    if hint:
        return hint
    from echobook.metrics import segmentation_scores

    empty, few = np.zeros((1, 8, 8), np.uint8), np.zeros((1, 8, 8), np.uint8)
    few[0, 2:4, 2:4] = 3
    truth = {}
    for name, pred in (("both_empty", empty), ("one_empty", few)):
        scores = segmentation_scores(pred, empty, classes=(3,))
        truth[name] = {"dice": float(scores["dice"][0, 0]),
                       "hd95": "nan" if np.isnan(scores["hd95"][0, 0]) else float(scores["hd95"][0, 0])}
    return first_wrong([
        (_scores_match(answer["both_empty"], truth["both_empty"]), "Nothing to find and nothing found: is that "
                                                                   "a perfect answer or a wrong one?"),
        (_scores_match(answer["one_empty"], truth["one_empty"]), "What is the distance from a border to no border "
                                                                 "at all? Run segmentation_scores and read it."),
    ])


@exercise("9.3", "{'ratio': the biplane EDV over 4/3 pi a b c (a number), 'ef_changes': True or False}")
def _(answer):
    hint = missing_keys(answer, ["ratio", "ef_changes"])
    if hint:
        return hint
    return first_wrong([
        (close(answer["ratio"], 21 / 20, rel=0.03), "Compare the disc heights: the biplane rule's L / 20 and the "
                                                    "single-plane rule's L / 21."),
        (answer["ef_changes"] is False, "EF is a ratio of two volumes made with the same disc height."),
    ])


@exercise("9.4", "a list of the two `echobook run ...` command lines (strings)")
def _(answer):
    return check_two_seeded_runs(answer, 9)


# --------------------------------------------------------------------------------------------- 10: Echo-E3Net

@exercise("10.1", "the `echobook run ...` command line (a string)")
def _(answer):
    if not isinstance(answer, str):
        return "Give the command line as one string."
    stem, parameters, _ = parse_run_command(answer)
    return first_wrong([
        (int(stem.split("_")[0]) == 10, "Run chapter 10."),
        (parameters.get("SIZE") == "small", "Run it at the `small` size."),
        (parameters.get("SEED") == 1, "Set the SEED parameter (`-p NAME VALUE`) to the seed asked for."),
    ])


@exercise("10.2", "{'landmark_error': 'may fall' or 'rises', 'ef_by_discs': 'further from the labels' or "
                  "'closer to the labels'}")
def _(answer):
    hint = missing_keys(answer, ["landmark_error", "ef_by_discs"])
    if hint:
        return hint
    return first_wrong([
        (answer["landmark_error"] == "may fall", "Are fewer points harder or easier to place?"),
        (answer["ef_by_discs"] == "further from the labels", "How well do 4 discs describe the ventricle, even "
                                                             "from perfect landmarks?"),
    ])


@exercise("10.3", "{'biplane_discs_for_1pct': the fewest discs putting the biplane rule within 1 % of the half "
                  "ellipsoid, 'single_plane_limit': the single-plane (A4C, EchoNet) volume over the solid's as "
                  "the discs grow many}")
def _(answer):
    hint = missing_keys(answer, ["biplane_discs_for_1pct", "single_plane_limit"])
    if hint:
        return hint
    length, r1, r2 = 8.0, 2.5, 2.0  # section 10.2's ventricle

    def half_width(r, f):
        return r * np.sqrt(1 - (1 - f) ** 2)

    truth = 2 / 3 * math.pi * length * r1 * r2

    def biplane(n):
        m = (np.arange(n) + 0.5) / n
        return math.pi / 4 * (length / n) * float(np.sum(4 * half_width(r1, m) * half_width(r2, m)))

    fewest = next(n for n in range(1, 200) if abs(biplane(n) / truth - 1) < 0.01)
    f = np.arange(1, 2001) / 2001
    single = math.pi / 4 * length / 2001 * float(np.sum((2 * half_width(r1, f)) ** 2)) / truth
    return first_wrong([
        (answer["biplane_discs_for_1pct"] == fewest, "Loop over the number of discs and print the biplane error."),
        (close(answer["single_plane_limit"], single, 0.01), "With many discs, one view's d_i² replaces a_i b_i: "
                                                            "what ratio is left?"),
    ])


@exercise("10.4", "a list of the two `echobook bench ...` command lines (strings)")
def _(answer):
    if not isinstance(answer, (list, tuple)) or len(answer) != 2 or not all(isinstance(a, str) for a in answer):
        return "Give a list of the two command lines, as strings."
    runs = []
    for line in answer:
        args = parse_echobook_command(line)
        if args is None or args.command != "bench":
            return f"{line!r} is not an `echobook bench ...` command; try `echobook bench --help`."
        runs.append(args)
    return first_wrong([
        (all(a.cost_clip == "full" for a in runs), "Measure the cost at the paper's clip (`--cost-clip`)."),
        (runs[0].cpu_threads != 1 and runs[1].cpu_threads == 1, "Run it first as it is, then on one CPU thread "
                                                                 "(`--cpu-threads`)."),
    ])


# --------------------------------------------------------------------------------------------- 11: side by side

@exercise("11.1", "{'rank': the rank of the sample covariance of 32 centred recordings in 256 dimensions, "
                  "'invertible': True or False, 'smallest_eigenvalue_after_shrinkage': 'zero' or 'positive'}")
def _(answer):
    hint = missing_keys(answer, ["rank", "invertible", "smallest_eigenvalue_after_shrinkage"])
    if hint:
        return hint
    from sklearn.covariance import LedoitWolf

    x = np.random.default_rng(11).normal(size=(32, 256))
    centred = x - x.mean(0)
    rank = int(np.linalg.matrix_rank(centred.T @ centred / len(x)))
    smallest = float(np.linalg.eigvalsh(LedoitWolf().fit(x).covariance_).min())
    return first_wrong([
        (answer["rank"] == rank, "Compute np.linalg.matrix_rank of the covariance of centred random embeddings."),
        (answer["invertible"] is (rank == x.shape[1]), "Can a matrix of less than full rank be inverted?"),
        (answer["smallest_eigenvalue_after_shrinkage"] == ("positive" if smallest > 0 else "zero"),
         "What does adding a multiple of the identity do to every eigenvalue?"),
    ])


@exercise("11.2", "a function `auroc(d)` (any name): the AUROC of a unit-variance normal score shifted by `d`",
          stub="def auroc(d):\n    ...  # your formula\n\n\nanswer = auroc")
def _(answer):
    from scipy.stats import norm

    if not callable(answer):
        return "Give the function itself (answer = auroc)."
    for d in (0.0, 0.5, 1.0, 2.0, 3.0):
        if not close(answer(d), float(norm.cdf(d / math.sqrt(2))), 1e-3):
            return (f"auroc({d}) is off. The AUROC is the chance that a shifted score exceeds an in-distribution one: "
                    "what is the distribution of their difference?")
    return None


@exercise("11.3", "{'assumption': 'independent errors', 'normal errors', 'exchangeable' or 'an unbiased model', "
                  "'remedy': 'retrain the model', 'widen the interval by 10 %' or 'recalibrate on the new recordings'}")
def _(answer):
    hint = missing_keys(answer, ["assumption", "remedy"])
    if hint:
        return hint
    return first_wrong([
        (answer["assumption"] == "exchangeable", "Split conformal assumes nothing about the model or the errors' "
                                                 "shape: what must hold between the calibration and the new "
                                                 "recordings?"),
        (answer["remedy"] == "recalibrate on the new recordings", "The model need not change; what was measured on "
                                                                  "the wrong recordings?"),
    ])


@exercise("11.4", "the `echobook run ...` command line (a string)")
def _(answer):
    if not isinstance(answer, str):
        return "Give the command line as one string."
    stem, parameters, out = parse_run_command(answer)
    return first_wrong([
        (int(stem.split("_")[0]) == 11, "Run chapter 11."),
        (parameters.get("SIZE") == "small", "Run it at the `small` size."),
        (parameters.get("SEED") == 1, "Set the SEED parameter (`-p NAME VALUE`) to the seed asked for."),
        (str(out).rstrip("/") == "runs", "Write into the folder `runs` (`--out`)."),
    ])


# --------------------------------------------------------------------------------------------- 13: the ledger

@exercise("13.1", "the fewest seeds (an int) whose 95 % t interval of the mean gap excludes 0, for a mean gap "
                  "of 0.5 EF points with a seed-to-seed sd of 1.0")
def _(answer):
    from scipy import stats

    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        return "Give a whole number of seeds."
    fewest = next(n for n in range(2, 1000) if stats.t.ppf(0.975, n - 1) * 1.0 / math.sqrt(n) < 0.5)
    if answer == fewest:
        return None
    return ("The interval's half-width is t(0.975, n - 1) sd / sqrt(n); find the smallest n that brings it "
            "under the gap (the t quantile, not 1.96, at so few seeds).")


@exercise("13.2", "{'p_5_of_5': the two-sided sign-test p when 5 of 5 seeds agree, 'seeds_for_p_below_005': the "
                  "fewest seeds that, all agreeing, give p < 0.05}")
def _(answer):
    from scipy import stats

    hint = missing_keys(answer, ["p_5_of_5", "seeds_for_p_below_005"])
    if hint:
        return hint
    fewest = next(n for n in range(1, 100) if stats.binomtest(n, n, 0.5).pvalue < 0.05)
    return first_wrong([
        (close(answer["p_5_of_5"], stats.binomtest(5, 5, 0.5).pvalue, 1e-6),
         "All agree with chance 1/2 each; two-sided doubles the one tail."),
        (answer["seeds_for_p_below_005"] == fewest, "Double (1/2)^n and find where it drops under 0.05."),
    ])


@exercise("13.3", "the `echobook ledger ...` command line (a string)")
def _(answer):
    from echobook.runner import find_chapter

    if not isinstance(answer, str):
        return "Give the command line as one string."
    args = parse_echobook_command(answer)
    if args is None or args.command != "ledger":
        return f"{answer!r} is not an `echobook ledger ...` command; try `echobook ledger --help`."
    stems = [find_chapter(ref).stem for ref in args.chapters or []]
    return first_wrong([
        (stems == ["05_coreecho"], "Run chapter 5 only (`--chapters`)."),
        (args.size == "smoke" and args.seeds == 3, "Three seeds at the `smoke` size."),
        (args.data_seed == 0, "Hold the synthetic set fixed, so that only the training seed varies."),
    ])


# --------------------------------------------------------------------------------------------- 12 (Appendix A): your own echo

@exercise("12.1", "the `echobook synth dicom ...` command line (a string) that writes 3 monochrome recordings "
                  "without region tags")
def _(answer):
    if not isinstance(answer, str):
        return "Give the command line as one string."
    args = parse_echobook_command(answer)
    if args is None or args.command != "synth" or getattr(args, "format", None) != "dicom":
        return f"{answer!r} is not an `echobook synth dicom ...` command; try `echobook synth dicom --help`."
    return first_wrong([
        (args.videos == 3, "Three recordings (`--videos`)."),
        (args.colour == "MONOCHROME2", "Monochrome is one of the `--colour` choices."),
        (args.no_region_tags, "Leave the SequenceOfUltrasoundRegions out (see `--help`)."),
    ])


@exercise("12.2", "{'fewest_calibration_videos': the fewest calibration videos that give a finite 90 % interval, "
                  "'rank_used_at_19': which smallest error (1 = the smallest) sets the half-width with 19}")
def _(answer):
    from echobook.metrics import conformal_half_width

    hint = missing_keys(answer, ["fewest_calibration_videos", "rank_used_at_19"])
    if hint:
        return hint
    fewest = next(n for n in range(1, 100) if math.isfinite(conformal_half_width(np.arange(1.0, n + 1), 0.1)))
    rank_19 = int(conformal_half_width(np.arange(1.0, 20.0), 0.1))  # the errors 1..19: the value is its rank
    return first_wrong([
        (answer["fewest_calibration_videos"] == fewest, "The rank is ceil((n + 1)(1 - alpha)); it must not exceed n."),
        (answer["rank_used_at_19"] == rank_19, "Compute ceil((19 + 1) x 0.9)."),
    ])


@exercise("12.3", "{'frames_per_beat': frames of one beat at 75 bpm and 50 fps, 'beats_per_clip': beats that "
                  "CoReEcho's 36 frames 4 apart span at that rate}")
def _(answer):
    hint = missing_keys(answer, ["frames_per_beat", "beats_per_clip"])
    if hint:
        return hint
    frames_per_beat = 50 * 60 / 75
    return first_wrong([
        (close(answer["frames_per_beat"], frames_per_beat), "Seconds per beat times frames per second."),
        (close(answer["beats_per_clip"], (36 - 1) * 4 / frames_per_beat, 0.01),
         "A clip spans (frames - 1) x stride frames of the recording."),
    ])
