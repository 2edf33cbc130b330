"""Search space, subnet encoding, block catalogue and analytical costs."""
from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from nas.blocks import BLOCK_TYPES, KeyError_, parse_key
from nas.costs import FEATURE_NAMES, block_features, simd_utilisation, subnet_costs, subnet_features
from nas.registry import create_space, list_spaces
from nas.searchspace import InvalidSubnet
from nas.space import main as space_main
from nas.specs import resolve_subnet
from predictor.lut_io import load_flat
from tests.conftest import SPACE_NAMES

SHARED_LUT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "elasticvit-lut"



def test_registry_lists_default_space():
    assert "elasticvit" in list_spaces()
    with pytest.raises(ValueError, match="unknown search space"):
        create_space("nope")


def test_parametrised_tests_cover_every_space():
    assert sorted(SPACE_NAMES) == list_spaces()


# search-space.md section 3, "All nine released subnets, per stage" (read from Moonlit's
# ElasticViT/configs/final_3min_space_eval.yaml), in the doc's order:
# name: (R, widths c0..trans4, depths stem..trans4, kernel stem/conv1/conv2, expand conv1/conv2,
#        mlp trans1..4, v_scale trans1..4)
RELEASED_TABLE = {
    "T1": (128, (16, 24, 32, 64, 96, 176, 272), (1, 2, 3, 1, 1, 1, 1), (3, 3, 3), (3, 3), (2, 2, 3, 4), (2, 2, 2, 2)),
    "T2": (160, (16, 24, 40, 48, 96, 176, 256), (1, 2, 3, 1, 1, 2, 2), (3, 3, 3), (3, 3), (3, 4, 3, 2), (2, 2, 2, 2)),
    "S1": (192, (16, 24, 40, 64, 96, 192, 272), (1, 3, 3, 2, 2, 2, 2), (3, 3, 3), (3, 3), (2, 2, 3, 4), (2, 2, 2, 2)),
    "S2": (224, (16, 24, 48, 64, 96, 192, 256), (1, 3, 3, 2, 2, 2, 2), (3, 3, 3), (3, 3), (2, 2, 2, 4), (2, 2, 2, 2)),
    "M": (224, (16, 32, 48, 64, 96, 192, 288), (1, 3, 5, 2, 2, 2, 2), (5, 3, 3), (3, 3), (2, 4, 4, 5), (2, 2, 2, 2)),
    "L1": (256, (16, 24, 40, 64, 96, 192, 320), (1, 3, 3, 2, 2, 2, 2), (5, 5, 5), (3, 6), (4, 3, 4, 4), (2, 2, 2, 2)),
    "L1.5": (256, (16, 24, 48, 64, 96, 256, 320), (2, 4, 4, 2, 2, 2, 2), (3, 3, 5), (3, 4), (4, 5, 3, 5),
             (2, 2, 2, 2)),
    "L2": (256, (16, 24, 40, 80, 128, 256, 304), (1, 3, 4, 2, 2, 2, 2), (3, 3, 3), (6, 6), (3, 2, 3, 5), (2, 2, 2, 3)),
    "L3": (256, (16, 32, 48, 80, 128, 256, 320), (1, 3, 4, 2, 2, 2, 2), (5, 3, 5), (5, 5), (4, 4, 3, 5), (2, 2, 2, 2)),
}
# search-space.md section 3, the MMACs table (the released repo's own counter; none given for L1.5, L2).
PUBLISHED_MMACS = {"T1": 62.9, "T2": 120.0, "S1": 217.6, "S2": 318.5, "M": 415.6, "L1": 517.1, "L3": 815.4}
# `macs_ref` follows the counter's documented conventions but not every detail of it: T1, S1, L1, L3
# agree within 0.3%, M within 1.1%, S2 1.3%, T2 1.8% (the subnets themselves are exact, checked above).
MMACS_TOLERANCE = 0.02  # relative


def test_all_nine_released_subnets_are_registered_in_the_doc_order(space):
    assert list(space.released) == list(RELEASED_TABLE)


