"""EfficientFormerV2 blocks and networks (nas.modules.effv2*, nas.spaces.effv2_net): the released four
have the published sizes, every block type runs as a slice of a larger block of its position, and
exports to ONNX (every block type) and TFLite (attention blocks, the whole S0) with output parity."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from nas.modules import inherit, init_weights_
from nas.modules.effv2 import FFN, ConvDownsample, Head, Stem
from nas.modules.effv2_attention import AttnFFN, DualPathDownsample, rel_index
from nas.spaces.effv2_net import (
    PUBLISHED_GMACS,
    PUBLISHED_PARAMS_M,
    RELEASED,
    EffV2Net,
    build_effv2,
    count_macs,
    count_params,
    count_params_published,
)
from tests.runtimes import rel_err, run_onnx, run_tflite

# Every nn.Parameter of the training-time network (timm lists these as 3.6 / 6.2 / 12.7 / 26.3M).
EXACT_PARAMS = {"S0": 3_600_256, "S1": 6_185_560, "S2": 12_710_112, "L": 26_322_288}
# The official profiler's rule (BN fused, conv "bias" = weight.shape[1]): rounds to the published figures.
EXACT_PARAMS_PUBLISHED_RULE = {"S0": 3_534_553, "S1": 6_092_480, "S2": 12_551_405, "L": 26_068_650}
REL_TOL = 1e-4  # max |out - ref| / max |ref|, as tests/test_export.py


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    return init_weights_(module, torch.Generator().manual_seed(seed)).eval()


def image(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ---- the released networks ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(RELEASED))
def test_released_parameter_counts(name: str) -> None:
    net = EffV2Net(RELEASED[name])
    assert count_params(net) == EXACT_PARAMS[name]
    published_rule = count_params_published(net)
    assert published_rule == EXACT_PARAMS_PUBLISHED_RULE[name]
    assert round(published_rule / 1e6, 1) == PUBLISHED_PARAMS_M[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RELEASED))
def test_released_macs_are_near_the_published(name: str) -> None:
    """Convolutions, linear layers and attention matmuls at 224: 0.396 / 0.652 / 1.247 / 2.553 GMACs against the
    published 0.40 / 0.65 / 1.25 / 2.56 (the official profiler also counts GELU and pooling elements)."""
    macs = count_macs(build_effv2(name), 224)
    assert abs(macs / 1e9 - PUBLISHED_GMACS[name]) <= 0.01


def test_released_structure() -> None:
    s0 = RELEASED["S0"]
    net = build_effv2("S0")
    kinds = [[type(b).__name__ for b in stage] for stage in net.stages]
    assert kinds == [["FFN"] * 2, ["FFN"] * 2, ["FFN"] * 4 + ["AttnFFN"] * 2, ["FFN"] * 2 + ["AttnFFN"] * 2]
    assert net.stages[2][-1].token_mixer.stride_conv is not None  # stride attention in stage 2 only
    assert net.stages[3][-1].token_mixer.stride_conv is None
    assert [b.max_expand for b in net.stages[2]] == list(s0.expands[2])
    with pytest.raises(ValueError, match="released"):
        build_effv2("S9")
    with pytest.raises(ValueError, match="vit_num"):
        dataclasses.replace(s0, vit_num=5)


@pytest.mark.parametrize("resolution", [64, 72])  # 72: odd sides 9, 5, 3 in stages 1-3
def test_forward_shape_at_small_resolution(resolution: int) -> None:
    net = seeded(EffV2Net(dataclasses.replace(RELEASED["S0"], resolution=resolution)))
    with torch.no_grad():
        y = net(image((2, 3, resolution, resolution)))
    assert y.shape == (2, 1000) and torch.isfinite(y).all()


def test_bias_tables_have_the_official_number_of_offsets() -> None:
    """(|dy|, |dx|) indexing: side**2 distinct offsets for self-attention, and for the downsampling
    attention (query at even positions of the key grid) the input side**2, as the released tables."""
    assert len(rel_index((7, 7), (7, 7), 1, 7).unique()) == 49
    assert len(rel_index((7, 7), (14, 14), 2, 14).unique()) == 196
    assert len(rel_index((4, 4), (7, 7), 2, 7).unique()) == 49
    with pytest.raises(ValueError, match="bias table"):
        rel_index((8, 8), (8, 8), 1, 7)


# ---- elastic: a larger block run at a smaller configuration == the standalone block ------------------

Builder = Callable[[], nn.Module]
# (name, largest block of the position, its active configuration, the standalone block, input shape)
ELASTIC: list[tuple[str, Builder, dict, Builder, tuple[int, ...]]] = [
    ("stem", lambda: Stem(40), {"cout": 32}, lambda: Stem(32), (1, 3, 33, 33)),
    ("ffn", lambda: FFN(64, 4), {"expand": 3}, lambda: FFN(48, 3), (1, 48, 6, 6)),
    ("ffn_in_attnffn", lambda: AttnFFN(64, 4, 8, stride=True), {"expand": 3, "attention": False},
     lambda: FFN(48, 3), (1, 48, 6, 6)),
    ("attnffn", lambda: AttnFFN(64, 4, 5), {"expand": 3}, lambda: AttnFFN(48, 3, 4), (1, 48, 4, 4)),
    ("attnffn_stride", lambda: AttnFFN(64, 4, 10, stride=True), {"expand": 3},
     lambda: AttnFFN(48, 3, 7, stride=True), (1, 48, 7, 7)),
    ("conv_downsample", lambda: ConvDownsample(64, 96), {"cout": 80}, lambda: ConvDownsample(48, 80),
     (1, 48, 7, 7)),
    ("dualpath_downsample", lambda: DualPathDownsample(64, 96, 10), {"cout": 80},
     lambda: DualPathDownsample(48, 80, 7), (1, 48, 7, 7)),
    ("head", lambda: Head(96), {}, lambda: Head(64), (1, 64, 3, 3)),
]


@pytest.mark.parametrize(("big", "active", "small", "shape"), [e[1:] for e in ELASTIC], ids=[e[0] for e in ELASTIC])
def test_elastic_slice_equals_standalone(big: Builder, active: dict, small: Builder, shape: tuple[int, ...]) -> None:
    shared = seeded(big(), seed=5)
    shared.set_active(**active)
    alone = small().eval()
    inherit(alone, shared)
    assert count_params(alone) < count_params(shared)
    x = image(shape)
    with torch.no_grad():
        torch.testing.assert_close(shared(x), alone(x), atol=1e-5, rtol=1e-5)


def test_active_configuration_is_bounded() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        FFN(48, 3).set_active(expand=4)
    with pytest.raises(ValueError, match="exceeds"):
        DualPathDownsample(48, 80, 7).set_active(cout=96)
    block = AttnFFN(48, 4, 7, stride=True)
    block.set_active(attention=False)
    assert not block.active_attention
    block.set_active()
    assert block.active_attention and block.active_expand == 4


def test_sliced_training_touches_only_the_active_slice() -> None:
    block = AttnFFN(64, 4, 4)
    block.set_active(expand=3)
    block.train()(image((2, 48, 4, 4))).sum().backward()
    fc1 = block.mlp.fc1.weight.grad
    assert fc1 is not None and fc1[144:].abs().sum() == 0 and fc1[:144, :48].abs().sum() > 0
    q = block.token_mixer.q.weight.grad
    assert q is not None and q[:, 48:].abs().sum() == 0 and q[:, :48].abs().sum() > 0


# ---- export parity -----------------------------------------------------------------------------------

# One standalone block per type at a released width, small sides (odd ones where stride 2 meets them).
EXPORT: dict[str, tuple[Builder, tuple[int, ...]]] = {
    "stem": (lambda: Stem(32), (1, 3, 64, 64)),
    "ffn": (lambda: FFN(48, 4), (1, 48, 8, 8)),
    "attnffn": (lambda: AttnFFN(176, 4, 4), (1, 176, 4, 4)),
    "attnffn_stride": (lambda: AttnFFN(96, 3, 7, stride=True), (1, 96, 7, 7)),
    "conv_downsample": (lambda: ConvDownsample(32, 48), (1, 32, 15, 15)),
    "dualpath_downsample": (lambda: DualPathDownsample(96, 176, 7), (1, 96, 7, 7)),
    "head": (lambda: Head(176), (1, 176, 4, 4)),
}


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy() if t.dim() == 4 else t.numpy()


@pytest.mark.parametrize("block_type", list(EXPORT))
def test_block_onnx_matches_pytorch(block_type: str, tmp_path: Path) -> None:
    from nas.export import export_onnx

    build, shape = EXPORT[block_type]
    module, x = seeded(build()), image(shape)
    with torch.no_grad():
        ref = module(x).numpy()
    out = run_onnx(export_onnx(module, x, tmp_path / f"{block_type}.onnx"), x.numpy())
    assert out.shape == ref.shape
    assert rel_err(out, ref) < REL_TOL


@pytest.mark.slow
@pytest.mark.parametrize("block_type", ["attnffn", "attnffn_stride", "dualpath_downsample"])
def test_attention_block_tflite_matches_pytorch(block_type: str, tmp_path: Path) -> None:
    from nas.export import export_tflite

    build, shape = EXPORT[block_type]
    module, x = seeded(build()), image(shape)
    with torch.no_grad():
        ref = module(x)
    path = export_tflite(module, x, tmp_path / f"{block_type}.tflite", channel_last=True)
    out, want = run_tflite(path, nhwc(x)), nhwc(ref)
    assert out.shape == want.shape
    assert rel_err(out, want) < REL_TOL


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_s0_exports_with_parity(fmt: str, tmp_path: Path) -> None:
    from nas.export import export_onnx, export_tflite

    net, x = seeded(build_effv2("S0")), image((1, 3, 224, 224))
    with torch.no_grad():
        ref = net(x).numpy()
    if fmt == "onnx":
        out = run_onnx(export_onnx(net, x, tmp_path / "s0.onnx"), x.numpy())
    else:
        out = run_tflite(export_tflite(net, x, tmp_path / "s0.tflite", channel_last=True), nhwc(x))
    assert out.shape == (1, 1000)
    assert rel_err(out, ref) < REL_TOL
