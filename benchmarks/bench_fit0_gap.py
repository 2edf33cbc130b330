"""Where `--fit 0` misses whole networks: the level of a run or the spread, and which stages (this host).

    python benchmarks/bench_fit0_gap.py --runs 181 211 231 241 251 261 281 --timed-run 281 --networks 6 \
        --stage-subnets 4 --stage-seed 9001

Part 1, from files only: for each validate run S (`benchmarks/results/host_validation_seedS.json`, its LUT
`host_lut_seedS.json`), measured / predicted at `--fit 0` over its held-out networks: the median (the run's level)
and the SD of the log ratio around it (the spread), and ±10% with the level taken out (what fit 0 would score if
only its level were right; an oracle, not a method).

Part 2, timed now (TFLite, 1 thread, `device_scripts/linux_runner.py` as the profiler runs it, plain, 3 rounds):
the first `--networks` held-out networks of run `--timed-run`, cut into prefixes at every stage boundary. A stage's
in-network time is the difference of two prefixes; against the sum of its blocks timed alone now (measured gap)
and against what the run's fit-0 composition predicts for the same blocks (its entries over the LUT's alone
entries: predicted gap). Both gaps are ratios, free of the period's level.

Part 3, timed now: is the missing part a stage's own (its blocks interacting), the same for every stage of a kind?
Every stage but the stem's of `--stage-subnets` random subnets (`--stage-seed`, none of them a validate network) is
exported as a model of its own, fed its real input, and timed beside its blocks alone: its factor is (stage - the
probes' weight term for the stage's own weights) / its blocks alone. The median factor per kind is then applied to
the part-2 networks' blocks. Writes `--out`.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.blocks import BlockCfg  # noqa: E402
from nas.export import export_block, export_subnet, export_tflite  # noqa: E402
from nas.modules.layers import to_tokens  # noqa: E402
from nas.registry import create_space  # noqa: E402
from nas.searchspace import SearchSpace  # noqa: E402
from nas.subnet import Subnet  # noqa: E402
from nas.supernet import Net, build_subnet  # noqa: E402
from predictor.composition import Composition  # noqa: E402
from predictor.lut_io import open_lut  # noqa: E402
from predictor.validate import draw_networks  # noqa: E402
from profiler.networks import subnet_key  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def probes_only(lut_path: Path) -> tuple[dict[str, float], Composition]:
    """The LUT's entries and its composition as `--fit 0` used it until 2026-12-07 (the probes' numbers at every
    probed row count, nothing fitted; `fit0_gap.md` was made with it). Today's fit 0 is its `probes_only()`."""
    lut = open_lut(lut_path)
    comp = Composition.of_lut(lut)
    if comp is None:
        raise SystemExit(f"error: {lut_path} has no composition")
    return lut.flat(), replace(comp, scale=1.0, weight_scale=1.0, ms_per_op=0.0, type_scales=(), fitted_networks=0,
                               own_footprint=False, multi_row_weight=1.0)


def level_and_spread(seed: int) -> str:
    report = json.loads((RESULTS / f"host_validation_seed{seed}.json").read_text())
    ratio = np.array([p["measured_ms"] / p["fit0_ms"] for p in report["pairs"] if p.get("set") == "held-out"])
    level = float(np.median(ratio))
    # within ±10% as validate scores it: |predicted - measured| <= 10% of measured
    return (f"| {seed} | {len(ratio)} | {level:.3f} | {np.log(ratio / level).std():.3f} | "
            f"{np.mean(np.abs(1 / ratio - 1) <= 0.1):.0%} | {np.mean(np.abs(level / ratio - 1) <= 0.1):.0%} |")


def run_stage(net: Net, k: int, x: torch.Tensor) -> torch.Tensor:
    """Stage `k` of `net` on `x`, as `Net.forward` runs it."""
    if net.kinds[k] == "transformer" and x.dim() == 4:
        x = to_tokens(x)
    for layer in net.stages[k][: net.depths[k]]:
        x = layer(x)
    return x


class Prefix(nn.Module):
    """The network's first conv and its first `stages` stages."""

    def __init__(self, net: Net, stages: int) -> None:
        super().__init__()
        self.net, self.stages = net, stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net.first_conv(x)
        for k in range(self.stages):
            x = run_stage(self.net, k, x)
        return x


class Stage(nn.Module):
    """Stage `k` of the network alone (its input as the network feeds it)."""

    def __init__(self, net: Net, k: int) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_stage(self.net, self.k, x)


def stage_sizes(net: Net) -> list[int]:
    """Blocks per stage, as `SearchSpace.blocks_of` lists them (between the first conv and the head)."""
    return [sum(len(layer) if isinstance(layer, nn.Sequential) else 1 for layer in layers[:d])
            for layers, d in zip(net.stages, net.depths)]