@pytest.mark.parametrize("name", list(RELEASED_TABLE))
def test_released_subnet_matches_the_published_table_field_by_field(space, name):
    res, widths, depths, kernels, expands, mlps, v_scales = RELEASED_TABLE[name]
    sub = space.subnet(name)
    assert sub.resolution == res
    assert [st.width for st in sub.stages] == list(widths)
    assert [st.depth for st in sub.stages] == list(depths)
    assert [st.kernel for st in sub.stages[:3]] == list(kernels)
    assert [st.expand for st in sub.stages[:3]] == [None, *expands]  # the stem has no expansion (1)
    assert [st.mlp for st in sub.stages[3:]] == list(mlps)
    assert [st.v_scale for st in sub.stages[3:]] == list(v_scales)
    assert all(st.kernel is st.expand is None for st in sub.stages[3:])
    assert all(st.mlp is st.v_scale is None for st in sub.stages[:3])


@pytest.mark.parametrize("name", list(PUBLISHED_MMACS))
def test_released_subnets_macs_match_published_table(space, name):
    mmacs = subnet_costs(space, space.subnet(name))["macs_ref"] / 1e6
    assert mmacs == pytest.approx(PUBLISHED_MMACS[name], rel=MMACS_TOLERANCE)


def test_cached_features_equal_the_feature_function(any_space):
    space = any_space  # each registered space
    sub = space.sample(random.Random(4))
    assert subnet_costs(space, sub) == subnet_features(space.blocks_of(sub))
    subnet_costs(space, sub)["macs"] = -1  # callers get a copy: the cache cannot be corrupted
    assert subnet_costs(space, sub)["macs"] > 0


def test_cli_lists_the_nine_released_subnets(capsys):
    assert space_main(["--list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list(RELEASED_TABLE)


def test_feature_map_sides_follow_doc_example(space):
    # search-space.md: R=160 -> stem 80, conv-1 40, conv-2 20, trans-1 10, trans-2 10, trans-3 5, trans-4 3
    sub = space.subnet("T2")
    assert sub.resolution == 160
    blocks = space.blocks_of(sub)
    attn_sides = [b.hw for b in blocks if b.type == "transattn"]
    assert attn_sides == [10, 10, 5, 5, 3, 3]
    assert blocks[-1].type == "mbpool" and blocks[-1].hw == 3


def test_subnet_json_round_trip_and_hash(any_space):
    space = any_space  # each registered space
    rng = random.Random(3)
    for _ in range(50):
        sub = space.sample(rng)
        again = space.from_dict(json.loads(sub.to_json(space.stage_names)))
        assert again == sub and hash(again) == hash(sub)
        with pytest.raises(dataclasses.FrozenInstanceError):
            sub.resolution = 1  # type: ignore[misc]


def test_sampling_is_seeded_and_valid(any_space):
    space = any_space  # each registered space
    a = [space.sample(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(11)
    subs = [space.sample(rng) for _ in range(300)]
    assert len(set(subs)) == 300
    for s in subs:
        widths = [st.width for st in s.stages]
        assert widths == sorted(widths)
        space.validate(s)


def test_min_max_subnets_bound_macs(any_space):
    space = any_space  # each registered space
    lo = subnet_costs(space, space.min_subnet())["macs"]
    hi = subnet_costs(space, space.max_subnet())["macs"]
    rng = random.Random(0)
    for _ in range(100):
        m = subnet_costs(space, space.sample(rng))["macs"]
        assert lo <= m <= hi


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"resolution": 100}, "resolution"),
        ({"stages.conv1.expand": 7}, "stages.conv1.expand"),
        ({"stages.trans2.width": 88}, "stages.trans2.width"),
        ({"stages.stem.expand": 3}, "stages.stem.expand"),
        ({"stages.trans1.width": 48, "stages.conv2.width": 48, "stages.trans2.width": 80, "stages.conv1.width": 32,
          "stages.stem.width": 24, "stages.trans3.width": 144, "stages.trans4.width": 160, "stages.trans1.depth": 9},
         "stages.trans1.depth"),
    ],
)
def test_invalid_subnet_names_field_and_allowed(space, patch, field):
    data = space.subnet("S1").to_dict(space.stage_names)
    for path, value in patch.items():
        parts = path.split(".")
        target = data
        for p in parts[:-1]:
            target = target[p]
        target[parts[-1]] = value
    with pytest.raises(InvalidSubnet, match=field.replace(".", r"\.")) as e:
        space.from_dict(data)
    assert "allowed" in str(e.value)


