"""Supernet training: the largest subnet on the labels, sampled subnets distilled from it in place.

Each step trains the max subnet with cross-entropy and `subnets_per_step` subnets from the sampler
(`nas.sampling`: ElasticViT's complexity-aware walk by default) on the max subnet's soft labels
(in-place distillation, as once-for-all/BigNAS/ElasticViT), gradients summed into one optimizer
step. Every subnet sees the batch at its own resolution. A checkpoint (weights, optimizer, schedule,
step, RNG and sampler state) is written atomically every `checkpoint_every` steps, so a killed run
resumes where it stopped with the same sequence of subnets.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from nas.sampling import create_sampler, subnet_macs
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from nas.supernet import Supernet

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 0.05  # SGD with momentum 0.9, cosine decay to 0
    weight_decay: float = 4e-5
    subnets_per_step: int = 2  # besides the max subnet
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


def at_resolution(x: torch.Tensor, resolution: int) -> torch.Tensor:
    return x if x.shape[-1] == resolution else F.interpolate(x, size=(resolution, resolution), mode="bilinear",
                                                             align_corners=False)


def _batches(data: Dataset, batch_size: int, seed: int, step: int) -> Iterator:
    """Batches from `step` on; each epoch's order depends only on (seed, epoch), so a resumed run
    continues mid-epoch exactly where the interrupted one was."""
    per_epoch = len(data) // batch_size
    while True:
        epoch, skip = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(data), generator=g)
        # its own generator: a DataLoader otherwise draws from the global RNG, shifting the dropout masks
        yield from DataLoader(Subset(data, order[skip * batch_size:].tolist()), batch_size=batch_size,
                              shuffle=False, drop_last=True, generator=g)
        step = (epoch + 1) * per_epoch


def _trajectory(settings: dict) -> dict:
    """The settings a resumed run must share (the device and checkpoint interval may change)."""
    return {k: v for k, v in settings.items() if k not in ("device", "checkpoint_every")}


def _save(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a torn checkpoint


def train(space: SearchSpace, data: Dataset, settings: TrainSettings, checkpoint: Path | None = None,
          progress: bool = False, stop_after: int | None = None) -> tuple[Supernet, TrainLog]:
    """Train (or resume from `checkpoint`) up to `settings.steps`; `stop_after` ends this call after that
    many steps, with a checkpoint, so a long run can go in slices (a scheduler's time limit)."""
    dev = torch.device(settings.device)
    torch.manual_seed(settings.seed)
    net = Supernet(space, seed=settings.seed).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay,
                          nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, settings.steps)
                                                                               / settings.steps)))
    rng = random.Random(settings.seed)
    sampler = create_sampler(settings.sampler, space, random.Random(settings.seed))
    log, start = TrainLog(), 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=dev, weights_only=False)
        same = _trajectory(state.get("settings", {})) == _trajectory(asdict(settings))
        if state.get("format") != CHECKPOINT_FORMAT or not same:
            raise ValueError(f"{checkpoint} was written by another run (format or settings differ); "
                             "use a new --checkpoint path or the same settings")
        net.load_state_dict(state["supernet"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])  # dropout masks
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        sampler.load_state(state["sampler"])
        log, start = TrainLog(**state["log"]), state["step"]
    if len(data) < settings.batch_size:
        raise ValueError(f"the dataset has {len(data)} images, fewer than one batch of {settings.batch_size}")
    batches = _batches(data, settings.batch_size, settings.seed, start)
    biggest = space.max_subnet()
    net.train()
    end = settings.steps if stop_after is None else min(settings.steps, start + stop_after)
    for step in tqdm(range(start, end), desc="train", unit="step", disable=not progress,
                     initial=start, total=settings.steps, dynamic_ncols=True):
        x, y = next(batches)
        x, y = x.to(dev), y.to(dev)
        opt.zero_grad(set_to_none=True)
        net.set_active_subnet(biggest)
        logits = net(at_resolution(x, biggest.resolution))
        ce = F.cross_entropy(logits, y)
        ce.backward()
        soft = logits.detach().softmax(-1)
        kd_total, subs = 0.0, []
        for _ in range(settings.subnets_per_step):
            sub = sampler.sample(rng)
            net.set_active_subnet(sub)
            kd = F.kl_div(net(at_resolution(x, sub.resolution)).log_softmax(-1), soft, reduction="batchmean")
            kd.backward()
            kd_total += float(kd.detach())
            subs.append(round(subnet_macs(space, sub) / 1e6, 3))
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        log.steps.append(step + 1)
        log.ce_max.append(float(ce.detach()))
        log.kd_sampled.append(kd_total / max(1, settings.subnets_per_step))
        log.sampled_mmacs.append(subs)
        done = step + 1
        if checkpoint is not None and (done % settings.checkpoint_every == 0 or done == end):
            _save(checkpoint, {"format": CHECKPOINT_FORMAT, "settings": asdict(settings), "step": done,
                               "supernet": net.state_dict(), "optimizer": opt.state_dict(),
                               "schedule": sched.state_dict(), "rng": rng.getstate(),
                               "torch_rng": torch.get_rng_state(),
                               "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                               "sampler": sampler.state(), "log": asdict(log)})
    return net, log


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

