"""EfficientFormerV2's convolutional blocks (shared/docs/efficientformerv2.md), NCHW, BN, GELU.

Stem, the unified FFN (also the FFN half of AttnFFN in `nas.modules.effv2_attention`), the conv
downsampling ("Embedding") and the head. Each holds the largest weights of its position and runs a
smaller configuration by slicing: input widths are read from the input, the output width and the
FFN expansion are set with `set_active`. Every conv has a bias, as in the released models.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks import EffConvDSCfg, EffFFNCfg, EffHeadCfg, EffStemCfg
from nas.modules.layers import ElasticBatchNorm, ElasticConv2d, ElasticDWConv2d, ElasticLinear, take

LAYER_SCALE_INIT = 1e-5


def layer_scale(channels: int) -> nn.Parameter:
    """Learnable per-channel scale of a residual branch, (C, 1, 1) as in the released checkpoints."""
    return nn.Parameter(torch.full((channels, 1, 1), LAYER_SCALE_INIT))


def check_active(name: str, value: int, maximum: int) -> int:
    if not 0 < value <= maximum:
        raise ValueError(f"active {name} {value} exceeds the block's maximum {maximum}")
    return value


class Stem(nn.Module):
    """3x3 conv s2 (3 -> C/2), BN, GELU, 3x3 conv s2 (C/2 -> C), BN, GELU: the image to R/4."""

    def __init__(self, cout: int, cin: int = 3) -> None:
        super().__init__()
        self.conv1 = ElasticConv2d(cin, cout // 2, 3, 2, bias=True)
        self.bn1 = ElasticBatchNorm(cout // 2)
        self.conv2 = ElasticConv2d(cout // 2, cout, 3, 2, bias=True)
        self.bn2 = ElasticBatchNorm(cout)
        self.max_cout = cout
        self.set_active()

    @classmethod
    def from_cfg(cls, cfg: EffStemCfg) -> "Stem":
        return cls(cfg.cout)

    def set_active(self, cout: int | None = None) -> None:
        self.active_cout = check_active("cout", self.max_cout if cout is None else cout, self.max_cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.active_cout
        x = F.gelu(self.bn1(self.conv1(x, c // 2)))
        return F.gelu(self.bn2(self.conv2(x, c)))


class Mlp(nn.Module):
    """1x1 conv C -> hidden, BN, GELU, 3x3 depthwise, BN, GELU, 1x1 conv hidden -> C, BN."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = ElasticConv2d(channels, hidden, 1, bias=True)
        self.norm1 = ElasticBatchNorm(hidden)
        self.mid = ElasticDWConv2d(hidden, 3, bias=True)
        self.mid_norm = ElasticBatchNorm(hidden)
        self.fc2 = ElasticConv2d(hidden, channels, 1, bias=True)
        self.norm2 = ElasticBatchNorm(channels)

    def forward(self, x: torch.Tensor, hidden: int) -> torch.Tensor:
        h = F.gelu(self.norm1(self.fc1(x, hidden)))
        h = F.gelu(self.mid_norm(self.mid(h)))
        return self.norm2(self.fc2(h, int(x.shape[1])))


class FFN(nn.Module):
    """The unified FFN block: x + s2 * Mlp(x), hidden width C * expand. Width from the input."""

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        self.mlp = Mlp(channels, channels * expand)
        self.layer_scale_2 = layer_scale(channels)
        self.max_expand = expand
        self.set_active()

    @classmethod
    def from_cfg(cls, cfg: EffFFNCfg) -> "FFN":
        return cls(cfg.channels, cfg.expand)

    def set_active(self, expand: int | None = None) -> None:
        self.active_expand = check_active("expand", self.max_expand if expand is None else expand, self.max_expand)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        c = int(x.shape[1])
        return x + take(self.layer_scale_2, c) * self.mlp(x, c * self.active_expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(x)


class ConvDownsample(nn.Module):
    """"Embedding" between stages 0-1 and 1-2: 3x3 conv stride 2 (cin -> cout), BN."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ElasticConv2d(cin, cout, 3, 2, bias=True)
        self.bn = ElasticBatchNorm(cout)
        self.max_cout = cout
        self.set_active()

    @classmethod
    def from_cfg(cls, cfg: EffConvDSCfg) -> "ConvDownsample":
        return cls(cfg.cin, cfg.cout)

    def set_active(self, cout: int | None = None) -> None:
        self.active_cout = check_active("cout", self.max_cout if cout is None else cout, self.max_cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x, self.active_cout))


class Head(nn.Module):
    """BN over C, mean over positions, classifier and distillation Linear C -> classes, averaged
    (the released models' inference output; `distillation=False` keeps the classifier only)."""

    def __init__(self, channels: int, classes: int = 1000, distillation: bool = True) -> None:
        super().__init__()
        self.norm = ElasticBatchNorm(channels)
        self.head = ElasticLinear(channels, classes)
        self.dist_head = ElasticLinear(channels, classes) if distillation else None

    @classmethod
    def from_cfg(cls, cfg: EffHeadCfg) -> "Head":
        return cls(cfg.channels, cfg.classes)

    def set_active(self) -> None:
        """Nothing to choose: the width follows the input's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).mean((2, 3))
        out = self.head(h)
        if self.dist_head is not None:
            out = (out + self.dist_head(h)) / 2
        return out
