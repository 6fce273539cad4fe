"""``echobook bench``: what one CoReEcho training step costs, and what Echo-E3Net, UniFormer-S and R(2+1)D-18 cost
at inference, measured in one run.

1. Training clips per second of a UniFormer stage-1 step (two clips per video, RnC + L1 through the
   stop-gradient, AdamW step), in float32 and, on CUDA, under bfloat16 autocast. On a CPU the
   encoder (CoReEcho's recipe) and clip size come from the ``small`` size at most (UniFormer-S at 36x112x112 would take
   minutes a step there), and the table says so.
2. The RnC loss, vectorised (:func:`echobook.losses.rnc_loss`) against an explicit per-anchor Python
   loop, forward and backward at 2N = 32 embeddings of the encoder's width; their ratio.
3. The data path's clips per second (a two-clip ``ClipDataLoader`` over random uint8 videos held in
   memory, normalised and shifted on the device) against the training step's: above 1, the loader
   keeps up.
4. The inference cost of Echo-E3Net (chapter 10), chapter 5's UniFormer-S and EchoNet-Dynamic's R(2+1)D-18
   (torchvision's architecture: the yardstick with published GPU figures) side by side, at batch 1 on 2 CPU
   threads (the point-of-care setting): latency per clip, parameters and multiply-adds, at the paper-scale clip
   (36x112x112) unless ``--cost-clip`` says otherwise; and, on CUDA, the GPU throughput of each at batch 16. The
   models are timed alternately in one run, so their ratio holds even on a busy machine whose absolute timings
   are inflated.

:mod:`echobook.cli` registers the command with :func:`add_bench_parser`.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

RNC_SAMPLES = 32  # 2N: 16 videos x 2 clips, CoReEcho's stage-1 batch
WARMUP_STEPS = 2  # untimed steps first: allocator, autotuning, first-call overheads
COST_CPU_THREADS = 2  # the point-of-care setting: a 2-core CPU
# chapter 10 against chapter 5, and EchoNet-Dynamic's R(2+1)D-18 as the yardstick any machine can rerun beside them
COST_MODELS = (("Echo-E3Net", "e3net_s"), ("UniFormer-S", "uniformer_s"), ("R(2+1)D-18", "r2plus1d_18"))
GPU_THROUGHPUT_BATCH = 16
REAL_TIME_MS = 1000.0 / 30  # thirty clips a second


def add_bench_parser(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench", help="time a CoReEcho stage-1 step (float32 vs bfloat16), the RnC loss, the data path, and "
                      "Echo-E3Net against UniFormer-S at inference",
        description="Measure, in one run: training clips/s of a UniFormer stage-1 step (float32, and "
                    "bfloat16 autocast on CUDA), the vectorised RnC loss against a per-anchor loop at 2N = 32, "
                    "and the data path's clips/s against the training step's; then Echo-E3Net and UniFormer-S "
                    "at batch 1 on --cpu-threads CPU threads (latency, parameters, multiply-adds; GPU "
                    "throughput on CUDA), timed in turns. Prints a table.")
    bench.add_argument("--size", choices=["smoke", "small", "full", "auto"], default="auto",
                       help="size preset for encoder, clip and batch size (default: auto; a CPU uses at most small)")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    bench.add_argument("--steps", type=int, default=5, help="timed steps of each measurement (default: 5)")
    bench.add_argument("--out", default=None, metavar="FILE", help="also write the results as JSON to FILE")
    bench.add_argument("--cost-clip", default="full", choices=["smoke", "small", "full"],
                       help="the size preset whose clip (frames x pixels) the model-cost comparison uses "
                            "(default: full, 36x112x112)")
    bench.add_argument("--cpu-threads", type=int, default=COST_CPU_THREADS,
                       help=f"CPU threads for the latency comparison (default: {COST_CPU_THREADS})")
    bench.set_defaults(func=_bench)


def _bench(args) -> int:
    results = run_bench(size=args.size, device=args.device, steps=args.steps, cost_clip=args.cost_clip,
                        cpu_threads=args.cpu_threads)
    print(format_table(results))
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results: {path}")
    return 0


# --------------------------------------------------------------------------------------------- timing

def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], device: torch.device, steps: int, warmup: int = WARMUP_STEPS) -> float:
    """Median wall time of ``fn`` over ``steps`` calls after ``warmup`` untimed ones (GPU work waited for)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(steps, 1)):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# --------------------------------------------------------------------------------------------- measurements

