"""The GPU reference run of issue #15, in steps that each fit one 10-minute device command.

    python benchmarks/gpu_reference.py STEP [--smoke] [--results DIR] [--device cuda]

Steps (run them in this order; each writes DIR/STEP.json: the step's values, its wall time, the environment and
the commit):

- ``env``: torch, CUDA, the GPU, its memory, and the measured bfloat16 matrix-product peak (TFLOP/s), the
  yardstick of the other steps.
- ``step``: one CoReEcho stage-1 training step of UniFormer-S (16 videos x 2 clips of 36x112x112) under bfloat16
  autocast, eager, channels-last and ``torch.compile``d: clips/s, achieved TFLOP/s (6 x the forward's
  multiply-adds per clip) against the peak, peak memory; and the device-resident data path's clips/s
  (:mod:`echobook.data.resident`) against the step's. The 8-GPU plan in docs/scaling.md reads these numbers.
- ``infer``: inference clips/s in bfloat16 of UniFormer-S, R(2+1)D-18 and Echo-E3Net at batch 64.
- ``bench``: ``echobook bench`` at the size (its JSON, float32 against bfloat16, the RnC loss, the CPU data path).
- ``synth``: the full synthetic EchoNet-style set (10,030 videos) formed on the GPU, cached for ``coreecho``.
- ``coreecho``: CoReEcho's full recipe (stage 1, 25 epochs, two clips per video; stage 2, 5 epochs; 3-clip test)
  through ``echobook train`` with the resident data path, bf16; resumable, so a step cut by the command's limit
  continues in the next command on the same (warm) machine; the JSON is written when the run has finished.
- ``chapter N``: chapter N at the size through ``echobook run`` (its glued values).

``--smoke`` runs every step at the smoke size on whatever device there is (the CPU here), so that the script is
tested before a GPU session spends its minutes: ``python benchmarks/gpu_reference.py all --smoke`` runs them all.
Results go to ``results/<date>-<gpu>/`` unless ``--results`` says otherwise (on the device machine: ``$OUT``).

On the lent H200 (15 minutes of device time a session, 10 a command; torch, Accelerate, OpenCV and psutil are
there, fastai is not): here, once, ``echo /.whl/ >> .git/info/exclude; bash ../shared/tools/gpu-wheels.sh``; then
one ``run`` with ``carry: [".whl"]`` and ``timeout_s`` 560::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 ECHOBOOK_COMMIT=<sha> || exit
    for s in env step infer bench; do timeout 130 python3 benchmarks/gpu_reference.py $s --results $OUT; done

and, in a second command while the machine is warm, ``synth`` then ``coreecho`` (``timeout 540``; the
training resumes from its checkpoints if a later command runs it again). The chapters at ``full`` come last, one
per command. Copy ``$OUT``'s JSON files into ``results/<date>-<gpu>/`` and commit them.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STEPS = ("env", "step", "infer", "bench", "synth", "coreecho", "chapter")
TRAIN_FLOPS_PER_MAC = 6  # forward 2 FLOPs a multiply-add, backward about twice the forward
INFER_MODELS = (("UniFormer-S", "uniformer_s"), ("R(2+1)D-18", "r2plus1d_18"), ("Echo-E3Net", "e3net_s"))


# --------------------------------------------------------------------------------------------- records

def commit() -> str:
    """The commit measured: $ECHOBOOK_COMMIT (the device machine's copy has no .git), else git's HEAD."""
    if os.environ.get("ECHOBOOK_COMMIT"):
        return os.environ["ECHOBOOK_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return head.stdout.strip() + ("+changes" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())


def environment(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": str(device), "device_name": device_name(device), "cpu_count": os.cpu_count(),
            "commit": commit()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu_memory_gib=props.total_memory / 2**30, multiprocessors=props.multi_processor_count)
    return info


def default_results(device: torch.device) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in device_name(device).lower()).strip("-") or "cpu"
    return ROOT / "results" / f"{datetime.date.today().isoformat()}-{slug}"


def write_record(results: Path, name: str, values: dict, wall_s: float, device: torch.device, smoke: bool) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    record = {"step": name, "smoke": smoke, "wall_s": wall_s, "finished": datetime.datetime.now().isoformat(),
              "environment": environment(device), "values": values}
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"{name}: {wall_s:.1f} s -> {path}")
    return path


def seconds_per_call(fn, device: torch.device, steps: int, warmup: int = 3) -> float:
    from echobook.bench import seconds_per_call as timed

    return timed(fn, device, steps, warmup)


# --------------------------------------------------------------------------------------------- steps

def matmul_peak_tflops(device: torch.device, smoke: bool) -> float:
    """bf16 ``n x n x n`` products per second (8192 on a GPU: about 790 TFLOP/s on an H200)."""
    n = 512 if smoke else 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    seconds = seconds_per_call(lambda: a @ b, device, steps=10)
    return 2 * n**3 / seconds / 1e12


def step_env(args, device) -> dict:
    return {"bf16_matmul_peak_tflops": matmul_peak_tflops(device, args.smoke)}


def _preset_and_encoder(smoke: bool):
    from echobook.config import get_preset
    from echobook.methods.coreecho import recipe

    preset = get_preset("smoke" if smoke else "full")
    return preset, recipe(preset.name).encoder


def _peak(results: Path, device: torch.device, smoke: bool) -> float:
    env = results / "env.json"
    if env.is_file():
        return json.loads(env.read_text())["values"]["bf16_matmul_peak_tflops"]
    return matmul_peak_tflops(device, smoke)


def training_variant(variant: str, preset, encoder: str, device: torch.device, steps: int) -> dict:
    """A stage-1 step (forward, RnC + L1, backward, AdamW) of ``encoder`` on random clips under bf16 autocast."""
    from echobook.methods.coreecho import Stage1Loss, coreecho_model

    torch.manual_seed(0)
    model = coreecho_model(encoder).to(device).train()
    clips = torch.randn(preset.batch_size, 2, 1, preset.clip_frames, preset.crop_size, preset.crop_size,
                        device=device)
    if variant == "channels_last":  # the weights; a gray clip (one channel) is laid out the same either way
        model = model.to(memory_format=torch.channels_last_3d)
    forward = torch.compile(model) if variant == "compile" else model
    loss_func, ef_percent = Stage1Loss(), torch.rand(preset.batch_size, device=device) * 60 + 20
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    bf16 = device.type == "cuda"

    def step():
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_func(forward(clips), ef_percent)
        loss.backward()
        optimiser.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    step()  # the first call compiles
    first_s = time.perf_counter() - start
    seconds = seconds_per_call(step, device, steps)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"clips_per_s": 2 * preset.batch_size / seconds, "seconds_per_step": seconds,
            "first_call_s": first_s, "peak_memory_gib": memory, "bf16_autocast": bf16}


def resident_data_clips_per_s(preset, device: torch.device, steps: int) -> float:
    """Clips/s out of a two-clip resident loader (:mod:`echobook.data.resident`) over random videos on ``device``."""
    import numpy as np

    from echobook.data.clips import ClipDataset, VideoStore, clip_dataloader
    from echobook.data.resident import resident_loader

    videos = preset.batch_size * (steps + 4)
    video = np.random.default_rng(0).integers(0, 256, (preset.video_frames, preset.crop_size, preset.crop_size),
                                              dtype=np.uint8)
    dataset = ClipDataset(VideoStore(arrays=[video] * videos), np.full(videos, 50.0, np.float32),
                          preset.clip_frames, preset.clip_stride, clips_per_item=2)
    loader = resident_loader(clip_dataloader(dataset, batch_size=preset.batch_size, mean=50.0, std=50.0,
                                             device=device))
    batches = iter(loader)
    return 2 * preset.batch_size / seconds_per_call(lambda: next(batches), device, steps)


def step_step(args, device) -> dict:
    from echobook.models import count_multiply_adds
    from echobook.methods.coreecho import coreecho_model

    preset, encoder = _preset_and_encoder(args.smoke)
    steps = 3 if args.smoke else 20
    macs = count_multiply_adds(coreecho_model(encoder).encoder,
                               (1, 1, preset.clip_frames, preset.crop_size, preset.crop_size))
    peak = _peak(args.results, device, args.smoke)
    variants = {}
    for variant in ("eager", "channels_last", "compile"):
        row = training_variant(variant, preset, encoder, device, steps)
        row["achieved_tflops"] = row["clips_per_s"] * TRAIN_FLOPS_PER_MAC * macs / 1e12
        row["fraction_of_peak"] = row["achieved_tflops"] / peak
        variants[variant] = row
        print(variant, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    best = max(variants, key=lambda name: variants[name]["clips_per_s"])
    data = resident_data_clips_per_s(preset, device, steps)
    return {"encoder": encoder, "clip": [preset.clip_frames, preset.crop_size, preset.crop_size],
            "batch_videos": preset.batch_size, "forward_multiply_adds_per_clip": macs,
            "bf16_matmul_peak_tflops": peak, "variants": variants, "fastest": best,
            "resident_data_clips_per_s": data, "data_over_train": data / variants[best]["clips_per_s"]}


def step_infer(args, device) -> dict:
    from echobook.models import count_multiply_adds, create_model

    preset, _ = _preset_and_encoder(args.smoke)
    batch, steps = (4, 3) if args.smoke else (64, 20)
    shape = (batch, 1, preset.clip_frames, preset.crop_size, preset.crop_size)
    rows = {}
    for label, name in INFER_MODELS:
        torch.manual_seed(0)
        model = create_model(name).to(device).eval()
        clips = torch.randn(shape, device=device)

        def call():
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                        enabled=device.type == "cuda"):
                return model(clips)

        seconds = seconds_per_call(call, device, steps)
        rows[label] = {"model": name, "batch": batch, "clips_per_s": batch / seconds,
                       "multiply_adds_per_clip": count_multiply_adds(model.cpu(), (1, *shape[1:]))}
        print(label, rows[label])
    return {"clip": list(shape[2:]), "bf16_autocast": device.type == "cuda", "models": rows}


def step_bench(args, device) -> dict:
    from echobook.bench import run_bench

    return run_bench(size="smoke" if args.smoke else "full", device=str(device), steps=3 if args.smoke else 5,
                     cost_clip="smoke" if args.smoke else "full")


def synthetic_root(smoke: bool, device: torch.device, workers: int) -> Path:
    from echobook.config import get_preset
    from echobook.data.synthetic import cached_synthetic_echonet, config_for_preset

    preset = get_preset("smoke" if smoke else "full")
    return cached_synthetic_echonet(preset.videos, 0, config_for_preset(preset),
                                    device=device if device.type == "cuda" else None, workers=workers,
                                    progress=not smoke)


def step_synth(args, device) -> dict:
    start = time.perf_counter()
    root = synthetic_root(args.smoke, device, args.workers)
    videos = sum(1 for _ in (root / "Videos").glob("*.avi"))
    return {"root": str(root), "videos": videos, "seconds": time.perf_counter() - start,
            "formed_on": str(device) if device.type == "cuda" else "numpy"}


def step_coreecho(args, device) -> dict:
    from echobook.runs import train_coreecho

    root = synthetic_root(args.smoke, device, args.workers)
    out = args.work / ("coreecho-smoke" if args.smoke else "coreecho-full")
    extra = {"epochs": 1, "probe_epochs": 1} if args.smoke else {}
    start = time.perf_counter()
    card = train_coreecho(root, out, size="smoke" if args.smoke else "full", device=str(device), progress=True,
                          **extra)
    return {"run": str(out), "seconds_this_command": time.perf_counter() - start, "metrics": card["metrics"],
            "recipe": card["recipe"]}


def step_chapter(args, device) -> dict:
    import csv

    out = args.work / "chapters"
    command = [sys.executable, "-m", "echobook.cli", "run", str(args.number), "--size",
               "smoke" if args.smoke else "full", "--out", str(out), "-p", "DEVICE", str(device)]
    start = time.perf_counter()
    status = subprocess.run(command, cwd=ROOT).returncode
    rows = list(csv.DictReader((out / "runs.csv").open())) if (out / "runs.csv").is_file() else []
    return {"chapter": args.number, "status": status, "seconds": time.perf_counter() - start, "runs": rows[-1:]}


STEP_FUNCTIONS = {"env": step_env, "step": step_step, "infer": step_infer, "bench": step_bench,
                  "synth": step_synth, "coreecho": step_coreecho, "chapter": step_chapter}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=(*STEPS, "all"))
    parser.add_argument("number", nargs="?", type=int, help="the chapter number (step chapter)")
    parser.add_argument("--smoke", action="store_true", help="smoke size on any device: test the script")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", type=Path, help="folder of the JSON records (default results/<date>-<gpu>)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "echobook-gpu-reference",
                        help="run folders and executed chapters (large; not results)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    args = parser.parse_args(argv)
    from echobook.config import resolve_device

    device = resolve_device(args.device)
    if not args.smoke and device.type != "cuda":
        parser.error("the reference run needs a CUDA device; --smoke tests the script on any device")
    if args.step == "chapter" and args.number is None:
        parser.error("step chapter needs the chapter's number")
    args.results = args.results or default_results(device)
    if args.step == "all":
        if not args.smoke:
            parser.error("'all' is for --smoke: on the GPU run the steps one command at a time (10-minute limit)")
        steps = [s for s in STEPS if s != "chapter"]
    else:
        steps = [args.step]
    for name in steps:
        start = time.perf_counter()
        values = STEP_FUNCTIONS[name](args, device)
        record = f"chapter{args.number:02d}" if name == "chapter" else name
        write_record(args.results, record, values, time.perf_counter() - start, device, args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
