"""A ViT video masked autoencoder (MAE-ST / VideoMAE / EchoFM), written from the papers' description.

- :class:`VideoViT`: the encoder. A tubelet patch embedding (a ``Conv3d`` whose kernel and stride are
  ``tubelet_frames x patch_pixels x patch_pixels``: 4 x 16 x 16 in EchoFM), separable learned position
  tables (one per spatial position, one per time slice, summed), a class token with its own position,
  pre-norm transformer blocks and a final LayerNorm. Given ``ids_keep`` it encodes the visible tokens only.
  As a registered ``"encoder"``, ``forward(clips)`` gives ``[B, D]``: the mean of the patch tokens of the
  whole, unmasked clip (EchoFM's video embedding).
- :class:`VideoMAE`: the encoder plus a shallow decoder: visible tokens projected to the decoder's width,
  one learned mask token for every hidden position, the true un-shuffle (:func:`~echobook.models.masking.unshuffle`),
  the decoder's own separable position tables, a few blocks, and a linear layer to pixels. It reconstructs
  a subset of ``pred_frames`` frames picked evenly (``linspace(0, T - 1, pred_frames)``: EchoFM rebuilds 8
  of 32), so each token predicts ``pred_frames / T'`` frames of its patch.
- :func:`patchify`, :func:`unpatchify`, :func:`pixel_target` (per-patch normalised pixels) and
  :func:`masked_reconstruction_loss` (MSE over hidden tokens only).

Positions are added to every token *before* the visible ones are gathered, so a visible token keeps the
position of its own time slice (EchoFM's first release gathered the table with spatial indices, giving
every visible token frame 0's temporal position). The tables are made for the config's clip and image
size; another grid interpolates them (the registry test feeds 4 x 32 x 32 clips).

Variants (registered encoders; :func:`video_mae` adds the decoder): ``videomae_micro`` (smoke),
``videomae_tiny`` (small), ``videomae_base`` (full: ViT-B, 86 M parameters). EchoFM itself is a ViT-L
(:func:`vit_large_config`, 24 blocks of width 1 024, 16 heads, 303 M parameters, 224-pixel frames); it is
not registered, so that the registry test does not build 300 M parameters on a CPU.
Gray clips: ``in_chans=1`` (EchoNet's three channels are copies of one gray image); a 1-channel clip is
expanded when a model has ``in_chans=3``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from echobook.models.masking import Masking, unshuffle
from echobook.models.registry import register_model

LAYER_NORM_EPS = 1e-6  # EchoFM / MAE-ST's LayerNorm eps
NORM_PIX_EPS = 1e-6  # EchoFM's norm_pix_loss: (x - mean) / sqrt(var + 1e-6)
POSITION_INIT_STD = 0.02  # trunc-normal std of the position tables, the class and mask tokens


@dataclass(frozen=True)
class VideoViTConfig:
    """The numbers of one encoder (and of the decoder :func:`video_mae` puts after it)."""

    embed_dim: int
    depth: int
    num_heads: int
    tubelet_frames: int  # frames per token (EchoFM: 4)
    patch_pixels: int  # pixels per side of a token (EchoFM: 16)
    clip_frames: int  # the clip length the temporal table is made for (EchoFM: 32)
    image_size: int  # the frame size the spatial table is made for (EchoFM: 224)
    mlp_ratio: float = 4.0
    in_chans: int = 1
    # the decoder of the masked autoencoder
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    pred_frames: int = 8  # frames reconstructed, picked evenly (EchoFM: 8 of 32)

    @property
    def temporal_tokens(self) -> int:
        return self.clip_frames // self.tubelet_frames

    @property
    def grid_side(self) -> int:
        return self.image_size // self.patch_pixels

    @property
    def spatial_tokens(self) -> int:
        return self.grid_side ** 2

    @property
    def pred_frames_per_token(self) -> int:
        return self.pred_frames // self.temporal_tokens

    def __post_init__(self):
        for name in ("embed_dim", "depth", "num_heads", "tubelet_frames", "patch_pixels", "clip_frames",
                     "image_size", "in_chans", "decoder_dim", "decoder_depth", "decoder_heads", "pred_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"VideoViTConfig.{name}={value!r}: must be a positive integer")
        checks = (
            ("embed_dim", self.embed_dim % self.num_heads == 0, "must be divisible by num_heads"),
            ("decoder_dim", self.decoder_dim % self.decoder_heads == 0, "must be divisible by decoder_heads"),
            ("clip_frames", self.clip_frames % self.tubelet_frames == 0, "must be a multiple of tubelet_frames"),
            ("image_size", self.image_size % self.patch_pixels == 0, "must be a multiple of patch_pixels"),
            ("pred_frames", self.pred_frames % self.temporal_tokens == 0 and self.pred_frames <= self.clip_frames,
             f"must be a multiple of the {self.temporal_tokens} time slices, at most clip_frames"),
        )
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"VideoViTConfig.{name}={getattr(self, name)!r}: {why}")


# --------------------------------------------------------------------------------------------- pixels <-> tokens

def token_grid(clips: torch.Tensor, tubelet_frames: int, patch_pixels: int) -> tuple[int, int, int]:
    """``(T', H', W')`` of clips ``[B, C, T, H, W]``; a ValueError names the size that does not divide."""
    if clips.ndim != 5:
        raise ValueError(f"clips must be [B, C, T, H, W]; got shape {tuple(clips.shape)}")
    _, _, frames, height, width = clips.shape
    if frames % tubelet_frames or height % patch_pixels or width % patch_pixels:
        raise ValueError(f"clips {tuple(clips.shape)}: frames must be a multiple of tubelet_frames={tubelet_frames}"
                         f" and height, width of patch_pixels={patch_pixels}")
    return frames // tubelet_frames, height // patch_pixels, width // patch_pixels


def patchify(clips: torch.Tensor, tubelet_frames: int, patch_pixels: int) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, N, t * p * p * C]``, tokens time-major (``n = (t' H' + h') W' + w'``),
    each token's values ordered (frame, row, column, channel)."""
    slices, rows, cols = token_grid(clips, tubelet_frames, patch_pixels)
    batch, channels = clips.shape[:2]
    t, p = tubelet_frames, patch_pixels
    x = clips.reshape(batch, channels, slices, t, rows, p, cols, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # B, T', H', W', t, p, p, C
    return x.reshape(batch, slices * rows * cols, t * p * p * channels)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int, int], tubelet_frames: int, patch_pixels: int,
               channels: int = 1) -> torch.Tensor:
    """The inverse of :func:`patchify`: ``[B, N, t * p * p * C]`` -> ``[B, C, T, H, W]``."""
    slices, rows, cols = grid
    t, p = tubelet_frames, patch_pixels
    if tokens.shape[1:] != (slices * rows * cols, t * p * p * channels):
        raise ValueError(f"tokens {tuple(tokens.shape)} do not fit grid {grid} of {t}x{p}x{p}x{channels} values")
    x = tokens.reshape(tokens.shape[0], slices, rows, cols, t, p, p, channels)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # B, C, T', t, H', p, W', p
    return x.reshape(tokens.shape[0], channels, slices * t, rows * p, cols * p)


def predicted_frame_indices(clip_frames: int, pred_frames: int) -> torch.Tensor:
    """The frames a decoder rebuilds: ``linspace(0, T - 1, pred_frames)`` truncated (EchoFM: 0, 4, 8, 13, ... 31)."""
    return torch.linspace(0, clip_frames - 1, pred_frames).long()


def pixel_target(clips: torch.Tensor, config: VideoViTConfig, norm_pix: bool = True) -> torch.Tensor:
    """The reconstruction target ``[B, N, pred_frames_per_token * p * p * C]``: the evenly picked frames,
    patchified, each patch normalised to zero mean and unit variance when ``norm_pix`` (EchoFM's default)."""
    chosen = predicted_frame_indices(clips.shape[2], config.pred_frames).to(clips.device)
    frames = clips.index_select(2, chosen)
    target = patchify(frames, config.pred_frames_per_token, config.patch_pixels)
    if norm_pix:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True, unbiased=False)
        target = (target - mean) / torch.sqrt(var + NORM_PIX_EPS)
    return target


