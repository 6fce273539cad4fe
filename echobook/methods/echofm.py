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

Sources of the constants: ``methods-peers.md`` section 5 (EchoFM's ``main_pretrain.py``, ``models_mae.py``,
``util/lr_sched.py``, ``cluster/pretrain_apptainer.job`` and, for the rewrite, its ``triplet_sampling`` and
``pixel_similarity``) and section 7 (VideoMAE).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
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
    # small: the ablations train a third as long as the main run, to keep the chapter within minutes
    "small": EchoFMRecipe(encoder="videomae_tiny", videos=480, video_frames=96, batch_size=16, epochs=12,
                          learning_rate=1e-3, warmup_fraction=0.1, seeds=3, ablation_epochs=4, **_CPU_DATA),
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

def pretrained_encoder_path(size: str, seed: int) -> Path:
    """The folder chapter 8 saves its encoder in (:func:`echobook.cards.model_folder` of ``echofm``)."""
    from echobook.cards import model_folder

    return model_folder("echofm", size, seed)


def save_pretrained_encoder(model: EchoFMModel, *, size: str, seed: int, variant: str, recipe_used: EchoFMRecipe,
                            path: str | Path | None = None, extra: dict | None = None) -> Path:
    """Write the encoder's weights and its card (:mod:`echobook.cards`: size, seed, commit, variant, recipe,
    config) atomically into the folder ``path`` (default :func:`pretrained_encoder_path`); returns the folder."""
    from echobook.cards import new_card, save_with_card

    folder = Path(path) if path is not None else pretrained_encoder_path(size, seed)
    card = new_card(method="EchoFM" if model.periodic else "VideoMAE", variant=variant, size=size, seed=seed,
                    encoder=recipe_used.encoder, masking=model.masking, mask_ratio=model.mask_ratio,
                    positives=model.positives, recipe=asdict(recipe_used), config=asdict(model.encoder.config),
                    architecture=describe_model(model.encoder), **(extra or {}))
    save_with_card(folder, model.encoder.state_dict(), card)
    return folder


def load_pretrained_encoder(size: str | Settings = "auto", seed: int | None = None, *,
                            path: str | Path | None = None) -> tuple[VideoViT, dict]:
    """The encoder chapter 8 saved for a size and seed (or at ``path``), and its card. Chapter 9:
    ``encoder, card = echofm.load_pretrained_encoder(cfg)``. A missing file raises FileNotFoundError
    saying which chapter makes it; a file of another architecture a CheckpointError before any weight loads."""
    if path is None:
        name = size.size if isinstance(size, Settings) else resolve_size(size)
        seed = (size.seed if isinstance(size, Settings) else 0) if seed is None else seed
        path = pretrained_encoder_path(name, seed)
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