def stage_factors(space: SearchSpace, probe: Composition, n: int, seed: int, rounds: int, runs: int, tmp: Path,
                  ) -> tuple[list[str], dict[str, float]]:
    """Part 3: table rows and the median factor per stage kind."""
    rng = random.Random(seed)
    jobs = []
    for subnet in [space.sample(rng) for _ in range(n)]:
        net, blocks = build_subnet(subnet), space.blocks_of(subnet)
        r = subnet.resolution
        x = torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(0))
        start = 1
        with torch.no_grad():
            x = net.first_conv(x)
            for k, size in enumerate(stage_sizes(net)):
                path, part = tmp / f"{subnet_key(subnet)}_stage{k}.tflite", blocks[start:start + size]
                start += size
                if k > 0:  # the stem's stage (1-2 small blocks) is left out
                    if not path.exists():
                        export_tflite(Stage(net, k), x, path, channel_last=x.dim() == 4)
                    jobs.append((net.kinds[k], str(path), part, [str(export_block(b, "tflite")) for b in part]))
                x = run_stage(net, k, x)
    ms = timed_ms(list(dict.fromkeys(m for _, p, _, bp in jobs for m in (p, *bp))), rounds, runs)
    rows, factors = [], {}
    for kind, path, part, block_paths in jobs:
        alone = sum(ms[b] for b in block_paths)
        per_mb = probe.extra_ms_per_mb(sum(sum(probe.by_tokens(b)) for b in part))
        weights = sum(float(np.dot(probe.by_tokens(b), per_mb)) for b in part)
        factors.setdefault(kind, []).append((ms[path] - weights) / alone)
        rows.append(f"| {Path(path).stem} | {kind} ({len(part)}) | {ms[path]:.3f} | {weights:.3f} | {alone:.3f} | "
                    f"{factors[kind][-1]:.3f} |")
    return rows, {k: float(np.median(v)) for k, v in factors.items()}


def timed_ms(models: list[str], rounds: int, runs: int) -> dict[str, float]:
    """Median over `rounds` of each model's median invoke (ms), all models in one runner command per round."""
    got: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(rounds):
        argv = [sys.executable, str(ROOT / "device_scripts" / "linux_runner.py"),
                *sum((["--model", m] for m in models), []), "--threads", "1", "--warmup", "5", "--runs", str(runs)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if len(lines) != len(models) or any("error" in d for d in lines):
            raise SystemExit(f"error: the runner failed: {[d.get('error') for d in lines]}")
        for m, d in zip(models, lines):
            got[m].append(statistics.median(d["samples_us"]) / 1e3)
    return {m: statistics.median(v) for m, v in got.items()}


def stage_rows(space: SearchSpace, subnet: Subnet, index: int, flat: dict[str, float], probe: Composition,
               rounds: int, runs: int, tmp: Path) -> tuple[list[str], list[tuple[str, float, float]], float]:
    """The table rows of one network, per stage (kind, in network / alone now, the same predicted), and the
    whole network's measured gap."""
    net = build_subnet(subnet)
    r = subnet.resolution
    example = torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(0))
    prefixes = []
    for k in range(len(net.stages) + 1):
        path = tmp / f"{subnet_key(subnet)}_prefix{k}.tflite"
        if not path.exists():
            export_tflite(Prefix(net, k), example, path, channel_last=True)
        prefixes.append(str(path))
    full = str(export_subnet(subnet, "tflite"))
    blocks = space.blocks_of(subnet)
    block_paths = [str(export_block(b, "tflite")) for b in blocks]
    ms = timed_ms([*prefixes, full, *block_paths], rounds, runs)
    entries = probe.entries([(b, flat[b.key]) for b in blocks])
    own = replace(probe, own_footprint=True).entries([(b, flat[b.key]) for b in blocks])
    # blocks_of order: the first conv, each stage's blocks, the head
    sizes = [1, *stage_sizes(net), 1]
    if sum(sizes) != len(blocks):
        raise SystemExit(f"error: {sum(sizes)} blocks in the stages but {len(blocks)} in blocks_of")
    rows, records, start, before = [], [], 0, 0.0
    times = [*(ms[p] for p in prefixes), ms[full]]
    for k, n in enumerate(sizes):
        part = range(start, start + n)
        start += n
        in_net, before = times[k] - before, times[k]
        alone = sum(ms[block_paths[i]] for i in part)
        lut_alone, composed = sum(flat[blocks[i].key] for i in part), sum(entries[i] for i in part)
        kinds = "/".join(sorted({blocks[i].type for i in part}))
        kind = "head" if k == len(sizes) - 1 else "first conv" if k == 0 else \
            "transformer" if "transattn" in kinds else "conv"
        records.append((kind, in_net / alone, composed / lut_alone))
        rows.append(f"| {index} (R{r}, {ms[full]:.1f} ms) | {k} {kinds} ({n}) | {in_net:.3f} | {alone:.3f} | "
                    f"{in_net / alone:.2f} | {composed / lut_alone:.2f} | "
                    f"{in_net / alone / (composed / lut_alone):.2f} | "
                    f"{in_net / alone / (sum(own[i] for i in part) / lut_alone):.2f} |")
    gap, lut_sum = ms[full] / sum(ms[p] for p in block_paths), sum(flat[b.key] for b in blocks)
    rows.append(f"| {index} | whole network | {ms[full]:.3f} | {sum(ms[p] for p in block_paths):.3f} | {gap:.2f} | "
                f"{sum(entries) / lut_sum:.2f} | {gap / (sum(entries) / lut_sum):.2f} | "
                f"{gap / (sum(own) / lut_sum):.2f} |")
    return rows, records, gap


