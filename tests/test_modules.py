"""Block modules: every block type builds at its config's sizes, has the right output shape and
the parameter count nas.costs assumes, and runs as a slice of a larger block of its class."""
from __future__ import annotations

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nas.blocks import (
    BLOCK_TYPES,
    BlockCfg,
    EffAttnDSCfg,
    EffConvDSCfg,
    EffHeadCfg,
    EffStemCfg,
    FirstConvCfg,
    HeadCfg,
    MBConvCfg,
    TransDSCfg,
    parse_key,
)
from nas.costs import block_features
from nas.modules import (
    MBConv,
    activate,
    build_block,
    construct_block,
    example_input,
    inherit,
    init_weights_,
    input_shape,
    is_channel_last,
    list_block_types,
)
from nas.modules.layers import to_grid, to_tokens
from nas.registry import create_space
from nas.spaces.effv2_net import count_params_published

# Small configs per block type, covering e = 1, SE, kernel 5, stride 2 on odd sides, cin != cout.
SMALL: dict[str, list[str]] = {
    "firstconv": ["firstconv_128_3_16_2_3", "firstconv_160_3_24_2_3"],
    "conv": ["conv_16_16_16_1_1_hard_swish_3_nose", "conv_16_16_24_4_2_hard_swish_5_nose",
             "conv_7_24_32_6_2_hard_swish_3_se", "conv_8_32_32_3_1_hard_swish_5_se"],
    "transds": ["transds_8_48_80_1_6", "transds_5_80_144_2_6", "transds_4_96_96_1_6"],
    "transattn": ["transattn_4_48_hard_swish_2_ln", "transattn_3_80_hard_swish_4_ln"],
    "transffn": ["transffn_4_48_2_hard_swish_ln", "transffn_3_96_5_hard_swish_ln"],
    "mbpool": ["mbpool_2_160_1984_6_hard_swish", "mbpool_3_176_1984_6_hard_swish"],
}
ALL_SMALL = [k for keys in SMALL.values() for k in keys]
# EfficientFormerV2's blocks (NCHW in and out; parameters counted by the published rule): odd sides, stride
# attention, cin != cout.
EFFV2_SMALL: dict[str, list[str]] = {
    "effstem": ["effstem_66_32"],
    "effffn": ["effffn_9_48_3", "effffn_4_176_2"],
    "effattn": ["effattn_7_96_4_2", "effattn_4_176_3_1"],
    "effconvds": ["effconvds_9_48_96"],
    "effattnds": ["effattnds_7_96_176"],
    "effhead": ["effhead_4_176"],
}


def expected_output_shape(cfg: BlockCfg) -> tuple[int, ...]:
    if isinstance(cfg, FirstConvCfg):
        return (1, cfg.cout, cfg.hw_out, cfg.hw_out)
    if isinstance(cfg, MBConvCfg):
        return (1, cfg.cout, cfg.hw_out, cfg.hw_out)
    if isinstance(cfg, TransDSCfg):
        return (1, cfg.hw_out ** 2, cfg.cout)
    if isinstance(cfg, HeadCfg):
        return (1, cfg.classes)
    return input_shape(cfg)


def test_registry_covers_every_block_type() -> None:
    assert sorted(list_block_types()) == sorted(BLOCK_TYPES) == sorted([*SMALL, *EFFV2_SMALL])


@pytest.mark.parametrize("key", ALL_SMALL)
def test_block_builds_with_right_output_shape(key: str) -> None:
    cfg = parse_key(key)
    block = build_block(cfg)
    assert not block.training
    with torch.no_grad():
        y = block(example_input(cfg))
    assert tuple(y.shape) == expected_output_shape(cfg)
    assert torch.isfinite(y).all()
    assert is_channel_last(cfg) == (cfg.type in ("firstconv", "conv"))


def _space_blocks() -> list[BlockCfg]:
    space = create_space("elasticvit")
    rng = random.Random(0)
    subs = [space.min_subnet(), space.max_subnet(), *space.released.values(), space.sample(rng), space.sample(rng)]
    seen: dict[str, BlockCfg] = {}
    for sub in subs:
        for cfg in space.blocks_of(sub):
            seen.setdefault(cfg.key, cfg)
    return list(seen.values())


@pytest.mark.parametrize("block_type", sorted(SMALL))
def test_param_count_matches_costs(block_type: str) -> None:
    cfgs = [c for c in _space_blocks() if c.type == block_type] + [parse_key(k) for k in SMALL[block_type]]
    assert cfgs
    for cfg in cfgs:
        module = construct_block(cfg)
        n = sum(p.numel() for p in module.parameters())
        assert n == block_features(cfg)["params"], cfg.key


def test_build_and_example_are_seeded() -> None:
    cfg = parse_key("transattn_4_48_hard_swish_2_ln")
    a, b, c = build_block(cfg, seed=1), build_block(cfg, seed=1), build_block(cfg, seed=2)
    for (na, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), na
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    assert torch.equal(example_input(cfg, seed=3), example_input(cfg, seed=3))
    assert example_input(cfg, batch=2).shape == (2, 16, 48)


def test_token_grid_round_trip() -> None:
    x = torch.arange(2 * 6 * 5 * 5, dtype=torch.float32).reshape(2, 6, 5, 5)
    t = to_tokens(x)
    assert t.shape == (2, 25, 6)
    assert torch.equal(t[:, 7], x[:, :, 1, 2])  # row-major: token 7 = (y 1, x 2)
    assert torch.equal(to_grid(t), x)


