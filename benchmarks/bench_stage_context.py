"""Does a transformer stage run slower after a weight stream, as inside a network? (this host, TFLite, 1 thread)

    python benchmarks/bench_stage_context.py --run 281 --networks 3

`--fit 0` misses whole networks by 5-11% on this host, and `bench_fit0_gap.py` put the missing time in the
transformer stages, only inside whole networks (a stage as a model of its own runs as its blocks do). The issue's
idea is to time a block "after a realistic eviction". Here the two largest transformer stages of the first
`--networks` held-out networks of validate run `--run` (dev data) are each timed, in one model, beside what a
network does to the caches between two of its invokes, and against the stage alone:

- after a 20 MB weight stream: the stage and a chain of twenty 1 MiB fully connected layers in one model (the
  chain fed from a slice of the stage's input, so one input); the stage's cost = that model - the chain alone;
- with the network's own head (its 15-24 MB classifier streamed), the same way;
- in the network without its head: the difference of two prefixes (the first conv and the stages before it, with
  and without it), as `bench_fit0_gap.py` part 2.

Each is divided by the stage alone and set beside what the probes of run `--run` predict for the stage's weights at
20 MB plus its own, and at the whole network's MB (`--fit 0`'s term). Timed plainly (3 rounds of 30 invokes, the
models interleaved). Writes `--out`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_fit0_gap import RESULTS, Prefix, Stage, probes_only, run_stage, stage_sizes, timed_ms  # noqa: E402

from nas.export import export_tflite  # noqa: E402
from nas.registry import create_space  # noqa: E402
from nas.supernet import build_subnet  # noqa: E402
from predictor.composition import Composition  # noqa: E402
from predictor.validate import draw_networks  # noqa: E402
from profiler.networks import subnet_key  # noqa: E402

STREAM_MB = 20  # about a network's head: its classifier holds 15-24 MB


class Stream(nn.Module):
    """STREAM_MB fully connected 512 x 512 layers (1 MiB each) applied to one row."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.layers = nn.ModuleList(nn.Linear(512, 512, bias=False) for _ in range(STREAM_MB))
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=512 ** -0.5, generator=gen)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            v = layer(v)
        return v


class Beside(nn.Module):
    """`other` on the first elements of the input reshaped to `shape`, and the stage (if any) on the input."""

    def __init__(self, stage: nn.Module | None, other: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.stage, self.other, self.shape = stage, other, shape

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        v = self.other(x.reshape(1, -1)[:, : int(np.prod(self.shape))].reshape(*self.shape))
        return v if self.stage is None else (self.stage(x), v)


def export(stem: Path, what: str, module: nn.Module, example: torch.Tensor, channel_last: bool = False) -> str:
    """`module` converted to `<stem>_<what>.tflite` (kept: a rerun times the same files)."""
    path = stem.with_name(f"{stem.name}_{what}.tflite")
    if not path.exists():
        export_tflite(module, example, path, channel_last=channel_last)
    return str(path)


def weights_term(probe: Composition, blocks: list, network_mb: float) -> float:
    per_mb = probe.extra_ms_per_mb(network_mb)
    return sum(float(np.dot(probe.by_tokens(b), per_mb)) for b in blocks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=int, default=281, help="validate run (seed) whose held-out networks and probes")
    ap.add_argument("--networks", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--invokes", type=int, default=30)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/bench_stage_context"))
    ap.add_argument("--out", type=Path, default=RESULTS / "stage_context.md")
    args = ap.parse_args()
    lut = RESULTS / f"host_lut_seed{args.run}.json"
    if not lut.is_file():
        raise SystemExit(f"error: {lut} is missing")
    args.tmp.mkdir(parents=True, exist_ok=True)
    space = create_space("elasticvit")
    _, probe = probes_only(lut)
    jobs = []
    for i, subnet in enumerate(draw_networks(space, 10, 50, args.run)[1][: args.networks]):
        net, blocks, stem = build_subnet(subnet), space.blocks_of(subnet), args.tmp / subnet_key(subnet)[-6:]
        r = subnet.resolution
        image = torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(0))
        inputs = []
        with torch.no_grad():
            x = net.first_conv(image)
            for k in range(len(net.stages)):
                inputs.append(x)
                x = run_stage(net, k, x)
        head_shape = tuple(x.shape)
        sizes = [1, *stage_sizes(net)]  # blocks_of order: the first conv, then each stage's blocks

        # the two largest transformer stages fed tokens (the first transformer stage is fed a grid)
        stages = [k for k in range(len(net.stages)) if net.kinds[k] == "transformer" and inputs[k].dim() == 3]
        for k in sorted(stages, key=lambda k: -sizes[k + 1])[:2]:
            xk, start = inputs[k], sum(sizes[: k + 1])
            part = blocks[start:start + sizes[k + 1]]
            models = {"alone": export(stem, f"S{k}", Stage(net, k), xk),
                      "stream+": export(stem, f"SW{k}", Beside(Stage(net, k), Stream(), (1, 512)), xk),
                      "stream": export(stem, f"W{k}", Beside(None, Stream(), (1, 512)), xk),
                      "before": export(stem, f"P{k}", Prefix(net, k), image, True),
                      "through": export(stem, f"P{k + 1}", Prefix(net, k + 1), image, True)}
            if xk.numel() >= x.numel():  # the head is fed from the stage's input
                models["head+"] = export(stem, f"SH{k}", Beside(Stage(net, k), net.head, head_shape), xk)
                models["head"] = export(stem, f"H{k}", Beside(None, net.head, head_shape), xk)
            network_mb = sum(sum(probe.by_tokens(b)) for b in blocks)
            own_mb = sum(sum(probe.by_tokens(b)) for b in part)
            jobs.append((i, k, len(part), models, weights_term(probe, part, STREAM_MB + own_mb),
                         weights_term(probe, part, network_mb)))
    ms = timed_ms(list(dict.fromkeys(m for *_, models, _, _ in jobs for m in models.values())), args.rounds,
                  args.invokes)
    lines = ["# A transformer stage beside what a network does to the caches (this host, TFLite, 1 thread)", "",
             f"`python benchmarks/bench_stage_context.py --run {args.run} --networks {args.networks}` (dev networks: "
             f"held-out networks of run {args.run}, already scored). Each column is the stage's cost there over the "
             "stage timed alone; the last two are what the run's probes predict.", "",
             "| network | stage (blocks) | alone ms | after a 20 MB stream | with the head | in the network "
             "(prefixes) | probes: 20 MB + own | probes: the network's MB |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for i, k, n, models, w20, wnet in jobs:
        alone = ms[models["alone"]]
        head = f"{(ms[models['head+']] - ms[models['head']]) / alone:.3f}" if "head" in models else "-"
        lines.append(f"| {i} | {k} ({n}) | {alone:.3f} | {(ms[models['stream+']] - ms[models['stream']]) / alone:.3f} "
                     f"| {head} | {(ms[models['through']] - ms[models['before']]) / alone:.3f} | {1 + w20 / alone:.3f} "
                     f"| {1 + wnet / alone:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
