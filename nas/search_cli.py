"""`python -m nas.search --lut LUT --latency-ms X`: the best subnets under a latency limit.

LUT: a shipped published LUT (`pixel4`, `xiaomi11`), a flat nn-Meter JSON, or the `.sources.json`
that `predictor.validate --lut-out` writes (it carries the device's fitted network correction,
which is applied unless --no-correction). Prints the best subnets with their predicted latency,
MACs and params next to the space's released subnets that meet the limit; --json and --plot write
the result and a latency-vs-objective scatter plot.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from nas._registry import create_space, list_spaces
from nas.costs import subnet_features
from nas.search import (
    OBJECTIVES,
    Candidate,
    Constraints,
    Evaluator,
    Infeasible,
    SearchResult,
    SearchSettings,
    feasible,
    search,
)
from nas.searchspace import SearchSpace


def _row(name: str, c: Candidate, space: SearchSpace) -> str:
    f = subnet_features(space.blocks_of(c.subnet))
    return (f"{name:>8s} {c.latency_ms:9.3f} {f['macs'] / 1e6:8.1f} {f['macs_ref'] / 1e6:9.1f} "
            f"{c.params / 1e6:7.2f}   R={c.subnet.resolution}")


def plot(result: SearchResult, released: dict[str, Candidate], limits: Constraints, objective: str,
         title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit, label = (1e6, {"macs": "MMACs", "params": "M params"}[objective]) if objective in ("macs", "params") \
        else (1.0, objective)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    seen = result.feasible_seen
    ax.scatter([c.latency_ms for c in seen], [c.score / unit for c in seen], s=6, color="0.7",
               label="feasible candidates")
    ax.scatter([c.latency_ms for c in result.best], [c.score / unit for c in result.best], s=40, marker="*",
               color="tab:red", label="best found", zorder=3)
    for name, c in released.items():
        ax.scatter([c.latency_ms], [c.score / unit], s=20, color="tab:blue", zorder=3)
        ax.annotate(name, (c.latency_ms, c.score / unit), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.axvline(limits.latency_ms, color="black", lw=0.8, ls="--", label=f"limit {limits.latency_ms:g} ms")
    ax.set(xlabel="predicted latency (ms)", ylabel=label, title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nas.search", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", required=True, help="pixel4 | xiaomi11 | a LUT .json / .json.gz / .sources.json file")
    ap.add_argument("--latency-ms", type=float, required=True, help="latency limit (predicted, ms)")
    ap.add_argument("--max-params-m", type=float, help="also limit the size (millions of parameters)")
    ap.add_argument("--space", default="elasticvit", help=f"one of {list_spaces()}")
    ap.add_argument("--objective", default="macs", choices=sorted(OBJECTIVES))
    ap.add_argument("--population", type=int, default=SearchSettings.population)
    ap.add_argument("--generations", type=int, default=SearchSettings.generations)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--no-correction", action="store_true", help="plain block sum even if the LUT has a correction")
    ap.add_argument("--json", type=Path, help="write the best subnets and settings here")
    ap.add_argument("--plot", type=Path, help="latency-vs-objective scatter plot (PNG)")
    args = ap.parse_args(argv)
    from predictor.lut import (
        LutFormatError,
        NetworkCorrection,
        SubnetPredictor,
        open_lut,
    )

    if args.latency_ms <= 0 or args.population < 2 or args.generations < 0:
        print("error: --latency-ms must be > 0, --population >= 2, --generations >= 0", file=sys.stderr)
        return 2
    try:
        space = create_space(args.space)
        lut = open_lut(args.lut, space.name)
        if lut.space != space.name:
            raise ValueError(f"{args.lut} is a LUT of space {lut.space!r}, not {space.name!r} (--space)")
        correction = None if args.no_correction else NetworkCorrection.of_lut(lut)
        full = Path(args.lut).with_suffix(".sources.json")
        if (correction is None and not args.no_correction and full.exists() and full != Path(args.lut)
                and NetworkCorrection.of_lut(open_lut(full, space.name)) is not None):
            print(f"note: {full} beside it carries the device's network correction; pass it as --lut for "
                  "corrected latency", file=sys.stderr)
        predictor = SubnetPredictor(lut, space, correction)
        limits = Constraints(args.latency_ms, args.max_params_m * 1e6 if args.max_params_m else None)
        settings = SearchSettings(population=args.population, generations=args.generations)
        result = search(space, predictor.predict, limits, args.objective, settings, random.Random(args.seed),
                        top=args.top, progress=sys.stderr.isatty())
    except Infeasible as e:
        print(f"error: infeasible constraint: {e}", file=sys.stderr)
        return 2
    except (LutFormatError, KeyError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    latency_of = "block sum + network correction" if correction else "block sum"
    evaluate = Evaluator(space, predictor.predict, OBJECTIVES[args.objective])
    released = {name: c for name, c in zip(space.released, evaluate(list(space.released.values())))
                if feasible(c, limits)}
    print(f"{lut.device} ({latency_of}), limit {limits.latency_ms:g} ms, objective {args.objective}, "
          f"{result.evaluated} subnets evaluated")
    print(f"{'':>8s} {'latency':>9s} {'MMACs':>8s} {'MMACs ref':>9s} {'params M':>8s}")
    for i, c in enumerate(result.best, 1):
        print(_row(f"#{i}", c, space))
    for name, c in released.items():
        print(_row(name, c, space))
    if args.json:
        doc = {"lut": str(args.lut), "device": lut.device, "latency": latency_of, "limits": vars(limits),
               "objective": args.objective, "seed": args.seed, "evaluated": result.evaluated,
               "best": [{"subnet": c.subnet.to_dict(space.stage_names), "latency_ms": c.latency_ms,
                         "params": c.params, "score": c.score} for c in result.best]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))
    if args.plot:
        plot(result, released, limits, args.objective, f"{lut.device}: best {args.objective} under "
             f"{limits.latency_ms:g} ms", args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
