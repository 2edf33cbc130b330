"""Device probes: tiny models measured once per device and run settings, next to the blocks.

`weight_stream`: a chain of K fully connected layers with distinct weights (1 x N inputs, no bias),
K x N x N x 4 bytes in all (32 MB by default: more than the last-level cache of phones, and about
a network's weights). Each layer finds its weights evicted by the others, as each block of a network
finds its weights evicted by the rest of the network, and a 1 x N product is pure weight traffic, so
median / (K x MB per layer) is the device's time to stream one MB of weights that are not in cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class WeightStreamProbe:
    width: int = 512  # N: each layer holds N x N float32 weights (1 MiB at 512)
    layers: int = 32  # K

    @property
    def key(self) -> str:  # the store key (kind "probe") and the export cache's name
        return f"probe_weightstream_{self.width}x{self.layers}"

    @property
    def weight_mb(self) -> float:
        return self.layers * self.width * self.width * 4 / 2**20

    def module(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(*[nn.Linear(self.width, self.width, bias=False) for _ in range(self.layers)]).eval()

    def example(self) -> torch.Tensor:
        return torch.randn(1, self.width, generator=torch.Generator().manual_seed(0))


WEIGHT_STREAM = WeightStreamProbe()