def bench_preset(size: str, device: torch.device):
    """The preset to measure, and a note when a CPU run was scaled down to the ``small`` preset."""
    from echobook.config import PRESETS, SIZES, resolve_size

    name = resolve_size(size, has_gpu=device.type == "cuda")
    if device.type != "cuda" and SIZES.index(name) > SIZES.index("small"):
        return PRESETS["small"], f"CPU: the small preset's encoder and clips instead of {name}'s"
    return PRESETS[name], ""


def training_step_clips_per_s(preset, encoder: str, device: torch.device, steps: int, bf16: bool) -> float:
    """Clips per second of full stage-1 steps (forward, loss, backward, AdamW) of ``encoder`` on random clips."""
    from echobook.methods.coreecho import Stage1Loss, coreecho_model

    model = coreecho_model(encoder).to(device).train()
    loss_func = Stage1Loss()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    clips = torch.randn(preset.batch_size, 2, 1, preset.clip_frames, preset.crop_size, preset.crop_size,
                        device=device)
    ef_percent = torch.rand(preset.batch_size, device=device) * 60 + 20

    def step():
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_func(model(clips), ef_percent)
        loss.backward()
        optimiser.step()

    seconds = seconds_per_call(step, device, steps)
    return 2 * preset.batch_size / seconds


