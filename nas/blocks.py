"""Block catalogue: one typed config per block type and its one canonical string key.

The key format is the published nn-Meter/ElasticViT LUT format (see shared docs), so published
phone measurements and ours join on it. `parse_key(key)` is the exact inverse of `cfg.key`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, ClassVar, Union

ACT = "hard_swish"


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class FirstConvCfg:
    """3x3 conv stride 2 on the image, BN, hswish. Input NHWC (1, R, R, 3)."""

    type: ClassVar[str] = "firstconv"
    resolution: int
    cout: int
    cin: int = 3
    stride: int = 2
    kernel: int = 3

    @property
    def key(self) -> str:
        return f"firstconv_{self.resolution}_{self.cin}_{self.cout}_{self.stride}_{self.kernel}"

    @property
    def hw_in(self) -> int:
        return self.resolution

    @property
    def hw_out(self) -> int:
        return ceil_div(self.resolution, self.stride)


@dataclass(frozen=True)
class MBConvCfg:
    """Inverted residual (conv stages and stem). Input NHWC (1, hw, hw, cin)."""

    type: ClassVar[str] = "conv"
    hw: int
    cin: int
    cout: int
    expand: int
    stride: int
    kernel: int
    se: bool

    @property
    def key(self) -> str:
        se = "se" if self.se else "nose"
        return f"conv_{self.hw}_{self.cin}_{self.cout}_{self.expand}_{self.stride}_{ACT}_{self.kernel}_{se}"

    @property
    def hw_out(self) -> int:
        return ceil_div(self.hw, self.stride)


@dataclass(frozen=True)
class TransDSCfg:
    """Downsampling MBConv (kernel 3, SE, expand `expand`) on the token grid. Input tokens (1, hw*hw, cin)."""

    type: ClassVar[str] = "transds"
    hw: int
    cin: int
    cout: int
    stride: int
    expand: int = 6
    kernel: int = 3

    @property
    def key(self) -> str:
        return f"transds_{self.hw}_{self.cin}_{self.cout}_{self.stride}_{self.expand}"

    @property
    def hw_out(self) -> int:
        return ceil_div(self.hw, self.stride)


@dataclass(frozen=True)
class AttentionCfg:
    """Attention block with residual, run at side hw on tokens (1, hw*hw, channels)."""

    type: ClassVar[str] = "transattn"
    hw: int
    channels: int
    v_scale: int
    head_dim: int = 16

    @property
    def key(self) -> str:
        return f"transattn_{self.hw}_{self.channels}_{ACT}_{self.v_scale}_ln"

    @property
    def heads(self) -> int:
        return self.channels // self.head_dim


@dataclass(frozen=True)
class FFNCfg:
    """FFN block with residual on tokens (1, hw*hw, channels)."""

    type: ClassVar[str] = "transffn"
    hw: int
    channels: int
    mlp: int

    @property
    def key(self) -> str:
        return f"transffn_{self.hw}_{self.channels}_{self.mlp}_{ACT}_ln"


@dataclass(frozen=True)
class HeadCfg:
    """Classification head on tokens (1, hw*hw, channels): C->6C, mean, 6C->1984, 1984->classes."""

    type: ClassVar[str] = "mbpool"
    hw: int
    channels: int
    hidden: int = 1984
    expand: int = 6
    classes: int = 1000

    @property
    def key(self) -> str:
        return f"mbpool_{self.hw}_{self.channels}_{self.hidden}_{self.expand}_{ACT}"


# ---- EfficientFormerV2 (shared/docs/efficientformerv2.md): NCHW maps, BN, GELU ----------------------------

@dataclass(frozen=True)
class EffStemCfg:
    """Two 3x3 convs stride 2 (3 -> C/2 -> C), BN, GELU: the image (1, 3, R, R) to R/4."""

    type: ClassVar[str] = "effstem"
    resolution: int
    cout: int

    @property
    def key(self) -> str:
        return f"effstem_{self.resolution}_{self.cout}"

    @property
    def hw_out(self) -> int:
        return ceil_div(ceil_div(self.resolution, 2), 2)


@dataclass(frozen=True)
class EffFFNCfg:
    """The unified FFN block x + s * Mlp(x) (1x1 C -> eC, 3x3 depthwise, 1x1 eC -> C) on (1, C, hw, hw)."""

    type: ClassVar[str] = "effffn"
    hw: int
    channels: int
    expand: int

    @property
    def key(self) -> str:
        return f"effffn_{self.hw}_{self.channels}_{self.expand}"


@dataclass(frozen=True)
class EffAttnCfg:
    """AttnFFN: x + s1 * Attention4D(x) then the FFN block, on (1, C, hw, hw); stride 2 = stride attention
    (attention at half the side, upsampled before the projection)."""

    type: ClassVar[str] = "effattn"
    hw: int
    channels: int
    expand: int
    stride: int = 1

    @property
    def key(self) -> str:
        return f"effattn_{self.hw}_{self.channels}_{self.expand}_{self.stride}"

    @property
    def attn_hw(self) -> int:
        return ceil_div(self.hw, self.stride)


@dataclass(frozen=True)
class EffConvDSCfg:
    """Downsampling between stages 0-1 and 1-2: 3x3 conv stride 2 + BN, (1, cin, hw, hw) -> (1, cout, hw/2, hw/2)."""

    type: ClassVar[str] = "effconvds"
    hw: int
    cin: int
    cout: int

    @property
    def key(self) -> str:
        return f"effconvds_{self.hw}_{self.cin}_{self.cout}"

    @property
    def hw_out(self) -> int:
        return ceil_div(self.hw, 2)


@dataclass(frozen=True)
class EffAttnDSCfg:
    """Dual-path attention downsampling between stages 2-3: [3x3 conv s2 + BN] + Attention4DDownsample."""

    type: ClassVar[str] = "effattnds"
    hw: int
    cin: int
    cout: int

    @property
    def key(self) -> str:
        return f"effattnds_{self.hw}_{self.cin}_{self.cout}"

    @property
    def hw_out(self) -> int:
        return ceil_div(self.hw, 2)


@dataclass(frozen=True)
class EffHeadCfg:
    """BN, mean over positions, classifier and distillation Linear C -> classes (averaged), on (1, C, hw, hw)."""

    type: ClassVar[str] = "effhead"
    hw: int
    channels: int
    classes: int = 1000

    @property
    def key(self) -> str:
        return f"effhead_{self.hw}_{self.channels}"


BlockCfg = Union[FirstConvCfg, MBConvCfg, TransDSCfg, AttentionCfg, FFNCfg, HeadCfg,
                 EffStemCfg, EffFFNCfg, EffAttnCfg, EffConvDSCfg, EffAttnDSCfg, EffHeadCfg]
# Block types by the family of spaces that runs them; a learned latency model is fitted within one family
# (its type one-hot has that family's columns, so a new family never changes another's models).
BLOCK_FAMILIES: dict[str, tuple[type, ...]] = {
    "elasticvit": (FirstConvCfg, MBConvCfg, TransDSCfg, AttentionCfg, FFNCfg, HeadCfg),
    "efficientformerv2": (EffStemCfg, EffFFNCfg, EffAttnCfg, EffConvDSCfg, EffAttnDSCfg, EffHeadCfg),
}
BLOCK_TYPES: dict[str, type] = {c.type: c for types in BLOCK_FAMILIES.values() for c in types}
FAMILY_OF_TYPE: dict[str, str] = {c.type: fam for fam, types in BLOCK_FAMILIES.items() for c in types}


class KeyError_(ValueError):
    """A block key that does not follow the catalogue's format."""


