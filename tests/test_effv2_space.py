"""EfficientFormerV2 as a registered search space: the released four are members with the published sizes
through nas.costs, its block keys and enumeration, validation, the command line, and the supernet."""
from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nas.blocks import parse_key
from nas.costs import subnet_costs
from nas.modules.effv2_attention import AttnFFN
from nas.registry import create_space, list_spaces
from nas.searchspace import InvalidSubnet, SearchSpace
from nas.space import main as space_main
from nas.spaces.effv2_net import PUBLISHED_GMACS, PUBLISHED_PARAMS_M, count_params_published
from nas.spaces.effv2_net import RELEASED as RELEASED_CONFIGS
from nas.supernet import Supernet, build_subnet
from tests.test_effv2_modules import EXACT_PARAMS_PUBLISHED_RULE

NAME = "efficientformerv2"


@pytest.fixture(scope="module")
def effv2() -> SearchSpace:
    return create_space(NAME)


def test_registered_next_to_elasticvit() -> None:
    assert {"elasticvit", NAME} <= set(list_spaces())


@pytest.mark.parametrize("name", list(RELEASED_CONFIGS))
def test_released_subnet_is_the_released_configuration(effv2: SearchSpace, name: str) -> None:
    cfg, sub = RELEASED_CONFIGS[name], effv2.subnet(name)
    assert sub.resolution == cfg.resolution == 224
    assert [st.width for st in sub.stages] == list(cfg.widths)
    assert [st.depth for st in sub.stages] == list(cfg.depths)
    assert [st.expands for st in sub.stages] == list(cfg.expands)
    assert [st.vit_num for st in sub.stages] == [None, None, cfg.vit_num, cfg.vit_num]
    assert effv2.validate(sub) is sub


@pytest.mark.parametrize("name", list(RELEASED_CONFIGS))
def test_released_sizes_through_the_cost_function(effv2: SearchSpace, name: str) -> None:
    """The space's cost function counts the published 3.5M / 6.1M / 12.6M / 26.1M (the official profiler's
    rule, exactly), and MACs near the published GMACs."""
    f = subnet_costs(effv2, effv2.subnet(name))
    assert f["params"] == EXACT_PARAMS_PUBLISHED_RULE[name]
    assert round(f["params"] / 1e6, 1) == PUBLISHED_PARAMS_M[name]
    assert abs(f["macs"] / 1e9 - PUBLISHED_GMACS[name]) <= 0.01
    print(f"{name}: {f['params'] / 1e6:.3f}M params, {f['macs'] / 1e9:.3f} GMACs")


def test_costs_count_the_built_network(effv2: SearchSpace) -> None:
    """nas.costs adds up what the network built from the space's blocks has and runs."""
    sub = dataclasses.replace(effv2.subnet("S0"), resolution=160)
    net = build_subnet(sub)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        y = net(torch.zeros(1, 3, 160, 160))
    f = subnet_costs(effv2, sub)
    assert y.shape == (1, 1000)
    assert count_params_published(net) == f["params"]
    assert counter.get_total_flops() // 2 == f["macs"]


def test_s0_blocks_in_order(effv2: SearchSpace) -> None:
    blocks = effv2.blocks_of(effv2.subnet("S0"))
    assert [b.type for b in blocks] == (["effstem"] + ["effffn"] * 2 + ["effconvds"] + ["effffn"] * 2
                                        + ["effconvds"] + ["effffn"] * 4 + ["effattn"] * 2 + ["effattnds"]
                                        + ["effffn"] * 2 + ["effattn"] * 2 + ["effhead"])
    assert [b.key for b in blocks if b.type in ("effattn", "effattnds", "effhead")] == [
        "effattn_14_96_4_2", "effattn_14_96_4_2", "effattnds_14_96_176", "effattn_7_176_3_1",
        "effattn_7_176_4_1", "effhead_7_176"]
    assert blocks[1].key == "effffn_56_32_4" and blocks[3].key == "effconvds_56_32_48"


def test_enumeration_round_trips_and_covers_sampled_subnets(effv2: SearchSpace) -> None:
    blocks = effv2.enumerate_blocks()
    assert len({b.key for b in blocks}) == len(blocks)
    for b in blocks:
        assert parse_key(b.key) == b
    keys = {b.key for b in blocks}
    rng = random.Random(5)
    for sub in [effv2.min_subnet(), effv2.max_subnet(), *effv2.released.values(),
                *(effv2.sample(rng) for _ in range(300))]:
        assert {b.key for b in effv2.blocks_of(sub)} <= keys


