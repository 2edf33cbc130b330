"""Deterministic weight initialisation from an explicit torch.Generator.

Block benchmarks and exports need reproducible, non-trivial weights (BN statistics and biases away
from identity, so numeric checks exercise every op), not trained ones. Export caches key on this
file's code (`nas.codehash`), so changing the rule re-converts.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from nas.modules.attention import Attention


@torch.no_grad()
def init_weights_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """LeCun-uniform weights, small uniform biases, norms near identity, BN statistics near (0, 1)."""
    for m in module.modules():
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm)):
            m.weight.uniform_(0.8, 1.2, generator=generator)
            m.bias.uniform_(-0.1, 0.1, generator=generator)
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.running_mean.uniform_(-0.1, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)
            continue
        for name, p in m.named_parameters(recurse=False):
            if isinstance(m, Attention) and name == "rel_bias":
                p.uniform_(-0.5, 0.5, generator=generator)
            elif p.dim() >= 2:
                bound = math.sqrt(3.0 / p[0].numel())
                p.uniform_(-bound, bound, generator=generator)
            else:
                p.uniform_(-0.1, 0.1, generator=generator)
    return module