def masked_reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE per token (mean over its values), averaged over the hidden tokens only (``mask`` 1)."""
    per_token = (pred.float() - target.float()).pow(2).mean(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


# --------------------------------------------------------------------------------------------- blocks

class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS), nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SeparablePositions(nn.Module):
    """Learned positions: one vector per spatial position plus one per time slice, and one for a class token."""

    def __init__(self, dim: int, temporal: int, grid_side: int):
        super().__init__()
        self.grid_side = grid_side
        self.spatial = nn.Parameter(torch.zeros(1, grid_side * grid_side, dim))
        self.temporal = nn.Parameter(torch.zeros(1, temporal, dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        for table in (self.spatial, self.temporal, self.cls):
            nn.init.trunc_normal_(table, std=POSITION_INIT_STD)

    def table(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[T' H' W', D]``: ``temporal[t] + spatial[h, w]`` for every token, time-major; another grid than
        the one the tables were made for interpolates them (linear in time, bicubic in space)."""
        slices, rows, cols = grid
        dim = self.spatial.shape[-1]
        spatial = self.spatial
        if (rows, cols) != (self.grid_side, self.grid_side):
            square = spatial.reshape(1, self.grid_side, self.grid_side, dim).permute(0, 3, 1, 2)
            spatial = F.interpolate(square, size=(rows, cols), mode="bicubic", align_corners=False)
            spatial = spatial.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
        temporal = self.temporal
        if slices != temporal.shape[1]:
            temporal = F.interpolate(temporal.transpose(1, 2), size=slices, mode="linear",
                                     align_corners=False).transpose(1, 2)
        return (temporal[0][:, None, :] + spatial[0][None, :, :]).reshape(slices * rows * cols, dim)


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``tokens[b, ids[b]]`` for ``[B, N, D]`` tokens and ``[B, K]`` ids."""
    return tokens.gather(1, ids[..., None].expand(-1, -1, tokens.shape[-1]))


# --------------------------------------------------------------------------------------------- the encoder

class VideoViT(nn.Module):
    """The ViT video encoder of a masked autoencoder (see the module doc)."""

    def __init__(self, config: VideoViTConfig):
        super().__init__()
        self.config = config
        self.embed_dim = config.embed_dim
        t, p = config.tubelet_frames, config.patch_pixels
        self.patch_embed = nn.Conv3d(config.in_chans, config.embed_dim, kernel_size=(t, p, p), stride=(t, p, p))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = SeparablePositions(config.embed_dim, config.temporal_tokens, config.grid_side)
        self.blocks = nn.ModuleList(Block(config.embed_dim, config.num_heads, config.mlp_ratio)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        nn.init.trunc_normal_(self.cls_token, std=POSITION_INIT_STD)
        self.apply(_init_linear_and_norm)
        # the patch embedding initialised as a Linear over its flattened kernel (MAE's choice)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(config.embed_dim, -1))
        nn.init.zeros_(self.patch_embed.bias)

    def grid(self, clips: torch.Tensor) -> tuple[int, int, int]:
        return token_grid(clips, self.config.tubelet_frames, self.config.patch_pixels)

    def _channels(self, clips: torch.Tensor) -> torch.Tensor:
        channels = clips.shape[1]
        if channels == self.config.in_chans:
            return clips
        if channels == 1:
            return clips.expand(-1, self.config.in_chans, -1, -1, -1)
        raise ValueError(f"clips have {channels} channels; this encoder takes {self.config.in_chans} (or 1, expanded)")

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, N, D]`` patch tokens of every tubelet with their positions (added before any masking)."""
        grid = self.grid(clips)
        tokens = self.patch_embed(self._channels(clips)).flatten(2).transpose(1, 2)  # [B, N, D], time-major
        return tokens + self.pos_embed.table(grid).to(tokens.dtype)

    def forward_features(self, clips: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 1 + K, D]``: the class token then the visible tokens (all ``N`` when ``ids_keep`` is None),
        after the blocks and the final norm."""
        tokens = self.embed(clips)
        if ids_keep is not None:
            tokens = gather_tokens(tokens, ids_keep)
        cls = (self.cls_token + self.pos_embed.cls).expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def layer_tokens(self, clips: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """The patch tokens ``[B, N, D]`` of a whole clip after each block in ``layers`` (1-based, as UNETR
        counts them: ``layers=(3, 6, 9, 12)`` of a ViT-B); the last block's are after the final norm, as
        :meth:`forward_features` gives them. Repeated layers are allowed (a shallow encoder)."""
        depth = len(self.blocks)
        if not layers or any(not 1 <= int(layer) <= depth for layer in layers):
            raise ValueError(f"layers={tuple(layers)}: each must be a block number in 1..{depth}")
        tokens = self.embed(clips)
        cls = (self.cls_token + self.pos_embed.cls).expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        x = torch.cat([cls, tokens], dim=1)
        after = {}
        for number, block in enumerate(self.blocks, start=1):
            x = block(x)
            if number in layers:
                after[number] = self.norm(x) if number == depth else x
        return [after[int(layer)][:, 1:] for layer in layers]

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: the mean of the patch tokens of the whole clip (no masking)."""
        return self.forward_features(clips)[:, 1:].mean(1)


