"""FFN block on tokens: norm -> Linear C->mC -> hswish -> Linear mC->C -> residual."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks import FFNCfg
from nas.modules.layers import ElasticLayerNorm, ElasticLinear, hswish


class FFN(nn.Module):
    def __init__(self, channels: int, mlp: int) -> None:
        super().__init__()
        self.norm = ElasticLayerNorm(channels)
        self.fc1 = ElasticLinear(channels, channels * mlp)
        self.fc2 = ElasticLinear(channels * mlp, channels)
        self.max_mlp = mlp
        self.set_active()

    @classmethod
    def from_cfg(cls, cfg: FFNCfg) -> "FFN":
        return cls(cfg.channels, cfg.mlp)

    def set_active(self, mlp: int | None = None) -> None:
        mlp = self.max_mlp if mlp is None else mlp
        if not 0 < mlp <= self.max_mlp:
            raise ValueError(f"active mlp {mlp} exceeds the block's maximum {self.max_mlp}")
        self.active_mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = int(x.shape[-1])
        h = hswish(self.fc1(self.norm(x), c * self.active_mlp))
        return x + self.fc2(h, c)
