"""UniFormer-S's training step with its depthwise convolutions computed four ways, side by side in one run.

    python benchmarks/profile_dwconv.py        # on a GPU: batch 32 clips of 36x112x112, bf16 autocast

Forward and backward of the encoder alone (no optimiser), clips/s for: cuDNN's Conv3d; the package's GPU path of
:class:`echobook.models.uniformer.DepthwiseConv3d` (k depthwise Conv2d, one per temporal tap); the taps fused into
one depthwise Conv2d with k outputs per channel over every padded frame, then summed along the diagonal; and the
taps on channels-last frames. All four give the same values (checked on a small clip first). On a CPU it runs a
tiny clip to check the script. Measured on an H200: Conv3d 66, taps 186 clips/s
(``results/2026-11-30-nvidia-h200/depthwise-conv.txt``); the other two are candidates for the next lease.
"""
import functools
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from echobook.models import create_model  # noqa: E402
from echobook.models.uniformer import DepthwiseConv3d  # noqa: E402


def fused_taps(conv: DepthwiseConv3d, x: torch.Tensor) -> torch.Tensor:
    """One depthwise Conv2d with k outputs per channel (one per temporal tap) over all B x (T + k - 1) padded
    frames; output frame t sums tap i of padded frame t + i."""
    batch, channels, frames, height, width = x.shape
    kernel, pad = conv.kernel_size[0], conv.kernel_size[0] // 2
    padded = F.pad(x, (0, 0, 0, 0, pad, pad)).transpose(1, 2).reshape(-1, channels, height, width)
    weight = conv.weight.squeeze(1).reshape(channels * kernel, 1, kernel, kernel)
    taps = F.conv2d(padded, weight, padding=pad, groups=channels)
    taps = taps.reshape(batch, frames + 2 * pad, channels, kernel, height, width)
    out = sum(taps[:, i:i + frames, :, i] for i in range(kernel)) + conv.bias.view(1, 1, -1, 1, 1)
    return out.transpose(1, 2)


def channels_last_taps(conv: DepthwiseConv3d, x: torch.Tensor) -> torch.Tensor:
    return DepthwiseConv3d.forward_taps(conv, x, channels_last=True)


VARIANTS = {"conv3d": None, "2d taps": DepthwiseConv3d.forward_taps, "fused taps": fused_taps,
            "taps, channels-last": channels_last_taps}


def with_variant(model: torch.nn.Module, variant: str) -> torch.nn.Module:
    """Every DepthwiseConv3d of ``model`` computed as ``variant``."""
    for module in model.modules():
        if isinstance(module, DepthwiseConv3d):
            function = VARIANTS[variant]
            module.temporal_taps = function is not None
            if function is not None:
                module.forward_taps = functools.partial(function, module)
    return model


def check_variants_agree() -> None:
    torch.manual_seed(0)
    conv, x = DepthwiseConv3d(6, 5), torch.randn(2, 6, 7, 9, 9)
    expected = F.conv3d(x, conv.weight, conv.bias, padding=2, groups=6)
    for variant, function in VARIANTS.items():
        if function is not None:
            torch.testing.assert_close(function(conv, x), expected, atol=1e-5, rtol=1e-5, msg=variant)


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
    check_variants_agree()
    for variant in VARIANTS:
        torch.manual_seed(0)
        model = with_variant(create_model("uniformer_s").to(device), variant)
        print(variant, round(clips_per_s(model, clips, 5 if gpu else 1), 1), "clips/s", flush=True)

if __name__ == "__main__":
    main()
