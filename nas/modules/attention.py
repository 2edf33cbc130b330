"""Attention block on tokens (search-space.md section 2).

C channels, h = C/16 heads, key dim 16, value dim 16*v: norm -> qkv Linear C -> C*(2+v) (no bias)
-> 3x3 depthwise conv (bias) on V over the token grid -> softmax(q k^T / 4 + relative-position
bias) -> times V -> hswish -> Linear h*16v -> C (bias) -> add residual.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks import AttentionCfg
from nas.modules.layers import (
    ElasticDWConv2d,
    ElasticLayerNorm,
    ElasticLinear,
    hswish,
    take,
    to_grid,
    to_tokens,
)


class QKVLinear(nn.Module):
    """Fused q/k/v projection without bias. The max weight holds three row segments
    [q: C_max | k: C_max | v: C_max * v_max]; the active weight is the leading slice of each."""

    def __init__(self, channels: int, v_scale: int) -> None:
        super().__init__()
        self.channels, self.v_scale = channels, v_scale
        self.weight = nn.Parameter(torch.empty(channels * (2 + v_scale), channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def active_weight(self, c: int, v: int) -> torch.Tensor:
        cm = self.channels
        if c == cm and v == self.v_scale:
            return self.weight
        w = self.weight
        return torch.cat([w[:c, :c], w[cm:cm + c, :c], w[2 * cm:2 * cm + c * v, :c]])

    def forward(self, x: torch.Tensor, v: int) -> torch.Tensor:
        return F.linear(x, self.active_weight(int(x.shape[-1]), v))

    @torch.no_grad()
    def inherit_from(self, src: "QKVLinear") -> None:
        self.weight.copy_(src.active_weight(self.channels, self.v_scale))


@lru_cache(maxsize=64)
def _rel_index(side: int, table_side: int) -> torch.Tensor:
    """(N*N,) index into a flattened (table_side, table_side) table: |dy| * table_side + |dx|."""
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    y, x = y.flatten(), x.flatten()
    idx = (y[:, None] - y[None, :]).abs() * table_side + (x[:, None] - x[None, :]).abs()
    return idx.flatten()


class Attention(nn.Module):
    def __init__(self, channels: int, v_scale: int, side: int, head_dim: int = 16) -> None:
        """`side` is the largest token-grid side the block runs at (the bias table's size)."""
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"channels {channels} is not a multiple of the head dim {head_dim}")
        self.head_dim, self.side, self.max_v = head_dim, side, v_scale
        heads = channels // head_dim
        self.norm = ElasticLayerNorm(channels)
        self.qkv = QKVLinear(channels, v_scale)
        self.v_conv = ElasticDWConv2d(channels * v_scale, 3, bias=True)
        # Learnable bias per head indexed by (|dy|, |dx|): any side up to `side` reads its corner.
        self.rel_bias = nn.Parameter(torch.zeros(heads, side, side))
        self.proj = ElasticLinear(channels * v_scale, channels)
        self.register_buffer("rel_index", _rel_index(side, side).clone(), persistent=False)
        self.set_active()

    @classmethod
    def from_cfg(cls, cfg: AttentionCfg) -> "Attention":
        return cls(cfg.channels, cfg.v_scale, cfg.hw, cfg.head_dim)

    def set_active(self, v_scale: int | None = None) -> None:
        v = self.max_v if v_scale is None else v_scale
        if not 0 < v <= self.max_v:
            raise ValueError(f"active v_scale {v} exceeds the block's maximum {self.max_v}")
        self.active_v = v

    def _bias(self, heads: int, side: int) -> torch.Tensor:
        if side > self.side:
            raise ValueError(f"token grid side {side} exceeds the bias table's {self.side}")
        idx = self.rel_index if side == self.side else _rel_index(side, self.side).to(self.rel_bias.device)
        n = side * side
        return take(self.rel_bias, heads).flatten(1)[:, idx].reshape(heads, n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = (int(s) for s in x.shape)  # static per export: the ONNX tracer would keep them symbolic
        side, heads, d, v = math.isqrt(n), c // self.head_dim, self.head_dim, self.active_v
        qkv = self.qkv(self.norm(x), v)
        q, k, val = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
        val = to_tokens(self.v_conv(to_grid(val)))
        q = q.reshape(b, n, heads, d).transpose(1, 2) * d ** -0.5
        k = k.reshape(b, n, heads, d).transpose(1, 2)
        val = val.reshape(b, n, heads, d * v).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1) + self._bias(heads, side)).softmax(-1)
        out = (attn @ val).transpose(1, 2).reshape(b, n, c * v)
        return x + self.proj(hswish(out), c)