def test_sampled_attention_counts_fit_the_depth(effv2: SearchSpace) -> None:
    rng = random.Random(2)
    subs = [effv2.sample(rng) for _ in range(200)]
    for sub in subs:
        assert all(len(st.expands) == st.depth for st in sub.stages)
        assert [st.vit_num is None for st in sub.stages] == [True, True, False, False]
        assert all(1 <= st.vit_num <= st.depth for st in sub.stages[2:])
    assert {st.vit_num for sub in subs for st in sub.stages[2:]} == set(range(1, 7))


def _patched(effv2: SearchSpace, stage: str, **fields: object) -> dict:
    data = effv2.subnet("S0").to_dict(effv2.stage_names)
    data["stages"][stage].update(fields)
    return data


@pytest.mark.parametrize(("stage", "fields", "where"), [
    ("stage0", {"expands": [4, 4, 4]}, "stages.stage0.expands"),  # one per block: depth 2
    ("stage1", {"expands": [4, 5]}, r"stages.stage1.expands\[1\]"),
    ("stage1", {"expands": 4}, "stages.stage1.expands"),
    ("stage3", {"vit_num": 5}, "stages.stage3.vit_num"),  # more attention blocks than the depth 4
    ("stage2", {"vit_num": 0}, "stages.stage2.vit_num"),
    ("stage0", {"vit_num": 1}, "stages.stage0.vit_num"),  # no attention before stage 2
    ("stage0", {"kernel": 3}, "stages.stage0.kernel"),  # ElasticViT's fields are not this space's
    ("stage3", {"width": 200}, "stages.stage3.width"),
])
def test_invalid_subnet_names_the_field(effv2: SearchSpace, stage: str, fields: dict, where: str) -> None:
    with pytest.raises(InvalidSubnet, match=where.replace(".", r"\.")):
        effv2.from_dict(_patched(effv2, stage, **fields))


def test_elasticvit_refuses_the_new_fields() -> None:
    space = create_space("elasticvit")
    data = space.subnet("S1").to_dict(space.stage_names)
    data["stages"]["trans1"]["vit_num"] = 1
    with pytest.raises(InvalidSubnet, match=r"stages\.trans1\.vit_num"):
        space.from_dict(data)


def test_cli_list_keys_and_subnet(effv2: SearchSpace, capsys: pytest.CaptureFixture[str]) -> None:
    assert space_main(["--space", NAME, "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(RELEASED_CONFIGS)
    assert "params= 3.53M" in lines[0] and "MMACs=  395.9" in lines[0]
    assert space_main(["--space", NAME, "--keys"]) == 0
    assert capsys.readouterr().out.split() == [b.key for b in effv2.enumerate_blocks()]
    assert space_main(["--space", NAME, "--subnet", "S0", "--blocks"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params_m"] == round(EXACT_PARAMS_PUBLISHED_RULE["S0"] / 1e6, 4)
    assert out["subnet"]["stages"]["stage2"] == {"depth": 6, "width": 96, "expands": [4, 3, 3, 3, 4, 4],
                                                 "vit_num": 2}
    assert effv2.from_dict(out["subnet"]) == effv2.subnet("S0")
    assert out["blocks"] == [b.key for b in effv2.blocks_of(effv2.subnet("S0"))]


# ---- supernet ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def supernet(effv2: SearchSpace) -> Supernet:
    return Supernet(effv2, seed=0).eval()


def test_supernet_holds_attention_wherever_a_subnet_runs_it(supernet: Supernet) -> None:
    for i, layers in enumerate(supernet.stages):
        blocks = [layer[-1] if isinstance(layer, torch.nn.Sequential) else layer for layer in layers]
        assert [isinstance(b, AttnFFN) for b in blocks] == [i >= 2] * len(blocks)


@pytest.mark.slow
def test_active_subnet_matches_supernet(supernet: Supernet, effv2: SearchSpace) -> None:
    """S0 at 160 (bias tables read at a smaller side, FFN positions served by AttnFFNs with attention off) and
    a sampled subnet: the standalone network of copied slices computes what the supernet computes."""
    for sub in [dataclasses.replace(effv2.subnet("S0"), resolution=160), effv2.sample(random.Random(3))]:
        sub = dataclasses.replace(sub, resolution=160)
        supernet.set_active_subnet(sub)
        net = supernet.get_active_subnet()
        x = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(net(x), supernet(x), atol=1e-5, rtol=1e-5)
        assert count_params_published(net) == subnet_costs(effv2, sub)["params"]
        assert set(net.state_dict()) <= set(supernet.state_dict())
        attention = [type(b).__name__ for b in net.active_blocks()].count("AttnFFN")
        assert attention == sum(st.vit_num for st in sub.stages[2:])
