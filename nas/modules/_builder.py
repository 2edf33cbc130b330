"""Block registry keyed by `cfg.type`: build a standalone block and its example input, and set a
larger (supernet) block of the type to run the config (`activate`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from nas.blocks import (
    AttentionCfg,
    BlockCfg,
    EffAttnCfg,
    EffAttnDSCfg,
    EffConvDSCfg,
    EffFFNCfg,
    EffHeadCfg,
    EffStemCfg,
    FFNCfg,
    FirstConvCfg,
    HeadCfg,
    MBConvCfg,
    TransDSCfg,
)
from nas.modules import effv2, effv2_attention
from nas.modules.attention import Attention
from nas.modules.ffn import FFN
from nas.modules.firstconv import FirstConv
from nas.modules.head import Head
from nas.modules.init import init_weights_
from nas.modules.mbconv import MBConv

Activate = Callable[[nn.Module, BlockCfg], None]


@dataclass(frozen=True)
class BlockEntry:
    construct: Callable[[BlockCfg], nn.Module]
    layout: Literal["nchw", "tokens"]  # "nchw" blocks export channel-last (NHWC) I/O
    activate: Activate  # set a block of at least the config's sizes to run exactly the config


def _fixed(module: nn.Module, cfg: BlockCfg) -> None:
    """Nothing to set: the block's sizes follow its input."""


def _cout(module: nn.Module, cfg: BlockCfg) -> None:
    module.set_active(cout=cfg.cout)  # type: ignore[operator, union-attr]


def _effffn(module: nn.Module, cfg: BlockCfg) -> None:
    """An FFN config runs on an FFN or, with its attention off, on an AttnFFN (the supernet's positions
    that some subnets run with attention)."""
    off = {"attention": False} if isinstance(module, effv2_attention.AttnFFN) else {}
    module.set_active(expand=cfg.expand, **off)  # type: ignore[operator, union-attr]


_BLOCKS: dict[str, BlockEntry] = {
    FirstConvCfg.type: BlockEntry(FirstConv.from_cfg, "nchw", _cout),  # type: ignore[arg-type]
    MBConvCfg.type: BlockEntry(MBConv.from_cfg, "nchw",  # type: ignore[arg-type]
                               lambda m, c: m.set_active(cout=c.cout, expand=c.expand, kernel=c.kernel)),  # type: ignore
    TransDSCfg.type: BlockEntry(MBConv.from_cfg, "tokens", _cout),  # type: ignore[arg-type]
    AttentionCfg.type: BlockEntry(Attention.from_cfg, "tokens",  # type: ignore[arg-type]
                                  lambda m, c: m.set_active(v_scale=c.v_scale)),  # type: ignore
    FFNCfg.type: BlockEntry(FFN.from_cfg, "tokens", lambda m, c: m.set_active(mlp=c.mlp)),  # type: ignore
    HeadCfg.type: BlockEntry(Head.from_cfg, "tokens", _fixed),  # type: ignore[arg-type]
    EffStemCfg.type: BlockEntry(effv2.Stem.from_cfg, "nchw", _cout),  # type: ignore[arg-type]
    EffFFNCfg.type: BlockEntry(effv2.FFN.from_cfg, "nchw", _effffn),  # type: ignore[arg-type]
    EffAttnCfg.type: BlockEntry(effv2_attention.AttnFFN.from_cfg, "nchw",  # type: ignore[arg-type]
                                lambda m, c: m.set_active(expand=c.expand, attention=True)),  # type: ignore
    EffConvDSCfg.type: BlockEntry(effv2.ConvDownsample.from_cfg, "nchw", _cout),  # type: ignore[arg-type]
    EffAttnDSCfg.type: BlockEntry(effv2_attention.DualPathDownsample.from_cfg, "nchw", _cout),  # type: ignore
    EffHeadCfg.type: BlockEntry(effv2.Head.from_cfg, "nchw", _fixed),  # type: ignore[arg-type]
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


def activate(module: nn.Module, cfg: BlockCfg) -> None:
    """Set `module` (a block of the config's type, or a supernet block serving it) to run exactly `cfg`."""
    _entry(cfg).activate(module, cfg)


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
    if isinstance(cfg, EffStemCfg):
        return (batch, 3, cfg.resolution, cfg.resolution)
    if isinstance(cfg, (EffFFNCfg, EffAttnCfg, EffHeadCfg)):
        return (batch, cfg.channels, cfg.hw, cfg.hw)
    if isinstance(cfg, (EffConvDSCfg, EffAttnDSCfg)):
        return (batch, cfg.cin, cfg.hw, cfg.hw)
    raise ValueError(f"no input shape for block config {cfg!r}")


def example_input(cfg: BlockCfg, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Standard-normal input of the block's PyTorch layout, drawn from an explicit generator."""
    return torch.randn(input_shape(cfg, batch), generator=torch.Generator().manual_seed(seed))
