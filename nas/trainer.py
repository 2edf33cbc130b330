"""Supernet training: the largest subnet on the labels, sampled subnets distilled from it in place.

Each step trains the max subnet with cross-entropy and `subnets_per_step` subnets from the sampler
(`nas.sampling`: ElasticViT's complexity-aware walk by default) on the max subnet's soft labels
(in-place distillation, as once-for-all/BigNAS/ElasticViT), gradients summed into one optimizer
step. Every subnet sees the batch at its own resolution. A checkpoint (weights, optimizer, schedule,
step, sampler state) is written atomically every `checkpoint_every` steps, so a killed run resumes
where it stopped with the same sequence of subnets. It holds tensors and plain data only and is read
with `weights_only=True`: a checkpoint file cannot run code.

Under torchrun (`Ranks`), `batch_size` is the global batch: each rank trains on its own contiguous
slice of it, every rank trains the same subnets (the sampler RNG is seeded alike, and checked),
BatchNorm normalises over the global batch and gradients are averaged, so N ranks compute what one
process computes on the whole batch (up to float rounding; dropout masks are drawn per rank).
"""
from __future__ import annotations

import math
import os
import pickle
import random
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from nas.distributed import (
    Ranks,
    average_gradients,
    barrier,
    check_agreement,
    global_batch_norm,
    mean_over_ranks,
    rank_device,
)
from nas.sampling import SubnetSampler, create_sampler, subnet_macs
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from nas.supernet import Supernet

CHECKPOINT_FORMAT = 2  # 2: read with weights_only; no RNG state (dropout is seeded per step and rank)
_CHECKPOINT_KEYS = ("format", "settings", "step", "supernet", "optimizer", "schedule", "rng", "sampler", "log")


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1000
    batch_size: int = 64  # the global batch: split evenly over the torchrun ranks
    lr: float = 0.05  # SGD with momentum 0.9, cosine decay to 0
    weight_decay: float = 4e-5
    subnets_per_step: int = 2  # besides the max subnet
    dropout: float = 0.2  # before the classifier
    sampler: str = "complexity"
    seed: int = 0
    checkpoint_every: int = 100
    device: str = "cpu"


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    ce_max: list[float] = field(default_factory=list)  # the max subnet's cross-entropy
    kd_sampled: list[float] = field(default_factory=list)  # mean distillation loss of the sampled subnets
    sampled_mmacs: list[list[float]] = field(default_factory=list)  # MMACs of the subnets sampled per step


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: unreadable, of another format, or of another run."""


@dataclass
class _Run:
    """Everything a checkpoint holds, beside the settings."""

    net: Supernet
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    rng: random.Random  # the subnet draws: seeded alike on every rank
    sampler: SubnetSampler
    log: TrainLog = field(default_factory=TrainLog)
    step: int = 0

    def state(self, settings: TrainSettings) -> dict:
        return {"format": CHECKPOINT_FORMAT, "settings": asdict(settings), "step": self.step,
                "supernet": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "schedule": self.sched.state_dict(), "rng": self.rng.getstate(), "sampler": self.sampler.state(),
                "log": asdict(self.log)}

    def restore(self, state: dict) -> None:
        self.net.load_state_dict(state["supernet"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["schedule"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.sampler.load_state(state["sampler"])
        self.log, self.step = TrainLog(**state["log"]), int(state["step"])


def at_resolution(x: torch.Tensor, resolution: int) -> torch.Tensor:
    return x if x.shape[-1] == resolution else F.interpolate(x, size=(resolution, resolution), mode="bilinear",
                                                             align_corners=False)


def _batches(data: Dataset, batch_size: int, seed: int, step: int, ranks: Ranks) -> Iterator:
    """This rank's slice of each global batch from `step` on; each epoch's order depends only on (seed, epoch),
    so a resumed run continues mid-epoch exactly where the interrupted one was, on any number of ranks."""
    per_epoch = len(data) // batch_size
    local = batch_size // ranks.world_size
    while True:
        epoch, skip = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(data), generator=g).tolist()
        mine = [order[i * batch_size + ranks.rank * local:][:local] for i in range(skip, per_epoch)]
        # its own generator: a DataLoader otherwise draws from the global RNG, shifting the dropout masks
        yield from DataLoader(data, batch_sampler=mine, generator=g)
        step = (epoch + 1) * per_epoch


def _step_seed(seed: int, step: int, rank: int) -> int:
    """Dropout's seed: a function of the step alone (nothing to checkpoint), its own on each rank."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def _trajectory(settings: dict) -> dict:
    """The settings a resumed run must share (the device and checkpoint interval may change)."""
    return {k: v for k, v in settings.items() if k not in ("device", "checkpoint_every")}


