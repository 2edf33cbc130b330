"""Supernet training: the largest subnet on the labels, the others distilled from it in place (sandwich rule).

Each step trains the max subnet with cross-entropy, then (with `sandwich`, the default) the min subnet and
`subnets_per_step` subnets from the sampler (`nas.sampling`: ElasticViT's complexity- and performance-aware
sampling) on the max subnet's soft labels (in-place distillation, as once-for-all/BigNAS/ElasticViT; ElasticViT
trains 3 sampled + the min subnet per step), gradients summed into one optimizer step. Distillation is KL(max ||
subnet) by default, or AlphaNet's adaptive alpha-divergence (`distill="alpha"`, as ElasticViT). Every subnet sees
the batch at its own resolution. After the step the sampler is told each sampled subnet's cross-entropy on the
labels (`observe`; ElasticViT scores its banks by that mini-batch loss). A checkpoint (weights, optimizer,
schedule, step, sampler state with its banks) is written atomically every `checkpoint_every` steps, so a killed
run resumes where it stopped with the same sequence of subnets. It holds tensors and plain data only and is read
with `weights_only=True`: a checkpoint file cannot run code.

Under torchrun (`Ranks`), `batch_size` is the global batch: each rank trains on its own contiguous
slice of it, every rank trains the same subnets (the sampler RNG is seeded alike, the losses it observes are
averaged over the ranks, and both are checked), BatchNorm normalises over the global batch and gradients are
averaged, so N ranks compute what one process computes on the whole batch (up to float rounding; dropout masks
are drawn per rank).
"""
from __future__ import annotations

import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from nas.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_state, why
from nas.distributed import (
    Ranks,
    average_gradients,
    barrier,
    check_agreement,
    global_batch_norm,
    mean_over_ranks,
    rank_device,
)
from nas.sampling import BankSchedule, SamplerSettings, SubnetSampler, create_sampler, subnet_macs
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from nas.supernet import Supernet
from nas.transforms import Augment

_CHECKPOINT_KEYS = ("format", "settings", "step", "supernet", "optimizer", "schedule", "rng", "sampler", "log")


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1000
    batch_size: int = 64  # the global batch: split evenly over the torchrun ranks
    lr: float = 0.05  # SGD with momentum 0.9, cosine decay to 0
    weight_decay: float = 4e-5
    subnets_per_step: int = 2  # sampled, besides the max subnet (and the min subnet with `sandwich`)
    sandwich: bool = True  # the min subnet every step (BigNAS's sandwich rule; ElasticViT's "min" mode)
    distill: str = "kl"  # "kl" or "alpha": AlphaNet's adaptive alpha-divergence (ALPHA_MIN, ALPHA_MAX)
    dropout: float = 0.2  # before the classifier
    sampler: str = "performance"
    bank_size: int = 50  # performance sampler: subnets kept per MACs level
    bank_prob_start: float = 0.2  # performance sampler: bank draw probability, then + increment per sixth of the run
    bank_prob_increment: float = 0.15
    seed: int = 0
    checkpoint_every: int = 100
    device: str = "cpu"
    workers: int = -1  # DataLoader worker processes per rank; -1: cores / ranks - 1 (at most 8)
    amp: bool = False  # bfloat16 autocast of the forward passes (meant for CUDA; no loss scaling needed)
    mixup: float = 0.0  # mixup's Beta(a, a) parameter (0: off; ElasticViT's config turns mixup on)
    resolution_scale: float = 1.0  # train (and evaluate) each subnet at resolution x this (< 1: CPU-scale runs)
    crop_scale_min: float = 0.08  # random-resized crop: least share of the image area
    hflip: bool = True
    randaugment_ops: int = 0  # RandAugment's N (0: off; ElasticViT's config: 1)
    randaugment_magnitude: float = 9.0  # RandAugment's M, of 10 (the paper's ImageNet 9; ElasticViT's config: 1)

    def __post_init__(self) -> None:
        if not 0 < self.resolution_scale <= 1 or self.mixup < 0:
            raise ValueError("--resolution-scale must be in (0, 1] and --mixup >= 0")
        self.augment  # noqa: B018 - validates the augmentation settings

    @property
    def augment(self) -> Augment:
        return Augment(self.crop_scale_min, self.hflip, self.randaugment_ops, self.randaugment_magnitude)


