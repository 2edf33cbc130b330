"""EfficientFormerV2's space (shared/docs/efficientformerv2.md): elastic depth and width per stage, elastic
expansion per FFN, elastic number of attention blocks at the end of stages 2 and 3, elastic resolution.

A subnet's stage carries `depth`, `width`, `expands` (one FFN expansion per block) and, in stages 2-3,
`vit_num` (its last `vit_num` blocks are AttnFFN; stage 2's with stride attention). Downsampling belongs to
layer 0 of stages 1-3 (3x3 conv before stages 1 and 2, dual-path attention before stage 3). The depth and
width grids span the four released networks (S0, S1, S2, L, all members); expansion and the attention count
go one below the released minimum (2, 1) so a slimming search can shrink them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from nas._registry import register_space
from nas.blocks import (
    BlockCfg,
    EffAttnCfg,
    EffAttnDSCfg,
    EffConvDSCfg,
    EffFFNCfg,
    EffHeadCfg,
    EffStemCfg,
    ceil_div,
)
from nas.searchspace import SearchSpace, StageSpec, invalid, reject_unused
from nas.spaces.effv2_net import RELEASED as RELEASED_CONFIGS
from nas.spaces.effv2_net import EffV2Config
from nas.subnet import StageChoice, Subnet

NAME = "efficientformerv2"
KIND = "effv2"
_E = (2, 3, 4)
_VIT = (1, 2, 3, 4, 5, 6)


@dataclass(frozen=True)
class EffV2StageSpec(StageSpec):
    """`expands` are the choices of every block's FFN expansion; `vit_nums` those of the number of AttnFFN
    blocks at the end of the stage (() for none); `downsample` the block opening the stage."""

    vit_nums: tuple[int, ...] = ()
    downsample: str = "none"  # "none", "conv" (EffConvDSCfg) or "attn" (EffAttnDSCfg)
    stride_attention: bool = False


STAGES = (
    EffV2StageSpec("stage0", KIND, stride=1, depths=(2, 3, 4, 5), widths=(32, 40), expands=_E),
    EffV2StageSpec("stage1", KIND, stride=2, depths=(2, 3, 4, 5), widths=(48, 64, 80), expands=_E, downsample="conv"),
    EffV2StageSpec("stage2", KIND, stride=2, depths=tuple(range(6, 16)), widths=(96, 120, 144, 168, 192), expands=_E,
                   vit_nums=_VIT, downsample="conv", stride_attention=True),
    EffV2StageSpec("stage3", KIND, stride=2, depths=tuple(range(4, 11)), widths=tuple(range(176, 385, 16)),
                   expands=_E, vit_nums=_VIT, downsample="attn"),
)
RESOLUTIONS = (160, 192, 224, 256)


def _vit_nums(spec: EffV2StageSpec, depth: int) -> list[int]:
    return [v for v in spec.vit_nums if v <= depth]


def _attention_from(spec: EffV2StageSpec) -> int | None:
    """The first block position that some subnet runs with attention (None: no attention in the stage)."""
    starts = [d - v for d in spec.depths for v in _vit_nums(spec, d)]
    return min(starts) if starts else None


@dataclass(frozen=True)
class EffV2Space(SearchSpace):
    """The SearchSpace hooks for EfficientFormerV2's stages, stem and head."""

    stages: tuple[EffV2StageSpec, ...]  # type: ignore[assignment]

    @staticmethod
    def stage_options(spec: StageSpec) -> dict[str, tuple[int, ...]]:
        """Field -> allowed values; `expands` lists the values allowed for each block's expansion, and
        `vit_num` (stages 2-3) is further bounded by the depth."""
        assert isinstance(spec, EffV2StageSpec)
        opts = {"depth": spec.depths, "width": spec.widths, "expands": spec.expands}
        if spec.vit_nums:
            opts["vit_num"] = spec.vit_nums
        return opts

    def validate_stage(self, spec: StageSpec, st: StageChoice) -> None:
        assert isinstance(spec, EffV2StageSpec)
        where = f"stages.{spec.name}"
        for fname, allowed in (("depth", spec.depths), ("width", spec.widths)):
            if getattr(st, fname) not in allowed:
                raise invalid(f"{where}.{fname}", getattr(st, fname), list(allowed))
        if not isinstance(st.expands, tuple) or len(st.expands) != st.depth:
            raise invalid(f"{where}.expands", st.expands, f"a list of {st.depth} values (one per block) from "
                                                          f"{list(spec.expands)}")
        for i, e in enumerate(st.expands):
            if e not in spec.expands:
                raise invalid(f"{where}.expands[{i}]", e, list(spec.expands))
        if spec.vit_nums and st.vit_num not in _vit_nums(spec, st.depth):
            raise invalid(f"{where}.vit_num", st.vit_num, _vit_nums(spec, st.depth))
        reject_unused(spec, st, self.stage_options(spec))

    def sample_stage(self, spec: StageSpec, rng: random.Random, widths: list[int]) -> StageChoice:
        assert isinstance(spec, EffV2StageSpec)
        depth, width = rng.choice(spec.depths), rng.choice(widths)
        expands = tuple(rng.choice(spec.expands) for _ in range(depth))
        vit_num = rng.choice(_vit_nums(spec, depth)) if spec.vit_nums else None
        return StageChoice(depth=depth, width=width, expands=expands, vit_num=vit_num)

    def mutate_stage(self, spec: StageSpec, st: StageChoice, rng: random.Random, prob: float) -> StageChoice:
        """Depth and width redrawn with probability `prob`, then each block's expansion (new blocks at the end
        get a random one) and the attention count (also when the new depth no longer allows it)."""
        assert isinstance(spec, EffV2StageSpec) and st.expands is not None
        depth = rng.choice(spec.depths) if rng.random() < prob else st.depth
        width = rng.choice(spec.widths) if rng.random() < prob else st.width
        kept = [*st.expands[:depth], *(rng.choice(spec.expands) for _ in range(depth - len(st.expands)))]
        expands = tuple(rng.choice(spec.expands) if rng.random() < prob else e for e in kept)
        vit_num = st.vit_num
        if spec.vit_nums:
            allowed = _vit_nums(spec, depth)
            if rng.random() < prob or vit_num not in allowed:
                vit_num = rng.choice(allowed)
        return StageChoice(depth=depth, width=width, expands=expands, vit_num=vit_num)

    def shrink_stage(self, spec: StageSpec, st: StageChoice) -> list[StageChoice]:
        """EfficientFormerV2's slimming actions: remove one block (A_N; any of them, its expansion with it),
        the next smaller width (A_C), one FFN's next smaller expansion (A_E); here also one attention block
        fewer."""
        assert isinstance(spec, EffV2StageSpec) and st.expands is not None
        out = []
        if st.depth - 1 in spec.depths:
            for j in range(st.depth):
                vit = st.vit_num
                if spec.vit_nums and vit not in _vit_nums(spec, st.depth - 1):
                    vit = max(_vit_nums(spec, st.depth - 1))
                out.append(StageChoice(depth=st.depth - 1, width=st.width,
                                       expands=st.expands[:j] + st.expands[j + 1:], vit_num=vit))
        smaller = [w for w in spec.widths if w < st.width]
        if smaller:
            out.append(replace(st, width=max(smaller)))
        for j, e in enumerate(st.expands):
            lower = [v for v in spec.expands if v < e]
            if lower:
                out.append(replace(st, expands=(*st.expands[:j], max(lower), *st.expands[j + 1:])))
        if spec.vit_nums and st.vit_num is not None and st.vit_num - 1 in spec.vit_nums:
            out.append(replace(st, vit_num=st.vit_num - 1))
        return list(dict.fromkeys(out))  # removing either of two equal neighbours gives the same stage

    def stage_feature_names(self, spec: StageSpec) -> list[str]:
        assert isinstance(spec, EffV2StageSpec)
        return ["depth", "width", "expand_mean", *(["vit_num"] if spec.vit_nums else [])]

    def stage_features(self, spec: StageSpec, st: StageChoice) -> list[float]:
        assert isinstance(spec, EffV2StageSpec) and st.expands is not None
        return [float(st.depth), float(st.width), sum(st.expands) / st.depth,
                *([float(st.vit_num)] if spec.vit_nums else [])]  # type: ignore[arg-type]

    def extreme_stage(self, spec: StageSpec, pick: Callable) -> StageChoice:
        assert isinstance(spec, EffV2StageSpec)
        depth = pick(spec.depths)
        vit_num = pick(_vit_nums(spec, depth)) if spec.vit_nums else None
        return StageChoice(depth=depth, width=pick(spec.widths), expands=(pick(spec.expands),) * depth,
                           vit_num=vit_num)

    # ---- blocks -----------------------------------------------------------------------------------------
    def stem_block(self, sub: Subnet) -> BlockCfg:
        return EffStemCfg(resolution=sub.resolution, cout=sub.stages[0].width)

    def head_block(self, hw: int, channels: int) -> BlockCfg:
        return EffHeadCfg(hw=hw, channels=channels)

    @staticmethod
    def layer_blocks(spec: StageSpec, st: StageChoice, layer: int, hw: int, cin: int) -> list[BlockCfg]:
        """Layer 0 of a downsampling stage: the downsampling block, then the stage's first block."""
        assert isinstance(spec, EffV2StageSpec) and st.expands is not None
        out: list[BlockCfg] = []
        if layer == 0 and spec.downsample != "none":
            ds = EffConvDSCfg if spec.downsample == "conv" else EffAttnDSCfg
            out.append(ds(hw=hw, cin=cin, cout=st.width))
            hw = ceil_div(hw, spec.stride)
        out.append(_block(spec, hw, st.width, st.expands[layer], attention=bool(st.vit_num)
                          and layer >= st.depth - st.vit_num))  # type: ignore[operator]
        return out

    def supernet_layers(self) -> tuple[BlockCfg, list[list[list[BlockCfg]]], BlockCfg]:
        """The largest subnet's blocks, with an AttnFFN at every position some subnet runs with attention
        (it serves the subnets that run an FFN there with its attention off)."""
        first, stages, head = self.layers_of(self.max_subnet())
        for spec, layers in zip(self.stages, stages):
            start = _attention_from(spec)
            for j, layer in enumerate(layers):
                cfg = layer[-1]
                if start is not None and j >= start and isinstance(cfg, EffFFNCfg):
                    layer[-1] = _block(spec, cfg.hw, cfg.channels, cfg.expand, attention=True)
        return first, stages, head

    def _iter_blocks(self) -> Iterator[BlockCfg]:
        widths = self._reachable_widths()
        for res in self.resolutions:
            hw = EffStemCfg(resolution=res, cout=widths[0][0]).hw_out
            yield from (EffStemCfg(resolution=res, cout=c) for c in widths[0])
            for i, spec in enumerate(self.stages):
                layer0 = [self.layer_blocks(spec, _probe(spec, cout, e, vit), 0, hw, cin)
                          for cout in widths[i] for cin in (widths[i - 1] if i else (cout,)) if cin <= cout
                          for e in spec.expands for vit in _probe_vits(spec)]
                for blocks in layer0:
                    yield from blocks
                hw = ceil_div(hw, spec.stride)
                for cout in widths[i]:
                    for e in spec.expands:
                        for vit in _probe_vits(spec):
                            yield from self.layer_blocks(spec, _probe(spec, cout, e, vit), 1, hw, cout)
            yield from (EffHeadCfg(hw=hw, channels=c) for c in widths[-1])


