"""First conv: 3x3 conv stride 2 on the image, BN, hswish."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks import FirstConvCfg
from nas.modules.layers import ElasticBatchNorm, ElasticConv2d, hswish


class FirstConv(nn.Module):
    def __init__(self, cout: int, cin: int = 3, kernel: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.conv = ElasticConv2d(cin, cout, kernel, stride)
        self.bn = ElasticBatchNorm(cout)
        self.max_cout = cout
        self.set_active()

    @classmethod
    def from_cfg(cls, cfg: FirstConvCfg) -> "FirstConv":
        return cls(cfg.cout, cfg.cin, cfg.kernel, cfg.stride)

    def set_active(self, cout: int | None = None) -> None:
        cout = self.max_cout if cout is None else cout
        if not 0 < cout <= self.max_cout:
            raise ValueError(f"active cout {cout} exceeds the block's maximum {self.max_cout}")
        self.active_cout = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hswish(self.bn(self.conv(x, self.active_cout)))
