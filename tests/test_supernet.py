"""Supernet: a subnet extracted with get_active_subnet() computes what the supernet computes."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from nas.costs import subnet_costs
from nas.registry import create_space
from nas.searchspace import InvalidSubnet, SearchSpace
from nas.subnet import Subnet
from nas.supernet import Supernet, build_subnet, count_params


@pytest.fixture(scope="module")
def supernet(space: SearchSpace) -> Supernet:
    return Supernet(space, seed=0).eval()


def at(sub: Subnet, resolution: int) -> Subnet:
    return dataclasses.replace(sub, resolution=resolution)


def image(resolution: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(resolution))


def _subnets() -> list[tuple[str, Subnet]]:
    space = create_space("elasticvit")
    rng = random.Random(1234)
    subs = [("min", space.min_subnet())] + [(f"sample{i}", at(space.sample(rng), 128)) for i in range(3)]
    return subs + [("T1", space.subnet("T1"))]


@pytest.mark.slow
@pytest.mark.parametrize("sub", [s for _, s in _subnets()], ids=[n for n, _ in _subnets()])
def test_active_subnet_matches_supernet(supernet: Supernet, space: SearchSpace, sub: Subnet) -> None:
    supernet.set_active_subnet(sub)
    net = supernet.get_active_subnet()
    assert not net.training
    x = image(sub.resolution)
    with torch.no_grad():
        torch.testing.assert_close(net(x), supernet(x), atol=1e-5, rtol=1e-5)
    # The extracted net holds exactly the parameters the cost model counts.
    assert count_params(net) == subnet_costs(space, sub)["params"]
    assert set(net.state_dict()) <= set(supernet.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("resolution", [128, 176])  # 176: token grids of odd side (11, 11, 6, 3)
def test_resolution_is_elastic(supernet: Supernet, space: SearchSpace, resolution: int) -> None:
    sub = at(space.min_subnet(), resolution)
    supernet.set_active_subnet(sub)
    x = image(resolution, batch=2)
    with torch.no_grad():
        y = supernet(x)
        torch.testing.assert_close(supernet.get_active_subnet()(x), y, atol=1e-5, rtol=1e-5)
    assert y.shape == (2, 1000)


def test_sample_active_subnet_is_deterministic(supernet: Supernet, space: SearchSpace) -> None:
    a = [supernet.sample_active_subnet(random.Random(7)) for _ in range(2)]
    rng1, rng2 = random.Random(11), random.Random(11)
    seq1 = [supernet.sample_active_subnet(rng1) for _ in range(5)]
    seq2 = [supernet.sample_active_subnet(rng2) for _ in range(5)]
    assert a[0] == a[1] and seq1 == seq2
    assert len(set(seq1)) > 1
    assert supernet.active == seq2[-1]
    assert supernet.depths == [st.depth for st in seq2[-1].stages]
    for sub in seq1:
        space.validate(sub)


def test_invalid_subnet_is_rejected(supernet: Supernet, space: SearchSpace) -> None:
    with pytest.raises(InvalidSubnet):
        supernet.set_active_subnet(at(space.min_subnet(), 100))


def test_build_subnet_is_seeded_and_standalone(space: SearchSpace) -> None:
    sub = space.min_subnet()
    a, b = build_subnet(sub, seed=3), build_subnet(sub, space=space, seed=3)
    assert not a.training
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), name
    assert count_params(a) == subnet_costs(space, sub)["params"]
    with torch.no_grad():
        assert a(image(128)).shape == (1, 1000)


def test_extracted_subnet_follows_train_mode(supernet: Supernet, space: SearchSpace) -> None:
    supernet.set_active_subnet(space.min_subnet())
    try:
        supernet.train()
        assert supernet.get_active_subnet().training
    finally:
        supernet.eval()
