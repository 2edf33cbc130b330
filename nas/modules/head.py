"""Classification head on tokens: Linear C->6C, BN, hswish, mean over tokens, Linear 6C->1984,
hswish, dropout 0.2, Linear 1984->classes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks import HeadCfg
from nas.modules.layers import ElasticBatchNorm, ElasticLinear, hswish


class Head(nn.Module):
    def __init__(self, channels: int, hidden: int = 1984, expand: int = 6, classes: int = 1000,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.expand = expand
        self.expand_fc = ElasticLinear(channels, channels * expand)
        self.expand_bn = ElasticBatchNorm(channels * expand)
        self.hidden_fc = ElasticLinear(channels * expand, hidden)
        self.classifier = nn.Linear(hidden, classes)
        self.dropout = dropout

    @classmethod
    def from_cfg(cls, cfg: HeadCfg) -> "Head":
        return cls(cfg.channels, cfg.hidden, cfg.expand, cfg.classes)

    def set_active(self) -> None:
        """Nothing to choose: every width follows the input's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = (int(s) for s in x.shape)
        h = self.expand_fc(x, c * self.expand)
        h = hswish(self.expand_bn(h.reshape(b * n, -1)).reshape(b, n, -1))  # BN1d over channels
        h = hswish(self.hidden_fc(h.mean(1)))
        return self.classifier(F.dropout(h, self.dropout, self.training))
