"""Echo-E3Net (Heidari et al., 2025, arXiv 2503.17543 v3), rebuilt from the paper's description.

The code is not public; what is known (``reference/methods-peers.md`` section 6) is the design: an
LHU-Net-style hybrid backbone, a dual-phase endocardial border detector (E2CBD) and a feature aggregator
(E2FA), about 1.5 M parameters and 8 GFLOPs. Every number below that the paper does not give is this
package's choice (chapter 10 lists them).

Three parts, shapes for clips ``[B, C, T, H, W]`` (C = 1 gray, or 3 channels averaged to one):

1. **Backbone** (:class:`E3NetBackbone`). A factorised (2+1)-D stem (spatial k x k conv, then a temporal
   conv of 3), two convolutional stages of (2+1)-D inverted residual blocks (depthwise spatial, depthwise
   temporal, pointwise expansion), then hybrid stages whose blocks add divided space-time self-attention
   (spatial attention within each frame, then temporal attention at each site) to a depthwise position
   conv. Every stage halves H and W with a stride-2 3x3 conv (padding 1, so no row is dropped at 112 px);
   the stem (and, in the large variant, one later stage) halves T. The last ``scales`` stages give the
   multi-scale features.
2. **E2CBD** (:class:`LandmarkDetector`). ``2 x K`` learnable queries, one set for ED and one for ES. Each
   layer: self-attention among the queries, cross-attention from the queries to the multi-scale tokens
   (every stage's features projected to ``detector_dim`` plus a Fourier encoding of each token's (t, y, x)),
   and an MLP. Out: landmark coordinates ``[B, 2, K, 2]`` in [0, 1] (a sigmoid) and landmark embeddings
   ``[B, 2, K, D]``. The cross-attention weights of the last layer can be kept for display.
3. **E2FA** (:class:`FeatureAggregator`). The mean, maximum and variance over (T, H, W) of the deepest
   feature map, fused with a landmark descriptor (each phase's mean landmark embedding and the
   coordinates), regress EF (%, ``mean + SD * out``), and EDV and ESV (mL, positive: ``mean * exp(out)``).

:class:`E3Net` returns an :class:`E3NetOutput` (a tuple with named fields; the package's EF losses and
metrics read its ``ef_percent``). The registry's contract for an ``"ef_regressor"`` is clips -> EF ``[B]``:
:class:`E3NetRegressor` is the same network (same parameter names) returning only that, and is what
``create_model("e3net_s")`` builds. ``model_config(name)`` gives a variant's :class:`E3NetConfig`;
``E3Net(config)`` builds the full-output network from it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from echobook.models.heads import HEAD_BIAS_INIT_EF_PERCENT
from echobook.models.outputs import OutputTuple
from echobook.models.registry import register_model

# The paper's figures (arXiv 2503.17543; v3 unless marked): methods-peers.md section 6.
PAPER_E3NET = {"rmse": 5.20, "r2": 0.82, "mae_benchmark_site": 3.93, "params_m": 1.54, "gflops": 8.05}
PAPER_E3NET_V1 = {"rmse": 5.15, "r2": 0.82, "params_m": 6.8, "gflops": 8.49}
PARAMETER_BUDGET = 1.6e6  # the ceiling for the paper-scale variant (v3: 1.54 M)
# Where EDV and ESV heads start when the training set's means are not given: EchoNet-Dynamic's medians
# are about 91 mL and 43 mL (FileList); round values, only a starting point.
DEFAULT_EDV_ML, DEFAULT_ESV_ML = 90.0, 45.0
# The EF output works in standard units, EF = mean + scale * out, so that a last layer moved by AdamW at rate
# lr moves EF by about lr * SD, not lr EF points: without it, a few hundred CPU steps leave the predictions
# squeezed around the mean. EchoNet-Dynamic's EF SD is about 12.4 points; learners pass the training set's.
DEFAULT_EF_SCALE_PERCENT = 12.0
FOURIER_BANDS = 4  # sine/cosine pairs per coordinate in the tokens' position encoding


@dataclass(frozen=True)
class E3NetConfig:
    """The numbers that define one Echo-E3Net variant (see the module doc for the parts)."""

    dims: tuple[int, ...] = (16, 24, 48, 96, 160)  # stem, then each stage's channels
    depths: tuple[int, ...] = (1, 2, 2, 2)  # blocks per stage (after the stem)
    conv_stages: int = 2  # the first stages are convolutional; the rest hybrid (attention)
    temporal_strides: tuple[int, ...] = (2, 1, 1, 1, 1)  # stem, then each stage: T is divided by these
    stem_kernel: int = 5  # LHU-Net's first kernel
    mlp_ratio: float = 3.0
    head_dim: int = 32  # channels per attention head in the hybrid stages
    scales: int = 3  # the last `scales` stages feed the landmark detector
    detector_dim: int = 64
    detector_heads: int = 4
    detector_layers: int = 2
    wall_points: int = 10  # landmarks per phase: 3 + 2 * wall_points (echobook.data.landmarks)
    aggregator_dim: int = 128
    drop_rate: float = 0.0
    in_chans: int = 1
    mean_ef_percent: float = HEAD_BIAS_INIT_EF_PERCENT
    mean_edv_ml: float = DEFAULT_EDV_ML
    mean_esv_ml: float = DEFAULT_ESV_ML
    ef_scale_percent: float = DEFAULT_EF_SCALE_PERCENT  # the EF output is mean + scale * out (the training SD)

    def __post_init__(self):
        stages = len(self.dims) - 1
        if len(self.depths) != stages or len(self.temporal_strides) != len(self.dims):
            raise ValueError(f"E3NetConfig: {len(self.dims)} dims need {stages} depths and {len(self.dims)} "
                             f"temporal strides; got {len(self.depths)} and {len(self.temporal_strides)}")
        if not 0 <= self.conv_stages <= stages or not 1 <= self.scales <= stages:
            raise ValueError(f"E3NetConfig: conv_stages={self.conv_stages} and scales={self.scales} must fit "
                             f"{stages} stages")
        if self.wall_points < 1:
            raise ValueError(f"E3NetConfig: wall_points must be at least 1; got {self.wall_points}")

    @property
    def landmarks(self) -> int:
        return 3 + 2 * self.wall_points


class E3NetOutput(OutputTuple):
    """``(ef_percent [B], edv_ml [B], esv_ml [B], landmarks [B, 2, K, 2], landmark_embeddings [B, 2, K, D])``.

    Landmarks are normalised (x, y), ED then ES, in :mod:`echobook.data.landmarks`'s layout. A tuple subclass
    (not a NamedTuple) because fastai rebuilds tuples with ``type(x)([items])``.
    """

    fields = ("ef_percent", "edv_ml", "esv_ml", "landmarks", "landmark_embeddings")


# --------------------------------------------------------------------------------------------- backbone

class Conv2Plus1d(nn.Sequential):
    """A factorised 3-D conv: ``(1, k, k)`` spatial (stride ``s``), BatchNorm, GELU, then ``(3, 1, 1)``
    temporal (stride ``ts``). Cheaper than a full ``k x k x 3`` kernel and an extra non-linearity between."""

    def __init__(self, in_dim: int, dim: int, kernel: int, stride: int, temporal_stride: int):
        super().__init__(
            nn.Conv3d(in_dim, dim, (1, kernel, kernel), (1, stride, stride), (0, kernel // 2, kernel // 2)),
            nn.BatchNorm3d(dim), nn.GELU(),
            nn.Conv3d(dim, dim, (3, 1, 1), (temporal_stride, 1, 1), (1, 0, 0)),
            nn.BatchNorm3d(dim),
        )


class ConvBlock(nn.Module):
    """(2+1)-D inverted residual: depthwise 3x3 in space, depthwise 3 in time, BatchNorm, pointwise
    ``C -> rC`` GELU ``-> C``; added to the input."""

    def __init__(self, dim: int, mlp_ratio: float, drop: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.spatial = nn.Conv3d(dim, dim, (1, 3, 3), padding=(0, 1, 1), groups=dim)
        self.temporal = nn.Conv3d(dim, dim, (3, 1, 1), padding=(1, 0, 0), groups=dim)
        self.norm = nn.BatchNorm3d(dim)
        self.expand = nn.Conv3d(dim, hidden, 1)
        self.project = nn.Conv3d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.temporal(self.spatial(x)))
        return x + self.drop(self.project(F.gelu(self.expand(y))))


class Attention(nn.Module):
    """Multi-head attention of ``[N, Lq, C]`` queries over ``[N, Lk, C]`` keys/values (self-attention when
    ``context`` is None). ``keep_weights``: store the head-averaged weights ``[N, Lq, Lk]`` in ``weights``
    (computed explicitly; otherwise PyTorch's fused kernel)."""

    def __init__(self, dim: int, heads: int, drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible into {heads} heads")
        self.heads, self.drop = heads, drop
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.keep_weights = False
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        n, lq, dim = x.shape
        head_dim = dim // self.heads
        q = self.q(x).reshape(n, lq, self.heads, head_dim).transpose(1, 2)
        k, v = self.kv(context).reshape(n, context.shape[1], 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        if self.keep_weights:
            weights = (q @ k.transpose(-2, -1) / math.sqrt(head_dim)).softmax(-1)
            self.weights = weights.mean(1).detach()
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.drop if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(n, lq, dim))


class Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim), nn.Dropout(drop))