# A max-size block run with a smaller active config must equal the exact-size block that
# inherits its slices: the mechanism the supernet's get_active_subnet() is built on.
ELASTIC = [
    ("firstconv_128_3_24_2_3", "firstconv_128_3_16_2_3", {"cout": 16}),
    ("conv_8_24_32_6_2_hard_swish_5_se", "conv_8_16_24_3_2_hard_swish_3_se", {"cout": 24, "expand": 3, "kernel": 3}),
    ("conv_8_24_24_1_1_hard_swish_5_nose", "conv_8_16_16_1_1_hard_swish_3_nose",
     {"cout": 16, "expand": 1, "kernel": 3}),
    ("transds_5_96_160_2_6", "transds_5_80_144_2_6", {"cout": 144}),
    ("transds_8_96_160_1_6", "transds_8_80_80_1_6", {"cout": 80}),
    ("transattn_5_96_hard_swish_4_ln", "transattn_3_64_hard_swish_2_ln", {"v_scale": 2}),
    ("transffn_4_96_5_hard_swish_ln", "transffn_4_64_3_hard_swish_ln", {"mlp": 3}),
    ("mbpool_3_320_1984_6_hard_swish", "mbpool_2_160_1984_6_hard_swish", {}),
]


@pytest.mark.parametrize(("big_key", "small_key", "active"), ELASTIC, ids=[e[1] for e in ELASTIC])
def test_elastic_slice_equals_standalone(big_key: str, small_key: str, active: dict[str, int]) -> None:
    big_cfg, small_cfg = parse_key(big_key), parse_key(small_key)
    big = construct_block(big_cfg)
    if isinstance(big, MBConv):  # a supernet layer 0 whose input width varies keeps a shortcut conv
        big = MBConv.from_cfg(big_cfg, shortcut_conv=True)  # type: ignore[arg-type]
    init_weights_(big, torch.Generator().manual_seed(5)).eval()
    big.set_active(**active)
    small = construct_block(small_cfg).eval()
    inherit(small, big)
    x = example_input(small_cfg)
    with torch.no_grad():
        torch.testing.assert_close(big(x), small(x), atol=1e-5, rtol=1e-5)


def test_active_config_is_bounded() -> None:
    block = construct_block(parse_key("conv_8_16_24_3_2_hard_swish_3_se"))
    with pytest.raises(ValueError, match="exceeds"):
        block.set_active(cout=32)
    with pytest.raises(ValueError, match="expand 1"):
        block.set_active(expand=1)


def test_sliced_batchnorm_trains_shared_statistics_in_place() -> None:
    block = construct_block(parse_key("conv_8_16_24_4_1_hard_swish_3_se"))
    block.set_active(cout=16, expand=3)
    before = block.project_bn.running_mean.clone()
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    block.train()(x).sum().backward()
    after = block.project_bn.running_mean
    assert not torch.equal(after[:16], before[:16])
    assert torch.equal(after[16:], before[16:])
    grad = block.project_conv.weight.grad
    assert grad is not None and grad[16:].abs().sum() == 0 and grad[:16, :48].abs().sum() > 0


def effv2_output_shape(cfg: BlockCfg) -> tuple[int, ...]:
    if isinstance(cfg, EffStemCfg):
        return (1, cfg.cout, cfg.hw_out, cfg.hw_out)
    if isinstance(cfg, (EffConvDSCfg, EffAttnDSCfg)):
        return (1, cfg.cout, cfg.hw_out, cfg.hw_out)
    if isinstance(cfg, EffHeadCfg):
        return (1, cfg.classes)
    return input_shape(cfg)


@pytest.mark.parametrize("key", [k for keys in EFFV2_SMALL.values() for k in keys])
def test_effv2_block_builds_and_costs_count_it(key: str) -> None:
    """Output shape, NCHW layout, and nas.costs' parameters (the published rule) and MACs (torch's counter)."""
    cfg = parse_key(key)
    block = build_block(cfg)
    flops = FlopCounterMode(display=False)
    with torch.no_grad(), flops:
        y = block(example_input(cfg))
    assert tuple(y.shape) == effv2_output_shape(cfg) and torch.isfinite(y).all()
    assert is_channel_last(cfg)
    f = block_features(cfg)
    assert f["params"] == count_params_published(block)
    assert f["macs"] == f["macs_ref"] == flops.get_total_flops() // 2


@pytest.mark.parametrize(("big_key", "small_key"), [("effattn_8_96_4_2", "effffn_7_64_3"),
                                                    ("effattn_8_96_4_2", "effattn_7_64_3_2"),
                                                    ("effconvds_9_48_96", "effconvds_9_32_64")])
def test_effv2_activate_runs_the_config(big_key: str, small_key: str) -> None:
    """`activate` sets a larger block (an AttnFFN also serves an FFN config) to compute the config's block."""
    big_cfg, small_cfg = parse_key(big_key), parse_key(small_key)
    big = build_block(big_cfg, seed=5)
    activate(big, small_cfg)
    small = construct_block(small_cfg).eval()
    inherit(small, big)
    x = example_input(small_cfg)
    with torch.no_grad():
        torch.testing.assert_close(big(x), small(x), atol=1e-5, rtol=1e-5)
