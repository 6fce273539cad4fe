"""UniFormer-S's training step with its depthwise convolutions as cuDNN's Conv3d against 2-D temporal taps.

    python benchmarks/profile_dwconv.py        # on a GPU: batch 32 clips of 36x112x112, bf16 autocast

Forward and backward of the encoder alone (no optimiser), clips/s for each path of
:class:`echobook.models.uniformer.DepthwiseConv3d`, both in one run so the ratio holds on any machine. On a CPU it
runs a tiny clip to check the script. Measured on an H200: 66 against 186 clips/s
(``results/2026-11-30-nvidia-h200/depthwise-conv.txt``).
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from echobook.models import create_model  # noqa: E402
from echobook.models.uniformer import DepthwiseConv3d  # noqa: E402


def with_taps(model: torch.nn.Module, taps: bool) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, DepthwiseConv3d):
            module.temporal_taps = taps
    return model


def clips_per_s(model: torch.nn.Module, clips: torch.Tensor, steps: int) -> float:
    def step():
        with torch.autocast(clips.device.type, dtype=torch.bfloat16, enabled=clips.is_cuda):
            embedding = model(clips)
        embedding.float().sum().backward()

    def sync():
        if clips.is_cuda:
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return clips.shape[0] * steps / (time.perf_counter() - start)


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    clips = torch.randn((32, 1, 36, 112, 112) if gpu else (2, 1, 8, 64, 64), device=device)
    for label, taps in (("conv3d", False), ("2d taps", True)):
        torch.manual_seed(0)
        model = with_taps(create_model("uniformer_s").to(device), taps)
        print(label, round(clips_per_s(model, clips, 5 if gpu else 2), 1), "clips/s", flush=True)


if __name__ == "__main__":
    main()
