"""`python -m nas.search --lut LUT --latency-ms X`: the best subnets under a latency limit.

LUT: a shipped published LUT (`pixel4`, `xiaomi11`), a flat nn-Meter JSON, or the project-format LUT
that `predictor.validate --lut-out` writes (it carries the device's in-network composition, applied
unless --plain-sum). Prints the best subnets with their predicted latency,
MACs and params next to the space's released subnets that meet the limit; --json and --plot write
the result and a latency-vs-objective scatter plot.

From Python: `run(SearchJob(lut="pixel4", latency_ms=22))` returns the result document (what
--json writes); `run_search(job)` also prints it and returns the exit code.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from nas.costs import subnet_costs
from nas.evolution import (
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
from nas.registry import create_space, list_spaces
from nas.searchspace import SearchSpace
from predictor.lut_io import LutFormatError, open_lut
from predictor.subnet_predictor import MissingKeyError, SubnetPredictor


@dataclass(frozen=True)
class SearchJob:
    """One search, as the command line's flags give it; refuses impossible values (ValueError)."""

    lut: str | Path  # pixel4 | xiaomi11 | a LUT .json / .json.gz file (flat nn-Meter or this project's)
    latency_ms: float  # latency limit (predicted)
    max_params_m: float | None = None  # also limit the size (millions of parameters)
    space: str = "elasticvit"
    objective: str = "macs"
    population: int = SearchSettings.population
    generations: int = SearchSettings.generations
    seed: int = 0
    top: int = 5
    plain_sum: bool = False  # sum the alone entries even if the LUT carries its composition
    json_out: Path | None = None  # write the result document here
    plot: Path | None = None  # latency-vs-objective scatter plot (PNG)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise ValueError(f"--latency-ms must be a finite number > 0, not {self.latency_ms!r}")
        if self.max_params_m is not None and not (math.isfinite(self.max_params_m) and self.max_params_m > 0):
            raise ValueError(f"--max-params-m must be a finite number > 0, not {self.max_params_m!r}")
        if self.population < 2 or self.generations < 0 or self.top < 1:
            raise ValueError("--population must be >= 2, --generations >= 0, --top >= 1")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; known: {sorted(OBJECTIVES)}")

    @property
    def limits(self) -> Constraints:
        return Constraints(self.latency_ms, self.max_params_m * 1e6 if self.max_params_m is not None else None)


def _entry(space: SearchSpace, c: Candidate) -> dict:
    f = subnet_costs(space, c.subnet)
    return {"subnet": c.subnet.to_dict(space.stage_names), "latency_ms": c.latency_ms, "params": c.params,
            "score": c.score, "macs": f["macs"], "macs_ref": f["macs_ref"]}


def plot(result: SearchResult, released: dict[str, Candidate], limits: Constraints, objective: str,
         title: str, path: Path) -> None:
    import matplotlib  # heavy and only for --plot

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


def run(job: SearchJob, *, progress: bool = False) -> dict:
    """Search as `job` says; write its --json and --plot files; return the result document.

    Raises Infeasible (no subnet meets the limits), LutFormatError (MissingKeyError: a block the
    LUT lacks, named), ValueError (bad space or LUT of another space), OSError (unreadable file)."""
    space = create_space(job.space)
    lut = open_lut(job.lut, space.name)
    if lut.space != space.name:
        raise ValueError(f"{job.lut} is a LUT of space {lut.space!r}, not {space.name!r} (--space)")
    notes = []
    predictor = SubnetPredictor(lut, space, plain=job.plain_sum)
    if predictor.composition is None and not job.plain_sum:
        notes.append(f"{job.lut} has no in-network composition (entries timed alone, e.g. a published LUT): "
                     "latency is the plain block sum, which under-predicts whole networks")
    limits = job.limits
    settings = SearchSettings(population=job.population, generations=job.generations)
    result = search(space, predictor.predict, limits, job.objective, settings, random.Random(job.seed),
                    top=job.top, progress=progress)
    evaluate = Evaluator(space, predictor.predict, OBJECTIVES[job.objective])
    released = {name: c for name, c in zip(space.released, evaluate(list(space.released.values())))
                if feasible(c, limits)}
    doc = {"lut": str(job.lut), "device": lut.device,
           "latency": "composed block entries" if predictor.composition else "plain block sum",
           "limits": vars(limits), "objective": job.objective, "seed": job.seed, "evaluated": result.evaluated,
           "best": [_entry(space, c) for c in result.best],
           "released": {name: _entry(space, c) for name, c in released.items()}, "notes": notes}
    if job.json_out:
        job.json_out.parent.mkdir(parents=True, exist_ok=True)
        job.json_out.write_text(json.dumps(doc, indent=2))
    if job.plot:
        plot(result, released, limits, job.objective,
             f"{lut.device}: best {job.objective} under {limits.latency_ms:g} ms", job.plot)
    return doc


