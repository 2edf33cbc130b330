"""A search space: a declarative stage table plus validation, sampling and block listing.

`SearchSpace` is ElasticViT's kind of space (conv and transformer stages, first conv, MBPool head); a space
of another family subclasses it and overrides the per-stage hooks (`validate_stage`, `sample_stage`,
`extreme_stage`, `layer_blocks`, `stem_block`, `head_block`, `supernet_layers`, `_iter_blocks`), keeping the
shared machinery (resolution, stage count and width checks, the sampling loop, the block walk).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

from nas.blocks import (
    AttentionCfg,
    BlockCfg,
    FFNCfg,
    FirstConvCfg,
    HeadCfg,
    MBConvCfg,
    TransDSCfg,
    ceil_div,
)
from nas.subnet import StageChoice, Subnet


class InvalidSubnet(ValueError):
    """A subnet that the space does not contain; the message names the field and its allowed values."""


def invalid(where: str, value: object, allowed: object) -> InvalidSubnet:
    return InvalidSubnet(f"{where} = {value!r} is not allowed; allowed: {allowed}")


CHOICE_FIELDS = ("kernel", "expand", "mlp", "v_scale", "expands", "vit_num")  # StageChoice's optional fields


def reject_unused(spec: "StageSpec", st: StageChoice, used: Iterable[str]) -> None:
    """Raise InvalidSubnet for a choice the stage's kind does not have (it must stay None)."""
    unused = [f for f in CHOICE_FIELDS if f not in used and getattr(st, f) is not None]
    if unused:
        raise invalid(f"stages.{spec.name}.{unused[0]}", getattr(st, unused[0]), None)


@dataclass(frozen=True)
class StageSpec:
    name: str
    kind: str  # "mbconv" or "transformer" here; other spaces' kinds in their StageSpec subclasses
    stride: int
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    kernels: tuple[int, ...] = ()
    expands: tuple[int, ...] = ()  # () for the stem: expansion 1
    mlps: tuple[int, ...] = ()
    v_scales: tuple[int, ...] = ()
    se: bool = False
    ds_expand: int = 6  # transformer stages: expansion of the downsampling MBConv