MIN_INPUT = 32  # the networks downsample by 32: smaller inputs would leave no pixel to attend over


def input_size(resolution: int, scale: float) -> int:
    """The image side a subnet of `resolution` trains and is evaluated at under `resolution_scale`."""
    return resolution if scale == 1 else max(MIN_INPUT, round(resolution * scale))


def worker_count(requested: int, world_size: int) -> int:
    return requested if requested >= 0 else max(0, min(8, (os.cpu_count() or 1) // world_size - 1))


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    ce_max: list[float] = field(default_factory=list)  # the max subnet's cross-entropy
    kd_sampled: list[float] = field(default_factory=list)  # mean distillation loss of the distilled subnets
    sampled_mmacs: list[list[float]] = field(default_factory=list)  # MMACs of the distilled subnets (min first)
    skipped_images: int = 0  # unreadable images replaced by the next readable one
    seconds: list[float] = field(default_factory=list)  # wall time of each step, data loading included


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
        return {"format": CHECKPOINT_FORMAT, "space": self.net.space.name, "settings": asdict(settings),
                "step": self.step, "supernet": self.net.state_dict(), "optimizer": self.opt.state_dict(),
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


ALPHA_MIN, ALPHA_MAX = -1.0, 1.0  # AlphaNet's bounds, as ElasticViT uses them (util/loss_ops.py AdaptiveLossSoft)
RATIO_CLIP = 5.0  # AlphaNet's iw_clip: (p / q)^alpha capped, so rows where the student is far too sure stay bounded


def kl_distillation(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """KL(soft || softmax(logits)), mean over the batch."""
    return F.kl_div(logits.log_softmax(-1), soft, reduction="batchmean")


def alpha_divergence(logits: torch.Tensor, soft: torch.Tensor, alpha: float, clip: float = math.inf) -> torch.Tensor:
    """Per row, D_alpha(p || q) = sum_i q_i ((p_i / q_i)^alpha - 1) / (alpha (alpha - 1)) of the teacher p = `soft`
    and the student q = softmax(`logits`), the power of the ratio capped at `clip` (AlphaNet). alpha = 1 is
    KL(p || q), alpha = 0 is KL(q || p). The value is the divergence; the gradient is AlphaNet's, that of the
    divergence with the capped power held as a weight. Float64: near alpha = 0 or 1 the terms cancel."""
    log_q = logits.double().log_softmax(-1)
    q = log_q.exp().detach()
    p = soft.double().clamp_min(1e-300)
    p = p / p.sum(-1, keepdim=True)  # float32 sums are off by ~1e-7, which 1 / (alpha (alpha - 1)) magnifies
    log_ratio = (p.log() - log_q).detach()
    if abs(alpha - 1.0) < 1e-9:
        ratio = log_ratio.exp()
        f, rho = ratio * log_ratio, ratio
    elif abs(alpha) < 1e-9:
        log_ratio = log_ratio.clamp(max=math.log(clip))
        f, rho = -log_ratio, log_ratio - 1.0
    else:
        power = (alpha * log_ratio).exp().clamp(max=clip)
        f, rho = (power - 1.0) / (alpha * (alpha - 1.0)), power / alpha + 1.0 / (alpha * (alpha - 1.0))
    value = (q * f).sum(-1)
    surrogate = -(q * rho * log_q).sum(-1)  # its gradient is the divergence's (sum_i dq_i = 0 drops constants)
    return (value + surrogate - surrogate.detach()).to(logits.dtype)


def alpha_distillation(logits: torch.Tensor, soft: torch.Tensor, alpha_min: float = ALPHA_MIN,
                       alpha_max: float = ALPHA_MAX, clip: float = RATIO_CLIP) -> torch.Tensor:
    """AlphaNet's adaptive alpha-divergence: per row the larger of D_alpha_min and D_alpha_max (the student is
    penalised for both over- and under-estimating the teacher's uncertainty), mean over the batch."""
    low, high = alpha_divergence(logits, soft, alpha_min, clip), alpha_divergence(logits, soft, alpha_max, clip)
    return torch.where(low.detach() > high.detach(), low, high).mean()


_DISTILL: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "kl": kl_distillation, "alpha": alpha_distillation}
DISTILLATIONS = tuple(_DISTILL)


def _batches(data: Dataset, batch_size: int, seed: int, step: int, ranks: Ranks, workers: int = 0) -> Iterator:
    """This rank's slice of each global batch from `step` on, as (images, labels, skipped); each epoch's order
    depends only on (seed, epoch) and each image's augmentation on (seed, epoch, index), so a resumed run
    continues mid-epoch exactly where the interrupted one was, on any number of ranks and workers."""
    per_epoch = len(data) // batch_size
    local = batch_size // ranks.world_size
    while True:
        epoch, skip = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(data), generator=g).tolist()
        mine = [[(j, epoch) for j in order[i * batch_size + ranks.rank * local:][:local]]
                for i in range(skip, per_epoch)]
        # its own generator: a DataLoader otherwise draws from the global RNG, shifting the dropout masks
        yield from DataLoader(data, batch_sampler=mine, generator=g, num_workers=workers,
                              persistent_workers=False, prefetch_factor=4 if workers else None)
        step = (epoch + 1) * per_epoch


def _step_seed(seed: int, step: int, rank: int) -> int:
    """Dropout's seed: a function of the step alone (nothing to checkpoint), its own on each rank."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def _trajectory(settings: dict) -> dict:
    """The settings a resumed run must share (the device and checkpoint interval may change)."""
    return {k: v for k, v in settings.items() if k not in ("device", "checkpoint_every", "workers")}


def _save(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a torn checkpoint


def load_checkpoint(path: Path, settings: TrainSettings, dev: torch.device, space: str | None = None) -> dict:
    """The checkpoint's contents, read as tensors and plain data only; CheckpointError (one line) otherwise."""
    try:
        state = load_state(path, dev)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; use a new --checkpoint path") from e
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path} is not a supernet training checkpoint; use a new --checkpoint path")
    written = state.get("settings")
    # a setting added since the checkpoint was written counts as its default
    same = isinstance(written, dict) and _trajectory({**asdict(TrainSettings()), **written}) == _trajectory(
        asdict(settings))
    if state["format"] != CHECKPOINT_FORMAT or not same or any(k not in state for k in _CHECKPOINT_KEYS):
        raise CheckpointError(f"{path} was written by another run (another format than {CHECKPOINT_FORMAT}, or "
                              "other settings); use a new --checkpoint path or the same settings")
    if space is not None and state.get("space", space) != space:
        raise CheckpointError(f"{path} is a checkpoint of space {state['space']!r}, not {space!r}; use a new "
                              f"--checkpoint path or --space {state['space']}")
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
    if settings.distill not in _DISTILL:
        raise ValueError(f"--distill {settings.distill!r}: choose one of {list(DISTILLATIONS)}")
    dev = rank_device(settings.device, ranks)
    net = Supernet(space, seed=settings.seed).to(dev)
    net.head.dropout = settings.dropout
    opt = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay,
                          nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, settings.steps)
                                                                               / settings.steps)))
    sampling = SamplerSettings(bank_size=settings.bank_size,
                               schedule=BankSchedule(settings.bank_prob_start, settings.bank_prob_increment))
    run = _Run(net, opt, sched, random.Random(settings.seed), create_sampler(settings.sampler, space, sampling))
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, settings, dev, space.name)
        try:
            run.restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{checkpoint}: its contents do not fit this supernet ({why(e)})") from e
    if ranks.distributed:
        check_agreement(str(run.step), "the step to resume from (is --checkpoint on storage every node sees?)", dev)
    batches = _batches(data, settings.batch_size, settings.seed, run.step, ranks,
                       worker_count(settings.workers, ranks.world_size))
    biggest, smallest = space.max_subnet(), [space.min_subnet()] if settings.sandwich else []
    end = settings.steps if stop_after is None else min(settings.steps, run.step + stop_after)
    step_fn = _StepFn(_DISTILL[settings.distill], settings.resolution_scale, settings.amp, dev)
    net.train()
    forked = torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [])  # leave the caller's RNG alone
    bar = tqdm(range(run.step, end), desc="train", unit="step", disable=not (progress and ranks.leader),
               initial=run.step, total=settings.steps, dynamic_ncols=True)
    start, images = time.perf_counter(), 0
    with forked, global_batch_norm(net) if ranks.distributed else nullcontext():
        for step in bar:
            t0 = time.perf_counter()
            torch.manual_seed(_step_seed(settings.seed, step, ranks.rank))
            sampled = run.sampler.sample_step(run.rng, settings.subnets_per_step, step / settings.steps)
            if ranks.distributed:  # equal by construction (same seed, same draws); a slip would corrupt silently
                check_agreement(repr(sampled), f"the subnets of step {step + 1}", dev)
            x, y, skipped = next(batches)
            subs = smallest + sampled
            target = _mix(x.to(dev), y.to(dev), settings.mixup, settings.seed, step, ranks.rank)
            losses = _train_step(run, biggest, subs, target, ranks, step_fn)
            for sub, ce in zip(sampled, losses.ce[len(smallest):]):
                run.sampler.observe(sub, ce)  # means over all ranks: every rank's banks stay alike
            run.step = step + 1
            run.log.steps.append(run.step)
            run.log.ce_max.append(losses.ce_max)
            run.log.kd_sampled.append(sum(losses.kd) / max(1, len(losses.kd)))
            run.log.sampled_mmacs.append([round(subnet_macs(space, s) / 1e6, 3) for s in subs])
            run.log.skipped_images += int(skipped.sum())  # this rank's: ranks read disjoint images
            run.log.seconds.append(round(time.perf_counter() - t0, 4))
            images += settings.batch_size
            bar.set_postfix(img_s=f"{images / (time.perf_counter() - start):.1f}", ce=f"{losses.ce_max:.3f}",
                            refresh=False)
            if checkpoint is not None and (run.step % settings.checkpoint_every == 0 or run.step == end):
                if ranks.distributed:  # rank 0's state is the one resumed: it must be everyone's
                    check_agreement(repr(run.sampler.state()), f"the sampler state after step {run.step}", dev)
                if ranks.leader:
                    _save(checkpoint, run.state(settings))
                barrier(ranks)  # no rank gets ahead of the last complete checkpoint, nor exits before it exists
    return net, run.log


