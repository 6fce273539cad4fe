"""A UNETR-style segmentation decoder over a video ViT's tokens (after Hatamizadeh et al., 2022), for EchoFM's
chamber segmentation in chapter 9. EchoFM's public code has no segmentation decoder; this one is ours.

UNETR reads a ViT's tokens from several depths (ViT-B: blocks 3, 6, 9, 12), folds each back into a volume on
the token grid, and climbs back to the input's resolution by transposed convolutions, each level joined to a
skip path like a U-Net:

- the deepest tokens are the bottleneck; the decoder doubles the resolution ``S`` times, where
  ``2^S = patch_pixels`` (S = 4 for 16-pixel patches, 3 for 8-pixel ones);
- the tokens of the ``S - 1`` shallower depths (the shallowest first) are brought by ``S - i`` transposed
  convolutions to level ``S - i`` and concatenated there (UNETR's "PrUp" blocks);
- a small convolution of the raw clip is the full-resolution skip.

A video differs from UNETR's 3-D volume only in that a token spans ``tubelet_frames`` frames: every level
below full resolution stays on the token grid in time (``T'``), and the last transposed convolution also
restores time (kernel ``tubelet_frames x 2 x 2``). The output is per-frame logits ``[B, K, T, H, W]`` over the
four CAMUS classes (:data:`echobook.data.labels.CHAMBER_LABELS`).

Channels follow UNETR: ``feature_size`` at full resolution, doubled at each level down (16, 32, 64, 128 for
ViT-B). Blocks: two 3x3x3 convolutions with instance norm and LeakyReLU and a residual path (UNETR's
``UnetResBlock``).

Variants (registered as ``"segmenter"``: clips ``[B, C, T, H, W]`` to logits ``[B, K, T, H, W]``):
``unetr_micro`` (over ``videomae_micro``, smoke), ``unetr_tiny`` (``videomae_tiny``, small), ``unetr_base``
(``videomae_base``, full). ``UNETR(config, encoder=...)`` puts the decoder on a pretrained encoder.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from echobook.data.labels import CHAMBER_LABELS
from echobook.models.registry import model_config, register_model
from echobook.models.videomae import VideoViT, VideoViTConfig

UNETR_FEATURE_SIZE = 16  # UNETR's channels at full resolution


@dataclass(frozen=True)
class UNETRConfig:
    """An encoder's config, the decoder's width and the classes."""

    encoder: VideoViTConfig
    feature_size: int = UNETR_FEATURE_SIZE
    num_classes: int = len(CHAMBER_LABELS)
    # 3: UNETR's 3x3x3 convolutions (time mixed in the decoder too); 1: 1x3x3, frame by frame (the tokens already
    # carry the clip's time context), three times cheaper: the CPU sizes' choice
    temporal_kernel: int = 3

    def __post_init__(self):
        patch = self.encoder.patch_pixels
        if patch < 2 or patch & (patch - 1):
            raise ValueError(f"UNETRConfig.encoder.patch_pixels={patch}: must be a power of two >= 2 (the decoder "
                             "doubles the resolution back to the input's)")
        if self.temporal_kernel not in (1, 3):
            raise ValueError(f"UNETRConfig.temporal_kernel={self.temporal_kernel!r}: 1 or 3")
        for name in ("feature_size", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UNETRConfig.{name}={value!r}: must be a positive integer")

    @property
    def stages(self) -> int:
        """Resolution doublings from the token grid back to the input's pixels."""
        return int(math.log2(self.encoder.patch_pixels))

    @property
    def layers(self) -> tuple[int, ...]:
        """The blocks whose tokens are read, shallowest first, evenly spaced and ending with the last block
        (ViT-B with 16-pixel patches: 3, 6, 9, 12)."""
        depth = self.encoder.depth
        return tuple(max(1, round(depth * (j + 1) / self.stages)) for j in range(self.stages))

    def channels(self, level: int) -> int:
        """Channels at ``level`` doublings above the token grid (``stages``: full resolution)."""
        return self.feature_size * 2 ** (self.stages - level)


class ResBlock(nn.Module):
    """Two 3x3x3 (or 1x3x3) convolutions with instance norm and LeakyReLU, plus a 1x1x1 residual path (UNETR's)."""

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel: int = 3):
        super().__init__()
        kernel, padding = (temporal_kernel, 3, 3), (temporal_kernel // 2, 1, 1)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel, padding=padding, bias=False)
        self.norm1 = nn.InstanceNorm3d(out_channels, affine=True)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel, padding=padding, bias=False)
        self.norm2 = nn.InstanceNorm3d(out_channels, affine=True)
        same = in_channels == out_channels
        self.skip = nn.Identity() if same else nn.Conv3d(in_channels, out_channels, 1, bias=False)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        return self.act(self.norm2(self.conv2(y)) + self.skip(x))


def up_conv(in_channels: int, out_channels: int, frames: int = 1) -> nn.ConvTranspose3d:
    """A transposed convolution doubling height and width (and multiplying time by ``frames``)."""
    return nn.ConvTranspose3d(in_channels, out_channels, kernel_size=(frames, 2, 2), stride=(frames, 2, 2))