def rnc_loop(features: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Rank-N-Contrast with an explicit Python loop over anchors (the reference's shape of
    computation, here one anchor at a time; masked log-sum-exp, so no underflow to -inf)."""
    n = features.shape[0]
    total = features.new_zeros(())
    for anchor in range(n):
        others = torch.cat([torch.arange(anchor), torch.arange(anchor + 1, n)]).to(features.device)
        logits = -(features[others] - features[anchor]).norm(dim=1) / temperature  # [n-1]
        dist = (labels[others] - labels[anchor]).abs()  # [n-1]
        in_denominator = dist[None, :] >= dist[:, None]  # [positive k, j]
        log_denominator = logits[None, :].masked_fill(~in_denominator, float("-inf")).logsumexp(dim=1)
        total = total + (log_denominator - logits).sum()
    return total / (n * (n - 1))


def rnc_timings(embed_dim: int, device: torch.device, steps: int) -> dict[str, float]:
    """Forward + backward seconds of the vectorised and the per-anchor loop RnC at 2N = 32."""
    from echobook.losses import rnc_loss

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(RNC_SAMPLES, embed_dim, generator=generator).to(device).requires_grad_(True)
    labels = (torch.rand(RNC_SAMPLES, generator=generator) * 60 + 20).to(device)

    def timed(loss_fn):
        def call():
            features.grad = None
            loss_fn(features, labels).backward()
        return seconds_per_call(call, device, steps)

    vectorised_s, loop_s = timed(rnc_loss), timed(rnc_loop)
    with torch.no_grad():
        difference = float((rnc_loss(features, labels) - rnc_loop(features, labels)).abs())
    return {"rnc_vectorised_ms": 1e3 * vectorised_s, "rnc_loop_ms": 1e3 * loop_s,
            "rnc_loop_over_vectorised": loop_s / vectorised_s, "rnc_abs_difference": difference}


def data_path_clips_per_s(preset, device: torch.device, steps: int) -> float:
    """Clips per second out of a two-clip training ClipDataLoader over in-memory random videos,
    normalised and shifted on ``device`` (the same transform training uses)."""
    from echobook.data.clips import ClipDataset, VideoStore, clip_dataloader

    videos_needed = preset.batch_size * (steps + WARMUP_STEPS)
    rng = np.random.default_rng(0)
    shape = (preset.video_frames, preset.image_size, preset.image_size)
    video = rng.integers(0, 256, shape, dtype=np.uint8)
    # one array shared by every item: the loader's cost does not depend on what the pixels show
    store = VideoStore(arrays=[video] * videos_needed, image_size=preset.crop_size)
    dataset = ClipDataset(store, np.full(videos_needed, 50.0, dtype=np.float32), preset.clip_frames,
                          preset.clip_stride, clips_per_item=2, train=True)
    loader = clip_dataloader(dataset, batch_size=preset.batch_size, mean=50.0, std=50.0, device=device)
    batches = iter(loader)
    seconds = seconds_per_call(lambda: next(batches), device, steps)
    return 2 * preset.batch_size / seconds


class _Threads:
    """``torch.set_num_threads(n)`` inside a ``with`` block, the previous count restored after."""

    def __init__(self, threads: int):
        self.threads, self.before = int(threads), torch.get_num_threads()

    def __enter__(self):
        torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def _forward(model: torch.nn.Module, clip: torch.Tensor) -> Callable[[], object]:
    def call():
        with torch.inference_mode():
            return model(clip)
    return call


def model_costs(models: dict[str, torch.nn.Module], clip_shape: tuple[int, int, int, int, int], *,
                cpu_threads: int = COST_CPU_THREADS, steps: int = 5, device: torch.device | None = None,
                gpu_batch: int = GPU_THROUGHPUT_BATCH) -> list[dict]:
    """Inference cost of each model for clips ``clip_shape`` (``[1, C, T, H, W]``): parameters, multiply-adds,
    CPU latency per clip at batch 1 on ``cpu_threads`` threads (median of ``steps`` calls, after warm-up) and,
    when ``device`` is CUDA, GPU clips per second at batch ``gpu_batch`` (float32).

    The models are timed in turns (one call of each per round), so a load that comes and goes on a shared
    machine slows all of them alike and their ratio stays meaningful. Each model must accept
    ``clip_shape``'s channels.
    """
    from echobook.models import count_multiply_adds, count_parameters

    if clip_shape[0] != 1:
        raise ValueError(f"clip_shape must be a batch of one clip [1, C, T, H, W]; got {clip_shape}")
    rows = {name: {"model": name, "parameters": count_parameters(model),
                   "multiply_adds": count_multiply_adds(model, clip_shape)} for name, model in models.items()}
    clip = torch.randn(clip_shape)
    cpu_models = {name: model.to("cpu").eval() for name, model in models.items()}
    with _Threads(cpu_threads):
        calls = {name: _forward(model, clip) for name, model in cpu_models.items()}
        for call in calls.values():
            for _ in range(WARMUP_STEPS):
                call()
        times = {name: [] for name in calls}
        for _ in range(max(steps, 1)):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    for name, row in rows.items():
        row["cpu_threads"] = cpu_threads
        row["cpu_ms_per_clip"] = 1e3 * float(np.median(times[name]))
        row["cpu_clips_per_s"] = 1e3 / row["cpu_ms_per_clip"]
        row["gpu_clips_per_s"] = None
    if device is not None and torch.device(device).type == "cuda":
        device = torch.device(device)
        batch = torch.randn((gpu_batch, *clip_shape[1:]), device=device)
        for name, model in models.items():
            seconds = seconds_per_call(_forward(model.to(device), batch), device, steps)
            rows[name]["gpu_clips_per_s"] = gpu_batch / seconds
            model.to("cpu")
    return list(rows.values())


def cost_comparison(cost_clip: str = "full", device: torch.device | None = None, steps: int = 5,
                    cpu_threads: int = COST_CPU_THREADS) -> dict:
    """:func:`model_costs` of :data:`COST_MODELS` (Echo-E3Net's paper-scale variant, UniFormer-S and R(2+1)D-18,
    randomly initialised: the cost does not depend on the weights) at the ``cost_clip`` preset's clip, gray input."""
    from echobook.config import PRESETS
    from echobook.models import create_model

    preset = PRESETS[cost_clip]
    clip_shape = (1, 1, preset.clip_frames, preset.crop_size, preset.crop_size)
    torch.manual_seed(0)
    models = {label: create_model(name) for label, name in COST_MODELS}
    rows = model_costs(models, clip_shape, cpu_threads=cpu_threads, steps=steps, device=device)
    for row, (_, name) in zip(rows, COST_MODELS):
        row["registered_name"] = name
    return {"clip": list(clip_shape), "rows": rows}


def run_bench(size: str = "auto", device: str = "auto", steps: int = 5, cost_clip: str = "full",
              cpu_threads: int = COST_CPU_THREADS) -> dict:
    """All measurements as a JSON-ready dict (see the module doc)."""
    from echobook.config import resolve_device

    from echobook.methods import coreecho
    from echobook.models import create_model

    chosen = resolve_device(device)
    preset, note = bench_preset(size, chosen)
    encoder = coreecho.recipe(preset.name).encoder
    embed_dim = create_model(encoder).embed_dim
    train_fp32 = training_step_clips_per_s(preset, encoder, chosen, steps, bf16=False)
    train_bf16 = training_step_clips_per_s(preset, encoder, chosen, steps, bf16=True) if chosen.type == "cuda" else None
    fastest_train = max(v for v in (train_fp32, train_bf16) if v is not None)
    data = data_path_clips_per_s(preset, chosen, steps)
    notes = [n for n in (note, "" if chosen.type == "cuda" else "bfloat16 autocast: CUDA only, not measured")
             if n]
    return {
        "device": str(chosen),
        "device_name": (torch.cuda.get_device_name(chosen) if chosen.type == "cuda"
                        else platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "size": preset.name,
        "preset": {"encoder": encoder, **{k: v for k, v in dataclasses.asdict(preset).items()
                                          if k in ("batch_size", "clip_frames", "clip_stride", "crop_size",
                                                   "video_frames", "image_size")}},
        "steps": steps,
        "train_clips_per_s_fp32": train_fp32,
        "train_clips_per_s_bf16": train_bf16,
        "bf16_speedup": None if train_bf16 is None else train_bf16 / train_fp32,
        **rnc_timings(embed_dim, chosen, steps),
        "data_clips_per_s": data,
        "data_over_train": data / fastest_train,
        "model_costs": cost_comparison(cost_clip, chosen, steps, cpu_threads),
        "notes": notes,
    }


def _bf16_cell(results: dict) -> str:
    if results["train_clips_per_s_bf16"] is None:
        return "not measured"
    return f"{results['train_clips_per_s_bf16']:.1f} clips/s (x{results['bf16_speedup']:.2f} float32's)"


def format_table(results: dict) -> str:
    """The results as a plain-text table."""
    p = results["preset"]
    def fmt(value, spec=".1f"):
        return "not measured" if value is None else format(value, spec)
    rows = [
        ("device", f"{results['device']} ({results['device_name']}), torch {results['torch']}, "
                   f"{results['cpu_threads']} CPU threads"),
        ("setting", f"size {results['size']}: {p['encoder']}, batch {p['batch_size']} videos x 2 clips of "
                    f"{p['clip_frames']}x{p['crop_size']}x{p['crop_size']}, {results['steps']} timed steps"),
        ("stage-1 step, float32", f"{fmt(results['train_clips_per_s_fp32'])} clips/s"),
        ("stage-1 step, bfloat16 autocast", _bf16_cell(results)),
        (f"RnC 2N={RNC_SAMPLES}, vectorised (fwd+bwd)", f"{results['rnc_vectorised_ms']:.2f} ms"),
        (f"RnC 2N={RNC_SAMPLES}, per-anchor loop (fwd+bwd)", f"{results['rnc_loop_ms']:.2f} ms "
                                                            f"(x{results['rnc_loop_over_vectorised']:.1f} slower, "
                                                            f"|difference| {results['rnc_abs_difference']:.1e})"),
        ("data path (two-clip loader)", f"{fmt(results['data_clips_per_s'])} clips/s "
                                        f"(x{results['data_over_train']:.1f} the training step)"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if results.get("model_costs"):
        lines += ["", format_model_costs(results["model_costs"])]
    lines += [f"note: {note}" for note in results["notes"]]
    return "\n".join(lines)


def format_model_costs(costs: dict) -> str:
    """The model-cost comparison as a plain-text table, with each model's latency over the first's."""
    rows = costs["rows"]
    clip = "x".join(str(v) for v in costs["clip"][2:])
    first_ms = rows[0]["cpu_ms_per_clip"]
    header = (f"inference, batch 1, clip {clip}, {rows[0]['cpu_threads']} CPU threads "
              f"(timed in turns: compare the ratios)")
    lines = [header, f"  {'model':<12} {'params (M)':>10} {'GMACs':>8} {'CPU ms/clip':>12} {'x first':>8} "
                     f"{'real time':>9} {'GPU clips/s':>12}"]
    for row in rows:
        gpu = "-" if row["gpu_clips_per_s"] is None else f"{row['gpu_clips_per_s']:.0f}"
        real_time = "yes" if row["cpu_ms_per_clip"] < REAL_TIME_MS else "no"
        lines.append(f"  {row['model']:<12} {row['parameters'] / 1e6:>10.2f} {row['multiply_adds'] / 1e9:>8.2f} "
                     f"{row['cpu_ms_per_clip']:>12.1f} {row['cpu_ms_per_clip'] / first_ms:>8.1f} {real_time:>9} "
                     f"{gpu:>12}")
    return "\n".join(lines)
