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
    StageSpec("trans1", "transformer", stride=2, depths=(1, 2, 3, 4, 5), widths=(48, 64, 80, 96), mlps=_MLP, v_scales=_V),
    StageSpec("trans2", "transformer", stride=1, depths=tuple(range(1, 7)), widths=tuple(range(80, 161, 16)),
              mlps=_MLP, v_scales=_V),
    StageSpec("trans3", "transformer", stride=2, depths=tuple(range(1, 7)), widths=tuple(range(144, 289, 16)),
              mlps=_MLP, v_scales=_V),
    StageSpec("trans4", "transformer", stride=2, depths=tuple(range(1, 7)), widths=tuple(range(160, 321, 16)),
              mlps=_MLP, v_scales=_V),
)


def uniform(res: int, widths: tuple[int, ...], depths: tuple[int, ...], kernels: tuple[int, int, int],
            expands: tuple[int, int], mlps: tuple[int, int, int, int], v_scale: int = 2) -> Subnet:
    """A stage-uniform subnet written the way the released configs are: widths/depths per stage."""
    stages = [StageChoice(depth=depths[0], width=widths[0], kernel=kernels[0])]
    for i in (1, 2):
        stages.append(StageChoice(depth=depths[i], width=widths[i], kernel=kernels[i], expand=expands[i - 1]))
    for i in range(4):
        stages.append(StageChoice(depth=depths[3 + i], width=widths[3 + i], mlp=mlps[i], v_scale=v_scale))
    return Subnet(NAME, res, tuple(stages))


# Released subnets. T1, S1, L3 (full choices) are from search-space.md section 3; M is the
# "400M searched model" of Moonlit's configs/final_3min_space_eval_400M.yaml. For T2, S2 and L1 the
# docs give resolution, widths and depths only; their (kernel, expand, mlp) choices here are the
# stage-uniform ones, fewest non-3 kernels/expands, whose MACs match the published MMACs (within
# 0.2%). L1.5 and L2 are named in the paper but their architectures are in neither the docs nor
# the released configs, so they are not registered rather than invented.
RELEASED: dict[str, Subnet] = {
    "T1": uniform(128, (16, 24, 32, 64, 96, 176, 272), (1, 2, 3, 1, 1, 1, 1), (3, 3, 3), (3, 3), (2, 2, 3, 4)),
    "S1": uniform(192, (16, 24, 40, 64, 96, 192, 272), (1, 3, 3, 2, 2, 2, 2), (3, 3, 3), (3, 3), (2, 2, 3, 4)),
    "M": uniform(224, (16, 32, 48, 64, 96, 192, 288), (1, 3, 5, 2, 2, 2, 2), (5, 3, 3), (3, 3), (2, 4, 4, 5)),
    "T2": uniform(160, (16, 24, 40, 48, 96, 176, 256), (1, 2, 3, 1, 1, 2, 2), (3, 3, 3), (3, 3), (2, 3, 3, 4)),
    "S2": uniform(224, (16, 24, 48, 64, 96, 192, 256), (1, 3, 3, 2, 2, 2, 2), (3, 3, 3), (3, 3), (2, 2, 2, 5)),
    "L1": uniform(256, (16, 24, 40, 64, 96, 192, 320), (1, 3, 3, 2, 2, 2, 2), (3, 3, 3), (3, 5), (5, 5, 5, 5)),
    "L3": uniform(256, (16, 32, 48, 80, 128, 256, 320), (1, 3, 4, 2, 2, 2, 2), (5, 3, 5), (5, 5), (4, 4, 3, 5)),
}

# Published MMACs of the released subnets (search-space.md section 3, the repo's own counter).
PUBLISHED_MMACS: dict[str, float] = {
    "T1": 62.9, "T2": 120.0, "S1": 217.6, "S2": 318.5, "M": 415.6, "L1": 517.1, "L3": 815.4,
}


@register_space(NAME)
def elasticvit() -> SearchSpace:
    space = SearchSpace(NAME, resolutions=(128, 160, 176, 192, 224, 256), stages=STAGES)
    for sub in RELEASED.values():
        space.validate(sub)
    space.released.update(RELEASED)
    return space
