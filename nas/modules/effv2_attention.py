"""EfficientFormerV2's attention blocks (shared/docs/efficientformerv2.md), NCHW, BN, GELU.

Attention4D (key dim 32, 8 heads, value dim 128 per head, talking heads, relative-position bias by
(|dy|, |dx|), optional stride attention at half the side), the AttnFFN block around it, and the
dual-path attention downsampling (conv path + Attention4DDownsample: key dim 16, 8 heads, value dim
64 per head, pooled local query, no talking heads).

Elastic the way `nas.modules` are: the block width (the input's channels, and the downsampling's
output width) and the FFN expansion. Heads, key and value dims are fixed by the architecture, so
q/k/v/proj are sliced only on their C side. The bias table is sized for the largest map the block
runs at (its `side`); a smaller map reads the table's leading corner. An AttnFFN can switch its
attention off and then computes exactly an FFN block (`set_active(attention=False)`): the supernet's
positions in stages 2-3 serve both block types, which is how the number of attention blocks is elastic.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks import EffAttnCfg, EffAttnDSCfg
from nas.modules.effv2 import FFN, check_active, layer_scale
from nas.modules.layers import ElasticBatchNorm, ElasticConv2d, ElasticDWConv2d, take


def ceil_half(side: int) -> int:
    return -(-side // 2)


@lru_cache(maxsize=128)
def rel_index(q_hw: tuple[int, int], k_hw: tuple[int, int], q_step: int, table_side: int) -> torch.Tensor:
    """(Nq * Nk,) index into a flattened (table_side, table_side) bias table: query (yq, xq) sits at
    (q_step * yq, q_step * xq) of the key grid; the entry is |dy| * table_side + |dx|."""
    yq, xq = (t.flatten() * q_step for t in torch.meshgrid(torch.arange(q_hw[0]), torch.arange(q_hw[1]),
                                                            indexing="ij"))
    yk, xk = (t.flatten() for t in torch.meshgrid(torch.arange(k_hw[0]), torch.arange(k_hw[1]), indexing="ij"))
    dy, dx = (yq[:, None] - yk[None, :]).abs(), (xq[:, None] - xk[None, :]).abs()
    if int(dy.max()) >= table_side or int(dx.max()) >= table_side:
        raise ValueError(f"a {k_hw[0]}x{k_hw[1]} map needs offsets beyond the {table_side}x{table_side} bias table")
    return (dy * table_side + dx).flatten()


class _BiasTable(nn.Module):
    """Per-head learnable bias by (|dy|, |dx|), shape (heads, side, side)."""

    def __init__(self, heads: int, side: int) -> None:
        super().__init__()
        self.heads, self.side = heads, side
        self.attention_biases = nn.Parameter(torch.zeros(heads, side, side))

    def bias(self, q_hw: tuple[int, int], k_hw: tuple[int, int], q_step: int = 1) -> torch.Tensor:
        idx = rel_index(q_hw, k_hw, q_step, self.side).to(self.attention_biases.device)
        nq, nk = q_hw[0] * q_hw[1], k_hw[0] * k_hw[1]
        return self.attention_biases.flatten(1)[:, idx].reshape(self.heads, nq, nk)


class Attention4D(_BiasTable):
    """Multi-head self-attention on an NCHW map, output width = input width.

    `side` is the largest input side; with `stride` a 3x3 depthwise conv s2 + BN runs first and the
    output is upsampled (bilinear, to the input's size) before the projection.
    """

    def __init__(self, channels: int, side: int, stride: bool = False, key_dim: int = 32, heads: int = 8,
                 attn_ratio: int = 4) -> None:
        super().__init__(heads, ceil_half(side) if stride else side)
        self.key_dim, self.d = key_dim, attn_ratio * key_dim
        qk, dh = heads * key_dim, heads * attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        self.stride_conv = ElasticDWConv2d(channels, 3, 2, bias=True) if stride else None
        self.stride_norm = ElasticBatchNorm(channels) if stride else None
        self.q, self.q_norm = ElasticConv2d(channels, qk, 1, bias=True), ElasticBatchNorm(qk)
        self.k, self.k_norm = ElasticConv2d(channels, qk, 1, bias=True), ElasticBatchNorm(qk)
        self.v, self.v_norm = ElasticConv2d(channels, dh, 1, bias=True), ElasticBatchNorm(dh)
        self.v_local, self.v_local_norm = ElasticDWConv2d(dh, 3, bias=True), ElasticBatchNorm(dh)
        self.talking_head1 = nn.Conv2d(heads, heads, 1)
        self.talking_head2 = nn.Conv2d(heads, heads, 1)
        self.proj, self.proj_norm = ElasticConv2d(dh, channels, 1, bias=True), ElasticBatchNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hi, wi = (int(s) for s in x.shape)  # static per export
        if self.stride_conv is not None and self.stride_norm is not None:
            x = self.stride_norm(self.stride_conv(x))
        h, w = int(x.shape[2]), int(x.shape[3])
        n, heads = h * w, self.heads
        q = self.q_norm(self.q(x)).reshape(b, heads, self.key_dim, n).transpose(2, 3)
        k = self.k_norm(self.k(x)).reshape(b, heads, self.key_dim, n)
        v = self.v_norm(self.v(x))
        v_local = self.v_local_norm(self.v_local(v))
        v = v.reshape(b, heads, self.d, n).transpose(2, 3)
        attn = (q @ k) * self.scale + self.bias((h, w), (h, w))
        attn = self.talking_head2(self.talking_head1(attn).softmax(-1))
        out = (attn @ v).transpose(2, 3).reshape(b, heads * self.d, h, w) + v_local
        if self.stride_conv is not None:
            out = F.interpolate(out, size=(hi, wi), mode="bilinear", align_corners=False)
        return self.proj_norm(self.proj(F.gelu(out), c))


class AttnFFN(FFN):
    """x + s1 * Attention4D(x), then the FFN block (x + s2 * Mlp(x)). With the attention switched off
    (`set_active(attention=False)`) it is the FFN block of the same weights."""

    def __init__(self, channels: int, expand: int, side: int, stride: bool = False) -> None:
        super().__init__(channels, expand)
        self.token_mixer = Attention4D(channels, side, stride)
        self.layer_scale_1 = layer_scale(channels)

    @classmethod
    def from_cfg(cls, cfg: EffAttnCfg) -> "AttnFFN":  # type: ignore[override]
        return cls(cfg.channels, cfg.expand, cfg.hw, stride=cfg.stride == 2)

    def set_active(self, expand: int | None = None, attention: bool = True) -> None:
        super().set_active(expand)
        self.active_attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active_attention:
            x = x + take(self.layer_scale_1, int(x.shape[1])) * self.token_mixer(x)
        return self.ffn(x)


class Attention4DDownsample(_BiasTable):
    """Attention from the full map (keys, values) to a half-side query grid, cin -> cout.

    Query: [3x3 depthwise conv s2 + 1x1 avg-pool s2] -> 1x1 conv + BN; v_local: 3x3 depthwise s2 + BN.
    `side` is the largest input side (the bias table's).
    """

    def __init__(self, cin: int, cout: int, side: int, key_dim: int = 16, heads: int = 8,
                 attn_ratio: int = 4) -> None:
        super().__init__(heads, side)
        self.key_dim, self.d = key_dim, attn_ratio * key_dim
        qk, dh = heads * key_dim, heads * attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        self.q_local = ElasticDWConv2d(cin, 3, 2, bias=True)
        self.q, self.q_norm = ElasticConv2d(cin, qk, 1, bias=True), ElasticBatchNorm(qk)
        self.k, self.k_norm = ElasticConv2d(cin, qk, 1, bias=True), ElasticBatchNorm(qk)
        self.v, self.v_norm = ElasticConv2d(cin, dh, 1, bias=True), ElasticBatchNorm(dh)
        self.v_local, self.v_local_norm = ElasticDWConv2d(dh, 3, 2, bias=True), ElasticBatchNorm(dh)
        self.proj, self.proj_norm = ElasticConv2d(dh, cout, 1, bias=True), ElasticBatchNorm(cout)

    def forward(self, x: torch.Tensor, cout: int) -> torch.Tensor:
        b, _, h, w = (int(s) for s in x.shape)
        h2, w2 = ceil_half(h), ceil_half(w)
        heads = self.heads
        q = self.q_norm(self.q(self.q_local(x) + F.avg_pool2d(x, 1, 2)))
        q = q.reshape(b, heads, self.key_dim, h2 * w2).transpose(2, 3)
        k = self.k_norm(self.k(x)).reshape(b, heads, self.key_dim, h * w)
        v = self.v_norm(self.v(x))
        v_local = self.v_local_norm(self.v_local(v))
        v = v.reshape(b, heads, self.d, h * w).transpose(2, 3)
        attn = ((q @ k) * self.scale + self.bias((h2, w2), (h, w), q_step=2)).softmax(-1)
        out = (attn @ v).transpose(2, 3).reshape(b, heads * self.d, h2, w2) + v_local
        return self.proj_norm(self.proj(F.gelu(out), cout))


class DualPathDownsample(nn.Module):
    """Between stages 2-3: [3x3 conv s2 + BN] + Attention4DDownsample, cin -> cout at half the side."""

    def __init__(self, cin: int, cout: int, side: int) -> None:
        super().__init__()
        self.conv = ElasticConv2d(cin, cout, 3, 2, bias=True)
        self.bn = ElasticBatchNorm(cout)
        self.attn = Attention4DDownsample(cin, cout, side)
        self.max_cout = cout
        self.set_active()

    @classmethod
    def from_cfg(cls, cfg: EffAttnDSCfg) -> "DualPathDownsample":
        return cls(cfg.cin, cfg.cout, cfg.hw)

    def set_active(self, cout: int | None = None) -> None:
        self.active_cout = check_active("cout", self.max_cout if cout is None else cout, self.max_cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.active_cout
        return self.attn(x, c) + self.bn(self.conv(x, c))
