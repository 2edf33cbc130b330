"""Shared pytest configuration: GPU tests skip where there is no CUDA device."""
from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures_adb"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True, scope="session")
def _export_cache(tmp_path_factory: pytest.TempPathFactory):
    """One conversion cache for the whole test session (conversions take ~1.5 s each)."""
    import os

    if "MOBILEVIT_NAS_CACHE" not in os.environ:
        os.environ["MOBILEVIT_NAS_CACHE"] = str(tmp_path_factory.mktemp("export-cache"))
    yield


@pytest.fixture(scope="session")
def space():
    """ElasticViT's search space (immutable: shared by every test)."""
    from nas.registry import create_space

    return create_space("elasticvit")


SPACE_NAMES = ("elasticvit", "efficientformerv2")  # tests/test_space.py checks this is every registered space


@pytest.fixture(scope="session", params=SPACE_NAMES)
def any_space(request: pytest.FixtureRequest):
    """Each registered search space in turn, for the tests every space must pass."""
    from nas.registry import create_space

    return create_space(request.param)


@pytest.fixture(scope="session")
def small_space(space):
    """The space at one small resolution: keeps CPU training steps around a second."""
    from dataclasses import replace

    return replace(space, resolutions=(128,))
