"""Small shared layers. Every elastic layer holds max-size parameters and runs an active slice.

Input widths are read from the input tensor; output widths and kernels are passed by the block.
When the active size equals the stored size the parameter is used as is, so a block built at
exactly its config's sizes traces to a plain graph (no slicing ops in the exported model).

`inherit_from(src)` copies the slice of a larger layer that `forward` would use into this
exact-size layer: the supernet's `get_active_subnet()` is built on it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

hswish = F.hardswish
hsigmoid = F.hardsigmoid


def to_grid(x: torch.Tensor) -> torch.Tensor:
    """Tokens (B, side*side, C), row-major -> (B, C, side, side). Written as reshape to NHWC then
    permute, so the converter's own NCHW->NHWC transpose cancels and TFLite sees no TRANSPOSE."""
    b, n, c = (int(s) for s in x.shape)
    side = math.isqrt(n)
    return x.reshape(b, side, side, c).permute(0, 3, 1, 2)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> tokens (B, H*W, C), row-major (the inverse of `to_grid`)."""
    b, c = (int(s) for s in x.shape[:2])
    return x.permute(0, 2, 3, 1).reshape(b, -1, c)


def take(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    """Leading slice `t[:sizes[0], :sizes[1], ...]`; `t` itself when nothing is cut."""
    if all(s == d for s, d in zip(sizes, t.shape)):
        return t
    return t[tuple(slice(0, s) for s in sizes)]


def centre_crop(w: torch.Tensor, k: int) -> torch.Tensor:
    """Centre k x k of a (..., K, K) kernel (once-for-all's elastic kernel, without its transform)."""
    big = w.shape[-1]
    if k == big:
        return w
    if k > big or (big - k) % 2:
        raise ValueError(f"cannot crop a {big}x{big} kernel to {k}x{k}")
    o = (big - k) // 2
    return w[..., o:o + k, o:o + k]


@torch.no_grad()
def inherit(dst: nn.Module, src: nn.Module) -> None:
    """Copy into `dst` (exact sizes) the slices of `src` (same class, larger) that forward uses.

    Default rule: leading slice of every parameter and persistent buffer, then recurse.
    Modules whose slicing is not a leading slice define `inherit_from`.
    """
    own = getattr(dst, "inherit_from", None)
    if own is not None:
        own(src)
        return
    copy_leading(dst, src)
    for name, child in dst.named_children():
        inherit(child, getattr(src, name))


@torch.no_grad()
def copy_leading(dst: nn.Module, src: nn.Module, skip: tuple[str, ...] = ()) -> None:
    """Leading-slice copy of `dst`'s own parameters and persistent buffers (not children's)."""
    tensors = dict(dst.named_parameters(recurse=False))
    tensors.update((n, b) for n, b in dst.named_buffers(recurse=False) if n not in dst._non_persistent_buffers_set)
    for name, t in tensors.items():
        if name in skip or t is None:
            continue
        t.copy_(take(getattr(src, name), *t.shape))


class ElasticConv2d(nn.Conv2d):
    """Dense conv (groups = 1); active output width `out`, input width from x."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, bias: bool = False) -> None:
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2, bias=bias)

    def forward(self, x: torch.Tensor, out: int | None = None) -> torch.Tensor:  # type: ignore[override]
        out = self.out_channels if out is None else out
        w = take(self.weight, out, int(x.shape[1]))
        b = None if self.bias is None else take(self.bias, out)
        return F.conv2d(x, w, b, self.stride, self.padding)


class ElasticDWConv2d(nn.Conv2d):
    """Depthwise conv; channels from x, kernel centre-cropped from the max kernel, padding k//2."""

    def __init__(self, channels: int, kernel: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__(channels, channels, kernel, stride, padding=kernel // 2, groups=channels, bias=bias)

    def forward(self, x: torch.Tensor, kernel: int | None = None) -> torch.Tensor:  # type: ignore[override]
        c = int(x.shape[1])
        k = self.kernel_size[0] if kernel is None else kernel
        w = centre_crop(take(self.weight, c), k)
        b = None if self.bias is None else take(self.bias, c)
        return F.conv2d(x, w, b, self.stride, k // 2, 1, c)

    @torch.no_grad()
    def inherit_from(self, src: "ElasticDWConv2d") -> None:
        self.weight.copy_(centre_crop(take(src.weight, self.out_channels), self.kernel_size[0]))
        if self.bias is not None:
            self.bias.copy_(take(src.bias, self.out_channels))


class ElasticLinear(nn.Linear):
    """Linear on the last dim; active output width `out`, input width from x."""

    def forward(self, x: torch.Tensor, out: int | None = None) -> torch.Tensor:  # type: ignore[override]
        out = self.out_features if out is None else out
        w = take(self.weight, out, int(x.shape[-1]))
        b = None if self.bias is None else take(self.bias, out)
        return F.linear(x, w, b)


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over dim 1 of a 2-D (rows, C) or 4-D (N, C, H, W) input; C from x.

    Sliced running statistics are views, so training updates the shared buffers in place.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected a 2-D or 4-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        c = int(x.shape[1])
        momentum = self.momentum if self.momentum is not None else 0.0
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(
            x, take(self.running_mean, c), take(self.running_var, c), take(self.weight, c), take(self.bias, c),
            self.training, momentum, self.eps,
        )


class ElasticLayerNorm(nn.LayerNorm):
    """Per-token LayerNorm over the channels (last dim); C from x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = int(x.shape[-1])
        return F.layer_norm(x, (c,), take(self.weight, c), take(self.bias, c), self.eps)


class SqueezeExcite(nn.Module):
    """Global avg pool, 1x1 C->C/4 (bias), ReLU, 1x1 ->C (bias), hard-sigmoid, multiply."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = se_width(channels)
        self.reduce = ElasticConv2d(channels, mid, 1, bias=True)
        self.expand = ElasticConv2d(mid, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = int(x.shape[1])
        s = x.mean((2, 3), keepdim=True)
        s = F.relu(self.reduce(s, se_width(c)))
        return x * hsigmoid(self.expand(s, c))


def se_width(channels: int) -> int:
    return max(1, channels // 4)
