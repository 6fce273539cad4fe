"""Training on several GPUs (or several CPU processes) through fastai's ``DistributedTrainer`` and Hugging Face
Accelerate, launched by ``torchrun``: no process group of our own.

- :func:`torchrun_command` and :func:`relaunch`: ``echobook train ... --gpus N`` starts itself again under
  ``torchrun --standalone --nproc-per-node N``; each process then trains with its own per-GPU batch (nccl on CUDA,
  gloo on a CPU, chosen by Accelerate).
- :func:`distributed_ctx`: fastai's ``learn.distrib_ctx()`` (the model wrapped in ``DistributedDataParallel`` by
  ``Accelerator.prepare``, each loader split over the ranks by ``DistributedDL``, gradients all-reduced, i.e.
  averaged over the ranks), with two changes that fastai 2.8 needs for this package:
  the epoch's indices are broadcast on the CPU under gloo (fastai moves them to CUDA, which a CPU run has not),
  and the EF metrics (:class:`echobook.metrics.EFMetric`) are computed over the whole validation set, gathered
  from the ranks, not over rank 0's share. A no-op outside ``torchrun``.
- :func:`global_rnc_loss`: Rank-N-Contrast over the *global* batch, the way SimCLR-style losses are distributed.
  Each rank gathers every rank's embeddings with ``torch.distributed.nn.functional.all_gather`` (whose backward
  sums the gradients that reach each rank's embeddings from every rank's loss) and averages the loss over its
  own anchors, each ranked against all ``n = W * m`` samples (W ranks of m embeddings).

The loss value. With equal shares (``DistributedDL`` pads the epoch so that every rank has as many items), rank
r's loss is the mean over its m anchors of the global loss's terms, so the mean of the W ranks' losses is exactly
the loss of one process holding the whole batch. It is not the mean of W losses over batches of m: a denominator
of RnC runs over every sample at least as far in label, so a larger batch gives larger denominators and a
larger loss (about log of the batch size), and more negatives per anchor, which is why the gather is worth doing.
fastai records rank 0's value: one rank's share, an unbiased but noisier reading of the global loss.

The gradients. Rank r's backward gives ``d(sum_r' L_r') / d(z_r)`` for its embeddings ``z_r`` (the gather's
backward sums over ranks), then DDP averages the W ranks' parameter gradients:
``(1/W) d(sum_r' L_r')/d(theta) = d L_global / d(theta)`` since ``sum_r' L_r' = W L_global``. So the update is
the single-process update on the global batch, with no rescaling of the learning rate (for the L1 term too:
the mean of W per-rank means of equal size is the global mean). ``tests/test_distributed.py`` checks both
equalities on two gloo processes.

What differs from one process: BatchNorm statistics are per rank unless ``sync_bn`` (fastai converts to
``SyncBatchNorm``, CUDA only; the default on CUDA), and each rank starts from the same seed, so the random
pad-and-crop offsets repeat across ranks (on different clips). Rank 0 alone writes checkpoints, the card and the
report; every rank resumes from the same ``last.pth`` (:func:`echobook.training.fit_resumable`), so a run whose
rank was killed continues from its last finished epoch when the same command is started again.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from typing import Sequence

import torch
import torch.distributed as dist
from fastai.callback.progress import ProgressCallback
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.torch_core import num_distrib, rank_distrib
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from echobook.losses import rnc_loss

# torch 2.9 deprecates the autograd all_gather for a private module's; it is still the documented gather with
# gradients (SimCLR-style), so say it once, not at every step
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
                        category=FutureWarning)


# --------------------------------------------------------------------------------------------- where we are

def under_torchrun() -> bool:
    """Whether this process was started by torchrun (or ``accelerate launch``): it sets these variables."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_distributed() -> bool:
    """A process group of more than one rank is initialised (by Accelerate, in :func:`distributed_ctx`)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that writes checkpoints, cards and reports."""
    return rank_distrib() == 0


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel`` (its state dict without the ``module.`` prefix)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def rank_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` for a CUDA run under torchrun (made current), else ``device``."""
    device = torch.device(device)
    if device.type == "cuda" and under_torchrun():
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank with LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s): "
                               "ask --gpus for at most as many GPUs as the machine has")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return device


# --------------------------------------------------------------------------------------------- launching

def torchrun_command(processes: int, cli_args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m echobook.cli ARGS``: one machine,
    a free rendezvous port, no restarts (a killed rank ends the run; the same command resumes it)."""
    if processes < 1:
        raise ValueError(f"--gpus {processes}: need at least 1 process")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "echobook.cli", *cli_args]


def relaunch(processes: int, cli_args: Sequence[str], *, threads_per_process: int | None = None) -> int:
    """Run ``echobook CLI_ARGS`` under torchrun with ``processes`` ranks; returns torchrun's exit status.

    ``OMP_NUM_THREADS`` defaults to the cores shared out over the ranks (torchrun would set 1)."""
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads_per_process or max(1, (os.cpu_count() or 1) // processes))
    return subprocess.run(torchrun_command(processes, cli_args), env=env, check=False).returncode


# --------------------------------------------------------------------------------------------- the loss

def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``[m, ...]`` tensor, concatenated in rank order ``[W m, ...]``; the backward sends each rank
    the sum of the gradients that all ranks' losses give its own rows (SimCLR-style gathering)."""
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's equally shaped tensor, concatenated in rank order, without a graph (labels, metrics)."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def global_rnc_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Rank-N-Contrast of this rank's anchors against the global batch (module docstring); the plain
    :func:`~echobook.losses.rnc_loss` outside a process group. Every rank must hold as many rows."""
    if not is_distributed():
        return rnc_loss(features, labels, temperature)
    local = features.shape[0]
    start = dist.get_rank() * local
    return rnc_loss(gather_with_grad(features), gather_no_grad(labels), temperature,
                    anchors=slice(start, start + local))


# --------------------------------------------------------------------------------------------- fastai

class BackendDistributedDL(DistributedDL):
    """fastai's ``DistributedDL`` whose index broadcast runs on the process group's own device (CUDA under
    nccl, the CPU under gloo) and which exposes the wrapped loader's ``rng`` (checkpoints save it)."""

    def _broadcast(self, values, rank):
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(values, dtype=torch.long, device=device)
        dist.broadcast(tensor, rank)
        return tensor.cpu().tolist()

    @property
    def rng(self):
        return self.dl.rng


class EchoDistributedTrainer(DistributedTrainer):
    """fastai's ``DistributedTrainer`` (Accelerate's DDP) with :class:`BackendDistributedDL` and EF metrics
    gathered over the ranks before fastai's Recorder reads them (order 11 < the Recorder's 50)."""

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else BackendDistributedDL(dl, device=self.learn.model.device)

    def after_validate(self):
        from echobook.metrics import EFMetric

        total = getattr(self.learn.dl, "n", None)  # the validation set's items before DistributedDL's padding
        device = self.learn.model.device
        for metric in self.learn.metrics:
            if isinstance(metric, EFMetric) and metric.preds:
                # ranks hold contiguous, equal shares of the padded index list: concatenated in rank order
                # and cut to `total`, they are the items in the loader's order (its video_index applies)
                metric.preds = [gather_no_grad(torch.cat(metric.preds).to(device)).cpu()[:total]]
                metric.targets = [gather_no_grad(torch.cat(metric.targets).to(device)).cpu()[:total]]


@contextmanager
def distributed_ctx(learn, *, sync_bn: bool | None = None):
    """``learn.distrib_ctx()`` for this package (module docstring); does nothing outside torchrun.

    ``sync_bn``: BatchNorm statistics over the global batch (default: on CUDA; ``SyncBatchNorm`` has no CPU kernel).
    """
    if num_distrib() <= 1:
        yield learn
        return
    from echobook.training import loader_device

    cpu = loader_device(learn.dls).type == "cpu"
    learn.add_cb(EchoDistributedTrainer(sync_bn=(not cpu) if sync_bn is None else sync_bn, cpu=cpu))
    if rank_distrib():
        learn.remove_cb(ProgressCallback)
    try:
        yield learn
    finally:
        learn.detach_distributed()
        if rank_distrib() and hasattr(learn, "progress"):
            learn.remove_cb(ProgressCallback)  # fastai puts the bar back on every rank; one is enough


def barrier() -> None:
    """Wait for every rank (rank 0 writing the card, say); nothing outside a process group."""
    if is_distributed():
        dist.barrier()
