"""Supernet training on CPU: samplers, in-place distillation, checkpoint resume, the CLI."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.data import SyntheticImages
from nas.sampling import subnet_macs
from nas.train import main as train_main
from nas.trainer import TrainSettings, alpha_distillation, alpha_divergence, kl_distillation, top1, train


def _distributions(rows: int = 6, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, classes, generator=g) * 2, (torch.randn(rows, classes, generator=g) * 2).softmax(-1)


def test_alpha_divergence_limits_sign_and_zero():
    logits, p = _distributions()
    log_q = logits.log_softmax(-1)
    kl_pq = (p * (p.log() - log_q)).sum(-1)
    kl_qp = (log_q.exp() * (log_q - p.log())).sum(-1)
    torch.testing.assert_close(alpha_divergence(logits, p, 1.0), kl_pq)
    torch.testing.assert_close(alpha_divergence(logits, p, 1 - 1e-6), kl_pq, rtol=1e-4, atol=1e-6)  # the limit
    torch.testing.assert_close(alpha_divergence(logits, p, 1e-6), kl_qp, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(alpha_divergence(logits, p, 0.0), kl_qp)
    assert float(kl_distillation(logits, p)) == pytest.approx(float(kl_pq.mean()), rel=1e-5)
    for alpha in (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0):
        assert (alpha_divergence(logits, p, alpha) >= -1e-6).all(), alpha
        torch.testing.assert_close(alpha_divergence(p.log(), p, alpha), torch.zeros(len(p)), atol=1e-6, rtol=0)
    assert float(alpha_distillation(logits, p)) >= float(kl_pq.mean()) - 1e-6  # the larger of D_-1 and D_1 per row
    assert float(alpha_distillation(p.log(), p)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("alpha", [-1.0, 0.5, 2.0])
def test_alpha_divergence_gradient_is_the_divergences(alpha: float):
    """Unclipped, AlphaNet's surrogate gradient is the exact one of (sum_i p_i^a q_i^(1-a) - 1) / (a (a - 1))."""
    logits, p = _distributions(seed=1)
    ours, exact = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    alpha_divergence(ours, p, alpha).sum().backward()
    q = exact.softmax(-1)
    (((p ** alpha * q ** (1 - alpha)).sum(-1) - 1) / (alpha * (alpha - 1))).sum().backward()
    torch.testing.assert_close(ours.grad, exact.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_every_step_trains_the_min_subnet_and_alpha_distillation_runs(small_space):
    settings = TrainSettings(steps=2, batch_size=8, subnets_per_step=1, distill="alpha", checkpoint_every=10)
    _, log = train(small_space, SyntheticImages(8, 2, 128, seed=0), settings)
    smallest = round(subnet_macs(small_space, small_space.min_subnet()) / 1e6, 3)
    assert [m[0] for m in log.sampled_mmacs] == [smallest] * 2 and all(len(m) == 2 for m in log.sampled_mmacs)
    assert all(np.isfinite(log.kd_sampled)) and min(log.kd_sampled) >= 0
    with pytest.raises(ValueError, match="distill"):
        train(small_space, SyntheticImages(8, 2, 128), replace(settings, distill="js"))


@pytest.mark.slow
def test_training_learns_and_resumes_exactly(small_space, tmp_path: Path):
    data = SyntheticImages(64, 4, 128, seed=0)
    settings = TrainSettings(steps=6, batch_size=16, subnets_per_step=1, sampler="complexity", checkpoint_every=3)
    net, log = train(small_space, data, settings)
    assert log.ce_max[-1] < log.ce_max[0] / 4  # the max subnet fits the learnable synthetic classes
    assert top1(net, small_space.max_subnet(), data) > 0.9  # (re-estimates the shared BN statistics)
    # stopped after step 2 (with its checkpoint), resumed: the same result as one uninterrupted run (in smaller
    # steps: what a checkpoint must carry does not depend on their size)
    short = replace(settings, steps=4, batch_size=8, checkpoint_every=2)
    whole, log = train(small_space, data, short)
    trained = {k: v.clone() for k, v in whole.state_dict().items()}
    ckpt = tmp_path / "supernet.pt"
    _, first = train(small_space, data, short, ckpt, stop_after=2)
    assert first.steps == [1, 2]
    resumed, rlog = train(small_space, data, short, ckpt)
    assert rlog.steps == list(range(1, 5)) and rlog.sampled_mmacs == log.sampled_mmacs
    assert rlog.ce_max == pytest.approx(log.ce_max, rel=1e-4)
    for a, b in zip(resumed.state_dict().values(), trained.values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_training_with_the_performance_sampler_resumes_exactly(small_space, tmp_path: Path):
    """Interrupted + resumed == uninterrupted, banks included (drawn from at once: bank_prob_start 1)."""
    data = SyntheticImages(32, 4, 128, seed=0)
    settings = TrainSettings(steps=4, batch_size=8, subnets_per_step=2, sampler="performance", bank_size=2,
                             bank_prob_start=1.0, checkpoint_every=2)
    whole, stopped = tmp_path / "whole.pt", tmp_path / "stopped.pt"
    _, log = train(small_space, data, settings, whole)
    train(small_space, data, settings, stopped, stop_after=3)  # past the step-2 checkpoint: saved again at its stop
    _, rlog = train(small_space, data, settings, stopped)
    a, b = torch.load(whole, weights_only=True), torch.load(stopped, weights_only=True)
    assert rlog.sampled_mmacs == log.sampled_mmacs and rlog.ce_max == pytest.approx(log.ce_max, rel=1e-4)
    assert b["sampler"]["level"] == a["sampler"]["level"] and any(a["sampler"]["banks"])
    for bank_a, bank_b in zip(a["sampler"]["banks"], b["sampler"]["banks"]):
        assert [s for s, _ in bank_b] == [s for s, _ in bank_a]
        assert [x for _, x in bank_b] == pytest.approx([x for _, x in bank_a], rel=1e-4)
    for k, v in a["supernet"].items():
        torch.testing.assert_close(b["supernet"][k], v, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_two_ranks_agree_on_the_performance_samplers_choices(tmp_path: Path):
    """Each rank's banks fill from the losses averaged over the ranks: the per-step agreement check passes."""
    from tests.test_train_ddp import ARGS, _torchrun

    args = [a if a != "uniform" else "performance" for a in ARGS]
    out = tmp_path / "r.json"
    _torchrun([*args, "--steps", "3", "--bank-size", "2", "--bank-prob-start", "1", "--checkpoint",
               str(tmp_path / "c.pt"), "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["world_size"] == 2 and report["steps_done"] == 3
    assert report["settings"]["sampler"] == "performance" and report["settings"]["sandwich"] is True


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
    elif kind == "four junk bytes":  # torch.load raises struct.error on these
        path.write_bytes(b"\x00\x01\x02\x03")
    elif kind == "a model state dict":  # a .pt file of another format
        torch.save({"weight": torch.zeros(3), "bias": torch.zeros(3)}, path)
    elif kind == "JSON":
        path.write_text(json.dumps({"format": 2}))


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "four junk bytes", "a model state dict", "JSON"])
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


@pytest.mark.slow
def test_cli_smoke_run_and_errors(tmp_path: Path, capsys):
    out = tmp_path / "report.json"
    assert train_main(["--data", "synthetic:32:4", "--steps", "2", "--batch-size", "8", "--subnets-per-step", "1",
                       "--no-sandwich", "--distill", "alpha", "--eval", "min", "--checkpoint", str(tmp_path / "s.pt"),
                       "--json", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps_done"] == 2 and 0.0 <= report["top1"]["min"] <= 1.0
    assert report["settings"]["sandwich"] is False and report["settings"]["distill"] == "alpha"
    assert [len(m) for m in json.loads(out.read_text())["log"]["sampled_mmacs"]] == [1, 1]  # no min subnet
    with pytest.raises(SystemExit):
        train_main(["--data", "synthetic", "--distill", "js"])
    assert len(json.loads(out.read_text())["log"]["ce_max"]) == 2
    assert train_main(["--data", str(tmp_path / "missing"), "--steps", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert train_main(["--data", "synthetic", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_efficientformerv2_trains_evaluates_and_its_checkpoint_names_its_space(tmp_path: Path, capsys):
    """The second space through nas.train (a CPU smoke run at a quarter of each resolution) and nas.evaluate;
    a checkpoint used with the other space is refused in one line that names the right one."""
    from nas.evaluate import main as evaluate_main

    ckpt = tmp_path / "e.pt"
    assert train_main(["--space", "efficientformerv2", "--data", "synthetic:16:4", "--steps", "2", "--batch-size", "4",
                       "--resolution-scale", "0.25", "--eval", "S0", "min", "--checkpoint", str(ckpt)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps_done"] == 2 and set(report["top1"]) == {"S0", "min"}
    assert torch.load(ckpt, weights_only=True)["space"] == "efficientformerv2"
    store = str(tmp_path / "acc.sqlite")
    assert evaluate_main(["--checkpoint", str(ckpt), "--space", "efficientformerv2", "--data", "synthetic:8:4",
                          "--subnet", "S0", "--sample", "2", "--store", store, "--batch-size", "8"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 3
    assert evaluate_main(["--checkpoint", str(ckpt), "--data", "synthetic:8:4", "--subnet", "min", "--store",
                          store]) == 2
    err = capsys.readouterr().err
    assert "trained for space 'efficientformerv2'" in err and len(err.strip().splitlines()) == 1
    assert train_main(["--data", "synthetic:16:4", "--steps", "2", "--batch-size", "4", "--resolution-scale", "0.25",
                       "--checkpoint", str(ckpt)]) == 2  # resuming it as ElasticViT's
    assert "checkpoint of space 'efficientformerv2'" in capsys.readouterr().err
