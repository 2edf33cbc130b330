"""The search-space registry's machinery: `@register_space(name)` and the table it fills.

It imports no space module, so space modules can register themselves without a cycle; look spaces up
through `nas.registry` (`list_spaces`, `create_space`), which loads the built-in spaces first.
"""
from __future__ import annotations

from typing import Callable

from nas.searchspace import SearchSpace

SPACES: dict[str, Callable[[], SearchSpace]] = {}


def register_space(name: str) -> Callable[[Callable[[], SearchSpace]], Callable[[], SearchSpace]]:
    def deco(fn: Callable[[], SearchSpace]) -> Callable[[], SearchSpace]:
        if name in SPACES:
            raise ValueError(f"search space {name!r} registered twice")
        SPACES[name] = fn
        return fn

    return deco