def test_widths_must_not_decrease(space):
    data = space.subnet("S1").to_dict(space.stage_names)
    data["stages"]["trans2"]["width"] = 80
    data["stages"]["trans1"]["width"] = 96
    with pytest.raises(InvalidSubnet, match="never decrease"):
        space.from_dict(data)


def test_enumeration_counts_and_keys_round_trip(space):
    blocks = space.enumerate_blocks()
    assert Counter(b.type for b in blocks) == {
        "firstconv": 12, "conv": 1224, "transds": 964, "transattn": 360, "transffn": 480, "mbpool": 33,
    }
    for b in blocks:
        assert parse_key(b.key) == b
    # every block of every sampled subnet is enumerated
    keys = {b.key for b in blocks}
    rng = random.Random(5)
    for _ in range(300):
        assert {b.key for b in space.blocks_of(space.sample(rng))} <= keys


def test_published_lut_keys_parse_and_cover_space(space):
    lut = load_flat("pixel4")  # the copy shipped in measurements/published/
    assert len(lut) == 12116
    for key in lut:
        assert parse_key(key).key == key
    assert {b.key for b in space.enumerate_blocks()} <= set(lut)
    # search-space.md: Pixel 4 sums T1 6.82 ms, S1 21.10 ms, L3 78.85 ms
    for name, ms in {"T1": 6.82, "S1": 21.10, "L3": 78.85}.items():
        total = sum(lut[b.key] for b in space.blocks_of(space.subnet(name)))
        assert total == pytest.approx(ms, abs=0.006)


@pytest.mark.skipif(not SHARED_LUT_DIR.exists(), reason="shared data not beside the checkout")
@pytest.mark.parametrize("name", ["pixel4", "xiaomi11"])
def test_shipped_luts_equal_the_shared_originals(name):
    assert load_flat(name) == json.loads((SHARED_LUT_DIR / f"{name}.json").read_text())


@pytest.mark.parametrize("key", ["conv_64_16_16", "transattn_7_x_hard_swish_2_ln", "foo_1_2",
                                 "conv_64_16_16_1_1_relu_3_se"])
def test_bad_keys_raise(key):
    with pytest.raises(KeyError_):
        parse_key(key)


# The block types each space's enumeration contains (together: every type of the catalogue).
SPACE_BLOCK_TYPES = {"elasticvit": ("firstconv", "conv", "transds", "transattn", "transffn", "mbpool"),
                     "efficientformerv2": ("effstem", "effffn", "effattn", "effconvds", "effattnds", "effhead")}


def test_every_block_type_belongs_to_a_space():
    assert sorted(t for types in SPACE_BLOCK_TYPES.values() for t in types) == sorted(BLOCK_TYPES)
    for name, types in SPACE_BLOCK_TYPES.items():
        assert {b.type for b in create_space(name).enumerate_blocks()} == set(types)


@pytest.mark.parametrize("space_name, btype", [(s, t) for s, types in SPACE_BLOCK_TYPES.items() for t in types])
def test_block_features_are_complete_and_positive(space_name, btype):
    space = create_space(space_name)
    cfg = next(b for b in space.enumerate_blocks() if b.type == btype)
    f = block_features(cfg)
    assert tuple(f) == FEATURE_NAMES
    assert f["macs"] > 0 and f["params"] > 0 and f["total_bytes"] > f["weight_bytes"]
    assert 0 < f["simd16_util"] <= f["simd8_util"] <= f["simd4_util"] <= 1.0 + 1e-12


