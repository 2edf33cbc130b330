"""A subnet is data: frozen, hashable, JSON round-trippable. Validation lives in the space."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

SUBNET_FORMAT_VERSION = 1


def _int(where: str, value: Any) -> int:
    """A choice as an int; 2.5, "2" or true are refused, never truncated or coerced."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} = {value!r} is not an integer")
    return value


def _choice(where: str, value: Any) -> int | tuple[int, ...]:
    """One choice (an int) or a per-block list of them (a tuple of ints)."""
    if isinstance(value, list):
        return tuple(_int(f"{where}[{i}]", v) for i, v in enumerate(value))
    return _int(where, value)


@dataclass(frozen=True)
class StageChoice:
    """Choices of one stage; fields a stage kind does not use stay None."""

    depth: int
    width: int
    kernel: int | None = None  # conv stages
    expand: int | None = None  # conv stages (the stem has no expansion: 1)
    mlp: int | None = None  # transformer stages
    v_scale: int | None = None  # transformer stages
    expands: tuple[int, ...] | None = None  # one expansion per block (EfficientFormerV2's FFNs)
    vit_num: int | None = None  # attention blocks at the end of the stage (EfficientFormerV2)

    def __post_init__(self) -> None:
        # The choices as one plain tuple, built once: a dict keyed on it hashes and compares in C, several
        # times faster than the dataclass's own hash and eq (fast latency prediction looks stages up by it).
        object.__setattr__(self, "choice_key", (self.depth, self.width, self.kernel, self.expand, self.mlp,
                                                self.v_scale, self.expands, self.vit_num))

    def to_dict(self) -> dict[str, int | list[int]]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Subnet:
    space: str
    resolution: int
    stages: tuple[StageChoice, ...]

    def to_dict(self, stage_names: tuple[str, ...] | None = None) -> dict[str, Any]:
        names = stage_names or tuple(str(i) for i in range(len(self.stages)))
        return {
            "format": SUBNET_FORMAT_VERSION,
            "space": self.space,
            "resolution": self.resolution,
            "stages": {n: s.to_dict() for n, s in zip(names, self.stages)},
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Subnet":
        version = data.get("format", SUBNET_FORMAT_VERSION)
        if version != SUBNET_FORMAT_VERSION:
            raise ValueError(f"subnet format {version} is not supported (this code reads {SUBNET_FORMAT_VERSION})")
        missing = [k for k in ("space", "resolution", "stages") if k not in data]
        if missing:
            raise ValueError(f"subnet: missing field(s) {missing}")
        if not isinstance(data["stages"], dict):
            raise ValueError(f"stages = {data['stages']!r} is not an object of stage name -> choices")
        allowed = {f.name for f in fields(StageChoice)}
        stages = []
        for name, st in data["stages"].items():
            if not isinstance(st, dict):
                raise ValueError(f"stages.{name} = {st!r} is not an object of choices")
            unknown = set(st) - allowed
            if unknown:
                raise ValueError(f"stage {name!r}: unknown field(s) {sorted(unknown)}; allowed {sorted(allowed)}")
            stages.append(StageChoice(**{k: _choice(f"stages.{name}.{k}", v) for k, v in st.items()}))
        return Subnet(space=str(data["space"]), resolution=_int("resolution", data["resolution"]),
                      stages=tuple(stages))

    def to_json(self, stage_names: tuple[str, ...] | None = None) -> str:
        return json.dumps(self.to_dict(stage_names), sort_keys=False)

    @staticmethod
    def from_json(text: str) -> "Subnet":
        return Subnet.from_dict(json.loads(text))
