"""Distributed training on a CPU: two gloo processes, as CI can run them.

- the stage-1 loss over two ranks, each holding half the batch, equals the loss of one process holding the
  whole batch (mean over the ranks), and the gradients after DDP's all-reduce equal the one-process gradients;
- fastai's DistributedDL, with its indices broadcast on the CPU, deals each rank its half of the epoch of a
  device-resident loader;
- ``echobook train coreecho --gpus 2`` trains through torchrun and fastai/Accelerate, rank 0 alone writes the run
  folder, and a run whose rank is killed continues when the same command is started again.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from echobook.distributed import global_rnc_loss, torchrun_command
from echobook.losses import rnc_loss
from echobook.methods.coreecho import Stage1Loss, coreecho_model

WORLD = 2
VIDEOS = 8  # 4 per rank, two clips each: 8 embeddings a rank, 16 in all
CLIP = (2, 1, 2, 4, 4)  # [clips, channels, frames, height, width]


class TinyEncoder(nn.Module):
    """A linear encoder with the ``embed_dim`` CoReEcho's head reads."""

    embed_dim = 5

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, self.embed_dim))

    def forward(self, clips):
        return self.net(clips)


def tiny_problem():
    torch.manual_seed(0)
    model = coreecho_model(TinyEncoder(), head_dropout=0.0, mean_ef_percent=55.0)
    # the head's BatchNorm reads running statistics: batch statistics are per rank under DDP on a CPU
    # (SyncBatchNorm, which shares them, has CUDA kernels only; distributed_ctx turns it on there)
    model.eval()
    clips = torch.randn(VIDEOS, *CLIP)
    ef_percent = torch.linspace(20.0, 75.0, VIDEOS)[torch.randperm(VIDEOS)]
    return model, clips, ef_percent


def one_process() -> tuple[float, float, dict[str, torch.Tensor]]:
    model, clips, ef_percent = tiny_problem()
    loss = Stage1Loss()(model(clips), ef_percent)
    loss.backward()
    with torch.no_grad():
        rnc = Stage1Loss().parts(model(clips), ef_percent)["rnc"]
    return float(loss.detach()), float(rnc), {name: p.grad.clone() for name, p in model.named_parameters()}


def resident_toy_loader():
    """A two-clip training loader of 8 videos on the device-resident path, raw uint8 batches of 2."""
    import numpy as np

    from echobook.data.clips import ClipDataset, VideoStore, clip_dataloader
    from echobook.data.resident import resident_loader

    rng = np.random.default_rng(0)
    store = VideoStore(arrays=[rng.integers(0, 256, (12 + 3 * i, 4, 4), dtype=np.uint8) for i in range(8)])
    dataset = ClipDataset(store, np.arange(8, dtype=np.float32) * 5 + 30, 3, 2, clips_per_item=2)
    loader = resident_loader(clip_dataloader(dataset, batch_size=2, mean=0.0, std=1.0, device="cpu", seed=4))
    loader.after_batch = lambda batch: batch
    return loader


