"""Where UniFormer-S's GPU time goes: torch.profiler's top CUDA kernels over three training passes.

    python benchmarks/profile_uniformer.py     # on a GPU: batch 32 clips of 36x112x112, bf16 autocast

Forward and backward of the encoder alone. The first profile (``results/2026-11-30-nvidia-h200/
profile-uniformer-train.txt``) found cuDNN's depthwise Conv3d weight gradient at 80 % of the time, which
:class:`echobook.models.uniformer.DepthwiseConv3d` now avoids on a GPU.
"""
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from echobook.models import create_model  # noqa: E402


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    model = create_model("uniformer_s").to(device)
    clips = torch.randn((32, 1, 36, 112, 112) if gpu else (2, 1, 8, 64, 64), device=device)

    def train_pass():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            embedding = model(clips)
        embedding.float().sum().backward()

    for _ in range(3 if gpu else 1):
        train_pass()
    activities = [ProfilerActivity.CUDA] if gpu else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        for _ in range(3 if gpu else 1):
            train_pass()
        if gpu:
            torch.cuda.synchronize()
    sort = "cuda_time_total" if gpu else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=70))


if __name__ == "__main__":
    main()