class HybridBlock(nn.Module):
    """Depthwise 3x3x3 position conv, then divided space-time attention (spatial within each frame,
    temporal at each site: ``(HW)^2 + T^2`` pairs instead of ``(THW)^2``), then an MLP; pre-norm residuals."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop: float):
        super().__init__()
        self.position = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm_space, self.space = nn.LayerNorm(dim), Attention(dim, heads, drop)
        self.norm_time, self.time = nn.LayerNorm(dim), Attention(dim, heads, drop)
        self.norm_mlp, self.mlp = nn.LayerNorm(dim), Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.position(x)
        batch, dim, t, h, w = x.shape
        tokens = x.permute(0, 2, 3, 4, 1).reshape(batch * t, h * w, dim)  # frames as sequences
        tokens = tokens + self.space(self.norm_space(tokens))
        tokens = tokens.reshape(batch, t, h * w, dim).transpose(1, 2).reshape(batch * h * w, t, dim)  # sites
        tokens = tokens + self.time(self.norm_time(tokens))
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        return tokens.reshape(batch, h, w, t, dim).permute(0, 4, 3, 1, 2)


class E3NetBackbone(nn.Module):
    """Stem and stages; :meth:`forward` returns every stage's feature map ``[B, C_s, T_s, H_s, W_s]``."""

    def __init__(self, c: E3NetConfig):
        super().__init__()
        self.stem = nn.Sequential(Conv2Plus1d(c.in_chans, c.dims[0], c.stem_kernel, 2, c.temporal_strides[0]),
                                  nn.GELU())
        self.stages = nn.ModuleList()
        for s, depth in enumerate(c.depths):
            in_dim, dim = c.dims[s], c.dims[s + 1]
            # a 3x3 stride-2 conv in space whose temporal kernel equals its temporal stride: a third of a
            # 3x3x3 kernel's parameters (the widest stages hold most of the budget)
            stride_t = c.temporal_strides[s + 1]
            down = nn.Sequential(nn.Conv3d(in_dim, dim, (stride_t, 3, 3), (stride_t, 2, 2), (0, 1, 1)),
                                 nn.BatchNorm3d(dim))
            if s < c.conv_stages:
                blocks = [ConvBlock(dim, c.mlp_ratio, c.drop_rate) for _ in range(depth)]
            else:
                heads = max(1, dim // c.head_dim)
                blocks = [HybridBlock(dim, heads, c.mlp_ratio, c.drop_rate) for _ in range(depth)]
            self.stages.append(nn.Sequential(down, *blocks))

    def forward(self, clip: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(clip)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


# --------------------------------------------------------------------------------------------- E2CBD

def fourier_positions(t: int, h: int, w: int, device, dtype) -> torch.Tensor:
    """``[t*h*w, 6 * FOURIER_BANDS]`` sines and cosines of each token's centre (t, y, x), scaled to [0, 1],
    at frequencies ``pi * 2^k``: the same normalised place gives the same code at every scale and input size."""
    axes = [(torch.arange(n, device=device, dtype=dtype) + 0.5) / n for n in (t, h, w)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # [N, 3]
    frequencies = math.pi * 2.0 ** torch.arange(FOURIER_BANDS, device=device, dtype=dtype)
    angles = (grid[:, :, None] * frequencies).reshape(grid.shape[0], -1)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class MultiScaleTokens(nn.Module):
    """The last ``len(dims)`` stages' maps as one token sequence ``[B, sum(T_s H_s W_s), D]``: each map
    projected to D by a 1x1x1 conv, plus a linear map of its tokens' Fourier positions and a learned
    embedding of its scale."""

    def __init__(self, dims: tuple[int, ...], dim: int):
        super().__init__()
        self.projections = nn.ModuleList(nn.Conv3d(d, dim, 1) for d in dims)
        self.position = nn.Linear(6 * FOURIER_BANDS, dim)
        self.scale_embedding = nn.Parameter(torch.zeros(len(dims), dim))
        self.norm = nn.LayerNorm(dim)
        self.shapes: list[tuple[int, int, int]] = []  # (T, H, W) of each scale, from the last forward

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        tokens, self.shapes = [], []
        for s, (projection, x) in enumerate(zip(self.projections, features)):
            y = projection(x)
            t, h, w = y.shape[2:]
            self.shapes.append((t, h, w))
            position = self.position(fourier_positions(t, h, w, y.device, y.dtype))
            tokens.append(y.flatten(2).transpose(1, 2) + position + self.scale_embedding[s])
        return self.norm(torch.cat(tokens, dim=1))


class DetectorLayer(nn.Module):
    def __init__(self, dim: int, heads: int, drop: float):
        super().__init__()
        self.norm_self, self.self_attention = nn.LayerNorm(dim), Attention(dim, heads, drop)
        self.norm_cross, self.cross_attention = nn.LayerNorm(dim), Attention(dim, heads, drop)
        self.norm_mlp, self.mlp = nn.LayerNorm(dim), Mlp(dim, 2 * dim, drop)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        queries = queries + self.self_attention(self.norm_self(queries))
        queries = queries + self.cross_attention(self.norm_cross(queries), tokens)
        return queries + self.mlp(self.norm_mlp(queries))


class LandmarkDetector(nn.Module):
    """E2CBD: ED and ES landmark queries ``[2, K, D]`` attend to the multi-scale tokens; coordinates (a sigmoid,
    so in [0, 1]) and embeddings out. The queries of both phases attend to each other (the ES shape is the ED
    shape contracted), and each phase's queries are its own parameters (phase-specific cross-attention)."""

    def __init__(self, landmarks: int, dim: int, heads: int, layers: int, drop: float):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(2, landmarks, dim) * 0.02)
        self.layers = nn.ModuleList(DetectorLayer(dim, heads, drop) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.coordinates = nn.Linear(dim, 2)  # zeroed by E3Net: every landmark starts at its prior
        # the prior shape, as logits: coordinates = sigmoid(prior + offset). 0 is the frame's centre;
        # set_prior puts the training set's mean shape there, as a head's bias starts at the mean EF
        self.register_buffer("prior_logits", torch.zeros(2, landmarks, 2))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = tokens.shape[0]
        phases, landmarks, dim = self.queries.shape
        # repeat, not expand: a view of a parameter trips torch's module tracker (FlopCounterMode) under no_grad
        queries = self.queries.reshape(1, phases * landmarks, dim).repeat(batch, 1, 1)
        for layer in self.layers:
            queries = layer(queries, tokens)
        embeddings = self.norm(queries).reshape(batch, phases, landmarks, dim)
        coordinates = (self.prior_logits + self.coordinates(embeddings)).sigmoid()
        return coordinates, embeddings

    def set_prior(self, mean_landmarks) -> None:
        """Start every landmark at ``mean_landmarks`` ``[2, K, 2]`` (normalised; e.g. the training mean)."""
        prior = torch.as_tensor(mean_landmarks, dtype=self.prior_logits.dtype).reshape(self.prior_logits.shape)
        self.prior_logits.copy_(torch.logit(prior.clamp(0.02, 0.98)))

    def keep_attention(self, keep: bool = True) -> None:
        """Keep the last layer's cross-attention weights ``[B, 2K, tokens]`` (see :meth:`attention`)."""
        self.layers[-1].cross_attention.keep_weights = keep

    def attention(self) -> torch.Tensor | None:
        return self.layers[-1].cross_attention.weights


# --------------------------------------------------------------------------------------------- E2FA

def feature_statistics(feature_map: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, 3C]``: each channel's mean and maximum over (T, H, W), and the (population)
    variance over time of its spatial mean.

    The variance is taken over time, not over all positions (our reading of the paper's "variance"): a
    channel that follows the cavity's size swings with the beat, and how far it swings is what EF measures.
    """
    flat = feature_map.flatten(2)
    per_frame = feature_map.mean(dim=(3, 4))  # [B, C, T]
    return torch.cat([flat.mean(-1), flat.amax(-1), per_frame.var(-1, unbiased=False)], dim=1)


class FeatureAggregator(nn.Module):
    """E2FA: :func:`feature_statistics` of the deepest map and a landmark descriptor (each phase's mean landmark
    embedding, and all coordinates), each projected and normalised, fused by an MLP into EF, EDV and ESV."""

    def __init__(self, deep_dim: int, detector_dim: int, landmarks: int, dim: int, drop: float,
                 mean_ef_percent: float, mean_edv_ml: float, mean_esv_ml: float,
                 ef_scale_percent: float = DEFAULT_EF_SCALE_PERCENT):
        super().__init__()
        self.statistics = nn.Sequential(nn.LayerNorm(3 * deep_dim), nn.Linear(3 * deep_dim, dim))
        self.landmark_descriptor = nn.Sequential(nn.LayerNorm(2 * detector_dim + 4 * landmarks),
                                                 nn.Linear(2 * detector_dim + 4 * landmarks, dim))
        self.fuse = nn.Sequential(nn.GELU(), nn.Dropout(drop), nn.Linear(2 * dim, dim), nn.GELU())
        self.outputs = nn.Linear(dim, 3)  # EF, log(EDV / mean), log(ESV / mean)
        nn.init.zeros_(self.outputs.bias)
        # starting at the training means spares the first steps of learning a large offset
        self.register_buffer("means", torch.tensor([float(mean_ef_percent), float(mean_edv_ml), float(mean_esv_ml)]))
        self.ef_scale_percent = float(ef_scale_percent)

    def forward(self, deep_map: torch.Tensor, coordinates: torch.Tensor,
                embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        descriptor = torch.cat([embeddings.mean(2).flatten(1), coordinates.flatten(1)], dim=1)
        fused = self.fuse(torch.cat([self.statistics(feature_statistics(deep_map)),
                                     self.landmark_descriptor(descriptor)], dim=1))
        out = self.outputs(fused)
        ef_percent = self.means[0] + self.ef_scale_percent * out[:, 0]
        edv_ml, esv_ml = self.means[1] * out[:, 1].exp(), self.means[2] * out[:, 2].exp()
        return ef_percent, edv_ml, esv_ml


# --------------------------------------------------------------------------------------------- the network

class E3Net(nn.Module):
    """Echo-E3Net: clips ``[B, C, T, H, W]`` -> :class:`E3NetOutput` (module doc)."""

    def __init__(self, config: E3NetConfig = E3NetConfig()):
        super().__init__()
        self.config = c = config
        self.backbone = E3NetBackbone(c)
        self.tokens = MultiScaleTokens(tuple(c.dims[-c.scales:]), c.detector_dim)
        self.detector = LandmarkDetector(c.landmarks, c.detector_dim, c.detector_heads, c.detector_layers, c.drop_rate)
        self.aggregator = FeatureAggregator(c.dims[-1], c.detector_dim, c.landmarks, c.aggregator_dim, c.drop_rate,
                                            c.mean_ef_percent, c.mean_edv_ml, c.mean_esv_ml, c.ef_scale_percent)
        self.apply(_init_weights)
        # every landmark starts at the frame's centre (the sigmoid of 0); EF and volumes at the training means
        nn.init.zeros_(self.detector.coordinates.weight)
        nn.init.zeros_(self.detector.coordinates.bias)

    def gray(self, clip: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T, H, W]`` (3 identical channels, as EchoNet's AVIs hold, are averaged); checks the shape."""
        if clip.ndim != 5:
            raise ValueError(f"E3Net expects clips [B, C, T, H, W], got shape {tuple(clip.shape)}")
        if clip.shape[1] == self.config.in_chans:
            return clip
        if clip.shape[1] == 3 and self.config.in_chans == 1:
            return clip.mean(1, keepdim=True)
        raise ValueError(f"E3Net takes {self.config.in_chans} channel(s) (or 3 to average), got {clip.shape[1]}")

    def forward(self, clip: torch.Tensor) -> E3NetOutput:
        features = self.backbone(self.gray(clip))
        tokens = self.tokens(features[-self.config.scales:])
        coordinates, embeddings = self.detector(tokens)
        ef_percent, edv_ml, esv_ml = self.aggregator(features[-1], coordinates, embeddings)
        return E3NetOutput(ef_percent, edv_ml, esv_ml, coordinates, embeddings)


class E3NetRegressor(E3Net):
    """The registry's ``"ef_regressor"`` contract: the same network, returning only EF ``[B]`` (%).

    Parameter names equal :class:`E3Net`'s, so a trained E3Net's state dict loads here and back.
    """

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return super().forward(clip).ef_percent


def _init_weights(module: nn.Module) -> None:
    # as in UniFormer and most vision transformers: truncated normal Linear weights, zero biases
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------- variants

def _build(config: E3NetConfig, overrides: dict) -> E3NetRegressor:
    unknown = set(overrides) - {f.name for f in dataclasses.fields(E3NetConfig)}
    if unknown:
        raise TypeError(f"E3NetConfig has no field(s) {sorted(unknown)}")
    return E3NetRegressor(dataclasses.replace(config, **overrides))


def e3net_variant(config_fn):
    """Register the variant whose config ``config_fn()`` gives (kind ``ef_regressor``); keyword arguments
    of ``create_model(name, **overrides)`` replace fields of that config."""
    def build(**overrides) -> E3NetRegressor:
        return _build(config_fn(), overrides)

    build.__doc__ = config_fn.__doc__
    register_model(build, name=config_fn.__name__, kind="ef_regressor", config=config_fn)
    return config_fn


@e3net_variant
def e3net_s() -> E3NetConfig:
    """Paper scale: within the v3 budget of about 1.5 M parameters; 20 wall points (EchoNet's chords)."""
    return E3NetConfig(dims=(16, 24, 48, 96, 160), depths=(1, 2, 2, 2), temporal_strides=(2, 1, 2, 1, 1),
                       wall_points=20)


@e3net_variant
def e3net_xs() -> E3NetConfig:
    """The CPU sizes' variant: narrower and one block a stage, 10 wall points."""
    return E3NetConfig(dims=(8, 16, 32, 64, 96), depths=(1, 1, 1, 1), temporal_strides=(1, 1, 1, 1, 1),
                       detector_dim=48, detector_heads=4, aggregator_dim=64, wall_points=10)
