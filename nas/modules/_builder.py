"""Block registry keyed by `cfg.type`: build a standalone block and its example input."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from nas.blocks import AttentionCfg, BlockCfg, FFNCfg, FirstConvCfg, HeadCfg, MBConvCfg, TransDSCfg
from nas.modules.attention import Attention
from nas.modules.ffn import FFN
from nas.modules.firstconv import FirstConv
from nas.modules.head import Head
from nas.modules.init import init_weights_
from nas.modules.mbconv import MBConv


@dataclass(frozen=True)
class BlockEntry:
    construct: Callable[[BlockCfg], nn.Module]
    layout: Literal["nchw", "tokens"]  # "nchw" blocks export channel-last (NHWC) I/O


_BLOCKS: dict[str, BlockEntry] = {
    FirstConvCfg.type: BlockEntry(FirstConv.from_cfg, "nchw"),  # type: ignore[arg-type]
    MBConvCfg.type: BlockEntry(MBConv.from_cfg, "nchw"),  # type: ignore[arg-type]
    TransDSCfg.type: BlockEntry(MBConv.from_cfg, "tokens"),  # type: ignore[arg-type]
    AttentionCfg.type: BlockEntry(Attention.from_cfg, "tokens"),  # type: ignore[arg-type]
    FFNCfg.type: BlockEntry(FFN.from_cfg, "tokens"),  # type: ignore[arg-type]
    HeadCfg.type: BlockEntry(Head.from_cfg, "tokens"),  # type: ignore[arg-type]
}


def list_block_types() -> list[str]:
    return list(_BLOCKS)


def _entry(cfg: BlockCfg) -> BlockEntry:
    try:
        return _BLOCKS[cfg.type]
    except KeyError:
        raise ValueError(f"no module for block type {cfg.type!r}; known: {list(_BLOCKS)}") from None


def construct_block(cfg: BlockCfg) -> nn.Module:
    """The block's module at exactly the config's sizes, default (unseeded) init, train mode."""
    return _entry(cfg).construct(cfg)


def build_block(cfg: BlockCfg, seed: int = 0) -> nn.Module:
    """Standalone block at the config's sizes with weights drawn from `seed`, in eval mode."""
    module = construct_block(cfg)
    init_weights_(module, torch.Generator().manual_seed(seed))
    return module.eval()


def is_channel_last(cfg: BlockCfg) -> bool:
    """True for conv-layout blocks: NCHW in PyTorch, exported with NHWC input and output."""
    return _entry(cfg).layout == "nchw"


def input_shape(cfg: BlockCfg, batch: int = 1) -> tuple[int, ...]:
    """PyTorch input shape: NCHW for conv-layout blocks, tokens (B, hw*hw, C) otherwise."""
    if isinstance(cfg, FirstConvCfg):
        return (batch, cfg.cin, cfg.resolution, cfg.resolution)
    if isinstance(cfg, MBConvCfg):
        return (batch, cfg.cin, cfg.hw, cfg.hw)
    if isinstance(cfg, TransDSCfg):
        return (batch, cfg.hw * cfg.hw, cfg.cin)
    if isinstance(cfg, (AttentionCfg, FFNCfg, HeadCfg)):
        return (batch, cfg.hw * cfg.hw, cfg.channels)
    raise ValueError(f"no input shape for block config {cfg!r}")


def example_input(cfg: BlockCfg, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Standard-normal input of the block's PyTorch layout, drawn from an explicit generator."""
    return torch.randn(input_shape(cfg, batch), generator=torch.Generator().manual_seed(seed))
