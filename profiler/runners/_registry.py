"""Runner registry: runners are chosen by name on the command line."""
from __future__ import annotations

from typing import Callable

from profiler.runners.base import Runner

_RUNNERS: dict[str, Callable[..., Runner]] = {}


def register_runner(name: str) -> Callable[[Callable[..., Runner]], Callable[..., Runner]]:
    def deco(factory: Callable[..., Runner]) -> Callable[..., Runner]:
        _RUNNERS[name] = factory
        return factory

    return deco


def list_runners() -> list[str]:
    return sorted(_RUNNERS)


def create_runner(name: str, **kwargs: object) -> Runner:
    if name not in _RUNNERS:
        raise ValueError(f"unknown runner {name!r}; known: {list_runners()}")
    return _RUNNERS[name](**kwargs)
