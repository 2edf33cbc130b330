"""Weight-sharing supernet (once-for-all mechanics) and standalone subnets, from the same blocks.

`Net` is the network: stem block -> stages (conv stages on NCHW maps; the map is flattened to
tokens before the first transformer stage) -> head; stage i runs its first `depths[i]` layers.
The blocks come from the space (`SearchSpace.layers_of`), so any space's networks are `Net`s.
A standalone subnet is a `Net` of exact-size blocks (`build_subnet`); the `Supernet` is a `Net` of
max-size blocks whose active sizes are set per subnet, and `get_active_subnet()` copies the
active slices into a standalone `Net`. State-dict names match between the two.
"""
from __future__ import annotations

import logging
import random
from typing import Iterator

import torch
from torch import nn

from nas.blocks import BlockCfg, MBConvCfg, TransDSCfg
from nas.modules import MBConv, activate, construct_block, inherit, init_weights_
from nas.modules.layers import to_tokens
from nas.registry import create_space
from nas.searchspace import SearchSpace
from nas.subnet import Subnet

log = logging.getLogger(__name__)

LayerCfgs = list[BlockCfg]  # one conv layer: [MBConv]; one transformer layer: [(TransDS,) Attention, FFN]


def layer_cfgs(space: SearchSpace, sub: Subnet) -> tuple[BlockCfg, list[list[LayerCfgs]], BlockCfg]:
    """`space.blocks_of(sub)` grouped into (stem block, per stage per layer block configs, head)."""
    return space.layers_of(sub)


def _layer(blocks: list[nn.Module]) -> nn.Module:
    return blocks[0] if len(blocks) == 1 else nn.Sequential(*blocks)


class Net(nn.Module):
    def __init__(self, first: nn.Module, stages: list[list[nn.Module]], kinds: list[str], head: nn.Module) -> None:
        super().__init__()
        self.first_conv = first
        self.stages = nn.ModuleList(nn.ModuleList(layers) for layers in stages)
        self.kinds = list(kinds)
        self.head = head
        self.depths = [len(layers) for layers in stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for kind, layers, depth in zip(self.kinds, self.stages, self.depths):
            if kind == "transformer" and x.dim() == 4:
                x = to_tokens(x)
            for layer in layers[:depth]:
                x = layer(x)
        return self.head(x)

    def active_blocks(self) -> Iterator[nn.Module]:
        """The blocks the forward pass runs, in order."""
        yield self.first_conv
        for layers, depth in zip(self.stages, self.depths):
            for layer in layers[:depth]:
                yield from (layer if isinstance(layer, nn.Sequential) else [layer])
        yield self.head


def _construct_net(space: SearchSpace, sub: Subnet) -> Net:
    first, stages, head = layer_cfgs(space, sub)
    modules = [[_layer([construct_block(c) for c in layer]) for layer in layers] for layers in stages]
    kinds = [s.kind for s in space.stages]
    return Net(construct_block(first), modules, kinds, construct_block(head))


def build_subnet(sub: Subnet, space: SearchSpace | None = None, seed: int = 0) -> Net:
    """Standalone subnet of exact-size blocks, weights drawn from `seed`, in eval mode.
    `space` defaults to the registered space named by `sub.space`."""
    net = _construct_net(space or create_space(sub.space), sub)
    init_weights_(net, torch.Generator().manual_seed(seed))
    return net.eval()


class Supernet(Net):
    """Max-size blocks shared by every subnet of `space`.

    Input width of layer 0 of stages after the stem varies with the previous stage's width, so
    those layers always carry a shortcut conv; all other sizes come from `space.supernet_layers()`
    (by default the blocks of `space.max_subnet()`; the largest resolution also gives the largest
    token grid, so the bias tables fit every side). Each block is set to run the subnet's block
    config of its position (`nas.modules.activate`).
    """

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        biggest = space.max_subnet()
        first, stages, head = space.supernet_layers()
        modules = [[_layer([self._max_block(c, i, j) for c in layer]) for j, layer in enumerate(layers)]
                   for i, layers in enumerate(stages)]
        kinds = [s.kind for s in space.stages]
        super().__init__(construct_block(first), modules, kinds, construct_block(head))
        self.space = space
        init_weights_(self, torch.Generator().manual_seed(seed))
        self.set_active_subnet(biggest)
        log.debug("supernet of %r: %.1fM parameters", space.name, count_params(self) / 1e6)

    @staticmethod
    def _max_block(cfg: BlockCfg, stage: int, layer: int) -> nn.Module:
        if isinstance(cfg, (MBConvCfg, TransDSCfg)):
            return MBConv.from_cfg(cfg, shortcut_conv=True if stage > 0 and layer == 0 else None)
        return construct_block(cfg)

    def set_active_subnet(self, sub: Subnet) -> None:
        first, stages, head = self.space.layers_of(sub)  # validates
        self.depths = [len(layers) for layers in stages]
        cfgs = [first, *(b for layers in stages for layer in layers for b in layer), head]
        for block, cfg in zip(self.active_blocks(), cfgs, strict=True):
            activate(block, cfg)
        self.active = sub

    def sample_active_subnet(self, rng: random.Random) -> Subnet:
        sub = self.space.sample(rng)
        self.set_active_subnet(sub)
        return sub

    def get_active_subnet(self) -> Net:
        """A standalone `Net` of exact-size blocks holding copies of the active weight slices,
        in the supernet's train/eval mode."""
        net = _construct_net(self.space, self.active)
        for dst, src in zip(net.active_blocks(), self.active_blocks(), strict=True):
            inherit(dst, src)
        return net.train(self.training)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