def test_attention_traffic_grows_quadratically_with_tokens():
    a = block_features(parse_key("transattn_7_96_hard_swish_2_ln"))["attn_bytes"]
    b = block_features(parse_key("transattn_14_96_hard_swish_2_ln"))["attn_bytes"]
    assert b == pytest.approx(16 * a)


def test_simd_staircase():
    assert simd_utilisation(16, 8) == 1.0
    assert simd_utilisation(20, 8) == pytest.approx(20 / 24)
    assert simd_utilisation(3, 4) == pytest.approx(0.75)


def test_cli_keys_and_subnet(capsys):
    assert space_main(["--space", "elasticvit", "--keys"]) == 0
    keys = capsys.readouterr().out.split()
    assert len(keys) == 3073 and len(set(keys)) == 3073
    assert space_main(["--space", "elasticvit", "--subnet", "S1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["subnet"]["resolution"] == 192
    assert abs(out["mmacs_ref"] - 217.6) / 217.6 < 0.02
    assert space_main(["--subnet", "nope"]) == 2
    assert "unknown subnet" in capsys.readouterr().err


def test_subnet_json_stage_order_does_not_matter(space):
    data = json.loads(json.dumps(space.subnet("S1").to_dict(space.stage_names), sort_keys=True))
    assert list(data["stages"]) != list(space.stage_names)  # sorted keys reorder the stages
    assert space.from_dict(data) == space.subnet("S1")


def test_printed_subnet_resolves_back(space, tmp_path, capsys):
    assert space_main(["--sample", "7"]) == 0
    printed = tmp_path / "s7.json"
    printed.write_text(capsys.readouterr().out)
    assert resolve_subnet(space, str(printed)) == space.sample(random.Random(7))
    # the printed JSON as a string too, however long (not taken for a file name)
    long_json = json.dumps(space.max_subnet().to_dict(space.stage_names), indent=8)
    assert len(long_json) > 255 and resolve_subnet(space, long_json) == space.max_subnet()
    with pytest.raises(ValueError, match="unknown subnet 'L9'"):
        resolve_subnet(space, "L9")


@pytest.mark.parametrize("where, value", [("depth", 2.5), ("depth", "2"), ("depth", True), ("width", 24.0)])
def test_non_integer_choices_are_refused_not_truncated(space, tmp_path, capsys, where, value):
    data = space.subnet("S1").to_dict(space.stage_names)
    data["stages"]["conv1"][where] = value
    with pytest.raises(ValueError, match=rf"stages\.conv1\.{where} = .* is not an integer"):
        space.from_dict(data)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    assert space_main(["--subnet", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is not an integer" in err and len(err.strip().splitlines()) == 1


def test_non_integer_resolution_is_refused(space):
    data = space.subnet("S1").to_dict(space.stage_names)
    data["resolution"] = 192.5
    with pytest.raises(ValueError, match="resolution = 192.5 is not an integer"):
        space.from_dict(data)


@pytest.mark.parametrize("text", ["garbage", "{not json", ""])
def test_non_json_subnet_file_says_so(tmp_path, capsys, text):
    path = tmp_path / "foo.json"
    path.write_text(text)
    assert space_main(["--subnet", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"subnet file {path} is not valid JSON" in err and "unknown subnet" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("spec, msg", [('{"space": "elasticvit"', "the subnet string is not valid JSON"),
                                       ("[1, 2]", "unknown subnet"),
                                       ('{"subnet": [1]}', "expected a JSON object"),
                                       ('{"space": "elasticvit", "resolution": 192}', "stages = "),
                                       ('{"stages": {}}', "stages = ")])
def test_malformed_subnet_json_is_a_value_error(space, spec, msg):
    with pytest.raises(ValueError, match=msg):
        resolve_subnet(space, spec)
