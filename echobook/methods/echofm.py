"""EchoFM (Kim et al., 2025): periodic masked video pretraining. Its constants, model, objective, learner,
recipe per size, periodicity measures, and the saved encoder that chapter 9 loads.

- :class:`EchoFMModel`: a :class:`~echobook.models.videomae.VideoMAE`, a masking strategy, and (when
  ``periodic``) EchoFM's projection head :class:`SliceProjector`. ``periodic=False`` is plain VideoMAE.
- The periodic contrast: :func:`tssm` (the temporal self-similarity matrix of per-slice embeddings),
  :func:`pixel_similarity` (the later release's pixel prior), :func:`select_triplets` (positives above the
  row mean, negatives at or below it and not within one slice of the anchor), :func:`triplet_loss`
  (hardest positive and negative by cosine, with a margin); :class:`EchoFMLoss` = reconstruction + triplet.
- ``positives="self"`` mines positives from the model's own (detached) TSSM, as the paper describes;
  ``positives="pixel"`` from the pixel prior, as the 2026 rewrite of the code does.
- :func:`echofm_learner`: AdamW betas (0.9, 0.95), weight decay 0.05 with none on biases and norms, linear
  warm-up then half-cycle cosine per step; :class:`LossParts` records the loss parts per step.
- :func:`periodicity`: the correlation of a model's TSSM with the true phase similarity
  ``cos(2 pi (phi_i - phi_j))`` and the share of clips whose TSSM gives the true cycle length within a slice.
- :func:`save_pretrained_encoder` / :func:`load_pretrained_encoder`: the encoder with a card (variant,
  size, seed, git commit), written atomically under ``<cache>/models``.

Downstream (chapter 9): :func:`downstream_set` (every view of synthetic hearts, one clip around ED and ES each;
:func:`camus_downstream_set` for a CAMUS folder), :class:`ViewClassifier` and :func:`view_learner` (mean-pooled
tokens and a linear head, probed or fine-tuned), :func:`segmentation_model` and :func:`segmentation_learner` (a
UNETR decoder, :mod:`echobook.models.unetr`), :func:`segmentation_report` (Dice, IoU, HD95, ASSD per structure),
:func:`ef_from_label_maps` and :func:`biplane_ef_from_label_maps` (the method of discs on predicted masks),
:func:`downstream_encoder` (EchoFM, VideoMAE or random; pretrained here when none is saved),
:func:`label_efficiency`, and :func:`save_segmentation_model` / :func:`build_segmentation_model` (the card that
``echobook.runs.load_trained`` rebuilds from).

Sources of the constants: ``methods-peers.md`` section 5 (EchoFM's ``main_pretrain.py``, ``models_mae.py``,
``util/lr_sched.py``, ``cluster/pretrain_apptainer.job`` and, for the rewrite, its ``triplet_sampling`` and
``pixel_similarity``) and section 7 (VideoMAE).
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from torch import nn

from echobook.config import Settings, resolve_size
from echobook.models.masking import MASKING_STRATEGIES, make_masking
from echobook.models.outputs import OutputTuple
from echobook.models.registry import model_config
from echobook.models.videomae import (
    Block, VideoMAE, VideoViT, VideoViTConfig, masked_reconstruction_loss, video_mae,
)
from echobook.training import (
    adamw_decay_matrices_only, check_state_fits, describe_model, make_learner,
    warmup_cosine_scheduler,
)

# --- the paper's and its code's numbers
ECHOFM_MASK_RATIO = 0.75  # main_pretrain.py: keep int(196 * 0.25) = 49 positions per slice
ECHOFM_PRED_FRAMES = 8  # pred_t_dim: 8 frames of 32 rebuilt
ECHOFM_BETAS = (0.9, 0.95)  # main_pretrain.py's AdamW
ECHOFM_WEIGHT_DECAY = 0.05  # none on biases and 1-D parameters (util/misc.add_weight_decay)
ECHOFM_BASE_LR = 1e-3  # blr; lr = blr * effective batch / 256
ECHOFM_EPOCHS, ECHOFM_WARMUP_EPOCHS = 200, 10  # README: 8 GPUs x batch 8, 200 epochs, 10 of warm-up
ECHOFM_BATCH = 64  # 8 GPUs x 8
ECHOFM_CLIP_GRAD = 0.02  # cluster/pretrain_apptainer.job
ECHOFM_TRIPLET_WEIGHT = 1.0  # loss = recon + 1.0 * triplet (both releases)
ECHOFM_TRIPLET_MARGIN = 0.2  # the rewrite's relu(sim_an - sim_ap + 0.2) on cosine similarities
ECHOFM_FIRST_RELEASE_MARGIN = 1.0  # first release: TripletMarginLoss(margin=1.0, p=2) on raw embeddings
ECHOFM_NEIGHBOUR_SLICES = 1  # the rewrite: negatives not within +-1 slice of the anchor
PIXEL_PRIOR_SIDE = 32  # pixel_similarity: frames pooled to 32 x 32
POSITIVE_SOURCES = ("self", "pixel")
PAPER_PRETRAINING_CLIPS = 290_000  # README


# --------------------------------------------------------------------------------------------- recipe per size

@dataclass(frozen=True)
class EchoFMRecipe:
    """What EchoFM pretrains at one size: the encoder, the pretraining videos and clips, the optimiser."""

    encoder: str  # a registered videomae_* encoder; its config fixes clip_frames and image_size
    videos: int  # synthetic long videos (all splits)
    video_frames: int  # frames of each, several beats
    fps: float  # frames per second of the synthetic videos
    hr_range: tuple[float, float]  # beats per minute: with fps and clip_stride, 3-6 slices per beat
    clip_stride: int  # take every clip_stride-th frame
    batch_size: int
    epochs: int
    learning_rate: float
    warmup_fraction: float  # linear warm-up over this share of the steps, then half-cycle cosine
    mask_ratio: float = ECHOFM_MASK_RATIO
    masking: str = "consistent"
    # "pixel": the 2026 code's pixel prior; "self": the paper's self-mining, which let the TSSM drift away from the
    # phase in chapter 8's runs (every seed at smoke), the "dead periodic triplet" the rewrite names
    positives: str = "pixel"
    triplet_weight: float = ECHOFM_TRIPLET_WEIGHT
    triplet_margin: float = ECHOFM_TRIPLET_MARGIN
    weight_decay: float = ECHOFM_WEIGHT_DECAY
    eval_clips_per_video: int = 2  # held-out clips per TEST video for the periodicity measures
    seeds: int = 3  # seeds behind each comparison in chapter 8
    ablation_epochs: int | None = None  # epochs of each ablation run (None: as many as the main run)

    @property
    def config(self) -> VideoViTConfig:
        return model_config(self.encoder)

    @property
    def clip_frames(self) -> int:
        return self.config.clip_frames

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def frames_per_slice(self) -> int:
        """Video frames one time slice spans."""
        return self.config.tubelet_frames * self.clip_stride


# CPU sizes: a tiny ViT from scratch needs a rate near 1e-3 after a short warm-up to learn in a few hundred
# steps (EchoFM's 1e-3 * 64 / 256 = 2.5e-4 over 200 epochs of 290 K clips). 25 fps and 70-110 bpm with a stride
# of 2 put 3.4-5.4 time slices in a beat, so an 8-slice clip holds 1.5-2.4 beats and its TSSM shows the cycle.
_CPU_DATA = dict(fps=25.0, hr_range=(70.0, 110.0), clip_stride=2)
RECIPES: dict[str, EchoFMRecipe] = {
    "smoke": EchoFMRecipe(encoder="videomae_micro", videos=192, video_frames=64, batch_size=16, epochs=6,
                          learning_rate=2e-3, warmup_fraction=0.1, seeds=3, **_CPU_DATA),
    # small: the ablations train a third as long as the main run, to keep the chapter within minutes; one seed a
    # run for the comparison of section 8.8, because the ledger runs the whole chapter over seeds (three a run
    # meant seven pretrainings, 1,168 of the chapter's ~2,000 s wall on a shared 2-core machine)
    "small": EchoFMRecipe(encoder="videomae_tiny", videos=480, video_frames=96, batch_size=16, epochs=12,
                          learning_rate=1e-3, warmup_fraction=0.1, seeds=1, ablation_epochs=4, **_CPU_DATA),
    # full: ViT-B on 112-pixel, 32-frame clips at stride 2 of 50 fps videos (3.75-6.25 slices a beat at
    # 60-100 bpm); batch 32 on one GPU with EchoFM's rate rule; 100 epochs (its cluster job), 10 % warm-up
    # 2 048 long videos held in memory (4.5 GB of uint8 at 176 x 112 x 112; EchoNet's 10 030 would need 22 GB)
    "full": EchoFMRecipe(encoder="videomae_base", videos=2048, video_frames=176, fps=50.0, hr_range=(60.0, 100.0),
                         clip_stride=2, batch_size=32, epochs=100, learning_rate=ECHOFM_BASE_LR * 32 / 256,
                         warmup_fraction=0.1, seeds=2, ablation_epochs=10),
}


def recipe(size: str | Settings = "auto") -> EchoFMRecipe:
    """EchoFM's recipe for a size name, ``"auto"``, or a chapter's :class:`~echobook.config.Settings`."""
    return RECIPES[size.size if isinstance(size, Settings) else resolve_size(size)]


# --------------------------------------------------------------------------------------------- the periodic head

class SliceProjector(nn.Module):
    """EchoFM's projection head: the encoder's visible tokens split into their ``T'`` time slices, a learned
    class token prepended to each slice, one shared transformer block and a LayerNorm of its own (the
    rewrite's ``prj_norm``), the class tokens out: per-slice embeddings ``[B, T', D]``.

    Every slice must hold the same number of tokens: consistent masking, or no masking at all.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.block = Block(dim, heads, mlp_ratio)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, tokens: torch.Tensor, slices: int) -> torch.Tensor:
        batch, count, dim = tokens.shape
        if count % slices:
            raise ValueError(f"{count} visible tokens do not split into slices={slices} equal time slices "
                             "(the projection head needs consistent masking or none)")
        per_slice = tokens.reshape(batch * slices, count // slices, dim)
        x = torch.cat([self.cls_token.to(tokens.dtype).expand(batch * slices, -1, -1), per_slice], dim=1)
        return self.norm(self.block(x)[:, 0]).reshape(batch, slices, dim)


def tssm(slice_embeddings: torch.Tensor, centre: bool = True) -> torch.Tensor:
    """The temporal self-similarity matrix ``[B, T', T']``: cosine similarity of every pair of slices.

    ``centre`` (our choice, not the papers'): the clip's mean embedding is removed first, as the pixel prior
    removes the static anatomy. What all slices share (the heart's shape, the sector) otherwise dominates
    every cosine: a fresh projection head gives similarities of 0.99 everywhere, where the triplet loss has
    no gradient (the "dead periodic triplet" the 2026 rewrite names)."""
    embeddings = slice_embeddings.float()
    if centre:
        embeddings = embeddings - embeddings.mean(1, keepdim=True)
    unit = F.normalize(embeddings, dim=-1)
    return unit @ unit.transpose(1, 2)


def pixel_similarity(clips: torch.Tensor, slices: int, side: int = PIXEL_PRIOR_SIDE) -> torch.Tensor:
    """The rewrite's pixel prior ``[B, T', T']`` (no gradient): gray frames averaged per slice, pooled to
    ``side x side``, each vector's own mean removed, then the mean over slices ("removes static anatomy"),
    L2-normalised, cosine similarity."""
    with torch.no_grad():
        gray = clips.float().mean(1)  # [B, T, H, W]
        batch, frames, height, width = gray.shape
        per_slice = gray.reshape(batch, slices, frames // slices, height, width).mean(2)
        pooled = F.adaptive_avg_pool2d(per_slice, min(side, height)).flatten(2)  # [B, T', side^2]
        pooled = pooled - pooled.mean(-1, keepdim=True)
        pooled = pooled - pooled.mean(1, keepdim=True)
        unit = F.normalize(pooled, dim=-1)
        return unit @ unit.transpose(1, 2)


def select_triplets(prior: torch.Tensor, neighbours: int = ECHOFM_NEIGHBOUR_SLICES):
    """Every slice an anchor. Positives: slices whose ``prior`` similarity to the anchor is above the anchor's
    row mean (the diagonal left out of both); negatives: the others, except the anchor's ``neighbours``
    slices on each side (too close in time to be called another phase). Returns boolean ``positives``,
    ``negatives`` ``[B, T', T']`` and ``valid`` anchors ``[B, T']`` (at least one of each)."""
    batch, slices, _ = prior.shape
    index = torch.arange(slices, device=prior.device)
    distance = (index[:, None] - index[None, :]).abs()
    off_diagonal = distance > 0
    row_mean = (prior * off_diagonal).sum(-1, keepdim=True) / max(slices - 1, 1)
    above = (prior > row_mean) & off_diagonal
    positives = above
    negatives = ~above & (distance > neighbours)
    valid = positives.any(-1) & negatives.any(-1)
    return positives, negatives, valid


def triplet_loss(slice_embeddings: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                 valid: torch.Tensor, margin: float = ECHOFM_TRIPLET_MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """``relu(sim(a, hardest negative) - sim(a, hardest positive) + margin)`` over valid anchors, on the cosine
    similarities of the embeddings: the hardest positive is the least similar, the hardest negative the most.
    Returns the mean loss and the share of valid anchors whose triplet is active (loss > 0)."""
    similarity = tssm(slice_embeddings)
    hardest_positive = similarity.masked_fill(~positives, float("inf")).amin(-1)
    hardest_negative = similarity.masked_fill(~negatives, float("-inf")).amax(-1)
    losses = F.relu(hardest_negative - hardest_positive + margin)
    losses = torch.where(valid, losses, torch.zeros_like(losses))
    count = valid.sum()
    if int(count) == 0:
        zero = similarity.sum() * 0.0
        return zero, zero.detach()
    return losses.sum() / count, ((losses > 0) & valid).sum().float() / count


# --------------------------------------------------------------------------------------------- the model

class PretrainOutput(OutputTuple):
    """One pretraining forward: ``(pred [B, N, V], target [B, N, V], mask [B, N], slice_embeddings [B, T', D],
    prior [B, T', T'])``; the last two are empty tensors for plain VideoMAE."""

    fields = ("pred", "target", "mask", "slice_embeddings", "prior")


class EchoFMModel(nn.Module):
    """The masked autoencoder, its masking, and EchoFM's projection head (``periodic``); see the module doc."""

    def __init__(self, mae: VideoMAE, *, masking: str = "consistent", mask_ratio: float = ECHOFM_MASK_RATIO,
                 periodic: bool = True, positives: str = "self", norm_pix: bool = True):
        super().__init__()
        if masking not in MASKING_STRATEGIES:
            raise ValueError(f"masking={masking!r}: choose one of {MASKING_STRATEGIES}")
        if positives not in POSITIVE_SOURCES:
            raise ValueError(f"positives={positives!r}: choose one of {POSITIVE_SOURCES}")
        if periodic and masking != "consistent":
            raise ValueError(f"masking={masking!r}: the periodic head needs every slice to keep the same tokens "
                             "(masking='consistent'), or periodic=False")
        self.mae, self.masking, self.mask_ratio = mae, masking, float(mask_ratio)
        self.periodic, self.positives, self.norm_pix = periodic, positives, norm_pix
        config = mae.config
        self.projector = SliceProjector(config.embed_dim, config.num_heads, config.mlp_ratio) if periodic else None

    @property
    def encoder(self) -> VideoViT:
        return self.mae.encoder

    def forward(self, clips: torch.Tensor) -> PretrainOutput:
        slices, rows, cols = self.mae.check_clip_length(clips)
        masking = make_masking(self.masking, clips.shape[0], slices, rows * cols, self.mask_ratio,
                               device=clips.device)
        pred, latent = self.mae(clips, masking)
        target = self.mae.target(clips, self.norm_pix)
        empty = clips.new_zeros(0)
        if self.projector is None:
            return PretrainOutput(pred, target, masking.mask, empty, empty)
        embeddings = self.projector(latent[:, 1:], slices)
        prior = tssm(embeddings).detach() if self.positives == "self" else pixel_similarity(clips, slices)
        return PretrainOutput(pred, target, masking.mask, embeddings, prior)

    @torch.no_grad()
    def slice_embeddings(self, clips: torch.Tensor, readout: str = "model") -> torch.Tensor:
        """``[B, T', D]`` per-slice embeddings of whole (unmasked) clips. ``readout="model"``: the projection head
        when the model has one, else each slice's mean token; ``"encoder"``: each slice's mean token always."""
        if readout not in ("model", "encoder"):
            raise ValueError(f"readout={readout!r}: 'model' or 'encoder'")
        slices = self.encoder.grid(clips)[0]
        tokens = self.encoder.forward_features(clips)[:, 1:]
        if readout == "model" and self.projector is not None:
            return self.projector(tokens, slices)
        return tokens.reshape(tokens.shape[0], slices, -1, tokens.shape[-1]).mean(2)


def echofm_model(encoder: str = "videomae_micro", *, periodic: bool = True, positives: str = "self",
                 masking: str = "consistent", mask_ratio: float = ECHOFM_MASK_RATIO,
                 **encoder_overrides) -> EchoFMModel:
    """EchoFM (``periodic=True``) or plain VideoMAE (``periodic=False``) around a registered encoder."""
    return EchoFMModel(video_mae(encoder, **encoder_overrides), masking=masking, mask_ratio=mask_ratio,
                       periodic=periodic, positives=positives)


# --------------------------------------------------------------------------------------------- objective

class EchoFMLoss(nn.Module):
    """``recon + triplet_weight * triplet``: masked reconstruction MSE plus the periodic triplet loss over the
    TSSM, its triplets selected from the output's ``prior`` (self-mined or pixel). The target (EF, or NaN for
    unlabelled clips) is ignored: pretraining needs no label."""

    def __init__(self, triplet_weight: float = ECHOFM_TRIPLET_WEIGHT, margin: float = ECHOFM_TRIPLET_MARGIN,
                 neighbours: int = ECHOFM_NEIGHBOUR_SLICES):
        super().__init__()
        self.triplet_weight, self.margin, self.neighbours = float(triplet_weight), float(margin), int(neighbours)

    def parts(self, out: PretrainOutput, *_) -> dict[str, torch.Tensor]:
        recon = masked_reconstruction_loss(out.pred, out.target, out.mask)
        if out.slice_embeddings.numel() == 0:
            zero = recon.detach() * 0.0
            return {"total": recon, "recon": recon, "triplet": zero, "active": zero}
        positives, negatives, valid = select_triplets(out.prior, self.neighbours)
        triplet, active = triplet_loss(out.slice_embeddings, positives, negatives, valid, self.margin)
        return {"total": recon + self.triplet_weight * triplet, "recon": recon, "triplet": triplet, "active": active}

    def forward(self, out: PretrainOutput, *targets) -> torch.Tensor:
        return self.parts(out)["total"]


class LossParts(Callback):
    """Records every training step's loss parts (``rows``: epoch, step, recon, triplet, active share)."""

    order = 60

    def __init__(self):
        self.rows = []

    def after_loss(self):
        if self.training:
            with torch.no_grad():
                parts = self.learn.loss_func.parts(self.learn.pred)
            self.rows.append({"epoch": self.epoch + 1, "step": len(self.rows) + 1,
                              **{k: float(v) for k, v in parts.items()}})


def echofm_learner(dls, r: EchoFMRecipe, *, periodic: bool = True, positives: str | None = None,
                   masking: str | None = None, mask_ratio: float | None = None, encoder: str | None = None,
                   model: EchoFMModel | None = None, cbs=None, bf16: bool | None = None, path=None) -> Learner:
    """A fastai learner pretraining EchoFM (``periodic``) or plain VideoMAE with recipe ``r``: AdamW betas
    (0.9, 0.95), weight decay without biases and norms, warm-up then half-cycle cosine per step. Keyword
    arguments override the recipe's choices (for the ablations). Train with ``learn.fit(r.epochs)``."""
    if model is None:
        model = echofm_model(encoder or r.encoder, periodic=periodic, positives=positives or r.positives,
                             masking=masking or r.masking,
                             mask_ratio=r.mask_ratio if mask_ratio is None else mask_ratio)
    loss = EchoFMLoss(r.triplet_weight if model.periodic else 0.0, r.triplet_margin)
    return make_learner(dls, model, loss, lr=r.learning_rate, weight_decay=r.weight_decay, metrics=[],
                        cbs=[*warmup_cosine_scheduler(r.learning_rate, r.warmup_fraction), *(cbs or [])],
                        bf16=bf16, path=path,
                        opt_func=adamw_decay_matrices_only(r.weight_decay, ECHOFM_BETAS))


# --------------------------------------------------------------------------------------------- data

def pretraining_video_config(r: EchoFMRecipe, image_size: int, rr_irregularity: float = 0.0):
    """The synthetic engine's config of EchoFM's long unlabelled videos at recipe ``r``."""
    from echobook.data.synthetic import SyntheticConfig

    return SyntheticConfig(image_size=int(image_size), frames=r.video_frames, fps_range=(r.fps, r.fps),
                           hr_range=r.hr_range, rr_irregularity=rr_irregularity)


def pretraining_dataloaders(train, valid, r: EchoFMRecipe, *, device=None, seed: int = 0) -> DataLoaders:
    """fastai loaders of pretraining clips from two :class:`~echobook.data.table.VideoTable` s (labelled or
    not): ``r.clip_frames`` frames at ``r.clip_stride``, resized to the encoder's image size, scaled to [0, 1]
    (EchoFM: no mean/std normalisation, no augmentation). Random starts in training, fixed ones in validation."""
    from echobook.data.clips import ClipDataset, VideoStore, clip_dataloader

    loaders = []
    for table, train_mode in ((train, True), (valid, False)):
        store = VideoStore.from_table(table, image_size=r.image_size)
        clips = ClipDataset(store, np.asarray(table.ef_percent, dtype=np.float32), r.clip_frames, r.clip_stride,
                            train=train_mode, eval_clips=r.eval_clips_per_video)
        loaders.append(clip_dataloader(clips, batch_size=r.batch_size, mean=0.0, std=255.0, device=device,
                                       seed=seed, pad_pixels=0))
    return DataLoaders(*loaders, device=loaders[0].device)


def held_out_clips(table, r: EchoFMRecipe, clips_per_video: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Fixed clips of every video of a table with phases (``table.phases``): float clips ``[N, 1, T, H, W]`` in
    [0, 1] and the true phase of each of their frames ``[N, T]``, both read through the same frame indices."""
    from echobook.data.clips import VideoStore, clip_indices, eval_starts

    if not hasattr(table, "phases"):
        raise ValueError("table has no phases: periodicity needs the true phase of every frame (synthetic videos)")
    count = clips_per_video or r.eval_clips_per_video
    store = VideoStore.from_table(table, image_size=r.image_size)
    clips, phases = [], []
    for video in range(len(table)):
        frames = int(store.frame_counts[video])
        for start in eval_starts(frames, r.clip_frames, r.clip_stride, count):
            indices = clip_indices(frames, r.clip_frames, r.clip_stride, int(start))
            clips.append(store.frames(video, indices))
            phases.append(table.phases[video][indices])
    pixels = torch.from_numpy(np.stack(clips)[:, None]).float() / 255.0
    return pixels, np.stack(phases)


# --------------------------------------------------------------------------------------------- periodicity

def slice_phases(frame_phases: np.ndarray, slices: int) -> np.ndarray:
    """``[N, T']``: the circular mean phase (in [0, 1)) of the frames of each slice, from ``[N, T]`` phases."""
    angles = 2 * np.pi * np.asarray(frame_phases, dtype=np.float64)
    count, frames = angles.shape
    angles = angles.reshape(count, slices, frames // slices)
    mean = np.arctan2(np.sin(angles).mean(-1), np.cos(angles).mean(-1))
    return np.mod(mean / (2 * np.pi), 1.0)


def phase_similarity(phases_per_slice: np.ndarray) -> np.ndarray:
    """``[N, T', T']``: the true phase similarity ``cos(2 pi (phi_i - phi_j))`` (1 in phase, -1 opposite)."""
    difference = phases_per_slice[:, :, None] - phases_per_slice[:, None, :]
    return np.cos(2 * np.pi * difference)


def off_diagonal_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per item, Pearson's r between the upper off-diagonal entries of ``[N, T, T]`` matrices (0 when one is flat)."""
    rows, cols = np.triu_indices(a.shape[-1], k=1)
    x, y = a[:, rows, cols], b[:, rows, cols]
    x, y = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    denominator = np.sqrt((x ** 2).sum(1) * (y ** 2).sum(1))
    return np.where(denominator > 1e-12, (x * y).sum(1) / np.maximum(denominator, 1e-12), 0.0)


def cycle_length_slices(similarity: np.ndarray, min_lag: int = 2) -> np.ndarray:
    """``[N]``: the first lag (in slices, ``>= min_lag``) at which the mean of the similarity matrix's diagonal
    peaks (at least its neighbours): where the clip first looks like itself again, one beat later. The first
    peak, not the highest, so that two beats (a peak as high) are not taken for one. NaN when the means only
    fall (no beat within the clip)."""
    slices = similarity.shape[-1]
    if not 1 <= min_lag < slices:
        raise ValueError(f"min_lag={min_lag}: a {slices}-slice matrix needs 1 <= min_lag < {slices}")
    lags = np.arange(1, slices)
    means = np.stack([np.diagonal(similarity, offset=lag, axis1=1, axis2=2).mean(-1) for lag in lags], axis=1)
    after = np.concatenate([means[:, 1:], np.full((len(means), 1), -np.inf)], axis=1)  # the last lag: one side
    before = np.concatenate([np.full((len(means), 1), np.inf), means[:, :-1]], axis=1)
    peak = (means >= before) & (means >= after) & (lags >= min_lag)
    first = np.argmax(peak, axis=1)
    return np.where(peak.any(1), lags[first], np.nan).astype(np.float64)


def true_cycle_slices(frame_phases: np.ndarray, frames_per_slice: int) -> np.ndarray:
    """``[N]``: the mean beat length of each clip in slices, from the unwrapped phase of its frames."""
    beats = np.unwrap(2 * np.pi * np.asarray(frame_phases, dtype=np.float64), axis=1) / (2 * np.pi)
    beats_per_frame = (beats[:, -1] - beats[:, 0]) / (beats.shape[1] - 1)
    return 1.0 / (beats_per_frame * frames_per_slice)


def periodicity_scores(similarity: np.ndarray, frame_phases: np.ndarray, tubelet_frames: int) -> dict:
    """How periodic ``[N, T', T']`` similarity matrices are, against the clips' true phases ``[N, T]``:
    ``correlation`` (mean over clips of the off-diagonal Pearson r with the phase similarity) and ``recovered``
    (share of clips whose estimated cycle length is within one slice of the truth); per-clip arrays too."""
    slices = similarity.shape[-1]
    truth = phase_similarity(slice_phases(frame_phases, slices))
    correlation = off_diagonal_correlation(similarity, truth)
    estimated = cycle_length_slices(similarity)
    true_length = true_cycle_slices(frame_phases, tubelet_frames)
    hits = np.abs(estimated - true_length) <= 1.0
    return {"correlation": float(correlation.mean()), "recovered": float(hits.mean()),
            "per_clip_correlation": correlation, "estimated_cycle": estimated, "true_cycle": true_length}


@torch.no_grad()
def model_tssm(model: EchoFMModel, clips: torch.Tensor, *, readout: str = "model", batch_size: int = 32,
               device=None) -> np.ndarray:
    """``[N, T', T']`` TSSMs of whole clips (in batches, on ``device``: default the model's)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [tssm(model.slice_embeddings(clips[i:i + batch_size].to(device), readout)).cpu()
               for i in range(0, len(clips), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy().astype(np.float64)


def periodicity(model: EchoFMModel, clips: torch.Tensor, frame_phases: np.ndarray, *, readout: str = "model") -> dict:
    """:func:`periodicity_scores` of a model's TSSMs of held-out clips (see :func:`held_out_clips`)."""
    return periodicity_scores(model_tssm(model, clips, readout=readout), frame_phases,
                              model.mae.config.tubelet_frames)


@torch.no_grad()
def reconstruction_loss(model: EchoFMModel, clips: torch.Tensor, *, batch_size: int = 32, seed: int = 0) -> float:
    """Mean masked reconstruction MSE of a model over clips, with masks drawn from ``seed`` (comparable across
    models and epochs: the same masks every call)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        total, count = 0.0, 0
        for i in range(0, len(clips), batch_size):
            batch = clips[i:i + batch_size].to(device)
            out = model(batch)
            total += float(masked_reconstruction_loss(out.pred, out.target, out.mask)) * len(batch)
            count += len(batch)
    finally:
        torch.random.set_rng_state(state)
        model.train(was_training)
    return total / max(count, 1)


# --------------------------------------------------------------------------------------------- the saved encoder

def pretrained_encoder_path(size: str, seed: int, data_seed: int | None = None) -> Path:
    """The folder chapter 8 saves its encoder in (:func:`echobook.cards.model_folder` of ``echofm``)."""
    from echobook.cards import model_folder

    return model_folder("echofm", size, seed, data_seed)


def save_pretrained_encoder(model: EchoFMModel, *, size: str, seed: int, variant: str, recipe_used: EchoFMRecipe,
                            path: str | Path | None = None, extra: dict | None = None,
                            data_seed: int | None = None) -> Path:
    """Write the encoder's weights and its card (:mod:`echobook.cards`: size, seed, commit, variant, recipe,
    config) atomically into the folder ``path`` (default :func:`pretrained_encoder_path`); returns the folder."""
    from echobook.cards import new_card, save_with_card

    folder = Path(path) if path is not None else pretrained_encoder_path(size, seed, data_seed)
    card = new_card(method="EchoFM" if model.periodic else "VideoMAE", variant=variant, size=size, seed=seed,
                    encoder=recipe_used.encoder, masking=model.masking, mask_ratio=model.mask_ratio,
                    positives=model.positives, recipe=asdict(recipe_used), config=asdict(model.encoder.config),
                    architecture=describe_model(model.encoder), **(extra or {}))
    save_with_card(folder, model.encoder.state_dict(), card)
    return folder


def load_pretrained_encoder(size: str | Settings = "auto", seed: int | None = None, *,
                            path: str | Path | None = None, data_seed: int | None = None) -> tuple[VideoViT, dict]:
    """The encoder chapter 8 saved for a size and seed (or at ``path``), and its card. Chapter 9:
    ``encoder, card = echofm.load_pretrained_encoder(cfg)``. A missing file raises FileNotFoundError
    saying which chapter makes it; a file of another architecture a CheckpointError before any weight loads."""
    if path is None:
        name = size.size if isinstance(size, Settings) else resolve_size(size)
        seed = (size.seed if isinstance(size, Settings) else 0) if seed is None else seed
        if data_seed is None and isinstance(size, Settings):
            data_seed = size.data_seed
        path = pretrained_encoder_path(name, seed, data_seed)
    from echobook.cards import MODEL_FILE, read_with_card

    path = Path(path)
    if not (path / MODEL_FILE).is_file() and not path.is_file():
        raise FileNotFoundError(f"{path}: no pretrained EchoFM encoder there; run chapter 8 at this size and seed "
                                "first (echobook run 8 --size SIZE -p SEED N)")
    checkpoint, card = read_with_card(path)
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in card["config"].items()}
    encoder = VideoViT(VideoViTConfig(**config))
    check_state_fits(encoder, checkpoint["model"], path, card.get("architecture"))
    encoder.load_state_dict(checkpoint["model"])
    return encoder, card


def lr_for_batch(batch_size: int, base_lr: float = ECHOFM_BASE_LR) -> float:
    """EchoFM's rate rule: ``base_lr * batch / 256`` (2.5e-4 at its batch of 64)."""
    return base_lr * batch_size / 256



# ============================================================================================= downstream (chapter 9)
# One pretrained encoder, several tasks: view identification (mean-pooled tokens and a linear head, probed or
# fine-tuned), chamber segmentation (a UNETR decoder on tokens of several depths, :mod:`echobook.models.unetr`),
# EF from the predicted masks by the method of discs, and the same segmentation recipe at a share of the labels
# from three starts (EchoFM, plain VideoMAE, random). EchoFM's code has no segmentation decoder
# (methods-peers.md section 5): the decoder and this recipe are ours.

DOWNSTREAM_SEED_OFFSET = 10_000  # downstream hearts come from seed + this: none is a pretraining video's heart
LABEL_FRACTIONS = (0.05, 0.10, 0.25, 0.50, 1.0)  # the label-efficiency points (share of the training hearts)
ENCODER_STARTS = ("EchoFM", "VideoMAE", "random")
SEGMENTED_CLASSES = (1, 2, 3)  # CAMUS values: LV cavity, LV myocardium, left atrium (labels.CHAMBER_LABELS)
APICAL_VIEWS = ("A4C", "A2C")  # the views with LV, myocardium and LA labels and a method-of-discs volume
VIDEOMAE_ENCODER_METHOD = "videomae"  # model_folder name of the plain VideoMAE encoder chapter 9 keeps
SEGMENTATION_METHOD = "echofm-seg"  # model_folder and card name of the saved segmentation model
DOWNSTREAM_TARGETS = ("view", "labels", "ef")  # what a downstream loader's items hold beside the clip


@dataclass(frozen=True)
class DownstreamRecipe:
    """What chapter 9 trains at one size. Videos are made at the pretraining clips' frame spacing (the
    pretraining fps over its clip stride), so one clip of consecutive frames spans what a pretraining clip did;
    each video's clip starts at its ED frame, so it holds ED and ES."""

    decoder: str  # a registered UNETR variant (echobook.models.unetr) over the recipe's encoder
    hearts: int  # each heart gives one video per view (A4C and A2C: the same heart, for biplane volumes)
    video_frames: int  # frames made per video; the clip is the encoder's clip_frames of them
    batch_size: int
    view_epochs: int  # view identification, probing and fine-tuning
    seg_epochs: int  # the segmentation model of the chapter (fine-tuned)
    probe_lr: float
    finetune_lr: float
    seg_lr: float
    fractions: tuple[float, ...]  # label-efficiency points
    efficiency_seeds: int  # seeds per point
    efficiency_steps: int  # optimiser steps of every label-efficiency run, whatever its share of labels
    pretrain_epochs: int | None = None  # when no encoder is saved: pretraining epochs here (None: chapter 8's)
    weight_decay: float = ECHOFM_WEIGHT_DECAY
    warmup_fraction: float = 0.1


# The CPU sizes are set by the segmentation step's cost (0.22 s of CPU for 8 clips of 16 x 32 x 32 at smoke, 0.72 s
# for 8 of 16 x 48 x 48 at small). Batches of 4 learned more per clip than batches of 8 at the same cost (mean LV
# Dice 0.62 against 0.31 after 96 clips at smoke). smoke measures two label shares with two seeds, 24 steps a
# run, to stay near a minute and a half on two cores; small three of the paper's five shares (the fewest, a
# quarter, all), two seeds, 40 steps a run: the five took 451 s of the chapter's 775-794 in the small ledger, and
# the two ends the ledger's claim compares are unchanged (a run depends only on its share and seed).
# Every label-efficiency run trains as many steps, so fewer labels never means less training. At small the
# chapter took 16 min of CPU with 4 view epochs (the six view learners a third of it): they are 2 now.
DOWNSTREAM_RECIPES: dict[str, DownstreamRecipe] = {
    "smoke": DownstreamRecipe(decoder="unetr_micro", hearts=48, video_frames=24, batch_size=4, view_epochs=3,
                              seg_epochs=4, probe_lr=3e-3, finetune_lr=1e-3, seg_lr=4e-3, fractions=(0.25, 1.0),
                              efficiency_seeds=2, efficiency_steps=24, pretrain_epochs=3),
    "small": DownstreamRecipe(decoder="unetr_tiny", hearts=120, video_frames=24, batch_size=4, view_epochs=2,
                              seg_epochs=5, probe_lr=3e-3, finetune_lr=5e-4, seg_lr=3e-3, fractions=(0.05, 0.25, 1.0),
                              efficiency_seeds=2, efficiency_steps=40, pretrain_epochs=4),
    "full": DownstreamRecipe(decoder="unetr_base", hearts=1000, video_frames=40, batch_size=8, view_epochs=20,
                             seg_epochs=50, probe_lr=1e-3, finetune_lr=1e-4, seg_lr=3e-4, fractions=LABEL_FRACTIONS,
                             efficiency_seeds=3, efficiency_steps=3000),
}


def downstream_recipe(size: str | Settings = "auto") -> DownstreamRecipe:
    """Chapter 9's recipe for a size name, ``"auto"``, or a chapter's :class:`~echobook.config.Settings`."""
    return DOWNSTREAM_RECIPES[size.size if isinstance(size, Settings) else resolve_size(size)]


# --------------------------------------------------------------------------------------------- downstream data

@dataclass
class DownstreamSet:
    """One clip per video and its labels: ``frames`` and ``labels`` uint8 ``[N, T, H, W]`` (CAMUS values, every
    frame), ``view_index`` int64 ``[N]`` into ``views``; ``ed_frame``, ``es_frame`` int64 ``[N]`` within the
    clip; ``ef_percent``, ``edv_ml``, ``esv_ml``, ``mm_per_pixel`` float ``[N]``; ``heart_id`` int64 ``[N]`` (the
    views of one heart share it); ``splits`` str ``[N]`` (TRAIN/VAL/TEST by heart)."""

    frames: np.ndarray
    labels: np.ndarray
    view_index: np.ndarray
    ed_frame: np.ndarray
    es_frame: np.ndarray
    ef_percent: np.ndarray
    edv_ml: np.ndarray
    esv_ml: np.ndarray
    mm_per_pixel: np.ndarray
    heart_id: np.ndarray
    splits: np.ndarray
    views: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, mask_or_split) -> "DownstreamSet":
        """The videos of a split name (or names), or of a boolean mask or index array."""
        if isinstance(mask_or_split, str) or (isinstance(mask_or_split, (list, tuple))
                                              and all(isinstance(s, str) for s in mask_or_split)):
            wanted = [mask_or_split] if isinstance(mask_or_split, str) else list(mask_or_split)
            mask_or_split = np.isin(self.splits, wanted)
        keep = np.asarray(mask_or_split)
        fields = {name: getattr(self, name)[keep] for name in self.__dataclass_fields__ if name != "views"}
        return DownstreamSet(**fields, views=self.views)

    def of_views(self, views) -> "DownstreamSet":
        return self.subset(np.isin(self.view_index, [self.views.index(v) for v in views if v in self.views]))

    @property
    def view_names(self) -> np.ndarray:
        return np.asarray(self.views)[self.view_index]


def downstream_video_config(r_pre: EchoFMRecipe, r: DownstreamRecipe):
    """The synthetic engine's config of the downstream videos: the encoder's image size, the pretraining
    clips' frame spacing and heart rates."""
    from echobook.data.synthetic import SyntheticConfig

    fps = r_pre.fps / r_pre.clip_stride
    return SyntheticConfig(image_size=r_pre.image_size, frames=r.video_frames, fps_range=(fps, fps),
                           hr_range=r_pre.hr_range)


def _view_videos(hearts: int, seed: int, config, views: tuple[str, ...]) -> DownstreamSet:
    """Every view of ``hearts`` synthetic hearts, whole videos: the one place that reads the synthetic engine's
    views (:func:`echobook.data.synthetic.synthetic_view_set`; A4C and A2C of one heart share its case)."""
    import dataclasses as dc

    from echobook.data.synthetic import synthetic_view_set

    videos = synthetic_view_set(hearts, seed, config, views=views)
    return DownstreamSet(**{f.name: getattr(videos, f.name) for f in dc.fields(videos)}, views=tuple(videos.views))


def clip_window(ed_frame: int, es_frame: int, frames: int, clip_frames: int) -> int:
    """The first frame of a ``clip_frames`` window holding ED and ES: from ED, moved back when the video ends
    sooner. A ValueError when no window holds both (ES too far after ED, or before it)."""
    start = max(0, min(int(ed_frame), frames - clip_frames))
    if not start <= ed_frame < es_frame < start + clip_frames:
        raise ValueError(f"no {clip_frames}-frame window of a {frames}-frame video holds ED {ed_frame} and ES "
                         f"{es_frame}")
    return start


def cut_clips(videos: DownstreamSet, clip_frames: int) -> DownstreamSet:
    """Each video's ``clip_frames`` window holding its ED and ES (:func:`clip_window`), ED/ES renumbered."""
    starts = np.asarray([clip_window(ed, es, videos.frames.shape[1], clip_frames)
                         for ed, es in zip(videos.ed_frame, videos.es_frame)])
    window = starts[:, None] + np.arange(clip_frames)[None]
    rows = np.arange(len(videos))[:, None]
    return replace(videos, frames=videos.frames[rows, window], labels=videos.labels[rows, window],
                   ed_frame=videos.ed_frame - starts, es_frame=videos.es_frame - starts)


def downstream_set(r_pre: EchoFMRecipe, r: DownstreamRecipe, seed: int, views: tuple[str, ...] | None = None,
                   hearts: int | None = None) -> DownstreamSet:
    """Chapter 9's labelled clips: ``hearts`` (default the recipe's) synthetic hearts from ``seed +``
    :data:`DOWNSTREAM_SEED_OFFSET`, one video per view each (default every view of
    :data:`echobook.data.labels.VIEW_CLASSES`), cut to the encoder's clip length around ED-ES."""
    from echobook.data.labels import VIEW_CLASSES

    views = VIEW_CLASSES if views is None else views
    config = downstream_video_config(r_pre, r)
    videos = _view_videos(hearts or r.hearts, seed + DOWNSTREAM_SEED_OFFSET, config, tuple(views))
    return cut_clips(videos, r_pre.clip_frames)


class _ClipItems(torch.utils.data.Dataset):
    """Items ``(clip [1, T, H, W] float in [0, 1], target)`` of a :class:`DownstreamSet`; the target is the view
    index, the label map ``[1, T, H, W]`` (int64) or the EF in percent."""

    def __init__(self, data: DownstreamSet, target: str, length: int | None = None):
        if target not in DOWNSTREAM_TARGETS:
            raise ValueError(f"target={target!r}: choose one of {DOWNSTREAM_TARGETS}")
        self.data, self.target = data, target
        self.length = len(data) if length is None else int(length)  # longer: the clips repeated, in turn
        self.ef_percent = np.asarray(data.ef_percent, dtype=np.float32)  # the EF learners' starting bias

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        i = i % len(self.data)
        clip = torch.from_numpy(self.data.frames[i][None]).float() / 255.0
        if self.target == "view":
            return clip, torch.tensor(int(self.data.view_index[i]))
        if self.target == "ef":
            return clip, torch.tensor(float(self.ef_percent[i]))
        return clip, torch.from_numpy(self.data.labels[i][None].astype(np.int64))


def downstream_dataloaders(train: DownstreamSet, valid: DownstreamSet, target: str, *, batch_size: int,
                           device=None, seed: int = 0, steps_per_epoch: int | None = None) -> DataLoaders:
    """fastai loaders of clips in [0, 1] (EchoFM's input: no mean/std) and their ``target`` (one of
    :data:`DOWNSTREAM_TARGETS`); training ones shuffle (by ``seed``) and drop a last partial batch.
    ``steps_per_epoch``: an epoch of exactly that many training batches, the training clips repeated in turn
    (each as often as the others, within one) so that a small labelled set trains as many steps as a large one."""
    import random

    from fastai.data.load import DataLoader

    from echobook.config import resolve_device

    device = resolve_device(device if device is not None else "auto")
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"{len(train)} training and {len(valid)} validation clips: both sets need clips")
    loaders = []
    for data, training in ((train, True), (valid, False)):
        length = steps_per_epoch * batch_size if training and steps_per_epoch else None
        loader = DataLoader(_ClipItems(data, target, length), bs=batch_size, shuffle=training,
                            drop_last=training and len(data) > batch_size, device=device)
        loader.rng = random.Random(seed)
        loaders.append(loader)
    return DataLoaders(*loaders, device=device)


# --------------------------------------------------------------------------------------------- downstream models

class ViewClassifier(nn.Module):
    """View identification: the encoder's mean-pooled patch tokens (its ``forward``), a BatchNorm without
    parameters (MAE's linear probe: features on one scale whatever the encoder) and one linear layer."""

    def __init__(self, encoder: VideoViT, num_views: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.BatchNorm1d(encoder.embed_dim, affine=False), nn.Linear(encoder.embed_dim,
                                                                                               num_views))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(clips))


def view_learner(dls, encoder: VideoViT, num_views: int, r: DownstreamRecipe, *, probe: bool,
                 cbs=None) -> Learner:
    """A fastai learner for view identification: ``probe`` trains the head on a frozen encoder (kept in eval
    mode), otherwise the whole model is fine-tuned; cross-entropy, accuracy, warm-up then cosine."""
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy

    from echobook.training import FrozenEncoderEval, freeze_encoder

    model = ViewClassifier(encoder, num_views)
    lr = r.probe_lr if probe else r.finetune_lr
    callbacks = [*warmup_cosine_scheduler(lr, r.warmup_fraction), *(cbs or [])]
    if probe:
        freeze_encoder(model)
        callbacks.append(FrozenEncoderEval())
    return make_learner(dls, model, CrossEntropyLossFlat(), lr=lr, weight_decay=r.weight_decay, metrics=[accuracy],
                        cbs=callbacks, opt_func=adamw_decay_matrices_only(r.weight_decay, ECHOFM_BETAS))


def segmentation_model(encoder: VideoViT, decoder: str = "unetr_micro", **decoder_options):
    """A registered UNETR variant's decoder (:mod:`echobook.models.unetr`) on ``encoder`` (pretrained or not),
    over the four CAMUS classes."""
    from echobook.models.registry import create_model

    return create_model(decoder, encoder=encoder, **decoder_options)


class SegmentationLoss(nn.Module):
    """Soft Dice plus cross-entropy over the classes of every frame (MONAI's ``DiceCELoss``, UNETR's loss);
    targets are label maps ``[B, 1, T, H, W]``."""

    def __init__(self):
        super().__init__()
        from monai.losses import DiceCELoss

        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(logits.float(), labels)


def segmentation_learner(dls, encoder: VideoViT, r: DownstreamRecipe, *, lr: float | None = None,
                         cbs=None) -> Learner:
    """A fastai learner fine-tuning encoder and UNETR decoder together (Dice + cross-entropy; fastai's
    multi-class Dice as the validation metric), AdamW without decay on biases and norms, warm-up then cosine."""
    from fastai.metrics import DiceMulti

    lr = lr or r.seg_lr
    return make_learner(dls, segmentation_model(encoder, r.decoder), SegmentationLoss(), lr=lr,
                        weight_decay=r.weight_decay,
                        metrics=[DiceMulti()], cbs=[*warmup_cosine_scheduler(lr, r.warmup_fraction), *(cbs or [])],
                        opt_func=adamw_decay_matrices_only(r.weight_decay, ECHOFM_BETAS))


def fit_quietly(learn: Learner, epochs: int) -> Learner:
    with learn.no_bar(), learn.no_logging():
        learn.fit(epochs)
    return learn


@torch.no_grad()
def predict_views(model: nn.Module, data: DownstreamSet, batch_size: int = 16) -> np.ndarray:
    """Predicted view indices ``[N]`` of a set's clips."""
    return predict_outputs(model, data, batch_size).argmax(1).numpy()


@torch.no_grad()
def predict_labels(model: nn.Module, data: DownstreamSet, batch_size: int = 8) -> np.ndarray:
    """Predicted label maps uint8 ``[N, T, H, W]`` of a set's clips (argmax over the classes)."""
    return predict_outputs(model, data, batch_size, reduce=lambda logits: logits.argmax(1).to(torch.uint8)).numpy()


@torch.no_grad()
def predict_outputs(model: nn.Module, data: DownstreamSet, batch_size: int = 8, reduce=None) -> torch.Tensor:
    """A model's outputs over a set's clips (in batches, on the model's device, in eval mode), each batch's
    passed through ``reduce`` when given; CPU tensors, concatenated."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(data), batch_size):
            clips = torch.from_numpy(data.frames[start:start + batch_size][:, None]).float().to(device) / 255.0
            logits = model(clips).float()
            out.append((reduce(logits) if reduce else logits).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def ed_es_maps(labels: np.ndarray, data: DownstreamSet) -> tuple[np.ndarray, np.ndarray]:
    """The ED and ES label maps ``[N, H, W]`` of per-frame maps ``[N, T, H, W]``."""
    rows = np.arange(len(data))
    return labels[rows, data.ed_frame], labels[rows, data.es_frame]


def segmentation_report(pred_labels: np.ndarray, data: DownstreamSet) -> dict:
    """Dice, IoU, HD95 (mm) and ASSD (mm) per structure on the ED and ES frames (as CAMUS scores them), from
    :func:`echobook.metrics.segmentation_scores`; ``per_image`` holds the arrays, ``summary`` the means."""
    from echobook.data.labels import CHAMBER_LABELS
    from echobook.metrics import segmentation_scores, summarise_segmentation

    pred_ed, pred_es = ed_es_maps(pred_labels, data)
    true_ed, true_es = ed_es_maps(data.labels, data)
    pred, true = np.concatenate([pred_ed, pred_es]), np.concatenate([true_ed, true_es])
    spacing = np.concatenate([data.mm_per_pixel, data.mm_per_pixel])
    scores = segmentation_scores(pred, true, SEGMENTED_CLASSES, mm_per_pixel=spacing)
    return {"per_image": scores,
            "summary": summarise_segmentation(scores, [CHAMBER_LABELS[c] for c in SEGMENTED_CLASSES])}


# --------------------------------------------------------------------------------------------- EF from masks

def ef_from_label_maps(labels: np.ndarray, data: DownstreamSet) -> dict[str, np.ndarray]:
    """Single-plane method of discs on the LV cavity (label 1) at each clip's ED and ES frames:
    ``edv_ml``, ``esv_ml``, ``ef_percent`` ``[N]``, NaN where a mask cannot be traced (empty)."""
    from echobook.data.geometry import lv_volume_ml_from_mask

    ed, es = ed_es_maps(labels, data)
    volumes = np.full((len(data), 2), np.nan)
    for i in range(len(data)):
        for column, maps in enumerate((ed, es)):
            try:
                volumes[i, column] = lv_volume_ml_from_mask(maps[i] == 1, data.mm_per_pixel[i])
            except ValueError:  # no LV pixel (or no traceable LV) predicted: no volume
                pass
    edv, esv = volumes[:, 0], volumes[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ef = 100.0 * (edv - esv) / edv
    return {"edv_ml": edv, "esv_ml": esv, "ef_percent": ef}


def biplane_ef_from_label_maps(labels: np.ndarray, data: DownstreamSet) -> dict[str, np.ndarray]:
    """Biplane method of discs for every heart with an A4C and an A2C clip in ``data``: ``heart_id``,
    ``edv_ml``, ``esv_ml``, ``ef_percent`` (NaN where a mask cannot be traced) and the truth ``true_ef_percent``
    (the mean of the two videos' EF: the synthetic engine gives every view of a heart its EF; a CAMUS cfg too)."""
    from echobook.data.geometry import biplane_ef_from_masks

    ed, es = ed_es_maps(labels, data)
    names = data.view_names
    rows = []
    for heart in np.unique(data.heart_id):
        a4c = np.flatnonzero((data.heart_id == heart) & (names == "A4C"))
        a2c = np.flatnonzero((data.heart_id == heart) & (names == "A2C"))
        if not (len(a4c) and len(a2c)):
            continue
        a, b = a4c[0], a2c[0]
        try:
            result = biplane_ef_from_masks(ed[a] == 1, es[a] == 1, ed[b] == 1, es[b] == 1, data.mm_per_pixel[a],
                                           data.mm_per_pixel[b])
        except ValueError:
            result = {"edv_ml": np.nan, "esv_ml": np.nan, "ef_percent": np.nan}
        rows.append({"heart_id": int(heart), **result,
                     "true_ef_percent": float((data.ef_percent[a] + data.ef_percent[b]) / 2)})
    return {key: np.asarray([row[key] for row in rows]) for key in
            ("heart_id", "edv_ml", "esv_ml", "ef_percent", "true_ef_percent")}


def ef_agreement(pred_ef_percent, true_ef_percent) -> dict:
    """MAE, RMSE and R² (:func:`echobook.metrics.regression_metrics`) over the videos with a predicted EF, and
    how many had none (an untraceable mask)."""
    from echobook.metrics import regression_metrics

    pred, true = np.asarray(pred_ef_percent, dtype=np.float64), np.asarray(true_ef_percent, dtype=np.float64)
    ok = np.isfinite(pred)
    scores = regression_metrics(pred[ok], true[ok]) if ok.sum() >= 2 else {"mae": np.nan, "rmse": np.nan,
                                                                          "r2": np.nan, "pearson_r2": np.nan}
    return {**scores, "videos": int(ok.sum()), "untraced": int((~ok).sum())}


# --------------------------------------------------------------------------------------------- the three starts

def videomae_encoder_path(size: str, seed: int, data_seed: int | None = None) -> Path:
    """Where chapter 9 keeps the plain VideoMAE encoder it pretrains (chapter 8 saves EchoFM's only)."""
    from echobook.cards import model_folder

    return model_folder(VIDEOMAE_ENCODER_METHOD, size, seed, data_seed)


@functools.lru_cache(maxsize=1)
def _pretraining_videos(r_pre: EchoFMRecipe, seed: int):
    """Chapter 8's long videos, kept while EchoFM and VideoMAE are pretrained one after the other."""
    from echobook.data.synthetic import synthetic_video_table

    return synthetic_video_table(seed, r_pre.videos, pretraining_video_config(r_pre, r_pre.image_size))


def pretrain_encoder(r_pre: EchoFMRecipe, *, periodic: bool, seed: int, epochs: int | None = None,
                     device=None, data_seed: int | None = None) -> EchoFMModel:
    """Chapter 8's pretraining, as a function: its synthetic long videos (TRAIN and VAL, from ``data_seed``,
    default ``seed``), its learner at recipe ``r_pre`` (``epochs`` overrides the recipe's), seeded by ``seed``;
    returns the trained model."""
    videos = _pretraining_videos(r_pre, seed if data_seed is None else data_seed)
    dls = pretraining_dataloaders(videos.subset(["TRAIN", "VAL"]), videos.subset("TEST"), r_pre, device=device,
                                  seed=seed)
    torch.manual_seed(seed)
    learn = echofm_learner(dls, r_pre, periodic=periodic)
    learn.dls.train.rng.seed(seed)
    fit_quietly(learn, epochs or r_pre.epochs)
    return learn.model


def downstream_encoder(start: str, size: str, seed: int, *, r_pre: EchoFMRecipe | None = None,
                       pretrain_epochs: int | None = None, match_epochs: int | None = None,
                       device=None, data_seed: int | None = None) -> tuple[VideoViT, dict]:
    """The encoder a downstream model starts from, and ``{"note": where it came from, "epochs": its pretraining
    epochs}``.

    ``"EchoFM"``: chapter 8's saved encoder for ``(size, seed)``; ``"VideoMAE"``: the plain VideoMAE encoder this
    chapter keeps. When none is saved (or, with ``match_epochs``, the saved one was pretrained for another number
    of epochs: a comparison needs both encoders pretrained alike) it is pretrained here with chapter 8's code for
    ``match_epochs`` or ``pretrain_epochs`` (default chapter 8's recipe) on chapter 8's videos of ``data_seed``
    (default ``seed``) and saved with its card.
    ``"random"``: a freshly initialised encoder (seeded)."""
    if start not in ENCODER_STARTS:
        raise ValueError(f"start={start!r}: choose one of {ENCODER_STARTS}")
    r_pre = r_pre or recipe(size)
    if start == "random":
        torch.manual_seed(seed)
        return VideoViT(r_pre.config), {"note": "randomly initialised", "epochs": 0}
    periodic = start == "EchoFM"
    path = (pretrained_encoder_path if periodic else videomae_encoder_path)(size, seed, data_seed)
    try:
        encoder, card = load_pretrained_encoder(path=path)
        epochs = int(card.get("recipe", {}).get("epochs", -1))
        if match_epochs is None or epochs == match_epochs:
            return encoder, {"note": f"loaded from {path} ({card.get('variant')}, {epochs} epochs, commit "
                                     f"{str(card.get('git_commit'))[:12]})", "epochs": epochs}
    except FileNotFoundError:
        pass
    epochs = match_epochs or pretrain_epochs or r_pre.epochs
    model = pretrain_encoder(r_pre, periodic=periodic, seed=seed, epochs=epochs, device=device, data_seed=data_seed)
    variant = f"echofm-{r_pre.positives}" if periodic else "videomae"
    save_pretrained_encoder(model, size=size, seed=seed, variant=variant, recipe_used=replace(r_pre, epochs=epochs),
                            path=path, extra={"pretrained_by": "chapter 9 (no encoder was saved)"})
    return model.encoder, {"note": f"pretrained here with chapter 8's code for {epochs} epochs (none saved), "
                                   f"saved to {path}", "epochs": epochs}


def copy_encoder(encoder: VideoViT) -> VideoViT:
    """An independent copy (each downstream run fine-tunes its own)."""
    fresh = VideoViT(encoder.config)
    fresh.load_state_dict(encoder.state_dict())
    return fresh


# --------------------------------------------------------------------------------------------- label efficiency

def label_subset(train: DownstreamSet, fraction: float, seed: int, minimum: int = 2) -> DownstreamSet:
    """The training videos of a random ``fraction`` of the training hearts (by ``seed``; at least ``minimum``
    hearts): a heart's views stay together, as labels come per patient."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}: must be in (0, 1]")
    hearts = np.unique(train.heart_id)
    count = min(len(hearts), max(minimum, int(round(fraction * len(hearts)))))
    chosen = np.random.default_rng(seed).permutation(hearts)[:count]
    return train.subset(np.isin(train.heart_id, chosen))


def label_efficiency(train: DownstreamSet, valid: DownstreamSet, test: DownstreamSet,
                     encoders: dict[str, VideoViT], r: DownstreamRecipe, *, fractions=None, seeds=None,
                     device=None) -> "pd.DataFrame":
    """Chapter 9's segmentation recipe at each share of the training labels, from each start in ``encoders``
    (copied for every run), ``seeds`` seeds a point, every run one epoch of ``r.efficiency_steps`` steps (fewer
    labels must not also mean less training): one row per run with the test Dice per structure (ED and ES
    frames), their mean, the EF from the masks (MAE), the labelled hearts and videos."""
    import pandas as pd

    from echobook.data.labels import CHAMBER_LABELS

    rows = []
    for fraction in fractions or r.fractions:
        for seed in range(seeds or r.efficiency_seeds):
            subset = label_subset(train, fraction, seed)
            dls = downstream_dataloaders(subset, valid, "labels", batch_size=r.batch_size, device=device, seed=seed,
                                         steps_per_epoch=r.efficiency_steps)
            for start, encoder in encoders.items():
                torch.manual_seed(seed)
                learn = fit_quietly(segmentation_learner(dls, copy_encoder(encoder).to(dls.device), r), 1)
                labels = predict_labels(learn.model, test)
                summary = segmentation_report(labels, test)["summary"]
                dice = {f"dice {CHAMBER_LABELS[c]}": summary[CHAMBER_LABELS[c]]["dice"] for c in SEGMENTED_CLASSES}
                ef = ef_agreement(ef_from_label_maps(labels, test)["ef_percent"], test.ef_percent)
                rows.append({"start": start, "fraction": fraction, "seed": seed,
                             "hearts": len(np.unique(subset.heart_id)), "videos": len(subset),
                             "steps": len(dls.train),
                             **dice, "dice mean": float(np.mean(list(dice.values()))), "ef mae": ef["mae"]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- the saved segmenter

def save_segmentation_model(model, *, size: str, seed: int, encoder_start: str, metrics: dict,
                            clip_fps: float, path: str | Path | None = None, extra: dict | None = None,
                            data_seed: int | None = None) -> Path:
    """The segmentation model (encoder and UNETR decoder) with its card (method ``echofm-seg``, the decoder's
    config, size, seed, commit, preprocessing, metrics) in ``model_folder("echofm-seg", size, seed)``; returns the
    folder. :func:`build_segmentation_model` rebuilds it from the card (``echobook.runs.load_trained``)."""
    from echobook.cards import model_folder, new_card, save_with_card
    from echobook.data.labels import CHAMBER_LABELS

    folder = Path(path) if path is not None else model_folder(SEGMENTATION_METHOD, size, seed, data_seed)
    config = model.config
    card = new_card(method=SEGMENTATION_METHOD, variant=f"unetr over {encoder_start}", size=size, seed=seed,
                    config=asdict(config), encoder_start=encoder_start, architecture=describe_model(model),
                    classes={str(value): name for value, name in CHAMBER_LABELS.items()},
                    preprocessing={"image_size": config.encoder.image_size, "clip_frames": config.encoder.clip_frames,
                                   "fps": clip_fps, "scale": "pixels / 255, no mean or std"},
                    metrics=metrics, **(extra or {}))
    save_with_card(folder, model.state_dict(), card)
    return folder


def build_segmentation_model(card: dict) -> nn.Module:
    """The (untrained) UNETR model a segmentation card describes, for :func:`echobook.runs.load_trained`."""
    from echobook.models.unetr import UNETR, UNETRConfig

    config = dict(card["config"])
    encoder = {k: tuple(v) if isinstance(v, list) else v for k, v in config.pop("encoder").items()}
    return UNETR(UNETRConfig(encoder=VideoViTConfig(**encoder), **config))


# --------------------------------------------------------------------------------------------- a CAMUS folder

CAMUS_TO_VIEW = {"4CH": "A4C", "2CH": "A2C"}


def square_resample(frames: np.ndarray, mm_per_pixel: tuple[float, float], side: int, *,
                    labels: bool = False) -> tuple[np.ndarray, float]:
    """``[T, H, W]`` frames on ``(mm per row, mm per column)`` pixels -> ``[T, side, side]`` on square pixels
    (the longer extent in mm fills the side, the other is padded with 0 at the bottom or the right), and the
    new mm per pixel. Label maps keep their values (nearest neighbour)."""
    import cv2

    frames = np.asarray(frames)
    height_mm, width_mm = frames.shape[1] * mm_per_pixel[0], frames.shape[2] * mm_per_pixel[1]
    spacing = max(height_mm, width_mm) / side
    rows, cols = max(1, round(height_mm / spacing)), max(1, round(width_mm / spacing))
    interpolation = cv2.INTER_NEAREST if labels else cv2.INTER_AREA
    out = np.zeros((len(frames), side, side), dtype=np.uint8)
    for t, frame in enumerate(frames):
        out[t, :rows, :cols] = cv2.resize(frame, (cols, rows), interpolation=interpolation)
    return out, spacing


def camus_downstream_set(root, r_pre: EchoFMRecipe) -> DownstreamSet:
    """Chapter 9's clips from a CAMUS folder (chapter 7's reader, :class:`echobook.data.camus.CamusDataset`):
    both views of every patient, the half sequence (ED to ES) resampled to the encoder's clip length (ED the
    first frame, ES kept exactly), on square pixels of the encoder's image size. Needs the 2023 release, whose
    half sequences have a label map for every frame (the 2019 one labels ED and ES only)."""
    from echobook.data.camus import CamusDataset
    from echobook.data.labels import VIEW_CLASSES

    folder = CamusDataset(root, view="4CH")
    if folder.release != "2023":
        raise ValueError(f"{root}: a {folder.release} CAMUS release; chapter 9 trains on every frame's label map, "
                         "which only the 2023 release (database_nifti/*_half_sequence_gt.nii.gz) has")
    rows = []
    for heart, patient in enumerate(folder.patients):
        for camus_view, view in CAMUS_TO_VIEW.items():
            record = patient.views.get(camus_view)
            if record is None or not record.has_masks:
                continue
            sequence, labels = record.sequence(), record.sequence_labels()
            es = int(record.es_frame)
            picks = np.round(np.linspace(0, len(sequence) - 1, r_pre.clip_frames)).astype(int)
            es_slot = int(np.argmin(np.abs(picks - es)))
            picks[es_slot] = es  # ES exactly, at the slot nearest to it
            spacing = record.mm_per_pixel()
            frames, mm = square_resample(sequence[picks], spacing, r_pre.image_size)
            maps, _ = square_resample(labels[picks], spacing, r_pre.image_size, labels=True)
            rows.append(dict(frames=frames, labels=maps, view_index=VIEW_CLASSES.index(view), ed_frame=0,
                             es_frame=es_slot, ef_percent=record.info.ef_percent,
                             edv_ml=record.info.edv_ml, esv_ml=record.info.esv_ml,
                             mm_per_pixel=mm, heart_id=heart, splits=patient.split))
    if not rows:
        raise ValueError(f"{root}: no CAMUS view with label maps")
    stacked = {key: np.stack([row[key] for row in rows]) if key in ("frames", "labels")
               else np.asarray([row[key] for row in rows]) for key in rows[0]}
    return DownstreamSet(**stacked, views=VIEW_CLASSES)