@dataclass(frozen=True)
class StepLosses:
    """One step's losses, means over the global batch."""

    ce_max: float  # the max subnet's cross-entropy (its loss)
    kd: list[float]  # each distilled subnet's distillation loss (its loss)
    ce: list[float]  # each distilled subnet's cross-entropy on the labels: not trained on, the sampler's score


@dataclass(frozen=True)
class Target:
    """A batch and its labels; with mixup, the images are lam * x + (1 - lam) * x[perm] and the labels both."""

    x: torch.Tensor
    y: torch.Tensor
    y_mixed: torch.Tensor | None = None
    lam: float = 1.0

    def cross_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, self.y)
        return ce if self.y_mixed is None else self.lam * ce + (1 - self.lam) * F.cross_entropy(logits, self.y_mixed)


def _mix(x: torch.Tensor, y: torch.Tensor, alpha: float, seed: int, step: int, rank: int) -> Target:
    """Mixup (Zhang et al. 2018) within this rank's slice, its draws a function of (seed, step, rank)."""
    if alpha <= 0:
        return Target(x, y)
    rng = np.random.default_rng([seed, step, rank, 1])
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(y))).to(y.device)
    return Target(lam * x + (1 - lam) * x[perm], y, y[perm], lam)


@dataclass(frozen=True)
class _StepFn:
    """How a step runs its subnets: the distillation loss, the input scale and mixed precision."""

    distill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    scale: float = 1.0
    amp: bool = False
    dev: torch.device = torch.device("cpu")

    def forward(self, net: Supernet, sub: Subnet, x: torch.Tensor) -> torch.Tensor:
        net.set_active_subnet(sub)
        with torch.autocast(self.dev.type, dtype=torch.bfloat16) if self.amp else nullcontext():
            out = net(at_resolution(x, input_size(sub.resolution, self.scale)))
        return out.float()  # the losses in float32 (alpha-divergence in float64)


