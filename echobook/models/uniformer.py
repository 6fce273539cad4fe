"""UniFormer for video (Li et al., ICLR 2022), written from the paper's description.

One model family per file, timm style: each variant is a small function returning its
:class:`UniFormerConfig` (``uniformer_s``, ``uniformer_xxs``, ...), registered with the package's
model registry, so ``echobook.models.create_model("uniformer_s")`` builds it and
``model_config("uniformer_s")`` shows its numbers.

Shapes: input clips ``[B, C, T, H, W]`` with ``C`` 1 (gray, expanded to the stem's 3
channels at the input) or 3. The stem divides T by 2 and H, W by 4; each later stage
halves H and W. ``forward_features`` gives the ``[B, D]`` embedding (final BatchNorm,
then the mean over T, H, W; D is the last stage's width, 512 for UniFormer-S);
``forward`` applies the head (an identity when ``num_classes=0``, the default).

Parameter names follow the official video checkpoints (``Sense-X/UniFormer``,
``video_classification/slowfast/models/uniformer.py``): ``patch_embed1..4.{proj,norm}``,
``blocks1..4.<i>.{pos_embed, norm1, conv1, attn, conv2, norm2, mlp.fc1, mlp.fc2}`` in the
convolutional stages, ``attn.qkv`` and ``attn.proj`` in the attention stages, ``norm`` (the
final BatchNorm3d) and ``head``. So ``uniformer_small_k400_16x8.pth`` loads key for key with
:func:`load_pretrained`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from echobook.models.registry import register_model

# Published figures for UniFormer-S (video): the UniFormer README's model zoo gives 21.4 M
# parameters (Kinetics-400 model, 400-class head included) and 167 GFLOPs for 16x1x4 views,
# i.e. 41.8 G multiply-adds per 16x224x224 clip. 19.6 G at 36x112x112 (CoReEcho's clips) is
# the reference notes' own analytic count, not a published figure.
PAPER_UNIFORMER_S = {
    "params_m": 21.4,
    "gmacs_16x224x224": 167.0 / 4,
    "gmacs_36x112x112_analytic": 19.6,
}
KINETICS_CLASSES = 400


@dataclass(frozen=True)
class UniFormerConfig:
    """The numbers that define one UniFormer variant."""

    depths: tuple[int, int, int, int]  # blocks per stage; stages 1-2 convolutional, 3-4 attention
    dims: tuple[int, int, int, int]  # channels per stage
    head_dim: int = 64  # channels per attention head in stages 3-4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    in_chans: int = 3  # the stem's input channels; gray input is expanded to them
    num_classes: int = 0  # 0: no head, forward returns the embedding
    drop_rate: float = 0.0  # dropout after the stem, in the MLPs and after attention (CoReEcho: 0.1)
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0  # stochastic depth, linear from 0 over all blocks (K400 recipe: 0.1)

    @property
    def embed_dim(self) -> int:
        return self.dims[-1]


# ---------------------------------------------------------------------------------------------
# Building blocks


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``[B, C, T, H, W]`` tensor (the stem and merges use it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class StemEmbed(nn.Module):
    """The stem (``SpeicalPatchEmbed`` upstream): Conv3d k(3,4,4) s(2,4,4) p(1,0,0), then LayerNorm.

    The only temporal downsampling in the network: ``[B,3,T,H,W] -> [B,D,T/2,H/4,W/4]``.
    """

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=(3, 4, 4), stride=(2, 4, 4), padding=(1, 0, 0))
        self.norm = ChannelLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class PatchMerge(nn.Module):
    """Between stages (``PatchEmbed`` upstream): Conv3d k(1,2,2) s(1,2,2) halves H and W, then LayerNorm."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Conv3d(in_dim, dim, kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.norm = ChannelLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class DepthwiseConv3d(nn.Conv3d):
    """A ``k x k x k`` depthwise Conv3d ("same" padding) that on a GPU runs as ``k`` depthwise Conv2d, one per
    temporal tap, summed over the shifted frames.

    Why: cuDNN has no fast kernel for depthwise 3-D convolutions. On an H200 (torch 2.11, bf16 autocast, batch 32
    of 36x112x112) its weight-gradient kernel took 80 % of UniFormer-S's training step, which ran at 66 clips/s;
    the same arithmetic as 2-D taps ran at 186 clips/s (``benchmarks/profile_dwconv.py``,
    ``results/2026-11-30-nvidia-h200/``). On a CPU the plain Conv3d is a little faster, so it stays there. The
    parameters are the Conv3d's, so checkpoints load unchanged.
    """

    def __init__(self, dim: int, kernel: int):
        super().__init__(dim, dim, kernel_size=kernel, padding=kernel // 2, groups=dim)
        self.temporal_taps: bool | None = None  # None: taps on a GPU only; True/False: always/never (tests)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_taps = x.is_cuda if self.temporal_taps is None else self.temporal_taps
        return self.forward_taps(x) if use_taps else super().forward(x)

    def forward_taps(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """``channels_last``: the 2-D convolutions on NHWC frames (a candidate to measure, not yet the default)."""
        batch, channels, frames, height, width = x.shape
        kernel = self.kernel_size[0]
        pad = kernel // 2
        padded = F.pad(x, (0, 0, 0, 0, pad, pad)).transpose(1, 2)  # [B, T + k - 1, C, H, W]
        out = None
        for tap in range(kernel):  # output frame t sees padded frames t .. t + k - 1
            window = padded[:, tap:tap + frames].reshape(batch * frames, channels, height, width)
            if channels_last:
                window = window.contiguous(memory_format=torch.channels_last)
            term = F.conv2d(window, self.weight[:, :, tap], self.bias if tap == 0 else None, padding=pad,
                            groups=channels)
            out = term if out is None else out + term
        return out.reshape(batch, frames, channels, height, width).transpose(1, 2)


class ConvMlp(nn.Module):
    """The feed-forward network of a CBlock: 1x1x1 convs C -> rC -> C with GELU."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Conv3d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv3d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TokenMlp(nn.Module):
    """The feed-forward network of an SABlock: Linear C -> rC -> C with GELU, on tokens."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class CBlock(nn.Module):
    """Local multi-head relation aggregator (stages 1-2).

    ``x + DPE(x)``, then ``x + conv2(DWConv5x5x5(conv1(BN(x))))``, then ``x + FFN(BN(x))``.
    The 5x5x5 depthwise conv (``attn``) is the "local attention": a learned, content-independent
    affinity among each token's 125 neighbours, much cheaper than self-attention on the many
    tokens of the early stages.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.pos_embed = DepthwiseConv3d(dim, 3)  # dynamic position embedding
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = nn.Conv3d(dim, dim, 1)
        self.attn = DepthwiseConv3d(dim, 5)
        self.conv2 = nn.Conv3d(dim, dim, 1)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.BatchNorm3d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MultiHeadSelfAttention(nn.Module):
    """Joint space-time self-attention over ``[B, N, C]`` tokens, with PyTorch's fused kernel."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible into {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        # [B, N, 3C] -> 3 x [B, heads, N, head_dim]
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # scale defaults to head_dim ** -0.5, as upstream
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(batch, tokens, dim)))


