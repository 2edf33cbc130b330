"""Device probes: tiny models measured beside the networks they help predict.

`weight_stream`: a chain of K fully connected layers with distinct weights (1 x N inputs, no bias),
K x N x N x 4 bytes in all. Each layer finds its weights evicted by the others, as each block of a
network finds its weights evicted by the rest of the network, and a 1 x N product is pure weight
traffic, so median / (K x MB per layer) is the device's time to stream one MB of weights when K x MB
of them cycle through its caches.

`weight_stream_curve`: the probe at several sizes (`ProtocolSettings.probe_mb`, default 8 to 128 MB;
a network's weights span about 15 to 150 MB in fp32). Where the last-level cache holds the whole set,
a MB streams from it; beyond, from DRAM, about twice as slow per MB on this host, with the step where
the cache ends (56-64 MB here on 2026-12-03; it moves when other tenants of a shared cache come and
go). Phones' last-level caches (2-8 MB) are below the whole range, so there the curve is flat.
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




def weight_stream_curve(sizes_mb: tuple[int, ...]) -> tuple[WeightStreamProbe, ...]:
    """The weight-stream probe at each size (whole MB: 512-wide layers of 1 MiB each)."""
    return tuple(WeightStreamProbe(512, int(mb)) for mb in sizes_mb)