def _ints(parts: list[str], key: str) -> list[int]:
    try:
        return [int(p) for p in parts]
    except ValueError as e:
        raise KeyError_(f"bad block key {key!r}: expected integers, got {parts}") from e


def _parse_firstconv(p: list[str], key: str) -> BlockCfg:
    r, cin, cout, s, k = _ints(p, key)
    return FirstConvCfg(resolution=r, cin=cin, cout=cout, stride=s, kernel=k)


def _parse_conv(p: list[str], key: str) -> BlockCfg:
    # conv_{hw}_{cin}_{cout}_{e}_{s}_hard_swish_{k}_{se}
    if len(p) != 9 or p[5:7] != ["hard", "swish"] or p[8] not in ("se", "nose"):
        raise KeyError_(f"bad conv key {key!r}")
    hw, cin, cout, e, s, k = _ints(p[:5] + [p[7]], key)
    return MBConvCfg(hw=hw, cin=cin, cout=cout, expand=e, stride=s, kernel=k, se=p[8] == "se")


def _parse_transds(p: list[str], key: str) -> BlockCfg:
    hw, cin, cout, s, de = _ints(p, key)
    return TransDSCfg(hw=hw, cin=cin, cout=cout, stride=s, expand=de)


def _parse_attn(p: list[str], key: str) -> BlockCfg:
    if len(p) != 6 or p[2:4] != ["hard", "swish"] or p[5] != "ln":
        raise KeyError_(f"bad transattn key {key!r}")
    hw, c, v = _ints([p[0], p[1], p[4]], key)
    return AttentionCfg(hw=hw, channels=c, v_scale=v)