class UpBlock(nn.Module):
    """Up one level, concatenate the skip of that level, a residual block (UNETR's ``UnetrUpBlock``)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, frames: int = 1,
                 temporal_kernel: int = 3):
        super().__init__()
        self.up = up_conv(in_channels, out_channels, frames)
        self.block = ResBlock(out_channels + skip_channels, out_channels, temporal_kernel)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


def token_path(dim: int, channels: int, doublings: int, temporal_kernel: int = 3) -> nn.Sequential:
    """Tokens on their grid brought ``doublings`` levels up: transposed convolution then a residual block,
    ``doublings`` times (UNETR's ``UnetrPrUpBlock``)."""
    steps = []
    for step in range(doublings):
        steps += [up_conv(dim if step == 0 else channels, channels), ResBlock(channels, channels, temporal_kernel)]
    return nn.Sequential(*steps)


class UNETR(nn.Module):
    """A :class:`~echobook.models.videomae.VideoViT` encoder and a UNETR decoder (see the module doc).
    ``UNETR(config)`` makes a fresh encoder; ``UNETR(config, encoder=pretrained)`` uses a given one, whose
    config must be ``config.encoder``."""

    def __init__(self, config: UNETRConfig, encoder: VideoViT | None = None):
        super().__init__()
        if encoder is not None and encoder.config != config.encoder:
            raise ValueError("the encoder's config differs from UNETRConfig.encoder; build the config from it "
                             "(unetr_config_for(encoder.config))")
        self.config = config
        self.encoder = encoder if encoder is not None else VideoViT(config.encoder)
        dim, stages, kt = config.encoder.embed_dim, config.stages, config.temporal_kernel
        self.input_block = ResBlock(config.encoder.in_chans, config.channels(stages), kt)
        # the skip of level l comes from the (stages - l)-th layer read, l = stages - 1 ... 1
        self.token_paths = nn.ModuleList(token_path(dim, config.channels(stages - i), stages - i, kt)
                                         for i in range(1, stages))
        self.bottleneck_up = up_conv(dim, config.channels(1)) if stages > 1 else None
        self.bottleneck_block = ResBlock(config.channels(1) * 2, config.channels(1), kt) if stages > 1 else None
        self.up_blocks = nn.ModuleList(UpBlock(config.channels(level - 1), config.channels(level),
                                               config.channels(level), temporal_kernel=kt)
                                       for level in range(2, stages))
        last_in = config.channels(stages - 1) if stages > 1 else dim
        self.final_up = UpBlock(last_in, config.channels(stages), config.channels(stages),
                                frames=config.encoder.tubelet_frames, temporal_kernel=kt)
        self.head = nn.Conv3d(config.channels(stages), config.num_classes, 1)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K, T, H, W]`` of clips ``[B, C, T, H, W]``."""
        grid = self.encoder.grid(clips)
        tokens = self.encoder.layer_tokens(clips, self.config.layers)
        volumes = [t.transpose(1, 2).reshape(t.shape[0], t.shape[2], *grid) for t in tokens]  # [B, D, T', H', W']
        stages = self.config.stages
        x = volumes[-1]
        if stages > 1:
            # level 1: the bottleneck up, joined to the deepest skip (the layer read just before the last)
            skip = self.token_paths[stages - 2](volumes[stages - 2])
            x = self.bottleneck_block(torch.cat([self.bottleneck_up(x), skip], dim=1))
            for level, block in enumerate(self.up_blocks, start=2):
                x = block(x, self.token_paths[stages - 1 - level](volumes[stages - 1 - level]))
        x = self.final_up(x, self.input_block(self.encoder._channels(clips)))
        return self.head(x)


def unetr_config_for(encoder_config: VideoViTConfig, **overrides) -> UNETRConfig:
    """A decoder config for an encoder's config (e.g. a pretrained encoder's)."""
    return UNETRConfig(encoder=encoder_config, **overrides)


# --------------------------------------------------------------------------------------------- variants

def unetr_variant(config_fn):
    """Register ``config_fn`` (returning a :class:`UNETRConfig`) as a segmenter of the same name; its build
    takes decoder overrides (``feature_size``, ``num_classes``) and an optional pretrained ``encoder``."""
    def build(encoder: VideoViT | None = None, **overrides) -> UNETR:
        config = config_fn()
        if encoder is not None:
            config = dataclasses.replace(config, encoder=encoder.config)
        return UNETR(dataclasses.replace(config, **overrides), encoder=encoder)

    build.__doc__ = config_fn.__doc__
    register_model(build, name=config_fn.__name__, kind="segmenter", config=config_fn)
    return config_fn


# The CPU sizes halve UNETR's channels and convolve frame by frame: a training step of unetr_micro on 8 clips of
# 16 x 32 x 32 took 0.23 s of CPU against 0.74 s with UNETR's 16 channels and 3x3x3 kernels.
@unetr_variant
def unetr_micro() -> UNETRConfig:
    """Smoke size: over ``videomae_micro`` (8-pixel patches: 3 doublings, blocks 1, 1, 2), 8 channels, 1x3x3."""
    return UNETRConfig(encoder=model_config("videomae_micro"), feature_size=8, temporal_kernel=1)


@unetr_variant
def unetr_tiny() -> UNETRConfig:
    """Small size: over ``videomae_tiny`` (8-pixel patches: 3 doublings, blocks 1, 3, 4), 8 channels, 1x3x3."""
    return UNETRConfig(encoder=model_config("videomae_tiny"), feature_size=8, temporal_kernel=1)


@unetr_variant
def unetr_base() -> UNETRConfig:
    """Full size: over ``videomae_base`` (16-pixel patches: 4 doublings, blocks 3, 6, 9, 12), UNETR's 16
    channels."""
    return UNETRConfig(encoder=model_config("videomae_base"))