def _save(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a torn checkpoint


# torch.load's weights_only errors wrap the reason in advice (load with weights_only=False) that must not be taken here
_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _why(e: Exception) -> str:
    """One line: the exception's type and its first informative line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith(_ADVICE)]
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def load_checkpoint(path: Path, settings: TrainSettings, dev: torch.device) -> dict:
    """The checkpoint's contents, read as tensors and plain data only; CheckpointError (one line) otherwise."""
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
    except (pickle.UnpicklingError, OSError, RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({_why(e)}); "
                              "use a new --checkpoint path") from e
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path} is not a supernet training checkpoint; use a new --checkpoint path")
    written = state.get("settings")
    same = isinstance(written, dict) and _trajectory(written) == _trajectory(asdict(settings))
    if state["format"] != CHECKPOINT_FORMAT or not same or any(k not in state for k in _CHECKPOINT_KEYS):
        raise CheckpointError(f"{path} was written by another run (another format than {CHECKPOINT_FORMAT}, or "
                              "other settings); use a new --checkpoint path or the same settings")
    return state


def train(space: SearchSpace, data: Dataset, settings: TrainSettings, checkpoint: Path | None = None,
          progress: bool = False, stop_after: int | None = None,
          ranks: Ranks | None = None) -> tuple[Supernet, TrainLog]:
    """Train (or resume from `checkpoint`) up to `settings.steps`; `stop_after` ends this call after that
    many steps, with a checkpoint, so a long run can go in slices (a scheduler's time limit). With
    distributed `ranks`, the default process group must be up (`nas.distributed.process_group`)."""
    ranks = ranks or Ranks()
    if settings.batch_size % ranks.world_size:
        raise ValueError(f"--batch-size {settings.batch_size} (the global batch) does not split evenly over "
                         f"{ranks.world_size} ranks")
    if len(data) < settings.batch_size:
        raise ValueError(f"the dataset has {len(data)} images, fewer than one batch of {settings.batch_size}")
    dev = rank_device(settings.device, ranks)
    net = Supernet(space, seed=settings.seed).to(dev)
    net.head.dropout = settings.dropout
    opt = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay,
                          nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, settings.steps)
                                                                               / settings.steps)))
    run = _Run(net, opt, sched, random.Random(settings.seed),
               create_sampler(settings.sampler, space, random.Random(settings.seed)))
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, settings, dev)
        try:
            run.restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{checkpoint}: its contents do not fit this supernet ({_why(e)})") from e
    if ranks.distributed:
        check_agreement(str(run.step), "the step to resume from (is --checkpoint on storage every node sees?)", dev)
    batches = _batches(data, settings.batch_size, settings.seed, run.step, ranks)
    biggest = space.max_subnet()
    end = settings.steps if stop_after is None else min(settings.steps, run.step + stop_after)
    net.train()
    forked = torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [])  # leave the caller's RNG alone
    with forked, global_batch_norm(net) if ranks.distributed else nullcontext():
        for step in tqdm(range(run.step, end), desc="train", unit="step", disable=not (progress and ranks.leader),
                         initial=run.step, total=settings.steps, dynamic_ncols=True):
            torch.manual_seed(_step_seed(settings.seed, step, ranks.rank))
            subs = [run.sampler.sample(run.rng) for _ in range(settings.subnets_per_step)]
            if ranks.distributed:  # equal by construction (same seed, same draws); a slip would corrupt silently
                check_agreement(repr(subs), f"the subnets of step {step + 1}", dev)
            x, y = next(batches)
            ce, kd = _train_step(run, biggest, subs, x.to(dev), y.to(dev), ranks)
            run.step = step + 1
            run.log.steps.append(run.step)
            run.log.ce_max.append(ce)
            run.log.kd_sampled.append(kd)
            run.log.sampled_mmacs.append([round(subnet_macs(space, s) / 1e6, 3) for s in subs])
            if checkpoint is not None and (run.step % settings.checkpoint_every == 0 or run.step == end):
                if ranks.leader:
                    _save(checkpoint, run.state(settings))
                barrier(ranks)  # no rank gets ahead of the last complete checkpoint, nor exits before it exists
    return net, run.log