# --------------------------------------------------------------------------------------------- the autoencoder

class VideoMAE(nn.Module):
    """A :class:`VideoViT` and its shallow decoder (see the module doc). ``forward(clips, masking)`` gives
    ``(pred, latent)``: predictions ``[B, N, values]`` for every token and the encoder's output
    ``[B, 1 + K, D]`` (class token first), which EchoFM's projection head reads."""

    def __init__(self, encoder: VideoViT):
        super().__init__()
        config = encoder.config
        self.encoder, self.config = encoder, config
        self.decoder_embed = nn.Linear(config.embed_dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        self.decoder_pos_embed = SeparablePositions(config.decoder_dim, config.temporal_tokens, config.grid_side)
        self.decoder_blocks = nn.ModuleList(Block(config.decoder_dim, config.decoder_heads, config.mlp_ratio)
                                            for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(config.decoder_dim, eps=LAYER_NORM_EPS)
        values = config.pred_frames_per_token * config.patch_pixels ** 2 * config.in_chans
        self.decoder_pred = nn.Linear(config.decoder_dim, values)
        nn.init.trunc_normal_(self.mask_token, std=POSITION_INIT_STD)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            module.apply(_init_linear_and_norm)

    def check_clip_length(self, clips: torch.Tensor) -> tuple[int, int, int]:
        grid = self.encoder.grid(clips)
        if grid[0] != self.config.temporal_tokens:
            raise ValueError(f"clips of {clips.shape[2]} frames: this autoencoder rebuilds "
                             f"{self.config.pred_frames} frames of {self.config.clip_frames}-frame clips "
                             "(its decoder's output is sized for them)")
        return grid

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor,
                        grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, N, values]`` predictions from the encoder's ``[B, 1 + K, D]`` output."""
        x = self.decoder_embed(latent)
        cls, visible = x[:, :1], x[:, 1:]
        hidden = ids_restore.shape[1] - visible.shape[1]
        tokens = torch.cat([visible, self.mask_token.to(x.dtype).expand(x.shape[0], hidden, -1)], dim=1)
        tokens = unshuffle(tokens, ids_restore) + self.decoder_pos_embed.table(grid).to(x.dtype)
        x = torch.cat([cls + self.decoder_pos_embed.cls.to(x.dtype), tokens], dim=1)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward(self, clips: torch.Tensor, masking: Masking) -> tuple[torch.Tensor, torch.Tensor]:
        grid = self.check_clip_length(clips)
        latent = self.encoder.forward_features(clips, masking.ids_keep)
        return self.forward_decoder(latent, masking.ids_restore, grid), latent

    def target(self, clips: torch.Tensor, norm_pix: bool = True) -> torch.Tensor:
        return pixel_target(clips, self.config, norm_pix)

    def reconstruct(self, pred: torch.Tensor, clips: torch.Tensor, norm_pix: bool = True) -> torch.Tensor:
        """Predictions as pixels of the predicted frames ``[B, C, pred_frames, H, W]``; with ``norm_pix`` each
        patch is given back the mean and spread of the true patch (what a per-patch normalised target lacks)."""
        target = pixel_target(clips, self.config, norm_pix=False)
        if norm_pix:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True, unbiased=False)
            pred = pred * torch.sqrt(var + NORM_PIX_EPS) + mean
        grid = self.encoder.grid(clips)
        return unpatchify(pred, grid, self.config.pred_frames_per_token, self.config.patch_pixels,
                          self.config.in_chans)