def _rank(rank: int, init_file: str, results):
    from echobook.distributed import BackendDistributedDL

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        # fastai's DistributedDL (indices broadcast on the CPU under gloo) over the resident loader
        results[f"batches{rank}"] = [(clips.clone(), ef.clone())
                                     for clips, ef in BackendDistributedDL(resident_toy_loader(), rank, WORLD)]
        model, clips, ef_percent = tiny_problem()
        share = slice(rank * VIDEOS // WORLD, (rank + 1) * VIDEOS // WORLD)
        ddp = nn.parallel.DistributedDataParallel(model)
        loss = Stage1Loss()(ddp(clips[share]), ef_percent[share])
        loss.backward()  # DDP averages the gradients over the ranks
        with torch.no_grad():
            rnc = Stage1Loss().parts(model(clips[share]), ef_percent[share])["rnc"]
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        results[rank] = (float(loss.detach()), float(rnc), grads)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_give_the_one_process_loss_and_gradients(tmp_path):
    # forked, not spawned: the children inherit the imported torch and fastai instead of importing them again
    manager = mp.get_context("fork").Manager()
    results = manager.dict()
    mp.start_processes(_rank, args=(str(tmp_path / "init"), results), nprocs=WORLD, join=True, start_method="fork")
    loss, rnc, grads = one_process()
    rank_losses = [results[r][0] for r in range(WORLD)]
    rank_rnc = [results[r][1] for r in range(WORLD)]
    assert sum(rank_losses) / WORLD == pytest.approx(loss, rel=1e-5)
    assert sum(rank_rnc) / WORLD == pytest.approx(rnc, rel=1e-5)
    assert abs(rank_rnc[0] - rank_rnc[1]) > 1e-4  # each rank's value is its anchors' share, not the whole loss
    for name, grad in grads.items():
        for r in range(WORLD):
            torch.testing.assert_close(results[r][2][name], grad, rtol=1e-5, atol=1e-6, msg=name)
    # each rank got a contiguous half of the one-process epoch: the same clips (starts) and labels, in order
    whole = list(resident_toy_loader())
    shared = [batch for r in range(WORLD) for batch in results[f"batches{r}"]]
    assert len(shared) == len(whole) == 4
    for (clips, ef), (clips_r, ef_r) in zip(whole, shared):
        assert torch.equal(clips_r, clips) and torch.equal(ef_r, ef)


def test_the_gathered_loss_differs_from_the_mean_of_local_losses():
    """Why gather: RnC over the global batch is not the mean of RnC over each half (larger denominators)."""
    torch.manual_seed(1)
    features, labels = torch.randn(16, 5), torch.linspace(0.0, 60.0, 16)
    whole = rnc_loss(features, labels)
    halves = (rnc_loss(features[:8], labels[:8]) + rnc_loss(features[8:], labels[8:])) / 2
    by_anchor = (rnc_loss(features, labels, anchors=slice(0, 8)) + rnc_loss(features, labels, anchors=slice(8, 16))) / 2
    torch.testing.assert_close(by_anchor, whole)
    assert float(whole) > float(halves) + 0.1
    torch.testing.assert_close(global_rnc_loss(features, labels), whole)  # no process group: the plain loss


def test_torchrun_command_is_one_machine_with_n_processes():
    command = torchrun_command(3, ["train", "coreecho", "--out", "x"])
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in command and "--nproc-per-node=3" in command
    assert command[-4:] == ["train", "coreecho", "--out", "x"]
    with pytest.raises(ValueError, match="--gpus 0"):
        torchrun_command(0, [])


# --------------------------------------------------------------------------------------------- the command

def _rank_process(launcher, local_rank: str, timeout_s: float = 120.0):
    """The worker torchrun started for ``local_rank`` (found by the LOCAL_RANK of its environment)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if child.environ().get("LOCAL_RANK") == local_rank:
                    return child
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.2)
    raise AssertionError(f"no rank with LOCAL_RANK={local_rank} appeared")


def _wait_for(path: Path, launcher, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        assert launcher.poll() is None, f"the run ended (status {launcher.returncode}) before writing {path}"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout_s:.0f} s"
        time.sleep(0.2)


def test_train_on_two_gloo_ranks_survives_a_killed_rank(tmp_path):
    """``echobook train coreecho --gpus 2`` on a CPU: rank 1 killed after stage 1's first epoch ends the run;
    the same command continues it from rank 0's checkpoint (every rank loads it, so a DDP ``module.`` prefix or
    an optimiser mismatch would fail here) and rank 0 alone writes the card."""
    from echobook.config import get_preset
    from echobook.data.synthetic import SyntheticConfig, synth_echonet
    from echobook.training import LAST_FILE, read_checkpoint

    smoke = get_preset("smoke")
    data = synth_echonet(tmp_path / "data", videos=16, seed=5,
                         config=SyntheticConfig(image_size=smoke.image_size, frames=smoke.video_frames))
    run, epochs = tmp_path / "run", 4
    command = [sys.executable, "-m", "echobook.cli", "train", "coreecho", "--data", str(data), "--out", str(run),
               "--size", "smoke", "--epochs", str(epochs), "--probe-epochs", "1", "--quiet", "--gpus", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(run / "stage1" / LAST_FILE, launcher)
        _rank_process(launcher, "1").send_signal(signal.SIGKILL)
        assert launcher.wait(timeout=120) != 0  # torchrun ends the other rank and fails
    finally:
        if launcher.poll() is None:
            launcher.kill()
    stopped_at = int(read_checkpoint(run / "stage1" / LAST_FILE)["epoch"])
    assert stopped_at < epochs - 1 and not (run / "card.json").exists()

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("trained in") == 1  # rank 0 alone reports
    last = read_checkpoint(run / "stage1" / LAST_FILE)
    assert int(last["epoch"]) == epochs - 1 and not any(k.startswith("module.") for k in last["model"])
    card = json.loads((run / "card.json").read_text())
    assert card["method"] == "coreecho" and card["metrics"]["test_videos"] >= 1


def test_gpus_is_refused_where_it_cannot_work(tmp_path, capsys):
    from echobook.cli import main

    assert main(["train", "coreecho", "--out", str(tmp_path / "run"), "--gpus", "0"]) == 2
    assert "--gpus 0" in capsys.readouterr().err
    from echobook.runs import TRAINERS

    others = sorted(set(TRAINERS) - {"coreecho"})
    for method in others:  # their trainers would score and write the card on every rank
        assert main(["train", method, "--out", str(tmp_path / method), "--gpus", "2"]) == 2
        assert "only for coreecho" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