def _train_step(run: _Run, biggest: Subnet, subs: list[Subnet], x: torch.Tensor, y: torch.Tensor,
                ranks: Ranks) -> tuple[float, float]:
    """One optimizer step; returns the max subnet's cross-entropy and the sampled subnets' mean distillation
    loss, both means over the global batch."""
    net = run.net
    run.opt.zero_grad(set_to_none=True)
    net.set_active_subnet(biggest)
    logits = net(at_resolution(x, biggest.resolution))
    ce = F.cross_entropy(logits, y)
    ce.backward()
    soft = logits.detach().softmax(-1)
    losses = [ce.detach()]
    for sub in subs:
        net.set_active_subnet(sub)
        kd = F.kl_div(net(at_resolution(x, sub.resolution)).log_softmax(-1), soft, reduction="batchmean")
        kd.backward()
        losses.append(kd.detach())
    summary = torch.stack(losses)
    if ranks.distributed:
        # Each rank's losses are means over its equal slice, so averaging the summed gradients of the whole
        # step once makes them the gradients of the global-batch means (CE mean, KL batchmean). Done by hand
        # rather than by DistributedDataParallel: one all-reduce after several forward/backward passes, and
        # the parameters a subnet leaves unused need no find_unused_parameters.
        average_gradients(net.parameters(), ranks.world_size)
        summary = mean_over_ranks(summary)
    nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    run.opt.step()
    run.sched.step()
    ce_max, *kds = summary.tolist()
    return ce_max, sum(kds) / max(1, len(kds))


@torch.no_grad()
def recalibrate_bn(net: Supernet, sub: Subnet, data: Dataset, batches: int = 8, batch_size: int = 32) -> None:
    """Running BN statistics are shared by all subnets: re-estimate them for `sub` before evaluating it."""
    net.set_active_subnet(sub)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    was_training = net.training
    net.train()
    dev = next(net.parameters()).device
    for i, (x, _) in enumerate(DataLoader(data, batch_size=batch_size, shuffle=False)):
        if i >= batches:
            break
        net(at_resolution(x.to(dev), sub.resolution))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    net.train(was_training)


@torch.no_grad()
def top1(net: Supernet, sub: Subnet, data: Dataset, calibration: Dataset | None = None,
         batch_size: int = 64) -> float:
    """Top-1 accuracy of `sub` on `data`, after re-estimating BN statistics on `calibration` (or `data`)."""
    recalibrate_bn(net, sub, calibration if calibration is not None else data)
    net.eval()
    dev = next(net.parameters()).device
    right = total = 0
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        pred = net(at_resolution(x.to(dev), sub.resolution)).argmax(-1).cpu()
        right += int((pred == y).sum())
        total += len(y)
    return right / max(1, total)
