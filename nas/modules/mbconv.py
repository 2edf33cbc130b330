"""Inverted residual (MBConv): conv stages, the stem, and the transformer stages' downsampling block.

search-space.md section 2: [1x1 expand, BN, hswish] (absent when e = 1) -> kxk depthwise stride s,
BN, hswish -> [SE] -> 1x1 project, BN; shortcut identity when s = 1 and cin = cout, else
(s = 2: 2x2 avg pool, zero-padded on odd sides) then (cin != cout: 1x1 conv, no BN); added.
With `tokens=True` the block takes and returns tokens (B, hw*hw, C) and runs on their grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks import MBConvCfg, TransDSCfg
from nas.modules.layers import (
    ElasticBatchNorm,
    ElasticConv2d,
    ElasticDWConv2d,
    SqueezeExcite,
    hswish,
    to_grid,
    to_tokens,
)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, se: bool,
                 tokens: bool = False, shortcut_conv: bool | None = None) -> None:
        """Sizes are the maximum ones; `shortcut_conv` defaults to cin != cout (a supernet layer
        whose input width varies passes True so narrower inputs have a projection to use)."""
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        inner = cin * expand
        self.stride, self.tokens = stride, tokens
        self.max_cout, self.max_expand, self.max_kernel = cout, expand, kernel
        has_expand = expand != 1
        self.expand_conv = ElasticConv2d(cin, inner, 1) if has_expand else None
        self.expand_bn = ElasticBatchNorm(inner) if has_expand else None
        self.dw_conv = ElasticDWConv2d(inner, kernel, stride)
        self.dw_bn = ElasticBatchNorm(inner)
        self.se = SqueezeExcite(inner) if se else None
        self.project_conv = ElasticConv2d(inner, cout, 1)
        self.project_bn = ElasticBatchNorm(cout)
        if shortcut_conv is None:
            shortcut_conv = cin != cout
        self.shortcut_conv = ElasticConv2d(cin, cout, 1) if shortcut_conv else None
        self.set_active()

    @classmethod
    def from_cfg(cls, cfg: MBConvCfg | TransDSCfg, shortcut_conv: bool | None = None) -> "MBConv":
        if isinstance(cfg, TransDSCfg):
            return cls(cfg.cin, cfg.cout, cfg.expand, cfg.kernel, cfg.stride, se=True, tokens=True,
                       shortcut_conv=shortcut_conv)
        return cls(cfg.cin, cfg.cout, cfg.expand, cfg.kernel, cfg.stride, cfg.se, shortcut_conv=shortcut_conv)

    def set_active(self, cout: int | None = None, expand: int | None = None, kernel: int | None = None) -> None:
        cout = self.max_cout if cout is None else cout
        expand = self.max_expand if expand is None else expand
        kernel = self.max_kernel if kernel is None else kernel
        if not (0 < cout <= self.max_cout and 0 < expand <= self.max_expand and 0 < kernel <= self.max_kernel):
            raise ValueError(f"active (cout={cout}, expand={expand}, kernel={kernel}) exceeds the block's maximum "
                             f"({self.max_cout}, {self.max_expand}, {self.max_kernel})")
        if (expand == 1) != (self.max_expand == 1):
            raise ValueError("expand 1 (no expansion conv) cannot be mixed with expand > 1 in one block")
        self.active_cout, self.active_expand, self.active_kernel = cout, expand, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            x = to_grid(x)
        cin, cout = int(x.shape[1]), self.active_cout
        h = x
        if self.expand_conv is not None and self.expand_bn is not None:
            h = hswish(self.expand_bn(self.expand_conv(h, cin * self.active_expand)))
        h = hswish(self.dw_bn(self.dw_conv(h, self.active_kernel)))
        if self.se is not None:
            h = self.se(h)
        h = self.project_bn(self.project_conv(h, cout))
        out = h + self._shortcut(x, cout)
        return to_tokens(out) if self.tokens else out

    def _shortcut(self, x: torch.Tensor, cout: int) -> torch.Tensor:
        if self.stride == 2:
            if int(x.shape[-1]) % 2 or int(x.shape[-2]) % 2:
                # Zero row/column at the bottom/right, padded in NHWC order: written on NCHW the
                # converter wraps the pad in TRANSPOSEs when the block reads tokens.
                pad = (0, 0, 0, int(x.shape[-1]) % 2, 0, int(x.shape[-2]) % 2)
                x = F.pad(x.permute(0, 2, 3, 1), pad).permute(0, 3, 1, 2)
            x = F.avg_pool2d(x, 2)
        if int(x.shape[1]) != cout:
            if self.shortcut_conv is None:
                raise ValueError(f"block built without a shortcut conv got {x.shape[1]} channels for {cout} outputs")
            x = self.shortcut_conv(x, cout)
        return x