def _train_step(run: _Run, biggest: Subnet, subs: list[Subnet], batch: Target, ranks: Ranks,
                fn: _StepFn) -> StepLosses:
    """One optimizer step: the max subnet on the labels, `subs` distilled from it."""
    net = run.net
    run.opt.zero_grad(set_to_none=True)
    logits = fn.forward(net, biggest, batch.x)
    ce = batch.cross_entropy(logits)
    ce.backward()
    soft = logits.detach().softmax(-1)
    losses = [ce.detach()]
    for sub in subs:
        out = fn.forward(net, sub, batch.x)
        kd = fn.distill(out, soft)
        kd.backward()
        losses += [kd.detach(), batch.cross_entropy(out.detach())]
    summary = torch.stack(losses)
    if ranks.distributed:
        # Each rank's losses are means over its equal slice, so averaging the summed gradients of the whole
        # step once makes them the gradients of the global-batch means (CE mean, distillation batch mean). Done
        # by hand rather than by DistributedDataParallel: one all-reduce after several forward/backward passes,
        # and the parameters a subnet leaves unused need no find_unused_parameters.
        average_gradients(net.parameters(), ranks.world_size)
        summary = mean_over_ranks(summary)
    nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    run.opt.step()
    run.sched.step()
    ce_max, *rest = summary.tolist()
    return StepLosses(ce_max, rest[0::2], rest[1::2])


