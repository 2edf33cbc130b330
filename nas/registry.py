"""Search spaces by name (what `--space` chooses): `list_spaces()`, `create_space(name)`.

Importing this module loads the built-in spaces (`nas.spaces`), which register themselves through
`nas._registry.register_space`.
"""
from __future__ import annotations

import nas.spaces  # noqa: F401  (registers the built-in spaces)
from nas._registry import SPACES
from nas.searchspace import SearchSpace


def list_spaces() -> list[str]:
    return sorted(SPACES)


def create_space(name: str) -> SearchSpace:
    if name not in SPACES:
        raise ValueError(f"unknown search space {name!r}; known: {sorted(SPACES)}")
    return SPACES[name]()