def _row(name: str, e: dict) -> str:
    return (f"{name:>8s} {e['latency_ms']:9.3f} {e['macs'] / 1e6:8.1f} {e['macs_ref'] / 1e6:9.1f} "
            f"{e['params'] / 1e6:7.2f}   R={e['subnet']['resolution']}")


def report(job: SearchJob, doc: dict) -> None:
    """Print a result document as the command line does (notes on stderr, the table on stdout)."""
    for note in doc["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(f"{doc['device']} ({doc['latency']}), limit {doc['limits']['latency_ms']:g} ms, objective "
          f"{doc['objective']}, {doc['evaluated']} subnets evaluated")
    print(f"{'':>8s} {'latency':>9s} {'MMACs':>8s} {'MMACs ref':>9s} {'params M':>8s}")
    for i, e in enumerate(doc["best"], 1):
        print(_row(f"#{i}", e))
    for name, e in doc["released"].items():
        print(_row(name, e))
    if job.plot:
        print(f"plot: {job.plot}")


def run_search(job: SearchJob, *, progress: bool = False) -> int:
    """`run(job)`, printed; expected failures become a one-line `error: ...` on stderr and exit code 2."""
    try:
        doc = run(job, progress=progress)
    except Infeasible as e:
        print(f"error: infeasible constraint: {e}", file=sys.stderr)
        return 2
    except (MissingKeyError, LutFormatError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report(job, doc)
    return 0


def parse_args(argv: list[str] | None = None) -> SearchJob:
    """The command line's flags as a SearchJob; raises ValueError for impossible values."""
    ap = argparse.ArgumentParser(prog="python -m nas.search", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", required=True,
                    help="pixel4 | xiaomi11 | a LUT .json / .json.gz file (predictor.validate --lut-out)")
    ap.add_argument("--latency-ms", type=float, required=True, help="latency limit (predicted, ms)")
    ap.add_argument("--max-params-m", type=float, help="also limit the size (millions of parameters)")
    ap.add_argument("--space", default="elasticvit", help=f"one of {list_spaces()}")
    ap.add_argument("--objective", default="macs", choices=sorted(OBJECTIVES))
    ap.add_argument("--population", type=int, default=SearchSettings.population)
    ap.add_argument("--generations", type=int, default=SearchSettings.generations)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--plain-sum", action="store_true", help="sum the alone entries even if the LUT carries its "
                    "in-network composition")
    ap.add_argument("--json", type=Path, help="write the best subnets and settings here")
    ap.add_argument("--plot", type=Path, help="latency-vs-objective scatter plot (PNG)")
    a = ap.parse_args(argv)
    return SearchJob(lut=a.lut, latency_ms=a.latency_ms, max_params_m=a.max_params_m, space=a.space,
                     objective=a.objective, population=a.population, generations=a.generations, seed=a.seed,
                     top=a.top, plain_sum=a.plain_sum, json_out=a.json, plot=a.plot)


def main(argv: list[str] | None = None) -> int:
    try:
        job = parse_args(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_search(job, progress=sys.stderr.isatty())


if __name__ == "__main__":
    sys.exit(main())