@torch.no_grad()
def recalibrate_bn(net: Supernet, sub: Subnet, data: Dataset, batches: int = 8, batch_size: int = 32,
                   scale: float = 1.0) -> None:
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
    for i, (x, *_) in enumerate(DataLoader(data, batch_size=batch_size, shuffle=False)):
        if i >= batches:
            break
        net(at_resolution(x.to(dev), input_size(sub.resolution, scale)))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    net.train(was_training)


@torch.no_grad()
def top1(net: Supernet, sub: Subnet, data: Dataset, calibration: Dataset | None = None,
         batch_size: int = 64, scale: float = 1.0) -> float:
    """Top-1 accuracy of `sub` on `data`, after re-estimating BN statistics on `calibration` (or `data`); an
    unreadable image is left out (its stand-in, the next readable image, is not counted twice)."""
    recalibrate_bn(net, sub, calibration if calibration is not None else data, scale=scale)
    net.eval()
    dev = next(net.parameters()).device
    right = total = 0
    for x, y, skipped in DataLoader(data, batch_size=batch_size, shuffle=False):
        keep = skipped == 0
        pred = net(at_resolution(x.to(dev), input_size(sub.resolution, scale))).argmax(-1).cpu()
        right += int((pred == y)[keep].sum())
        total += int(keep.sum())
    return right / max(1, total)