def _block(spec: EffV2StageSpec, hw: int, width: int, expand: int, attention: bool) -> BlockCfg:
    if attention:
        return EffAttnCfg(hw=hw, channels=width, expand=expand, stride=2 if spec.stride_attention else 1)
    return EffFFNCfg(hw=hw, channels=width, expand=expand)


def _probe_vits(spec: EffV2StageSpec) -> list[int | None]:
    """vit_num values that make block 0 and block 1 of a two-block probe stage an FFN (0) and an AttnFFN (2)."""
    return [0, 2] if spec.vit_nums else [None]


def _probe(spec: EffV2StageSpec, width: int, expand: int, vit_num: int | None) -> StageChoice:
    """A two-block stage choice used to list blocks (not a member of the space)."""
    return StageChoice(depth=2, width=width, expands=(expand, expand), vit_num=vit_num)


def released_subnet(cfg: EffV2Config) -> Subnet:
    """A released configuration as a subnet of this space (stages 2-3 share its vit_num)."""
    stages = tuple(StageChoice(depth=d, width=w, expands=tuple(e), vit_num=cfg.vit_num if i >= 2 else None)
                   for i, (d, w, e) in enumerate(zip(cfg.depths, cfg.widths, cfg.expands)))
    return Subnet(NAME, cfg.resolution, stages)


RELEASED: dict[str, Subnet] = {name: released_subnet(cfg) for name, cfg in RELEASED_CONFIGS.items()}


@register_space(NAME)
def efficientformerv2() -> SearchSpace:
    space = EffV2Space(NAME, resolutions=RESOLUTIONS, stages=STAGES)
    for sub in RELEASED.values():
        space.validate(sub)
    space.released.update(RELEASED)
    return space
