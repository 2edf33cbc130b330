"""torchrun support: the rank layout from the environment, the process group, and the collectives the
trainer needs (gradient averaging, batch statistics over the global batch, an agreement check).

Without torchrun's variables (WORLD_SIZE, RANK, LOCAL_RANK) there is one process and no collective runs.
Backend: gloo on CPU; NCCL on CUDA, where each rank uses cuda:LOCAL_RANK.
"""
from __future__ import annotations

import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn

from nas.modules.layers import ElasticBatchNorm, take


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank on its node: picks the GPU

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: the one that writes checkpoints, shows progress and reports."""
        return self.rank == 0


def ranks_from_env(env: Mapping[str, str] = os.environ) -> Ranks:
    if "WORLD_SIZE" not in env:
        return Ranks()
    try:
        ranks = Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))
    except (KeyError, ValueError) as e:
        raise ValueError(f"torchrun environment incomplete or malformed (RANK, WORLD_SIZE, LOCAL_RANK): {e}") from e
    if not 0 <= ranks.rank < ranks.world_size:
        raise ValueError(f"RANK={ranks.rank} is outside WORLD_SIZE={ranks.world_size}")
    return ranks


def rank_device(device: str, ranks: Ranks) -> torch.device:
    """`device` for this rank: under torchrun "cuda" means cuda:LOCAL_RANK."""
    dev = torch.device(device)
    if dev.type != "cuda" or not ranks.distributed:
        return dev
    if dev.index is not None:
        raise ValueError(f"--device {device}: under torchrun each rank uses cuda:LOCAL_RANK; pass --device cuda")
    return torch.device("cuda", ranks.local_rank)


@contextmanager
def process_group(ranks: Ranks, dev: torch.device) -> Iterator[None]:
    """The default process group (rendezvous from torchrun's MASTER_ADDR/MASTER_PORT) for the duration."""
    if not ranks.distributed:
        yield
        return
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world_size,
                            device_id=dev if dev.type == "cuda" else None)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def average_gradients(params: Iterable[nn.Parameter], world_size: int) -> None:
    """Mean of each gradient over the ranks, in one all-reduce of all gradients flattened together.

    Parameters without a gradient stay without one: every rank trained the same subnets (checked), so
    they are the same on every rank, and SGD then skips them (weight decay and momentum) exactly as
    a single process does; a zero gradient would not.
    """
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def check_agreement(text: str, what: str, dev: torch.device) -> None:
    """Raise unless every rank passed the same `text` (its CRC32, compared through one MAX of (h, -h))."""
    h = zlib.crc32(text.encode())
    t = torch.tensor([h, -h], dtype=torch.int64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if t.tolist() != [h, -h]:
        raise RuntimeError(f"the ranks disagree on {what}")


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: every rank's loss depends on the sum, so the gradient of rank r's
    summand is the sum of all ranks' incoming gradients (the trainer then averages parameter gradients)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(ElasticBatchNorm):
    """ElasticBatchNorm whose training statistics are those of the global batch (all ranks), as SyncBatchNorm
    (which has no CPU implementation). Mean first, then the centred squares: two exact passes where
    E[x^2] - E[x]^2 would cancel. Evaluation uses the running statistics, as before."""

    @classmethod
    def sharing(cls, bn: ElasticBatchNorm) -> GlobalBatchNorm:
        """A GlobalBatchNorm on `bn`'s own parameters and buffers (the optimizer and state dict are unchanged)."""
        g = cls(bn.num_features, bn.eps, bn.momentum, device=bn.weight.device)
        g.weight, g.bias = bn.weight, bn.bias
        g.running_mean, g.running_var, g.num_batches_tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked
        return g.train(bn.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = (1, c) + (1,) * (x.dim() - 2)
        n = x.numel() // c * dist.get_world_size()  # every rank holds an equal slice of the global batch
        mean = _SumOverRanks.apply(x.sum(dims)) / n
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply(centred.square().sum(dims)) / n
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        with torch.no_grad():  # as F.batch_norm: the running variance is the unbiased one
            take(self.running_mean, c).lerp_(mean, momentum)
            take(self.running_var, c).lerp_(var * (n / (n - 1)), momentum)
        scale = torch.rsqrt(var + self.eps) * take(self.weight, c)
        return centred * scale.view(shape) + take(self.bias, c).view(shape)


@contextmanager
def global_batch_norm(net: nn.Module) -> Iterator[None]:
    """Within: every ElasticBatchNorm of `net` normalises over the global batch; restored on exit, also on errors."""
    swapped = [(parent, name, child) for parent in net.modules() for name, child in parent.named_children()
               if type(child) is ElasticBatchNorm]
    for parent, name, bn in swapped:
        setattr(parent, name, GlobalBatchNorm.sharing(bn))
    try:
        yield
    finally:
        for parent, name, bn in swapped:
            setattr(parent, name, bn)