class SABlock(nn.Module):
    """Global multi-head relation aggregator (stages 3-4): DPE, then a pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.pos_embed = DepthwiseConv3d(dim, 3)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiHeadSelfAttention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TokenMlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        batch, dim, t, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # [B, T*H*W, C]
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens.transpose(1, 2).reshape(batch, dim, t, h, w)


# ---------------------------------------------------------------------------------------------
# The network


class UniFormer(nn.Module):
    """UniFormer video network; see the module docstring for shapes and names."""

    def __init__(self, config: UniFormerConfig):
        super().__init__()
        self.config = config
        c = config
        total = sum(c.depths)
        rates = [c.drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear from 0
        stage_rates = [rates[sum(c.depths[:s]):sum(c.depths[:s + 1])] for s in range(4)]

        self.patch_embed1 = StemEmbed(c.in_chans, c.dims[0])
        self.patch_embed2 = PatchMerge(c.dims[0], c.dims[1])
        self.patch_embed3 = PatchMerge(c.dims[1], c.dims[2])
        self.patch_embed4 = PatchMerge(c.dims[2], c.dims[3])
        self.pos_drop = nn.Dropout(c.drop_rate)
        self.blocks1 = self._conv_stage(c.dims[0], stage_rates[0])
        self.blocks2 = self._conv_stage(c.dims[1], stage_rates[1])
        self.blocks3 = self._attention_stage(c.dims[2], stage_rates[2])
        self.blocks4 = self._attention_stage(c.dims[3], stage_rates[3])
        self.norm = nn.BatchNorm3d(c.embed_dim)
        self.head = nn.Linear(c.embed_dim, c.num_classes) if c.num_classes else nn.Identity()
        self.apply(_init_weights)

    def _conv_stage(self, dim: int, drop_paths: list[float]) -> nn.ModuleList:
        c = self.config
        return nn.ModuleList(CBlock(dim, c.mlp_ratio, c.drop_rate, p) for p in drop_paths)

    def _attention_stage(self, dim: int, drop_paths: list[float]) -> nn.ModuleList:
        c = self.config
        heads = max(1, dim // c.head_dim)
        return nn.ModuleList(
            SABlock(dim, heads, c.mlp_ratio, c.qkv_bias, c.drop_rate, c.attn_drop_rate, p) for p in drop_paths
        )

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def expand_channels(self, clip: torch.Tensor) -> torch.Tensor:
        """Gray ``[B,1,T,H,W]`` to the stem's channels (a view, no copy); checks the shape."""
        if clip.ndim != 5:
            raise ValueError(f"UniFormer expects clips [B, C, T, H, W], got shape {tuple(clip.shape)}")
        channels = clip.shape[1]
        if channels == self.config.in_chans:
            return clip
        if channels == 1:
            return clip.expand(-1, self.config.in_chans, -1, -1, -1)
        raise ValueError(f"UniFormer's stem takes 1 or {self.config.in_chans} channels, got {channels}")

    def forward_stages(self, clip: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map ``[B, D, T/2, H/32, W/32]``, after the final BatchNorm."""
        x = self.pos_drop(self.patch_embed1(self.expand_channels(clip)))
        for merge, blocks in ((None, self.blocks1), (self.patch_embed2, self.blocks2),
                              (self.patch_embed3, self.blocks3), (self.patch_embed4, self.blocks4)):
            if merge is not None:
                x = merge(x)
            for block in blocks:
                x = block(x)
        return self.norm(x)

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        """The ``[B, D]`` clip embedding: the mean over T, H and W of the last feature map."""
        return self.forward_stages(clip).flatten(2).mean(-1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(clip))


def _init_weights(module: nn.Module) -> None:
    # As upstream: truncated normal for Linear weights, zero biases, LayerNorm (1, 0); convs keep
    # PyTorch's default initialisation.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------
# Variants, checkpoints, cost


def _build(config: UniFormerConfig, overrides: dict) -> UniFormer:
    unknown = set(overrides) - {f.name for f in dataclasses.fields(UniFormerConfig)}
    if unknown:
        raise TypeError(f"UniFormerConfig has no field(s) {sorted(unknown)}")
    return UniFormer(dataclasses.replace(config, **overrides))


def uniformer_variant(config_fn: Callable[[], UniFormerConfig]) -> Callable[[], UniFormerConfig]:
    """Register the variant whose config ``config_fn()`` gives, under the function's name; keyword
    arguments of ``create_model(name, **overrides)`` replace fields of that config."""
    def build(**overrides) -> UniFormer:
        return _build(config_fn(), overrides)

    build.__doc__ = config_fn.__doc__
    register_model(build, name=config_fn.__name__, kind="encoder", config=config_fn)
    return config_fn


# The official sizes.
@uniformer_variant
def uniformer_s() -> UniFormerConfig:
    """UniFormer-S: CoReEcho's encoder."""
    return UniFormerConfig(depths=(3, 4, 8, 3), dims=(64, 128, 320, 512), head_dim=64)


@uniformer_variant
def uniformer_b() -> UniFormerConfig:
    """UniFormer-B."""
    return UniFormerConfig(depths=(5, 8, 20, 7), dims=(64, 128, 320, 512), head_dim=64)


# CPU sizes for the book's smoke and small runs: same design, fewer and narrower blocks.
@uniformer_variant
def uniformer_xs() -> UniFormerConfig:
    """A narrower UniFormer for a laptop CPU."""
    return UniFormerConfig(depths=(1, 2, 3, 1), dims=(32, 64, 128, 256), head_dim=32)


@uniformer_variant
def uniformer_xxs() -> UniFormerConfig:
    """The smallest UniFormer: the CPU sizes' encoder."""
    return UniFormerConfig(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), head_dim=32)


