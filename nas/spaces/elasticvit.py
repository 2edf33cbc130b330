"""ElasticViT's released space (shared/docs/search-space.md), the project's default."""
from __future__ import annotations

from nas._registry import register_space
from nas.searchspace import SearchSpace, StageSpec
from nas.subnet import StageChoice, Subnet

NAME = "elasticvit"
_CONV_E = (3, 4, 5, 6)
_K = (3, 5)
_MLP = (2, 3, 4, 5)
_V = (2, 3, 4)

STAGES = (
    StageSpec("stem", "mbconv", stride=1, depths=(1, 2), widths=(16, 24), kernels=_K),
    StageSpec("conv1", "mbconv", stride=2, depths=(2, 3, 4, 5), widths=(16, 24, 32), kernels=_K, expands=_CONV_E),
    StageSpec("conv2", "mbconv", stride=2, depths=(2, 3, 4, 5, 6), widths=(16, 24, 32, 40, 48), kernels=_K,
              expands=_CONV_E, se=True),
    StageSpec("trans1", "transformer", stride=2, depths=(1, 2, 3, 4, 5), widths=(48, 64, 80, 96), mlps=_MLP,
              v_scales=_V),
    StageSpec("trans2", "transformer", stride=1, depths=tuple(range(1, 7)), widths=tuple(range(80, 161, 16)),
              mlps=_MLP, v_scales=_V),
    StageSpec("trans3", "transformer", stride=2, depths=tuple(range(1, 7)), widths=tuple(range(144, 289, 16)),
              mlps=_MLP, v_scales=_V),
    StageSpec("trans4", "transformer", stride=2, depths=tuple(range(1, 7)), widths=tuple(range(160, 321, 16)),
              mlps=_MLP, v_scales=_V),
)


def per_stage(res: int, widths: tuple[int, ...], depths: tuple[int, ...], kernels: tuple[int, int, int],
              expands: tuple[int, int], mlps: tuple[int, int, int, int], v_scales: tuple[int, int, int, int]) -> Subnet:
    """A subnet written as the released configs are (uniform within each stage): R, widths c0..trans4,
    depths stem..trans4, kernel stem/conv1/conv2, expand conv1/conv2, mlp and v_scale trans1..4."""
    stages = [StageChoice(depth=depths[0], width=widths[0], kernel=kernels[0])]
    for i in (1, 2):
        stages.append(StageChoice(depth=depths[i], width=widths[i], kernel=kernels[i], expand=expands[i - 1]))
    for i in range(4):
        stages.append(StageChoice(depth=depths[3 + i], width=widths[3 + i], mlp=mlps[i], v_scale=v_scales[i]))
    return Subnet(NAME, res, tuple(stages))


# The nine released subnets, search-space.md section 3 (Moonlit's configs/final_3min_space_eval.yaml).
RELEASED: dict[str, Subnet] = {
    "T1": per_stage(128, (16, 24, 32, 64, 96, 176, 272), (1, 2, 3, 1, 1, 1, 1), (3, 3, 3), (3, 3), (2, 2, 3, 4),
                    (2, 2, 2, 2)),
    "T2": per_stage(160, (16, 24, 40, 48, 96, 176, 256), (1, 2, 3, 1, 1, 2, 2), (3, 3, 3), (3, 3), (3, 4, 3, 2),
                    (2, 2, 2, 2)),
    "S1": per_stage(192, (16, 24, 40, 64, 96, 192, 272), (1, 3, 3, 2, 2, 2, 2), (3, 3, 3), (3, 3), (2, 2, 3, 4),
                    (2, 2, 2, 2)),
    "S2": per_stage(224, (16, 24, 48, 64, 96, 192, 256), (1, 3, 3, 2, 2, 2, 2), (3, 3, 3), (3, 3), (2, 2, 2, 4),
                    (2, 2, 2, 2)),
    "M": per_stage(224, (16, 32, 48, 64, 96, 192, 288), (1, 3, 5, 2, 2, 2, 2), (5, 3, 3), (3, 3), (2, 4, 4, 5),
                   (2, 2, 2, 2)),
    "L1": per_stage(256, (16, 24, 40, 64, 96, 192, 320), (1, 3, 3, 2, 2, 2, 2), (5, 5, 5), (3, 6), (4, 3, 4, 4),
                    (2, 2, 2, 2)),
    "L1.5": per_stage(256, (16, 24, 48, 64, 96, 256, 320), (2, 4, 4, 2, 2, 2, 2), (3, 3, 5), (3, 4), (4, 5, 3, 5),
                      (2, 2, 2, 2)),
    "L2": per_stage(256, (16, 24, 40, 80, 128, 256, 304), (1, 3, 4, 2, 2, 2, 2), (3, 3, 3), (6, 6), (3, 2, 3, 5),
                    (2, 2, 2, 3)),
    "L3": per_stage(256, (16, 32, 48, 80, 128, 256, 320), (1, 3, 4, 2, 2, 2, 2), (5, 3, 5), (5, 5), (4, 4, 3, 5),
                    (2, 2, 2, 2)),
}


@register_space(NAME)
def elasticvit() -> SearchSpace:
    space = SearchSpace(NAME, resolutions=(128, 160, 176, 192, 224, 256), stages=STAGES)
    for sub in RELEASED.values():
        space.validate(sub)
    space.released.update(RELEASED)
    return space