# --------------------------------------------------------------------------------------------- variants

def _build(config_fn, overrides: dict) -> VideoViT:
    return VideoViT(dataclasses.replace(config_fn(), **overrides))


def videomae_variant(config_fn):
    """Register ``config_fn`` (returning a :class:`VideoViTConfig`) as an encoder of the same name."""
    def build(**overrides) -> VideoViT:
        return _build(config_fn, overrides)

    build.__doc__ = config_fn.__doc__
    register_model(build, name=config_fn.__name__, kind="encoder", config=config_fn)
    return config_fn


@videomae_variant
def videomae_micro() -> VideoViTConfig:
    """Smoke size: width 64, 2 blocks, tubelets 2 x 8 x 8 of 16-frame 32-pixel clips, decoder 1 block of 64."""
    return VideoViTConfig(embed_dim=64, depth=2, num_heads=2, tubelet_frames=2, patch_pixels=8, clip_frames=16,
                          image_size=32, decoder_dim=64, decoder_depth=1, decoder_heads=2, pred_frames=8)


@videomae_variant
def videomae_tiny() -> VideoViTConfig:
    """Small size: width 128, 4 blocks, tubelets 2 x 8 x 8 of 16-frame 48-pixel clips, decoder 1 block of 96."""
    return VideoViTConfig(embed_dim=128, depth=4, num_heads=4, tubelet_frames=2, patch_pixels=8, clip_frames=16,
                          image_size=48, decoder_dim=96, decoder_depth=1, decoder_heads=4, pred_frames=8)


