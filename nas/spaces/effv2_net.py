"""EfficientFormerV2 networks from `nas.modules.effv2*` blocks, and the four released configurations.

`build_effv2(cfg)` builds the reference network of one configuration (widths, depths, vit_num, FFN
expansion per block, resolution), laid out as the official code; the registered search space
(`nas.spaces.efficientformerv2`) takes its released configurations from here and builds its networks
from the same block modules through `nas.supernet`. `python -m nas.spaces.effv2_net` prints parameters
and MACs of the released four.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.modules.effv2 import FFN, ConvDownsample, Head, Stem
from nas.modules.effv2_attention import AttnFFN, DualPathDownsample

STAGES = 4


def stage_side(resolution: int, stage: int) -> int:
    """Map side of stage 0..3: ceil(R / 2**(stage + 2)) (each stride-2 3x3 conv rounds up)."""
    return -(-resolution // 2 ** (stage + 2))


@dataclass(frozen=True)
class EffV2Config:
    """One network: widths C0..C3, depths, the number of AttnFFN blocks at the end of stages 2 and 3,
    and the FFN expansion of every block (`expands[stage][block]`)."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    vit_num: int
    expands: tuple[tuple[int, ...], ...]
    resolution: int = 224
    classes: int = 1000
    distillation: bool = True

    def __post_init__(self) -> None:
        if not len(self.widths) == len(self.depths) == len(self.expands) == STAGES:
            raise ValueError(f"widths, depths and expands need {STAGES} stages, got "
                             f"{len(self.widths)}, {len(self.depths)}, {len(self.expands)}")
        for i, (d, e) in enumerate(zip(self.depths, self.expands)):
            if d < 1 or len(e) != d:
                raise ValueError(f"stage {i}: depth {d} with {len(e)} expansion ratios")
        if not 0 <= self.vit_num <= min(self.depths[2:]):
            raise ValueError(f"vit_num {self.vit_num} exceeds the depth of stage 2 or 3 {self.depths[2:]}")
        if self.widths[0] % 2:
            raise ValueError(f"C0 = {self.widths[0]} must be even (the stem's first conv has C0/2 outputs)")

    def is_attention(self, stage: int, block: int) -> bool:
        """The last `vit_num` blocks of stages 2 and 3 are AttnFFN (stride attention in stage 2)."""
        return stage >= 2 and block >= self.depths[stage] - self.vit_num

    def to_dict(self) -> dict:
        return asdict(self)


def _per_stage(widths: tuple[int, ...], depths: tuple[int, ...], vit_num: int,
               expands2: tuple[int, ...], expands3: tuple[int, ...]) -> EffV2Config:
    """Released configurations: expansion 4 throughout stages 0-1."""
    expands = ((4,) * depths[0], (4,) * depths[1], expands2, expands3)
    return EffV2Config(widths, depths, vit_num, expands)


# shared/docs/efficientformerv2.md, "Released configurations" (snap-research/EfficientFormer).
RELEASED: dict[str, EffV2Config] = {
    "S0": _per_stage((32, 48, 96, 176), (2, 2, 6, 4), 2, (4, 3, 3, 3, 4, 4), (4, 3, 3, 4)),
    "S1": _per_stage((32, 48, 120, 224), (3, 3, 9, 6), 2, (4, 4, 3, 3, 3, 3, 4, 4, 4), (4, 4, 3, 3, 4, 4)),
    "S2": _per_stage((32, 64, 144, 288), (4, 4, 12, 8), 4, (4, 4, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4),
                     (4, 4, 3, 3, 3, 3, 4, 4)),
    "L": _per_stage((40, 80, 192, 384), (5, 5, 15, 10), 6, (4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4),
                    (4, 4, 4, 3, 3, 3, 3, 4, 4, 4)),
}
# The published parameter counts (millions, one decimal) and GMACs at 224.
PUBLISHED_PARAMS_M = {"S0": 3.5, "S1": 6.1, "S2": 12.6, "L": 26.1}
PUBLISHED_GMACS = {"S0": 0.40, "S1": 0.65, "S2": 1.25, "L": 2.56}


class EffV2Net(nn.Module):
    """Stem -> stage 0 -> conv downsample -> stage 1 -> conv downsample -> stage 2 -> dual-path
    attention downsample -> stage 3 -> head. NCHW throughout; image (B, 3, R, R) -> logits."""

    def __init__(self, cfg: EffV2Config) -> None:
        super().__init__()
        self.cfg = cfg
        w, r = cfg.widths, cfg.resolution
        self.stem = Stem(w[0])
        self.stages = nn.ModuleList()
        for i in range(STAGES):
            blocks = [AttnFFN(w[i], e, stage_side(r, i), stride=i == 2) if cfg.is_attention(i, j) else FFN(w[i], e)
                      for j, e in enumerate(cfg.expands[i])]
            self.stages.append(nn.ModuleList(blocks))
        self.downsamples = nn.ModuleList([ConvDownsample(w[0], w[1]), ConvDownsample(w[1], w[2]),
                                          DualPathDownsample(w[2], w[3], stage_side(r, 2))])
        self.head = Head(w[3], cfg.classes, cfg.distillation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                x = block(x)
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
        return self.head(x)


def build_effv2(cfg: EffV2Config | str) -> EffV2Net:
    """The network of `cfg` (or a released name), default init, eval mode."""
    if isinstance(cfg, str):
        if cfg not in RELEASED:
            raise ValueError(f"no released EfficientFormerV2 {cfg!r}; known: {list(RELEASED)}")
        cfg = RELEASED[cfg]
    return EffV2Net(cfg).eval()


def count_params(module: nn.Module) -> int:
    """Every parameter (the training-time network: BN, layer scales and bias tables included)."""
    return sum(p.numel() for p in module.parameters())


def count_params_published(module: nn.Module) -> int:
    """Parameters by the rule of the official profiler (snap-research/EfficientFormer `toolbox.py`), which
    produced the published 3.5M / 6.1M / 12.6M / 26.1M: per conv its weight plus `weight.shape[1]` (its
    input channels per group, counted in place of the bias), per linear layer weight plus bias; BatchNorm
    ("fused at inference"), layer scales and relative-position bias tables are not counted."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            n += m.weight.numel() + m.weight.shape[1]
        elif isinstance(m, nn.Linear):
            n += m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
    return n


def count_macs(module: nn.Module, resolution: int) -> int:
    """Multiply-accumulates of one image: convolutions, linear layers and the attention matmuls
    (torch's FLOP counter over aten ops, halved); norms, activations and the softmax are not counted."""
    x = torch.zeros(1, 3, resolution, resolution)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module.eval()(x)
    return counter.get_total_flops() // 2


def summary() -> list[dict]:
    rows = []
    for name, cfg in RELEASED.items():
        net = build_effv2(cfg)
        rows.append({"name": name, "params": count_params(net), "params_published_rule": count_params_published(net),
                     "published_params_m": PUBLISHED_PARAMS_M[name],
                     "macs": count_macs(net, cfg.resolution), "published_gmacs": PUBLISHED_GMACS[name]})
    return rows


if __name__ == "__main__":
    for row in summary():
        print(f"{row['name']:>3}: {row['params']:>10,} params, {row['params_published_rule']:>10,} by the official "
              f"profiler's rule (published {row['published_params_m']}M)  "
              f"{row['macs'] / 1e9:.3f} GMACs (published {row['published_gmacs']})")
