"""Registry of search spaces, chosen by name on the command line."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from nas.searchspace import SearchSpace

_SPACES: dict[str, Callable[[], "SearchSpace"]] = {}


def register_space(name: str) -> Callable[[Callable[[], "SearchSpace"]], Callable[[], "SearchSpace"]]:
    def deco(fn: Callable[[], "SearchSpace"]) -> Callable[[], "SearchSpace"]:
        if name in _SPACES:
            raise ValueError(f"search space {name!r} registered twice")
        _SPACES[name] = fn
        return fn

    return deco


def _load_builtin() -> None:
    import nas.spaces  # noqa: F401  (registers the built-in spaces)


def list_spaces() -> list[str]:
    _load_builtin()
    return sorted(_SPACES)


def create_space(name: str) -> "SearchSpace":
    _load_builtin()
    if name not in _SPACES:
        raise ValueError(f"unknown search space {name!r}; known: {sorted(_SPACES)}")
    return _SPACES[name]()
