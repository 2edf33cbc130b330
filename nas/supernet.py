"""Weight-sharing supernet (once-for-all mechanics) and standalone subnets, from the same blocks.

`Net` is the network: first conv -> stages (conv stages on NCHW maps; the map is flattened to
tokens before the first transformer stage) -> head; stage i runs its first `depths[i]` layers.
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

from nas.blocks import BlockCfg, FirstConvCfg, HeadCfg, MBConvCfg, TransDSCfg
from nas.modules import FFN, Attention, FirstConv, Head, MBConv, construct_block, inherit, init_weights_
from nas.modules.layers import to_tokens
from nas.registry import create_space
from nas.searchspace import SearchSpace
from nas.subnet import Subnet

log = logging.getLogger(__name__)

LayerCfgs = list[BlockCfg]  # one conv layer: [MBConv]; one transformer layer: [(TransDS,) Attention, FFN]


def layer_cfgs(space: SearchSpace, sub: Subnet) -> tuple[FirstConvCfg, list[list[LayerCfgs]], HeadCfg]:
    """`space.blocks_of(sub)` grouped into (first conv, per stage per layer block configs, head)."""
    blocks = space.blocks_of(sub)
    first, head, rest = blocks[0], blocks[-1], iter(blocks[1:-1])
    assert isinstance(first, FirstConvCfg) and isinstance(head, HeadCfg)
    stages: list[list[LayerCfgs]] = []
    for spec, st in zip(space.stages, sub.stages):
        layers = []
        for i in range(st.depth):
            n = 1 if spec.kind == "mbconv" else (3 if i == 0 else 2)
            layers.append([next(rest) for _ in range(n)])
        stages.append(layers)
    if next(rest, None) is not None:
        raise AssertionError("blocks_of() returned more blocks than the stage depths account for")
    return first, stages, head


def _layer(blocks: list[nn.Module]) -> nn.Module:
    return blocks[0] if len(blocks) == 1 else nn.Sequential(*blocks)


class Net(nn.Module):
    def __init__(self, first: FirstConv, stages: list[list[nn.Module]], kinds: list[str], head: Head) -> None:
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
    return Net(construct_block(first), modules, kinds, construct_block(head))  # type: ignore[arg-type]


def build_subnet(sub: Subnet, space: SearchSpace | None = None, seed: int = 0) -> Net:
    """Standalone subnet of exact-size blocks, weights drawn from `seed`, in eval mode.
    `space` defaults to the registered space named by `sub.space`."""
    net = _construct_net(space or create_space(sub.space), sub)
    init_weights_(net, torch.Generator().manual_seed(seed))
    return net.eval()


class Supernet(Net):
    """Max-size blocks shared by every subnet of `space`.

    Input width of layer 0 of stages after the stem varies with the previous stage's width, so
    those layers always carry a shortcut conv; all other sizes come from `space.max_subnet()`
    (the largest resolution also gives the largest token grid, so the bias tables fit every side).
    """

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        biggest = space.max_subnet()
        first, stages, head = layer_cfgs(space, biggest)
        modules = [[_layer([self._max_block(c, i, j) for c in layer]) for j, layer in enumerate(layers)]
                   for i, layers in enumerate(stages)]
        kinds = [s.kind for s in space.stages]
        super().__init__(construct_block(first), modules, kinds, construct_block(head))  # type: ignore[arg-type]
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
        self.space.validate(sub)
        self.first_conv.set_active(cout=sub.stages[0].width)
        for i, (spec, st) in enumerate(zip(self.space.stages, sub.stages)):
            self.depths[i] = st.depth
            for layer in self.stages[i]:
                for block in (layer if isinstance(layer, nn.Sequential) else [layer]):
                    if isinstance(block, MBConv) and spec.kind == "mbconv":
                        block.set_active(cout=st.width, expand=st.expand or 1, kernel=st.kernel)
                    elif isinstance(block, MBConv):  # transformer downsampling: fixed expand and kernel
                        block.set_active(cout=st.width)
                    elif isinstance(block, Attention):
                        block.set_active(v_scale=st.v_scale)
                    elif isinstance(block, FFN):
                        block.set_active(mlp=st.mlp)
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

