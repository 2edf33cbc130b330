"""Device probes: tiny models measured beside the networks they help predict.

`weight_stream`: a chain of K fully connected layers with distinct weights (N x N, no bias), applied
to M rows (tokens) of N inputs, K x N x N x 4 bytes of weights in all. Each layer finds its weights
evicted by the others, as each block of a network finds its weights evicted by the rest of the network.
The one-layer probe (K = 1) is the same layer alone, its weights wherever a block timed alone finds
them. So (chain - K x one layer) / (K x MB per layer) is what one MB of weights costs inside a network
beyond its cost alone.

`weight_stream_grid`: the probe at several sizes (`ProtocolSettings.probe_mb`, default 8 to 128 MB; a
network's weights span about 15 to 150 MB in fp32) and several row counts (`probe_tokens`, default 1,
4, 16, 64), each with its one-layer reference. Where the last-level cache holds the whole set, a MB
streams from it; beyond, from DRAM, with the step where the cache ends (56-64 MB on this host on
2026-12-03; it moves when other tenants of a shared cache come and go). Phones' last-level caches
(2-8 MB) are below the whole range. The rows matter: on this host cold weights cost a 16-64-row product
about 3x more per MB than a one-row product at 96 MB (`benchmarks/results/network_composition_choice.md`,
2026-12-05), and the in-network gap of real networks sits in their multi-row transformer blocks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class WeightStreamProbe:
    width: int = 512  # N: each layer holds N x N float32 weights (1 MiB at 512)
    layers: int = 32  # K
    tokens: int = 1  # M: rows each layer multiplies (1: a vector)

    @property
    def key(self) -> str:  # the store key (kind "probe") and the export cache's name
        base = f"probe_weightstream_{self.width}x{self.layers}"
        return base if self.tokens == 1 else f"{base}_t{self.tokens}"

    @property
    def weight_mb(self) -> float:
        return self.layers * self.width * self.width * 4 / 2**20

    def module(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(*[nn.Linear(self.width, self.width, bias=False) for _ in range(self.layers)]).eval()

    def example(self) -> torch.Tensor:
        shape = (1, self.width) if self.tokens == 1 else (1, self.tokens, self.width)
        return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def weight_stream_grid(sizes_mb: tuple[int, ...], tokens: tuple[int, ...]) -> tuple[WeightStreamProbe, ...]:
    """For each row count: the one-layer reference, then the probe at each size (whole MB: 512-wide layers
    of 1 MiB each)."""
    return tuple(WeightStreamProbe(512, k, m) for m in tokens for k in dict.fromkeys((1, *map(int, sizes_mb))))
