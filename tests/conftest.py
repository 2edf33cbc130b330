"""Shared pytest configuration: GPU tests skip where there is no CUDA device."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_adb"] if (Path(__file__).parent / "fixtures_adb.py").exists() else []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
