"""Supernet training under torchrun: a real 2-rank gloo job trains what one process trains on the same global
batch, and an interrupted job resumes with the same command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from nas.data import SyntheticImages
from nas.distributed import GlobalBatchNorm, Ranks, global_batch_norm, ranks_from_env
from nas.modules.layers import ElasticBatchNorm
from nas.registry import create_space
from nas.supernet import Supernet
from nas.train import main as train_main
from nas.trainer import TrainSettings, _batches, train

ROOT = Path(__file__).resolve().parents[1]
# Tiny: 2 steps on a global batch of 4 (2 per rank) at the space's largest resolution, one sampled subnet, no
# evaluation. No dropout: each rank draws its own masks, which no single process reproduces.
ARGS = ["--data", "synthetic:32:4", "--steps", "2", "--subnets-per-step", "1", "--sampler", "uniform",
        "--dropout", "0", "--eval", "--batch-size", "4"]
# ||2 ranks - 1 process|| / ||1 process - initial|| over the whole state dict. With BatchNorm over the global
# batch the two differ only in the order of float sums (measured: 3e-5 after 3 steps); the control, a run on
# half the images per step, is far outside.
TOLERANCE = 1e-3


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone",
           "-m", "nas.train", *args]
    p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                       timeout=240)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    return p


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["supernet"]


def _relative_gap(a: dict, b: dict, base: dict) -> float:
    """||a - b|| / ||b - base|| over every floating-point tensor of the state dicts."""
    keys = [k for k, v in b.items() if v.is_floating_point()]
    gap = torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm()
    return float(gap / torch.cat([(b[k] - base[k]).flatten() for k in keys]).norm())


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted 2-rank run: its checkpoint (its report lies beside it)."""
    d = tmp_path_factory.mktemp("two-ranks")
    _torchrun([*ARGS, "--checkpoint", str(d / "c.pt"), "--json", str(d / "r.json")])
    return d / "c.pt"


def test_ranks_come_from_torchruns_environment():
    assert ranks_from_env({}) == Ranks() and not Ranks().distributed
    r = ranks_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert r == Ranks(3, 4, 1) and r.distributed and not r.leader
    with pytest.raises(ValueError, match="malformed"):
        ranks_from_env({"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="outside"):
        ranks_from_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})


def test_the_global_batch_is_split_into_the_ranks_slices():
    data = SyntheticImages(20, 3, 8, seed=0)  # 2 global batches of 8 per epoch: epochs wrap at step 2
    whole = _batches(data, 8, seed=5, step=1, ranks=Ranks())
    halves = [_batches(data, 8, seed=5, step=1, ranks=Ranks(r, 2, r)) for r in (0, 1)]
    for _ in range(4):
        x, y, _ = next(whole)
        parts = [next(h) for h in halves]
        assert torch.equal(x, torch.cat([p[0] for p in parts])) and torch.equal(y, torch.cat([p[1] for p in parts]))


def test_the_global_batch_must_split_evenly():
    space = create_space("elasticvit")
    with pytest.raises(ValueError, match="split evenly"):
        train(space, SyntheticImages(16, 2, 8), TrainSettings(steps=1, batch_size=9), ranks=Ranks(0, 2, 0))


def test_global_batch_norm_on_one_rank_is_batch_norm(tmp_path: Path):
    """The formula against F.batch_norm (outputs, gradients, running statistics); 2 ranks: the slow tests."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        for shape in ((6, 5, 3, 3), (7, 5)):  # NCHW maps and the head's (rows, C)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3 + 1
            plain, glob = ElasticBatchNorm(8), ElasticBatchNorm(8)
            with torch.no_grad():
                plain.weight.uniform_(0.5, 1.5)
            glob.load_state_dict(plain.state_dict())
            outs = []
            for bn, wrap in ((plain, lambda m: m), (glob, GlobalBatchNorm.sharing)):
                xi = x.clone().requires_grad_()
                out = wrap(bn)(xi)
                (out * torch.arange(out.numel()).view_as(out)).sum().backward()
                outs.append((out, xi.grad, bn.weight.grad, bn.running_mean, bn.running_var))
            for a, b in zip(*outs):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    finally:
        dist.destroy_process_group()
    net = Supernet(create_space("elasticvit"))
    before = list(net.modules())
    with pytest.raises(KeyError), global_batch_norm(net):
        assert any(isinstance(m, GlobalBatchNorm) for m in net.modules())
        raise KeyError  # the plain modules come back even on errors
    assert list(net.modules()) == before


@pytest.mark.slow
def test_two_ranks_train_what_one_process_trains_on_the_global_batch(two_ranks: Path, tmp_path: Path, capsys):
    one = tmp_path / "one.pt"
    assert train_main([*ARGS, "--checkpoint", str(one), "--json", str(tmp_path / "one.json")]) == 0
    half = tmp_path / "half.pt"  # control: the same run on half the images per step
    assert train_main([*ARGS, "--batch-size", "2", "--checkpoint", str(half)]) == 0  # (the last one counts)
    capsys.readouterr()
    report = json.loads((two_ranks.parent / "r.json").read_text())
    single = json.loads((tmp_path / "one.json").read_text())
    assert report["world_size"] == 2 and report["steps_done"] == 2
    assert report["log"]["sampled_mmacs"] == single["log"]["sampled_mmacs"]  # the same subnets
    for key in ("ce_max", "kd_sampled"):  # means over the global batch
        assert report["log"][key] == pytest.approx(single["log"][key], rel=1e-3)
    initial = Supernet(create_space("elasticvit"), seed=0).state_dict()
    assert _relative_gap(_state(two_ranks), _state(one), initial) < TOLERANCE
    assert _relative_gap(_state(half), _state(one), initial) > 30 * TOLERANCE  # the tolerance can fail


@pytest.mark.slow
def test_an_interrupted_torchrun_job_resumes_with_the_same_command(two_ranks: Path, tmp_path: Path):
    ckpt, out = tmp_path / "c.pt", tmp_path / "r.json"
    command = [*ARGS, "--checkpoint", str(ckpt), "--json", str(out), "--stop-after", "1"]
    _torchrun(command)
    assert json.loads(out.read_text())["steps_done"] == 1
    _torchrun(command)  # the same command: resumes at step 1 and ends at --steps 2
    resumed, uninterrupted = torch.load(ckpt, weights_only=True), torch.load(two_ranks, weights_only=True)
    assert resumed["step"] == 2
    for key, value in resumed["log"].items():  # all but the step wall times
        assert key == "seconds" or value == uninterrupted["log"][key], key
    for k, v in uninterrupted["supernet"].items():
        assert torch.equal(resumed["supernet"][k], v), k  # exact: same ranks, same operations, same order
