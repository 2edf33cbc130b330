"""`python -m nas.search --lut LUT --latency-ms X [Y ...]`: the best subnets under one latency limit or a family.

LUT: a shipped published LUT (`pixel4`, `xiaomi11`), a flat nn-Meter JSON, or the project-format LUT
that `predictor.validate --lut-out` writes (it carries the device's in-network composition, applied
unless --plain-sum). One search per limit, all sharing one cache (each distinct subnet's latency and
objective are computed once). Prints each limit's best subnets with their predicted latency, MACs and
params, the space's released subnets that meet a limit, and the Pareto front (objective vs predicted
latency over every feasible candidate of the family); --json writes the result document and --plot one
latency-vs-objective plot. A limit no subnet meets is reported and the others still run (exit code 2 only
when none is feasible). Objectives by name (--list-objectives): macs, params, accuracy, mes.

--verify --serial SERIAL [run settings] [--checkpoint C] [--format tflite|onnx] exports each limit's best
subnet (with the checkpoint's trained weights) and times it on the device through the profiler's runners
(`predictor.verify`), prints predicted vs measured and stores the timings as network measurements (exit 1
when a subnet could not be timed; its row says why).

From Python: `run(SearchJob(lut="pixel4", latency_ms=(8, 15, 25, 40)))` returns the result document (what
--json writes); `run_search(job)` also prints it and returns the exit code.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from nas.costs import subnet_costs
from nas.evolution import (
    Candidate,
    Constraints,
    Evaluator,
    FamilyResult,
    Infeasible,
    SearchSettings,
    feasible,
    search_family,
)
from nas.export import FORMATS
from nas.objectives import (
    MES_ALPHA_LATENCY,
    MES_ALPHA_PARAMS,
    MES_LATENCY_UNIT_MS,
    MES_PARAMS_UNIT,
    ObjectiveConfig,
    check_objective,
    create_objective,
    describe_objectives,
)
from nas.registry import create_space, list_spaces
from nas.searchspace import SearchSpace
from nas.strategies import STRATEGIES, create_strategy
from predictor.lut_io import LutFormatError, lut_space, open_lut
from predictor.subnet_predictor import MissingKeyError, SubnetPredictor
from predictor.verify import VerifySettings, verify, with_format
from predictor.verify import summary as verify_summary
from predictor.verify import table as verify_table
from profiler.errors import ProfilerError
from profiler.measure_args import add_measure_arguments, measure_settings_from_args
from profiler.store import DEFAULT_STORE

_DEFAULT = SearchSettings()


@dataclass(frozen=True)
class SearchJob:
    """One search (a family: one per latency limit), as the command line's flags give it; refuses impossible
    values (ValueError)."""

    lut: str | Path  # pixel4 | xiaomi11 | a LUT .json / .json.gz file (flat nn-Meter or this project's)
    latency_ms: float | Sequence[float]  # latency limit(s) (predicted): one search per limit
    max_params_m: float | None = None  # also limit the size (millions of parameters), every limit alike
    space: str = "elasticvit"
    objective: str = "macs"
    objective_config: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    strategy: str = "evolution"  # nas.strategies: evolution | slimming
    population: int = _DEFAULT.population
    generations: int = _DEFAULT.generations
    parents: int | None = None  # None: half the population
    seed: int = 0
    top: int = 5
    plain_sum: bool = False  # sum the alone entries even if the LUT carries its composition
    json_out: Path | None = None  # write the result document here
    plot: Path | None = None  # latency-vs-objective plot of the family (PNG)
    verify: VerifySettings | None = None  # export each limit's best subnet and time it on this device

    def __post_init__(self) -> None:
        raw = [self.latency_ms] if isinstance(self.latency_ms, (int, float)) else list(self.latency_ms)
        if not raw:
            raise ValueError("--latency-ms needs at least one limit")
        for x in raw:
            if not (isinstance(x, (int, float)) and math.isfinite(x) and x > 0):
                raise ValueError(f"--latency-ms must be a finite number > 0, not {x!r}")
        if self.max_params_m is not None and not (math.isfinite(self.max_params_m) and self.max_params_m > 0):
            raise ValueError(f"--max-params-m must be a finite number > 0, not {self.max_params_m!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown search strategy {self.strategy!r}; known: {sorted(STRATEGIES)}")
        if self.population < 2 or self.generations < 0 or self.top < 1:
            raise ValueError("--population must be >= 2, --generations >= 0, --top >= 1")
        self.settings  # noqa: B018  (validates --parents against --population)
        check_objective(self.objective)
        has_predictor = self.objective_config.accuracy_predictor is not None
        if self.objective == "accuracy" and not has_predictor:
            raise ValueError("objective 'accuracy' needs --accuracy-predictor PATH (a fitted accuracy predictor, "
                             "python -m nas.evaluate --fit-predictor)")
        if has_predictor and self.objective not in ("accuracy", "mes"):
            raise ValueError(f"--accuracy-predictor is read by objectives accuracy and mes, not {self.objective!r}")

    @property
    def latencies_ms(self) -> tuple[float, ...]:
        """The limits, ascending, each once."""
        raw = [self.latency_ms] if isinstance(self.latency_ms, (int, float)) else self.latency_ms
        return tuple(sorted({float(x) for x in raw}))

    @property
    def limits(self) -> list[Constraints]:
        size = self.max_params_m * 1e6 if self.max_params_m is not None else None
        return [Constraints(x, size) for x in self.latencies_ms]

    @property
    def settings(self) -> SearchSettings:
        try:
            return SearchSettings(population=self.population, generations=self.generations, parents=self.parents)
        except ValueError as e:
            raise ValueError(f"--parents: {e}") from e


def _entry(space: SearchSpace, c: Candidate) -> dict:
    f = subnet_costs(space, c.subnet)
    return {"subnet": c.subnet.to_dict(space.stage_names), "latency_ms": c.latency_ms, "params": c.params,
            "score": c.score, "macs": f["macs"], "macs_ref": f["macs_ref"]}


_AXIS = {"macs": (1e6, "MMACs"), "params": (1e6, "M params"), "accuracy": (1.0, "predicted top-1"),
         "mes": (1.0, "MES (Mobile Efficiency Score)")}


def plot(family: FamilyResult, released: dict[str, Candidate], objective: str, title: str, path: Path) -> None:
    """Every feasible candidate, the Pareto front, each limit's best and its line, the released that fit."""
    import matplotlib  # heavy and only for --plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit, label = _AXIS.get(objective, (1.0, objective))
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    seen = {c.subnet: c for _, r in family.feasible for c in r.feasible_seen}.values()
    ax.scatter([c.latency_ms for c in seen], [c.score / unit for c in seen], s=4, color="0.75", lw=0,
               label="feasible candidates")
    ax.plot([c.latency_ms for c in family.pareto], [c.score / unit for c in family.pareto], color="tab:red",
            lw=1, drawstyle="steps-post", label="Pareto front")
    colors = plt.get_cmap("viridis")
    n = max(1, len(family.limits) - 1)
    for i, (lim, res) in enumerate(zip(family.limits, family.results)):
        col = colors(i / n)
        if isinstance(res, Infeasible):
            ax.axvline(lim.latency_ms, color="0.5", lw=0.8, ls=":", label=f"{lim.latency_ms:g} ms: infeasible")
            continue
        ax.axvline(lim.latency_ms, color=col, lw=0.8, ls="--")
        b = res.best[0]
        ax.scatter([b.latency_ms], [b.score / unit], s=90, marker="*", color=col, edgecolor="black", lw=0.5,
                   zorder=4, label=f"best under {lim.latency_ms:g} ms")
    for i, (name, c) in enumerate(released.items()):
        ax.scatter([c.latency_ms], [c.score / unit], s=22, color="tab:blue", zorder=3,
                   label="released (fits a limit)" if i == 0 else None)
        ax.annotate(name, (c.latency_ms, c.score / unit), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set(xlabel="predicted latency (ms)", ylabel=label, title=title)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run(job: SearchJob, *, progress: bool = False) -> dict:
    """Search as `job` says (one search per limit); write its --json and --plot files; return the result document.

    The document: settings (`settings`, `objective_config`), `results` (per limit, ascending: `best` and the
    names of the `released` that fit, or `infeasible` with the reason), `pareto` (fastest first), `released`
    (those that fit some limit: `fits_ms`, and whether a found subnet is at least as fast and better:
    `dominated`). A family of one limit also carries that limit's `limits` and `best` at the top level.

    Raises Infeasible (no subnet meets any limit), LutFormatError (MissingKeyError: a block the LUT lacks,
    named), ValueError (bad space, LUT of another space, unreadable accuracy predictor: ObjectiveError),
    OSError (unreadable file)."""
    space = create_space(job.space)
    lut = open_lut(job.lut, space.name)
    if lut.space != space.name:
        raise ValueError(f"{job.lut} is a LUT of space {lut.space!r}, not {space.name!r} (--space)")
    notes = []
    predictor = SubnetPredictor(lut, space, plain=job.plain_sum)
    if predictor.composition is None and not job.plain_sum:
        notes.append(f"{job.lut} has no in-network composition (entries timed alone, e.g. a published LUT): "
                     "latency is the plain block sum, which under-predicts whole networks")
    if job.objective == "mes" and job.objective_config.accuracy_predictor is None:
        notes.append("objective mes without --accuracy-predictor: Score is the constant 100, so MES only rewards "
                     "small, fast subnets (the search ends at the smallest ones)")
    objective = create_objective(job.objective, space, job.objective_config)
    settings = job.settings
    family = search_family(space, predictor.predict, job.limits, objective, settings, job.seed, job.top,
                           progress=progress, strategy=create_strategy(job.strategy, job.objective_config))
    ok = family.feasible
    if not ok:
        raise family.results[-1]  # type: ignore[misc]  (the largest limit's Infeasible)
    cands = Evaluator(space, predictor.predict, objective)(list(space.released.values()))
    released = {}
    for name, c in zip(space.released, cands):
        fits = [lim.latency_ms for lim, _ in ok if feasible(c, lim)]
        if fits:
            released[name] = (c, fits)
    results = []
    for lim, res in zip(family.limits, family.results):
        r: dict = {"latency_ms": lim.latency_ms, "limits": vars(lim)}
        if isinstance(res, Infeasible):
            r["infeasible"] = str(res)
        else:
            r.update(evaluated=res.evaluated, best=[_entry(space, c) for c in res.best],
                     released=[n for n, (c, _) in released.items() if feasible(c, lim)])
        results.append(r)
    front = family.pareto
    doc = {"lut": str(job.lut), "device": lut.device,
           "latency": "composed block entries" if predictor.composition else "plain block sum",
           "objective": job.objective, "objective_config": job.objective_config.to_dict(),
           "strategy": job.strategy, "settings": vars(settings), "seed": job.seed,
           "latency_limits_ms": list(job.latencies_ms),
           "max_params": job.limits[0].max_params, "evaluated": family.computed, "results": results,
           "pareto": [_entry(space, c) for c in front],
           "released": {name: {**_entry(space, c), "fits_ms": fits,
                               "dominated": any(f.latency_ms <= c.latency_ms and f.score > c.score for f in front)}
                        for name, (c, fits) in released.items()},
           "notes": notes}
    if len(results) == 1:  # the single-limit document of before: its limits and best at the top level
        doc.update(limits=results[0]["limits"], best=results[0]["best"])
    if job.verify is not None:
        chosen = [(f"best under {lim.latency_ms:g} ms", res.best[0].subnet, res.best[0].latency_ms)
                  for lim, res in ok]
        on_level = replace(job.verify, level=lut.meta.get("paired"))  # paired timings on the LUT's level
        rows = verify(space, chosen, on_level)
        doc["verify"] = {"rows": rows, "summary": verify_summary(rows), "settings": on_level.to_dict()}
    if job.json_out:
        job.json_out.parent.mkdir(parents=True, exist_ok=True)
        job.json_out.write_text(json.dumps(doc, indent=2))
    if job.plot:
        limits = ", ".join(f"{x:g}" for x in job.latencies_ms)
        plot(family, {n: c for n, (c, _) in released.items()}, job.objective,
             f"{lut.device}: best {job.objective} under {limits} ms", job.plot)
    return doc


def _row(name: str, e: dict, score: bool) -> str:
    return (f"{name:>8s} {e['latency_ms']:9.3f} {e['macs'] / 1e6:8.1f} {e['macs_ref'] / 1e6:9.1f} "
            f"{e['params'] / 1e6:8.2f}" + (f" {e['score']:9.4g}" if score else "") +
            f"   R={e['subnet']['resolution']}")


def report(job: SearchJob, doc: dict) -> None:
    """Print a result document as the command line does (notes on stderr, the tables on stdout)."""
    for note in doc["notes"]:
        print(f"note: {note}", file=sys.stderr)
    score = doc["objective"] not in ("macs", "params")
    header = (f"{'':>8s} {'latency':>9s} {'MMACs':>8s} {'MMACs ref':>9s} {'params M':>8s}"
              + (f" {doc['objective']:>9s}" if score else ""))
    print(f"{doc['device']} ({doc['latency']}), objective {doc['objective']}, {doc['evaluated']} distinct subnets "
          "scored")
    for r in doc["results"]:
        if "infeasible" in r:
            print(f"limit {r['latency_ms']:g} ms: infeasible: {r['infeasible']}")
            continue
        print(f"limit {r['latency_ms']:g} ms: {r['evaluated']} subnets considered")
        print(header)
        for i, e in enumerate(r["best"], 1):
            print(_row(f"#{i}", e, score))
    if doc["released"]:
        print("released subnets that fit (the limits they meet; * dominated by a found subnet):")
        print(header)
        for name, e in doc["released"].items():
            mark = "*" if e["dominated"] else " "
            print(_row(name, e, score) + f"   fits {', '.join(f'{x:g}' for x in e['fits_ms'])} ms {mark}")
    front = doc["pareto"]
    print(f"Pareto front: {len(front)} subnets from {front[0]['latency_ms']:.2f} ms to {front[-1]['latency_ms']:.2f} ms"
          + (f" (all in --json {job.json_out})" if job.json_out else ""))
    if job.plot:
        print(f"plot: {job.plot}")
    if "verify" in doc:
        print("verified on the device (exported with the checkpoint's weights, or random ones without --checkpoint):")
        for line in verify_table(doc["verify"]["rows"]):
            print(line)


def run_search(job: SearchJob, *, progress: bool = False) -> int:
    """`run(job)`, printed; expected failures become a one-line `error: ...` on stderr and exit code 2."""
    try:
        doc = run(job, progress=progress)
    except Infeasible as e:
        print(f"error: infeasible constraint: {e}", file=sys.stderr)
        return 2
    except (MissingKeyError, LutFormatError, ProfilerError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report(job, doc)
    failed = "verify" in doc and any(r["error"] is not None for r in doc["verify"]["rows"])
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m nas.search", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", help="pixel4 | xiaomi11 | a LUT .json / .json.gz file (predictor.validate --lut-out)")
    ap.add_argument("--latency-ms", type=float, nargs="+", help="latency limit(s) (predicted, ms): one search each")
    ap.add_argument("--max-params-m", type=float, help="also limit the size (millions of parameters)")
    ap.add_argument("--space", help=f"one of {list_spaces()} (default: the LUT's own, else elasticvit)")
    ap.add_argument("--objective", default="macs", help="what to maximise (see --list-objectives); default macs")
    ap.add_argument("--list-objectives", action="store_true", help="print the objectives and exit")
    ap.add_argument("--strategy", default="evolution", choices=sorted(STRATEGIES),
                    help="; ".join(f"{k}: {v}" for k, v in STRATEGIES.items()))
    ap.add_argument("--accuracy-predictor", type=Path, help="a fitted accuracy predictor (JSON, python -m "
                    "nas.evaluate --fit-predictor): objective accuracy, and mes's Score")
    ap.add_argument("--mes-params-unit-m", type=float, default=MES_PARAMS_UNIT / 1e6,
                    help="MES size unit U_size, millions of parameters (default: EfficientFormerV2's)")
    ap.add_argument("--mes-latency-unit-ms", type=float, default=MES_LATENCY_UNIT_MS, help="MES latency unit U_latency")
    ap.add_argument("--mes-alpha-params", type=float, default=MES_ALPHA_PARAMS, help="MES size exponent")
    ap.add_argument("--mes-alpha-latency", type=float, default=MES_ALPHA_LATENCY, help="MES latency exponent")
    ap.add_argument("--population", type=int, default=_DEFAULT.population)
    ap.add_argument("--parents", type=int, help="parents kept per generation (default: half the population)")
    ap.add_argument("--generations", type=int, default=_DEFAULT.generations)
    ap.add_argument("--top", type=int, default=5, help="best subnets reported per limit")
    ap.add_argument("--plain-sum", action="store_true", help="sum the alone entries even if the LUT carries its "
                    "in-network composition")
    ap.add_argument("--json", type=Path, help="write the result document (settings, per-limit best, Pareto front)")
    ap.add_argument("--plot", type=Path, help="latency-vs-objective plot of the family (PNG)")
    g = ap.add_argument_group("verify the winners on a device (--verify)")
    g.add_argument("--verify", action="store_true", help="export each limit's best subnet and time it on --serial")
    g.add_argument("--serial", help="device serial ('local' = this host); default: the single attached device")
    g.add_argument("--checkpoint", type=Path, help="a nas.train checkpoint: export with its trained weights")
    g.add_argument("--format", choices=FORMATS, help="model format (default: the backend's; onnx switches the "
                   "cpu backend to onnx)")
    g.add_argument("--store", type=Path, default=DEFAULT_STORE, help="profiler store the timings go to")
    g.add_argument("--passes", type=int, default=VerifySettings.passes,
                   help="time each winner once per pass and keep the median pass (default: %(default)s)")
    g.add_argument("--paired", action=argparse.BooleanOptionalAction, default=VerifySettings.paired,
                   help="time each winner alternately with validate's reference network (the level the LUT's "
                   "validation was timed on); --no-paired: alone, under the guard")
    add_measure_arguments(ap)  # its --seed also seeds the search
    return ap


def job_from_args(a: argparse.Namespace) -> SearchJob:
    """A parsed command line as a SearchJob; raises ValueError for missing or impossible values."""
    if a.lut is None or a.latency_ms is None:
        raise ValueError("--lut and --latency-ms are required (or --list-objectives)")
    config = ObjectiveConfig(accuracy_predictor=a.accuracy_predictor, mes_params_unit=a.mes_params_unit_m * 1e6,
                             mes_latency_unit_ms=a.mes_latency_unit_ms, mes_alpha_params=a.mes_alpha_params,
                             mes_alpha_latency=a.mes_alpha_latency)
    return SearchJob(lut=a.lut, latency_ms=tuple(a.latency_ms), max_params_m=a.max_params_m,
                     space=a.space or lut_space(a.lut), objective=a.objective, objective_config=config,
                     strategy=a.strategy,
                     population=a.population,
                     generations=a.generations, parents=a.parents, seed=a.seed, top=a.top, plain_sum=a.plain_sum,
                     json_out=a.json, plot=a.plot, verify=verify_settings(a) if a.verify else None)


def verify_settings(a: argparse.Namespace) -> VerifySettings:
    """The --verify flags as settings (the run settings are the profiler's flags)."""
    return VerifySettings(a.serial, with_format(measure_settings_from_args(a), a.format), a.checkpoint, a.store,
                          seed=a.seed, passes=a.passes, paired=a.paired)


def parse_args(argv: list[str] | None = None) -> SearchJob:
    """The command line's flags as a SearchJob; raises ValueError for missing or impossible values."""
    return job_from_args(_parser().parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.list_objectives:
        for name, text in describe_objectives().items():
            print(f"{name:10s} {text}")
        return 0
    try:
        job = job_from_args(a)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_search(job, progress=sys.stderr.isatty())


if __name__ == "__main__":
    sys.exit(main())