def _unwrap_state_dict(checkpoint) -> dict[str, torch.Tensor]:
    """The raw state dict inside a checkpoint: upstream files are raw; SlowFast-trained ones keep it
    under ``model_state`` (UniFormer issue #94), others under ``model`` or ``state_dict``;
    DataParallel adds ``module.``."""
    state = checkpoint
    for key in ("model_state", "model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise TypeError(f"expected a state dict, found {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model; the message names every key that differs."""


def load_pretrained(model: UniFormer, path_or_state, *, skip_head: bool | None = None) -> dict[str, list[str]]:
    """Load an official UniFormer video checkpoint (e.g. ``uniformer_small_k400_16x8.pth``) strictly.

    ``path_or_state``: a file path or an already loaded state dict. ``skip_head``: leave out the
    checkpoint's ``head.*`` keys (the 400 Kinetics classes); by default they are skipped when the
    model's head does not take them (``num_classes=0`` or a different class count), as CoReEcho
    replaces the head anyway. Every other key must match in name and shape, or
    :class:`CheckpointMismatchError` lists the missing keys, the unexpected keys and the shape
    mismatches. Returns ``{"skipped": [...]}``, the checkpoint keys left out.

    The official video code also inflates 2-D ImageNet weights to 3-D (repeat each kernel over T
    and divide by T); that is for training from ImageNet, which the book does not do, so it is not
    implemented here: a 2-D checkpoint is reported as shape mismatches.
    """
    if isinstance(path_or_state, (str, Path)):
        checkpoint = torch.load(Path(path_or_state), map_location="cpu", weights_only=True)
    else:
        checkpoint = path_or_state
    state = dict(_unwrap_state_dict(checkpoint))
    own = model.state_dict()

    head_keys = [k for k in state if k.startswith("head.")]
    if skip_head is None:
        skip_head = any(k not in own or own[k].shape != state[k].shape for k in head_keys)
    skipped = head_keys if skip_head else []
    for key in skipped:
        del state[key]

    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state if k in own and state[k].shape != own[k].shape
    )
    if missing or unexpected or wrong_shape:
        lines = [f"checkpoint does not fit {type(model).__name__}:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                lines.append(f"  {title} ({len(keys)}): {shown}")
        raise CheckpointMismatchError("\n".join(lines))
    # BatchNorm counters may be absent in old files; everything else was checked above.
    model.load_state_dict(state, strict=False)
    return {"skipped": skipped}
