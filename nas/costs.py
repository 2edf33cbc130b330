"""Analytical costs: the ONE feature function used by profiler, predictor and nas.

Every block is decomposed into the ops its PyTorch module runs. Each op carries MACs, params,
bytes read/written per tensor kind (activations, weights, attention maps; fp32) and parallelism
descriptors (independent work items, innermost channel count against SIMD widths). Blocks and
subnets aggregate these into a flat feature dict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from nas.blocks import (
    AttentionCfg,
    BlockCfg,
    EffAttnCfg,
    EffAttnDSCfg,
    EffConvDSCfg,
    EffFFNCfg,
    EffHeadCfg,
    EffStemCfg,
    FFNCfg,
    FirstConvCfg,
    HeadCfg,
    MBConvCfg,
    TransDSCfg,
    ceil_div,
)
from nas.searchspace import SearchSpace
from nas.subnet import Subnet

BYTES_PER_ELEMENT = 4  # fp32 everywhere (TFLite CPU fp32, as in the published LUTs)
SIMD_WIDTHS = (4, 8, 16)
OP_KINDS = ("conv", "conv1x1", "dwconv", "linear", "matmul", "elementwise", "softmax", "norm", "pool")


@dataclass(frozen=True)
class OpCost:
    name: str
    kind: str  # one of OP_KINDS
    macs: int
    params: int
    act_read_bytes: int
    act_write_bytes: int
    weight_bytes: int
    attn_bytes: int  # attention-map traffic (read + write), part of act_* too
    work_items: int  # independent output rows/pixels that threads can split
    channels: int  # innermost (vectorised) dimension
    macs_ref: int  # MACs under the released counter's conventions (search-space.md section 3)


def simd_utilisation(channels: int, width: int) -> float:
    """Share of useful lanes when `channels` is processed `width` at a time (the staircase)."""
    if channels <= 0:
        return 1.0
    return channels / (ceil_div(channels, width) * width)


def _b(elements: int) -> int:
    return elements * BYTES_PER_ELEMENT


def _conv(name: str, kind: str, hw_in: int, hw_out: int, cin: int, cout: int, k: int, groups: int = 1,
          bias_params: int = 0, ref: bool = True, ref_factor: int | None = None) -> OpCost:
    per_out = (cin // groups) * k * k
    macs = hw_out * hw_out * cout * per_out
    params = cout * per_out + bias_params
    ref_macs = macs if ref_factor is None else hw_out * hw_out * cout * ref_factor
    return OpCost(name, kind, macs, params, _b(hw_in * hw_in * cin), _b(hw_out * hw_out * cout), _b(params), 0,
                  hw_out * hw_out, cout, ref_macs if ref else 0)


def _linear(name: str, tokens: int, cin: int, cout: int, bias: bool, ref: bool = True) -> OpCost:
    params = cin * cout + (cout if bias else 0)
    macs = tokens * cin * cout
    return OpCost(name, "linear", macs, params, _b(tokens * cin), _b(tokens * cout), _b(params), 0, tokens, cout,
                  macs if ref else 0)


def _elementwise(name: str, elements: int, channels: int, reads: int = 1, kind: str = "elementwise",
                 params: int = 0, attn: bool = False) -> OpCost:
    traffic = _b(elements * (reads + 1))
    return OpCost(name, kind, 0, params, _b(elements * reads), _b(elements), _b(params), traffic if attn else 0,
                  max(1, elements // max(1, channels)), channels, 0)


def _mbconv_ops(hw: int, cin: int, cout: int, e: int, s: int, k: int, se: bool, ref_se: bool,
                ref_shortcut: bool) -> list[OpCost]:
    inner = cin * e
    ho = ceil_div(hw, s)
    ops: list[OpCost] = []
    if e != 1:
        ops.append(_conv("expand", "conv1x1", hw, hw, cin, inner, 1, bias_params=2 * inner))
        ops.append(_elementwise("expand_act", hw * hw * inner, inner))
    ops.append(_conv("dw", "dwconv", hw, ho, inner, inner, k, groups=inner, bias_params=2 * inner))
    ops.append(_elementwise("dw_act", ho * ho * inner, inner))
    if se:
        mid = max(1, inner // 4)
        ops.append(_elementwise("se_pool", inner, inner, reads=ho * ho, kind="pool"))
        ops.append(_linear("se_fc1", 1, inner, mid, bias=True, ref=ref_se))
        ops.append(_linear("se_fc2", 1, mid, inner, bias=True, ref=ref_se))
        ops.append(_elementwise("se_scale", ho * ho * inner, inner, reads=2))
    ops.append(_conv("project", "conv1x1", ho, ho, inner, cout, 1, bias_params=2 * cout))
    if s == 1 and cin == cout:
        ops.append(_elementwise("residual", ho * ho * cout, cout, reads=2))
    else:
        if s != 1:
            ops.append(_elementwise("shortcut_pool", ho * ho * cin, cin, reads=4, kind="pool"))
        if cin != cout:
            ops.append(_conv("shortcut", "conv1x1", ho, ho, cin, cout, 1, ref=ref_shortcut and s != 1))
        ops.append(_elementwise("residual", ho * ho * cout, cout, reads=2))
    return ops


def _attention_ops(cfg: AttentionCfg) -> list[OpCost]:
    n, c, h = cfg.hw * cfg.hw, cfg.channels, cfg.heads
    cv = h * cfg.head_dim * cfg.v_scale
    qk_dim = h * cfg.head_dim
    attn_elems = h * n * n
    return [
        _elementwise("norm", n * c, c, kind="norm", params=2 * c),
        _linear("qkv", n, c, 2 * qk_dim + cv, bias=False),
        _conv("v_dw", "dwconv", cfg.hw, cfg.hw, cv, cv, 3, groups=cv, bias_params=cv, ref_factor=1),
        OpCost("qk", "matmul", attn_elems * cfg.head_dim, 0, _b(2 * n * qk_dim), _b(attn_elems), 0,
               _b(attn_elems), h * n, n, attn_elems * cfg.head_dim),
        _elementwise("pos_bias", attn_elems, n, reads=2, params=h * n, attn=True),
        _elementwise("softmax", attn_elems, n, kind="softmax", attn=True),
        OpCost("av", "matmul", attn_elems * cfg.head_dim * cfg.v_scale, 0, _b(attn_elems + n * cv), _b(n * cv), 0,
               _b(attn_elems), h * n, cfg.head_dim * cfg.v_scale, attn_elems * cfg.head_dim * cfg.v_scale),
        _elementwise("act", n * cv, cv),
        _linear("proj", n, cv, c, bias=True),
        _elementwise("residual", n * c, c, reads=2),
    ]


def _ffn_ops(cfg: FFNCfg) -> list[OpCost]:
    n, c, m = cfg.hw * cfg.hw, cfg.channels, cfg.mlp
    return [
        _elementwise("norm", n * c, c, kind="norm", params=2 * c),
        _linear("fc1", n, c, m * c, bias=True),
        _elementwise("act", n * m * c, m * c),
        _linear("fc2", n, m * c, c, bias=True),
        _elementwise("residual", n * c, c, reads=2),
    ]


def _head_ops(cfg: HeadCfg) -> list[OpCost]:
    n, c, wide = cfg.hw * cfg.hw, cfg.channels, cfg.channels * cfg.expand
    return [
        _linear("expand", n, c, wide, bias=True),
        _elementwise("expand_bn_act", n * wide, wide, params=2 * wide),
        _elementwise("mean", wide, wide, reads=n, kind="pool"),
        _linear("hidden", 1, wide, cfg.hidden, bias=True),
        _elementwise("hidden_act", cfg.hidden, cfg.hidden),
        _linear("classifier", 1, cfg.hidden, cfg.classes, bias=True),
    ]


# ---- EfficientFormerV2 -------------------------------------------------------------------------------
# Parameters by the official profiler's rule (snap-research/EfficientFormer `toolbox.py`), which made the
# published 3.5M / 6.1M / 12.6M / 26.1M: per conv its weight plus its input channels per group (counted in
# place of the bias), per linear layer weight plus bias; BatchNorm (fused at inference), layer scales and
# relative-position bias tables are not counted. MACs: convolutions, linear layers and attention matmuls
# (what torch's FLOP counter counts); macs_ref is the same count.

def _effconv(name: str, hw_in: int, hw_out: int, cin: int, cout: int, k: int = 1, depthwise: bool = False) -> OpCost:
    groups = cin if depthwise else 1
    kind = "dwconv" if depthwise else ("conv1x1" if k == 1 else "conv")
    return _conv(name, kind, hw_in, hw_out, cin, cout, k, groups=groups, bias_params=cin // groups)


def _bn_act(name: str, hw: int, c: int, act: bool = True) -> OpCost:
    """BatchNorm (+ GELU): elementwise, its parameters uncounted (fused)."""
    return _elementwise(name, hw * hw * c, c, kind="norm" if not act else "elementwise")


def _matmul(name: str, heads: int, nq: int, nk: int, inner: int, out_cols: int, reads: int, writes: int) -> OpCost:
    macs = heads * nq * nk * inner
    return OpCost(name, "matmul", macs, 0, _b(reads), _b(writes), 0, _b(heads * nq * nk), heads * nq, out_cols, macs)


def _eff_mlp_ops(hw: int, c: int, e: int) -> list[OpCost]:
    hidden = c * e
    return [
        _effconv("fc1", hw, hw, c, hidden),
        _bn_act("fc1_bn_act", hw, hidden),
        _effconv("mid", hw, hw, hidden, hidden, 3, depthwise=True),
        _bn_act("mid_bn_act", hw, hidden),
        _effconv("fc2", hw, hw, hidden, c),
        _bn_act("fc2_bn", hw, c, act=False),
        _elementwise("residual", hw * hw * c, c, reads=2),
    ]


def _eff_attention_ops(cfg: EffAttnCfg, key_dim: int = 32, heads: int = 8, attn_ratio: int = 4) -> list[OpCost]:
    hw, c, s = cfg.hw, cfg.channels, cfg.attn_hw
    n, qk, dh = s * s, heads * key_dim, heads * attn_ratio * key_dim
    ops: list[OpCost] = []
    if cfg.stride != 1:
        ops += [_effconv("stride_conv", hw, s, c, c, 3, depthwise=True), _bn_act("stride_bn", s, c, act=False)]
    ops += [
        _effconv("q", s, s, c, qk), _effconv("k", s, s, c, qk), _effconv("v", s, s, c, dh),
        _bn_act("qkv_bn", s, 2 * qk + dh, act=False),
        _effconv("v_local", s, s, dh, dh, 3, depthwise=True), _bn_act("v_local_bn", s, dh, act=False),
        _matmul("qk", heads, n, n, key_dim, n, 2 * n * qk, heads * n * n),
        _elementwise("pos_bias", heads * n * n, n, reads=2, attn=True),
        _conv("talking_head1", "conv1x1", n, n, heads, heads, 1, bias_params=heads),
        _elementwise("softmax", heads * n * n, n, kind="softmax", attn=True),
        _conv("talking_head2", "conv1x1", n, n, heads, heads, 1, bias_params=heads),
        _matmul("av", heads, n, n, attn_ratio * key_dim, attn_ratio * key_dim, heads * n * n + n * dh, n * dh),
        _elementwise("v_local_add", n * dh, dh, reads=2),
    ]
    if cfg.stride != 1:
        ops.append(_elementwise("upsample", hw * hw * dh, dh, reads=1))
    ops += [
        _elementwise("act", hw * hw * dh, dh),
        _effconv("proj", hw, hw, dh, c), _bn_act("proj_bn", hw, c, act=False),
        _elementwise("residual", hw * hw * c, c, reads=2),
    ]
    return ops


def _eff_attnds_ops(cfg: EffAttnDSCfg, key_dim: int = 16, heads: int = 8, attn_ratio: int = 4) -> list[OpCost]:
    hw, ho, cin, cout = cfg.hw, cfg.hw_out, cfg.cin, cfg.cout
    n, n2, qk, dh = hw * hw, ho * ho, heads * key_dim, heads * attn_ratio * key_dim
    return [
        _effconv("conv", hw, ho, cin, cout, 3), _bn_act("conv_bn", ho, cout, act=False),
        _effconv("q_local", hw, ho, cin, cin, 3, depthwise=True),
        _elementwise("q_pool", ho * ho * cin, cin, kind="pool"),
        _elementwise("q_add", ho * ho * cin, cin, reads=2),
        _effconv("q", ho, ho, cin, qk), _effconv("k", hw, hw, cin, qk), _effconv("v", hw, hw, cin, dh),
        _bn_act("qkv_bn", hw, qk + dh, act=False),
        _effconv("v_local", hw, ho, dh, dh, 3, depthwise=True), _bn_act("v_local_bn", ho, dh, act=False),
        _matmul("qk", heads, n2, n, key_dim, n, (n2 + n) * qk, heads * n2 * n),
        _elementwise("pos_bias", heads * n2 * n, n, reads=2, attn=True),
        _elementwise("softmax", heads * n2 * n, n, kind="softmax", attn=True),
        _matmul("av", heads, n2, n, attn_ratio * key_dim, attn_ratio * key_dim, heads * n2 * n + n * dh, n2 * dh),
        _elementwise("v_local_add", n2 * dh, dh, reads=2),
        _elementwise("act", n2 * dh, dh),
        _effconv("proj", ho, ho, dh, cout), _bn_act("proj_bn", ho, cout, act=False),
        _elementwise("sum", n2 * cout, cout, reads=2),
    ]


def _eff_ops(cfg: BlockCfg) -> list[OpCost] | None:
    """The ops of an EfficientFormerV2 block; None for another family's."""
    if isinstance(cfg, EffStemCfg):
        h1, h2, c = ceil_div(cfg.resolution, 2), cfg.hw_out, cfg.cout
        return [_effconv("conv1", cfg.resolution, h1, 3, c // 2, 3), _bn_act("bn1_act", h1, c // 2),
                _effconv("conv2", h1, h2, c // 2, c, 3), _bn_act("bn2_act", h2, c)]
    if isinstance(cfg, EffFFNCfg):
        return _eff_mlp_ops(cfg.hw, cfg.channels, cfg.expand)
    if isinstance(cfg, EffAttnCfg):
        return _eff_attention_ops(cfg) + _eff_mlp_ops(cfg.hw, cfg.channels, cfg.expand)
    if isinstance(cfg, EffConvDSCfg):
        return [_effconv("conv", cfg.hw, cfg.hw_out, cfg.cin, cfg.cout, 3),
                _bn_act("bn", cfg.hw_out, cfg.cout, act=False)]
    if isinstance(cfg, EffAttnDSCfg):
        return _eff_attnds_ops(cfg)
    if isinstance(cfg, EffHeadCfg):
        n, c = cfg.hw * cfg.hw, cfg.channels
        return [_bn_act("norm", cfg.hw, c, act=False), _elementwise("mean", c, c, reads=n, kind="pool"),
                _linear("head", 1, c, cfg.classes, bias=True), _linear("dist_head", 1, c, cfg.classes, bias=True),
                _elementwise("average", cfg.classes, cfg.classes, reads=2)]
    return None


@lru_cache(maxsize=65536)
def block_ops(cfg: BlockCfg) -> tuple[OpCost, ...]:
    """The ops a block runs, with their costs."""
    if isinstance(cfg, FirstConvCfg):
        ho = cfg.hw_out
        return (
            _conv("conv", "conv", cfg.resolution, ho, cfg.cin, cfg.cout, cfg.kernel, bias_params=2 * cfg.cout),
            _elementwise("act", ho * ho * cfg.cout, cfg.cout),
        )
    if isinstance(cfg, MBConvCfg):
        return tuple(_mbconv_ops(cfg.hw, cfg.cin, cfg.cout, cfg.expand, cfg.stride, cfg.kernel, cfg.se,
                                 ref_se=True, ref_shortcut=True))
    if isinstance(cfg, TransDSCfg):
        return tuple(_mbconv_ops(cfg.hw, cfg.cin, cfg.cout, cfg.expand, cfg.stride, cfg.kernel, True,
                                 ref_se=False, ref_shortcut=False))
    if isinstance(cfg, AttentionCfg):
        return tuple(_attention_ops(cfg))
    if isinstance(cfg, FFNCfg):
        return tuple(_ffn_ops(cfg))
    if isinstance(cfg, HeadCfg):
        return tuple(_head_ops(cfg))
    eff = _eff_ops(cfg)
    if eff is not None:
        return tuple(eff)
    raise TypeError(f"no cost model for block config {cfg!r}")


FEATURE_NAMES: tuple[str, ...] = (
    "macs", "macs_ref", "params", "act_read_bytes", "act_write_bytes", "weight_bytes", "attn_bytes",
    "total_bytes", "n_ops", "max_op_bytes", "min_work_items", "mean_work_items",
    *(f"simd{w}_util" for w in SIMD_WIDTHS),
    *(f"macs_{k}" for k in OP_KINDS),
    *(f"bytes_{k}" for k in OP_KINDS),
)


def aggregate(ops: Iterable[OpCost]) -> dict[str, float]:
    ops = list(ops)
    macs = sum(o.macs for o in ops)
    out: dict[str, float] = {
        "macs": macs,
        "macs_ref": sum(o.macs_ref for o in ops),
        "params": sum(o.params for o in ops),
        "act_read_bytes": sum(o.act_read_bytes for o in ops),
        "act_write_bytes": sum(o.act_write_bytes for o in ops),
        "weight_bytes": sum(o.weight_bytes for o in ops),
        "attn_bytes": sum(o.attn_bytes for o in ops),
        "n_ops": len(ops),
        "max_op_bytes": max((o.act_read_bytes + o.act_write_bytes + o.weight_bytes for o in ops), default=0),
        "min_work_items": min((o.work_items for o in ops), default=0),
        "mean_work_items": sum(o.work_items for o in ops) / max(1, len(ops)),
    }
    out["total_bytes"] = out["act_read_bytes"] + out["act_write_bytes"] + out["weight_bytes"]
    for w in SIMD_WIDTHS:
        # MAC-weighted lane utilisation: how much of the vector units the arithmetic can use.
        out[f"simd{w}_util"] = (sum(o.macs * simd_utilisation(o.channels, w) for o in ops) / macs) if macs else 1.0
    for k in OP_KINDS:
        out[f"macs_{k}"] = sum(o.macs for o in ops if o.kind == k)
        out[f"bytes_{k}"] = sum(o.act_read_bytes + o.act_write_bytes + o.weight_bytes for o in ops if o.kind == k)
    return {n: out[n] for n in FEATURE_NAMES}


@lru_cache(maxsize=65536)
def _block_features(cfg: BlockCfg) -> tuple[tuple[str, float], ...]:
    return tuple(aggregate(block_ops(cfg)).items())


def block_features(cfg: BlockCfg) -> dict[str, float]:
    """Analytical features of one block (FEATURE_NAMES, in that order)."""
    return dict(_block_features(cfg))


def subnet_features(blocks: Iterable[BlockCfg]) -> dict[str, float]:
    """Analytical features of a whole subnet (its blocks in order)."""
    ops = [op for b in blocks for op in block_ops(b)]
    return aggregate(ops)


@lru_cache(maxsize=65536)
def _subnet_costs(space: SearchSpace, sub: Subnet) -> tuple[tuple[str, float], ...]:
    return tuple(subnet_features(space.blocks_of(sub)).items())


def subnet_costs(space: SearchSpace, sub: Subnet) -> dict[str, float]:
    """Analytical features of a subnet of `space` (FEATURE_NAMES, in that order), computed once per
    distinct (space, subnet) and cached: what every caller of `subnet_features(space.blocks_of(sub))`
    wants. Raises InvalidSubnet for a subnet the space does not contain."""
    return dict(_subnet_costs(space, sub))


def log_features(feats: dict[str, float]) -> list[float]:
    """Features on a log scale (they span 6 orders of magnitude) in FEATURE_NAMES order."""
    return [math.log1p(feats[n]) if not n.startswith("simd") else feats[n] for n in FEATURE_NAMES]


@lru_cache(maxsize=1 << 18)
def subnet_size(space: SearchSpace, sub: Subnet) -> tuple[float, float]:
    """(MACs, params) of a subnet: the sums of its blocks' cached `nas.costs.block_features`, equal to
    `subnet_costs(space, sub)`'s (both add up the same ops) at a tenth of the cost of its full feature set."""
    macs = params = 0.0
    for cfg in space.blocks_of(sub):
        f = block_features(cfg)
        macs += f["macs"]
        params += f["params"]
    return macs, params