@dataclass(frozen=True)
class SearchSpace:
    name: str
    resolutions: tuple[int, ...]
    stages: tuple[StageSpec, ...]  # stage 0 is the stem; its width is the first conv's width
    head_hidden: int = 1984
    head_expand: int = 6
    released: dict[str, Subnet] = field(default_factory=dict, compare=False, hash=False)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    # ---- validation -------------------------------------------------------------------
    def validate(self, sub: Subnet) -> Subnet:
        if sub.space != self.name:
            raise invalid("space", sub.space, [self.name])
        if sub.resolution not in self.resolutions:
            raise invalid("resolution", sub.resolution, list(self.resolutions))
        if len(sub.stages) != len(self.stages):
            raise invalid("number of stages", len(sub.stages), len(self.stages))
        prev_width = 0
        for spec, st in zip(self.stages, sub.stages):
            self.validate_stage(spec, st)
            if st.width < prev_width:
                raise InvalidSubnet(
                    f"stages.{spec.name}.width = {st.width} is smaller than the previous stage's {prev_width}; "
                    "widths never decrease"
                )
            prev_width = st.width
        return sub

    def validate_stage(self, spec: StageSpec, st: StageChoice) -> None:
        """Raise InvalidSubnet naming the first choice of `st` that `spec` does not allow."""
        opts = self.stage_options(spec)
        for fname, allowed in opts.items():
            value = getattr(st, fname)
            if value not in allowed:
                raise invalid(f"stages.{spec.name}.{fname}", value, list(allowed))
        reject_unused(spec, st, opts)

    @staticmethod
    def stage_options(spec: StageSpec) -> dict[str, tuple[int, ...]]:
        """The choices of one stage: field name -> allowed values."""
        opts: dict[str, tuple[int, ...]] = {"depth": spec.depths, "width": spec.widths}
        if spec.kind == "mbconv":
            opts["kernel"] = spec.kernels
            if spec.expands:
                opts["expand"] = spec.expands
        else:
            opts["mlp"] = spec.mlps
            opts["v_scale"] = spec.v_scales
        return opts

    # ---- sampling ---------------------------------------------------------------------
    def sample(self, rng: random.Random, max_tries: int = 1000) -> Subnet:
        """Uniform per-choice sampling; widths re-drawn until non-decreasing (capped)."""
        for _ in range(max_tries):
            stages = []
            prev = 0
            for spec in self.stages:
                widths = [w for w in spec.widths if w >= prev]
                if not widths:
                    break
                st = self.sample_stage(spec, rng, widths)
                prev = st.width
                stages.append(st)
            else:
                return Subnet(self.name, rng.choice(self.resolutions), tuple(stages))
        raise RuntimeError(f"could not sample a valid subnet of {self.name!r} in {max_tries} tries")

    def sample_stage(self, spec: StageSpec, rng: random.Random, widths: list[int]) -> StageChoice:
        """One stage's choices, its width drawn from `widths` (those not below the previous stage's)."""
        choice = {k: rng.choice(v) for k, v in self.stage_options(spec).items()}
        choice["width"] = rng.choice(widths)
        return StageChoice(**choice)

    def mutate_stage(self, spec: StageSpec, st: StageChoice, rng: random.Random, prob: float) -> StageChoice:
        """`st` with each choice redrawn with probability `prob` (the evolutionary search's mutation)."""
        changes = {f: rng.choice(v) for f, v in self.stage_options(spec).items() if rng.random() < prob}
        return replace(st, **changes)

    def shrink_stage(self, spec: StageSpec, st: StageChoice) -> list[StageChoice]:
        """The stage one step smaller in each of its choices (greedy slimming's moves): each choice at its
        next smaller allowed value."""
        out = []
        for f, allowed in self.stage_options(spec).items():
            smaller = [v for v in allowed if v < getattr(st, f)]
            if smaller:
                out.append(replace(st, **{f: max(smaller)}))
        return out

    def shrink_moves(self, sub: Subnet) -> list[Subnet]:
        """Every subnet of the space one step smaller than `sub`: one stage shrunk (`shrink_stage`), or the next
        smaller resolution."""
        out = [replace(sub, resolution=max(r for r in self.resolutions if r < sub.resolution))] \
            if sub.resolution > min(self.resolutions) else []
        for i, (spec, st) in enumerate(zip(self.stages, sub.stages)):
            for new in self.shrink_stage(spec, st):
                cand = replace(sub, stages=(*sub.stages[:i], new, *sub.stages[i + 1:]))
                if i == 0 or new.width >= sub.stages[i - 1].width:
                    out.append(cand)
        return out

    def stage_feature_names(self, spec: StageSpec) -> list[str]:
        """Names of `stage_features` (the accuracy predictor's per-stage columns)."""
        return list(self.stage_options(spec))

    def stage_features(self, spec: StageSpec, st: StageChoice) -> list[float]:
        """A stage's choices as numbers, one per `stage_feature_names`."""
        return [float(getattr(st, k)) for k in self.stage_options(spec)]

    def extreme_stage(self, spec: StageSpec, pick: Callable) -> StageChoice:
        """The stage with every choice at `pick` (min or max) of its options."""
        return StageChoice(**{k: pick(v) for k, v in self.stage_options(spec).items()})

    def _extreme(self, pick: Callable) -> Subnet:
        stages = [self.extreme_stage(s, pick) for s in self.stages]
        return self.validate(Subnet(self.name, pick(self.resolutions), tuple(stages)))

    def min_subnet(self) -> Subnet:
        return self._extreme(min)

    def max_subnet(self) -> Subnet:
        return self._extreme(max)

    def from_dict(self, data: dict) -> Subnet:
        """Parse and validate a subnet's JSON form; its stages are this space's, by name (any order)."""
        stages = data.get("stages", {})
        if not isinstance(stages, dict) or set(stages) != set(self.stage_names):
            shown = list(stages) if isinstance(stages, dict) else stages
            raise InvalidSubnet(f"stages = {shown!r} is not allowed; allowed: {list(self.stage_names)}")
        ordered = {**data, "stages": {name: stages[name] for name in self.stage_names}}
        return self.validate(Subnet.from_dict(ordered))

    def subnet(self, name: str) -> Subnet:
        if name not in self.released:
            raise ValueError(f"no released subnet {name!r} in {self.name!r}; known: {list(self.released)}")
        return self.released[name]

    # ---- blocks -----------------------------------------------------------------------
    def blocks_of(self, sub: Subnet) -> list[BlockCfg]:
        """The blocks a subnet runs, in order (the unit of measurement and of the LUT)."""
        first, stages, head = self.layers_of(sub)
        return [first, *(b for layers in stages for layer in layers for b in layer), head]

    def layers_of(self, sub: Subnet) -> tuple[BlockCfg, list[list[list[BlockCfg]]], BlockCfg]:
        """`blocks_of(sub)` grouped: (stem block, per stage per layer its blocks, head block)."""
        self.validate(sub)
        first = self.stem_block(sub)
        hw, cin = first.hw_out, first.cout  # type: ignore[union-attr]
        stages: list[list[list[BlockCfg]]] = []
        for spec, st in zip(self.stages, sub.stages):
            layers = []
            for layer in range(st.depth):
                layers.append(self.layer_blocks(spec, st, layer, hw, cin))
                if layer == 0:
                    hw = ceil_div(hw, spec.stride)
                cin = st.width
            stages.append(layers)
        return first, stages, self.head_block(hw, cin)

    def stem_block(self, sub: Subnet) -> BlockCfg:
        """The block on the image (it has `hw_out` and `cout`)."""
        return FirstConvCfg(resolution=sub.resolution, cout=sub.stages[0].width)

    def head_block(self, hw: int, channels: int) -> BlockCfg:
        return HeadCfg(hw=hw, channels=channels, hidden=self.head_hidden, expand=self.head_expand)

    def supernet_layers(self) -> tuple[BlockCfg, list[list[list[BlockCfg]]], BlockCfg]:
        """The weight-sharing supernet's blocks, grouped as `layers_of`: the largest block of every position."""
        return self.layers_of(self.max_subnet())

    @staticmethod
    def layer_blocks(spec: StageSpec, st: StageChoice, layer: int, hw: int, cin: int) -> list[BlockCfg]:
        """The blocks of one layer of a stage, entered at side `hw` with `cin` channels."""
        stride = spec.stride if layer == 0 else 1
        if spec.kind == "mbconv":
            expand = st.expand if st.expand is not None else 1
            return [MBConvCfg(hw=hw, cin=cin, cout=st.width, expand=expand, stride=stride,  # type: ignore[arg-type]
                              kernel=st.kernel, se=spec.se)]
        out: list[BlockCfg] = []
        if layer == 0:
            out.append(TransDSCfg(hw=hw, cin=cin, cout=st.width, stride=stride, expand=spec.ds_expand))
            hw = ceil_div(hw, stride)
        out.append(AttentionCfg(hw=hw, channels=st.width, v_scale=st.v_scale))  # type: ignore[arg-type]
        out.append(FFNCfg(hw=hw, channels=st.width, mlp=st.mlp))  # type: ignore[arg-type]
        return out

    def enumerate_blocks(self) -> list[BlockCfg]:
        """Every distinct block that some subnet of the space runs ("every elastic config")."""
        seen: dict[str, BlockCfg] = {}
        for cfg in self._iter_blocks():
            seen.setdefault(cfg.key, cfg)
        return list(seen.values())

    def _reachable_widths(self) -> list[tuple[int, ...]]:
        fwd: list[set[int]] = []
        lo = 0
        for spec in self.stages:
            ws = {w for w in spec.widths if w >= lo}
            fwd.append(ws)
            lo = min(ws)
        hi = 10**9
        out: list[tuple[int, ...]] = [()] * len(self.stages)
        for i in range(len(self.stages) - 1, -1, -1):
            ws = {w for w in fwd[i] if w <= hi}
            out[i] = tuple(sorted(ws))
            hi = max(ws)
        return out

    def _iter_blocks(self) -> Iterator[BlockCfg]:
        widths = self._reachable_widths()
        for res in self.resolutions:
            for c0 in widths[0]:
                yield self.stem_block(Subnet(self.name, res, (StageChoice(depth=1, width=c0),)))
            hw = ceil_div(res, 2)
            for i, spec in enumerate(self.stages):
                prev_widths = widths[i - 1] if i > 0 else widths[0]
                st_base = dict(self.stage_options(spec))
                for cout in widths[i]:
                    cins = [cout] if i == 0 else [c for c in prev_widths if c <= cout]
                    for combo in _product({k: v for k, v in st_base.items() if k not in ("depth", "width")}):
                        st = StageChoice(depth=1, width=cout, **combo)
                        for cin in cins:
                            yield from self.layer_blocks(spec, st, 0, hw, cin)
                        if max(spec.depths) > 1:
                            hw_out = ceil_div(hw, spec.stride)
                            yield from self.layer_blocks(spec, st, 1, hw_out, cout)
                hw = ceil_div(hw, spec.stride)
            for c in widths[-1]:
                yield self.head_block(hw, c)


def _product(options: dict[str, tuple[int, ...]]) -> Iterator[dict[str, int]]:
    items = list(options.items())
    if not items:
        yield {}
        return
    (k, vals), rest = items[0], dict(items[1:])
    for v in vals:
        for tail in _product(rest):
            yield {k: v, **tail}