@videomae_variant
def videomae_base() -> VideoViTConfig:
    """Full size: ViT-B (width 768, 12 blocks, 12 heads), tubelets 4 x 16 x 16 of 32-frame 112-pixel clips,
    EchoFM's decoder (8 blocks of 512, 16 heads), 8 frames rebuilt."""
    return VideoViTConfig(embed_dim=768, depth=12, num_heads=12, tubelet_frames=4, patch_pixels=16, clip_frames=32,
                          image_size=112)


def vit_large_config() -> VideoViTConfig:
    """EchoFM's encoder (``mae_vit_large_patch16``): ViT-L, 4 x 16 x 16 tubelets of 32 x 224 x 224 clips
    (8 x 14 x 14 = 1 568 tokens), decoder 8 blocks of 512. Not registered (303 M parameters); build it with
    ``VideoViT(vit_large_config())``. EchoFM feeds 3 copies of the gray image (``in_chans=3``)."""
    return VideoViTConfig(embed_dim=1024, depth=24, num_heads=16, tubelet_frames=4, patch_pixels=16,
                          clip_frames=32, image_size=224, in_chans=3)


def video_mae(encoder: str | VideoViT = "videomae_micro", **overrides) -> VideoMAE:
    """A masked autoencoder around a registered encoder (by name, with config ``overrides``) or an encoder."""
    from echobook.models.registry import create_model

    if isinstance(encoder, str):
        encoder = create_model(encoder, **overrides)
    elif overrides:
        raise ValueError("overrides apply to an encoder built by name; got an encoder module")
    if not isinstance(encoder, VideoViT):
        raise ValueError(f"encoder must be a VideoViT (a videomae_* variant); got {type(encoder).__name__}")
    return VideoMAE(encoder)


def count_tokens(config: VideoViTConfig, mask_ratio: float) -> dict[str, int]:
    """Tokens of a clip, and how many the encoder sees under consistent masking at ``mask_ratio``."""
    visible = max(1, int(config.spatial_tokens * (1.0 - mask_ratio)))
    return {"tokens": config.temporal_tokens * config.spatial_tokens, "slices": config.temporal_tokens,
            "positions": config.spatial_tokens, "visible_per_slice": visible,
            "visible": visible * config.temporal_tokens}