def with_factors(blocks: list[BlockCfg], flat: dict[str, float], probe: Composition, factors: dict[str, float],
                 ) -> tuple[float, float]:
    """A part-2 network's predicted gap (entries / LUT alone) without and with the stage factors."""
    kind = {"conv": "mbconv", "transattn": "transformer", "transffn": "transformer", "transds": "transformer"}
    entries = probe.entries([(b, flat[b.key]) for b in blocks])
    alone = sum(flat[b.key] for b in blocks)
    scaled = sum(e + (factors.get(kind.get(b.type, ""), 1.0) - 1) * flat[b.key] for e, b in zip(entries, blocks))
    return sum(entries) / alone, scaled / alone


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--runs", type=int, nargs="+", default=[181, 211, 231, 241, 251, 261, 281],
                    help="validate runs (seeds) whose result files to read")
    ap.add_argument("--timed-run", type=int, default=281, help="the run whose held-out networks to time")
    ap.add_argument("--networks", type=int, default=6, help="how many of its held-out networks (0: part 1 only)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--invokes", type=int, default=30)
    ap.add_argument("--stage-subnets", type=int, default=4, help="part 3: random subnets whose stages to time")
    ap.add_argument("--stage-seed", type=int, default=9001)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/bench_fit0_gap"))
    ap.add_argument("--out", type=Path, default=RESULTS / "fit0_gap.md")
    args = ap.parse_args()
    for seed in args.runs:
        for name in (f"host_validation_seed{seed}.json", f"host_lut_seed{seed}.json"):
            if not (RESULTS / name).is_file():
                raise SystemExit(f"error: {RESULTS / name} is missing")
    lines = ["# Where `--fit 0` misses whole networks (this host, TFLite, 1 thread)", "",
             f"`python benchmarks/bench_fit0_gap.py --runs {' '.join(map(str, args.runs))} "
             f"--timed-run {args.timed_run} --networks {args.networks} --stage-subnets {args.stage_subnets} "
             f"--stage-seed {args.stage_seed}`", "",
             "## Level or spread (validate runs, held-out networks, from their result files)", "",
             "| run | networks | level: median measured / fit 0 | spread: SD of log ratio around it | fit 0 ±10% "
             "| ±10% with the level taken out (oracle) |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [level_and_spread(s) for s in args.runs]
    print("\n".join(lines), flush=True)
    if args.networks > 0:
        args.tmp.mkdir(parents=True, exist_ok=True)
        space = create_space(args.space)
        held = draw_networks(space, 10, 50, args.timed_run)[1][: args.networks]
        flat, probe = probes_only(RESULTS / f"host_lut_seed{args.timed_run}.json")
        lines += ["", f"## By stage, timed now (held-out networks of run {args.timed_run}, plain, "
                  f"{args.rounds} rounds)",
                  "", "Gaps are ratios to the blocks alone, so the period's level cancels; the last column is the "
                  "measured gap over the predicted one (above 1: fit 0 under-predicts that stage).", "",
                  "| network | stage (blocks) | in network ms | blocks alone now ms | measured gap | predicted gap "
                  "| measured / predicted | the same, own footprint subtracted |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        records, gaps = [], []
        for i, subnet in enumerate(held):
            rows, recs, gap = stage_rows(space, subnet, i, flat, probe, args.rounds, args.invokes, args.tmp)
            print("\n".join(rows), flush=True)
            lines += rows
            records += recs
            gaps.append(gap)
        lines += ["", "Over those networks, measured / predicted gap by kind of stage (median, range):", ""]
        for kind in ("first conv", "conv", "transformer", "head"):
            v = [m / p for k, m, p in records if k == kind]
            lines.append(f"- {kind} ({len(v)} stages): {np.median(v):.2f} ({min(v):.2f}-{max(v):.2f})")
        if args.stage_subnets > 0:
            rows, factors = stage_factors(space, probe, args.stage_subnets, args.stage_seed, args.rounds,
                                          args.invokes, args.tmp)
            part3 = ["", f"## Stages as models of their own ({args.stage_subnets} random subnets, seed "
                     f"{args.stage_seed})", "", "| stage | kind (blocks) | stage ms | probes' weight term ms "
                     "| blocks alone ms | factor |", "|---|---|---:|---:|---:|---:|", *rows, "",
                     "Median factor per kind: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(factors.items())), "",
                     "Applied to the blocks of the networks above (a transformer stage's factor to its attention, "
                     "FFN and downsampling blocks):", ""]
            for i, (subnet, g) in enumerate(zip(held, gaps)):
                p0, p1 = with_factors(space.blocks_of(subnet), flat, probe, factors)
                part3.append(f"- network {i}: measured gap {g:.3f}, predicted {p0:.3f}, "
                             f"with the stage factors {p1:.3f}")
            print("\n".join(part3), flush=True)
            lines += part3
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