def _parse_ffn(p: list[str], key: str) -> BlockCfg:
    if len(p) != 6 or p[3:5] != ["hard", "swish"] or p[5] != "ln":
        raise KeyError_(f"bad transffn key {key!r}")
    hw, c, m = _ints(p[:3], key)
    return FFNCfg(hw=hw, channels=c, mlp=m)


def _parse_head(p: list[str], key: str) -> BlockCfg:
    if len(p) != 6 or p[4:6] != ["hard", "swish"]:
        raise KeyError_(f"bad mbpool key {key!r}")
    hw, c, hidden, e = _ints(p[:4], key)
    return HeadCfg(hw=hw, channels=c, hidden=hidden, expand=e)


def _int_fields(cls: type) -> Callable[[list[str], str], BlockCfg]:
    """Parser of a key that is the type followed by the config's first fields as integers, in order."""
    names = [f.name for f in fields(cls) if f.name != "classes"]

    def parse(p: list[str], key: str) -> BlockCfg:
        if len(p) != len(names):
            raise KeyError_(f"bad {cls.type} key {key!r}: expected {len(names)} fields {names}")  # type: ignore[attr-defined]
        return cls(**dict(zip(names, _ints(p, key))))

    return parse


_PARSERS: dict[str, Callable[[list[str], str], BlockCfg]] = {
    **{c.type: _int_fields(c) for c in (EffStemCfg, EffFFNCfg, EffAttnCfg, EffConvDSCfg, EffAttnDSCfg, EffHeadCfg)},
    "firstconv": _parse_firstconv,
    "conv": _parse_conv,
    "transds": _parse_transds,
    "transattn": _parse_attn,
    "transffn": _parse_ffn,
    "mbpool": _parse_head,
}


def parse_key(key: str) -> BlockCfg:
    """Inverse of `cfg.key`; raises KeyError_ naming the problem."""
    head, _, rest = key.partition("_")
    parser = _PARSERS.get(head)
    if parser is None:
        raise KeyError_(f"unknown block type {head!r} in key {key!r}; known: {sorted(_PARSERS)}")
    try:
        cfg = parser(rest.split("_"), key)
    except (TypeError, ValueError) as e:
        if isinstance(e, KeyError_):
            raise
        raise KeyError_(f"bad block key {key!r}: {e}") from e
    if cfg.key != key:
        raise KeyError_(f"block key {key!r} is not canonical (canonical form: {cfg.key!r})")
    return cfg


def block_type(key: str) -> str:
    return key.partition("_")[0]
