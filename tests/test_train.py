"""Supernet training on CPU: samplers, in-place distillation, checkpoint resume, the CLI."""
from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.data import ImageFolder, SyntheticImages
from nas.registry import create_space
from nas.sampling import create_sampler, subnet_macs
from nas.train import main as train_main
from nas.trainer import TrainSettings, top1, train


@pytest.fixture(scope="module")
def space():
    return create_space("elasticvit")


@pytest.fixture(scope="module")
def small_space(space):
    return replace(space, resolutions=(128,))  # one small resolution keeps CPU steps around a second


def test_complexity_sampler_moves_by_one_bucket_and_covers_all(space):
    s = create_sampler("complexity", space, random.Random(0))
    assert all(s.pools)
    rng, buckets = random.Random(1), []
    for _ in range(3000):
        sub = s.sample(rng)
        buckets.append(s.bucket)
        m = subnet_macs(space, sub)
        assert s.edges[max(0, s.bucket)] * 0.999 <= m or s.bucket == 0
    steps = np.abs(np.diff(buckets))
    assert steps.max() <= 1 and set(buckets) == set(range(len(s.pools)))
    # adjacent steps train similar sizes: far smaller MACs jumps than uniform sampling
    walk = [subnet_macs(space, s.sample(rng)) for _ in range(300)]
    uni = [subnet_macs(space, space.sample(rng)) for _ in range(300)]
    assert np.median(np.abs(np.diff(np.log(walk)))) < np.median(np.abs(np.diff(np.log(uni))))
    with pytest.raises(ValueError, match="unknown sampler"):
        create_sampler("nope", space)


@pytest.mark.slow
def test_training_learns_and_resumes_exactly(small_space, tmp_path: Path):
    data = SyntheticImages(64, 4, 128, seed=0)
    settings = TrainSettings(steps=6, batch_size=16, subnets_per_step=1, checkpoint_every=3)
    net, log = train(small_space, data, settings)
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    assert log.ce_max[-1] < log.ce_max[0] / 4  # the max subnet fits the learnable synthetic classes
    assert top1(net, small_space.max_subnet(), data) > 0.9  # (re-estimates the shared BN statistics)
    # stopped after step 3 (with its checkpoint), resumed: the same result as one uninterrupted run
    ckpt = tmp_path / "supernet.pt"
    _, first = train(small_space, data, settings, ckpt, stop_after=3)
    assert first.steps == [1, 2, 3]
    resumed, rlog = train(small_space, data, settings, ckpt)
    assert rlog.steps == list(range(1, 7)) and rlog.sampled_mmacs == log.sampled_mmacs
    assert rlog.ce_max == pytest.approx(log.ce_max, rel=1e-4)
    for a, b in zip(resumed.state_dict().values(), trained.values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_checkpoint_of_another_run_is_refused(small_space, tmp_path: Path):
    ckpt = tmp_path / "c.pt"
    torch.save({"format": 1, "settings": {"steps": 1}}, ckpt)
    with pytest.raises(ValueError, match="another run"):
        train(small_space, SyntheticImages(16, 2, 128), TrainSettings(steps=1, batch_size=8), ckpt)


class _RunsCode:
    """Unpickling this calls os.system: what a checkpoint must never be able to do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _unreadable(kind: str, path: Path) -> None:
    if kind == "truncated":
        torch.save({"format": 2, "supernet": {"w": torch.arange(10_000.0)}}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "a model state dict":  # a .pt file of another format
        torch.save({"weight": torch.zeros(3), "bias": torch.zeros(3)}, path)
    elif kind == "JSON":
        path.write_text(json.dumps({"format": 2}))


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "a model state dict", "JSON"])
def test_cli_refuses_an_unreadable_or_foreign_checkpoint_in_one_line(kind: str, tmp_path: Path, capsys):
    ckpt = tmp_path / "c.pt"
    _unreadable(kind, ckpt)
    code = train_main(["--data", "synthetic:16:2", "--steps", "1", "--batch-size", "8", "--sampler", "uniform",
                       "--eval", "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert str(ckpt) in err and "checkpoint" in err


def test_a_checkpoint_cannot_run_code(tmp_path: Path, capsys):
    marker, ckpt = tmp_path / "pwned", tmp_path / "c.pt"
    torch.save({"format": 2, "settings": _RunsCode(marker)}, ckpt)
    code = train_main(["--data", "synthetic:16:2", "--steps", "1", "--batch-size", "8", "--sampler", "uniform",
                       "--eval", "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err.strip()
    assert not marker.exists()  # weights_only refused the call instead of making it
    assert code == 2 and len(err.splitlines()) == 1 and "system" in err, err


def test_image_folder_reads_classes(tmp_path: Path):
    from PIL import Image

    for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / c).mkdir()
        Image.new("RGB", (40, 30), colour).save(tmp_path / c / "a.png")
    ds = ImageFolder(tmp_path, 32)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 2
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y == 1 and x[2].mean() > x[0].mean()
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(tmp_path / "cat", 32)


@pytest.mark.slow
def test_cli_smoke_run_and_errors(tmp_path: Path, capsys):
    out = tmp_path / "report.json"
    assert train_main(["--data", "synthetic:32:4", "--steps", "2", "--batch-size", "8", "--subnets-per-step", "1",
                       "--eval", "min", "--checkpoint", str(tmp_path / "s.pt"), "--json", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps_done"] == 2 and 0.0 <= report["top1"]["min"] <= 1.0
    assert len(json.loads(out.read_text())["log"]["ce_max"]) == 2
    assert train_main(["--data", str(tmp_path / "missing"), "--steps", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert train_main(["--data", "synthetic", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
