"""`python -m predictor.validate`: predicted vs measured latency of whole networks nobody fitted on.

    python -m predictor.validate --serial local --store PATH --fit 10 --n 50 --json OUT.json --lut-out LUT.json
    python -m predictor.validate --serial SERIAL --benchmark-binary ./benchmark_model --fit 0 --n 30   # a phone

Fits the block predictor to the device's block measurements in the store (the device is its
fingerprint, read first), fills the LUT and makes its entries compose from the device's
weight-stream probes (`predictor.composition`), timed before and after the networks. Then it
exports and measures two disjoint sets of whole subnets with the same run settings as `profiler.run`:
`--fit N` networks (spread over the MACs range; may be 0) on which the composition is refined, and
`--n M` held-out networks drawn at random from the space, used for nothing but the score; every network is
timed in `--passes P` passes (each in its own order) and its median pass is its timing (on a shared host
one timing of a network moved by 5-8% between periods); while the held-out networks' passes disagree by more
than `--pass-noise-target`, two more passes are timed, up to `--max-passes`. `--anchors K`
of the measured blocks are timed again before and after the networks: every entry is rescaled by their
median drift since the store's run (a shared host or a phone runs at another speed an hour later). The
held-out figures are the report's top level (`n`, `acc10`, `acc5`, `mape`, `rmse_ms`); the plain sum
of alone entries and the probe-only composition are beside them. Every model from the anchors on is timed
alternately with a reference network (blocks of invokes; on a phone, benchmark_model invocations), as its
ratio to it times the reference's stored level (`profiler.paired`): a disturbed period slows both alike and
cancels; the run (its report and LUT) is then put on the level of its own period, the median of the reference's
plain timings at its start and end (`paired` in the report). With `--no-paired` each is timed alone and the
reference is re-timed around every chunk instead (disturbed periods are waited out, a chunk that ends disturbed is
measured again). A few networks are re-measured back to back; the held-out networks' spread over the passes is the
run's own noise floor (`noise_floor_passes`), and `error_split` divides the held-out error into the predictor's part
and one timing's noise (what two passes of a network share is the predictor's); a run noisier than `--max-noise`, or
whose probes or anchors moved, is flagged. `validate(ValidateConfig)` is the same as a function.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas.blocks import BlockCfg, parse_key
from nas.costs import subnet_costs
from nas.export import export_subnet
from nas.probes import WeightStreamProbe, weight_stream_grid
from nas.registry import create_space
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from predictor import metrics
from predictor.composition import META_KEY, Composition, Network
from predictor.lut import Lut, fill_lut
from predictor.lut_io import save_lut
from predictor.plots import scatter_plot
from predictor.subnet_predictor import SubnetPredictor
from predictor.xgb import LatencyPredictor
from profiler.errors import ProfilerError
from profiler.measure_args import add_measure_arguments, measure_settings_from_args, positive_int
from profiler.networks import Guard, measure_subnets, pass_timings, subnet_key
from profiler.paired import pair_with, reference_model, run_level, time_plainly
from profiler.prefetch import default_workers
from profiler.protocol import measure_model
from profiler.session import DeviceSession, ProfileJob, Summary, measure_anchors, measure_probes
from profiler.settings import MeasureSettings
from profiler.store import DEFAULT_STORE
from profiler.targets import open_target

log = logging.getLogger("predictor.validate")
MIN_BLOCKS = 20
REPORT_FORMAT = "mobilevit-nas/validation"
REPORT_VERSION = 2
LEVEL_REPEATS = 5  # plain timings of the reference at each end of a paired run
# A network's timing is its median pass; on a noisy host that median still moved: runs 181-311 (dev) whose held-out
# networks' scored CV (CV between passes / sqrt(passes)) was at most 1.06% had 90-96% of them within ±5% after
# `--fit 10`, the two at 1.19-1.21% 88%. So passes are added, two at a time (an odd count stays odd: a true median),
# until the scored CV is at most PASS_NOISE_TARGET or MAX_PASSES are timed.
PASS_NOISE_TARGET = 0.01
MAX_PASSES = 7


@dataclass(frozen=True)
class ValidateConfig:
    serial: str | None  # None: $ANDROID_SERIAL, else the single attached device
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    store: Path = DEFAULT_STORE
    space: str = "elasticvit"
    n: int = 50  # held-out networks: drawn at random, scored, never fitted on
    fit: int = 10  # networks the composition is refined on (0: blocks and the probe only)
    json_out: Path | None = None
    plot: Path | None = None  # default: next to json_out, or measurements/
    lut_out: Path | None = None  # the LUT with its composition, one file (what nas.search and predictor.predict read)
    noise_networks: int = 3
    noise_repeats: int = 5
    max_noise: float = 0.02  # flag the run when the noise floor's CV exceeds this
    anchors: int = 24  # measured blocks re-timed around the networks (0: entries as stored)
    passes: int = 3  # each network is timed once per pass (own order each); its median pass is its timing
    max_passes: int | None = None  # passes are added, two at a time up to this (None: MAX_PASSES or --passes), ...
    pass_noise_target: float = PASS_NOISE_TARGET  # ... i.e. while the held-out networks' scored CV is above this
    paired: bool = True  # every model timed alternately with the reference network, as its ratio to it
    # the reference's relative change that counts as disturbed (--no-paired), and the anchors' and probes' move that
    # flags a run
    guard_tolerance: float = Guard.tolerance

    @property
    def passes_at_most(self) -> int:
        return max(self.passes, MAX_PASSES) if self.max_passes is None else self.max_passes

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError("--n must be at least 2")
        if self.fit < 0:
            raise ValueError("--fit must be >= 0")
        if self.anchors < 0:
            raise ValueError("--anchors must be >= 0")
        if self.passes < 1:
            raise ValueError("--passes must be >= 1")
        if self.max_passes is not None and self.max_passes < self.passes:
            raise ValueError(f"--max-passes ({self.max_passes}) must be >= --passes ({self.passes})")
        if self.pass_noise_target < 0:
            raise ValueError("--pass-noise-target must be >= 0")
        if not 0 < self.guard_tolerance < 1:
            raise ValueError("--guard-tolerance must be between 0 and 1")
        if self.noise_networks < 0 or self.noise_repeats < 2:
            raise ValueError("--noise-networks must be >= 0 and --noise-repeats >= 2")


def spread_over_macs(space: SearchSpace, n: int, rng: random.Random, pool_factor: int = 40) -> list[Subnet]:
    """n distinct subnets whose MACs cover the space's range evenly (one per MACs quantile bin)."""
    pool = list({space.sample(rng) for _ in range(max(n * pool_factor, 200))})
    macs = np.array([subnet_costs(space, s)["macs"] for s in pool])
    order = np.argsort(macs)
    picks = np.linspace(0, len(pool) - 1, n).round().astype(int)
    return [pool[order[i]] for i in dict.fromkeys(picks)]


def fit_lut(space: SearchSpace, measured: dict[str, float], device: str, backend: str, seed: int) -> Lut:
    blocks = space.enumerate_blocks()
    train = [b for b in blocks if b.key in measured]
    if len(train) < MIN_BLOCKS:
        raise ProfilerError(f"only {len(train)} measured blocks of space {space.name!r} for {device} "
                            f"(need {MIN_BLOCKS}+): run `python -m profiler.run --serial {device} --budget 300` first")
    model = LatencyPredictor(seed=seed).fit(train, [measured[b.key] for b in train])
    return fill_lut(device, backend, space, blocks, {b.key: measured[b.key] for b in train}, model,
                    {"n_measured": len(train)})


def draw_networks(space: SearchSpace, fit: int, n: int, seed: int) -> tuple[list[Subnet], list[Subnet]]:
    """`fit` networks spread over the MACs range and `n` other networks drawn at random (held out)."""
    fitting = spread_over_macs(space, fit, random.Random(seed)) if fit > 0 else []
    rng, held, seen = random.Random(seed + 1), [], set(fitting)
    for _ in range(100 * n):
        if len(held) == n:
            break
        s = space.sample(rng)
        if s not in seen:
            seen.add(s)
            held.append(s)
    return fitting, held


def noise_floor(sess: DeviceSession, subnets: list[Subnet], repeats: int) -> dict[str, float]:
    """Spread of the same networks measured `repeats` times: the accuracy no predictor can beat."""
    cvs, ranges = [], []
    run, protocol = sess.job.run, sess.job.protocol
    for sub in subnets:
        model = export_subnet(sub, run.model_format)
        meds = [measure_model(sess.target, sess.runner, model, run, protocol, sess.mask).stats["median_ms"]
                for _ in range(repeats)]
        cvs.append(statistics.pstdev(meds) / statistics.fmean(meds))
        ranges.append((max(meds) - min(meds)) / statistics.median(meds))
    return {"networks": len(subnets), "repeats": repeats, "mean_cv": float(np.mean(cvs)),
            "max_range": float(np.max(ranges))}


def pass_noise(by_key: dict[str, dict[int, float]]) -> dict | None:
    """How much the scored networks moved between passes: `pass_cv`, the mean over networks of the CV of their
    pass timings (one timing's noise, periods included); `scored_cv` = pass_cv / sqrt(passes), about the noise
    left in a network's median pass; `pass_level`, per pass the median over networks of (pass / their mean
    pass) - 1, the part every network shared (the device's speed in that period)."""
    rows = [v for v in by_key.values() if len(v) > 1]
    if not rows:
        return None
    passes = max(len(v) for v in rows)
    cvs = [statistics.pstdev(v.values()) / statistics.fmean(v.values()) for v in rows]
    level = [float(np.median([v[n] / statistics.fmean(v.values()) - 1 for v in rows if n in v]))
             for n in range(passes) if any(n in v for v in rows)]
    pass_cv = float(np.mean(cvs))
    return {"networks": len(rows), "passes": passes, "pass_cv": pass_cv, "scored_cv": pass_cv / float(np.sqrt(passes)),
            "max_cv": float(np.max(cvs)), "pass_level": level}


def error_split(pred_ms: dict[str, float], by_key: dict[str, dict[int, float]]) -> dict | None:
    """How much of the held-out error is the predictor's and how much one timing's noise. With e_p = log(pass p /
    predicted), a network's error in two different passes shares the predictor's error but not the timing noise,
    so the covariance of e_i and e_j over networks (mean over pairs of passes) is the predictor's variance and the
    rest of one pass's variance is the noise (SDs of log ratios, ~ relative); `bias` is the mean e (> 0: the
    networks ran slower than predicted). None with fewer than 2 passes or 3 networks."""
    rows = {k: {n: float(np.log(ms / pred_ms[k])) for n, ms in v.items()} for k, v in by_key.items() if k in pred_ms}
    passes = sorted({n for v in rows.values() for n in v})
    covs, vars_ = [], []
    for i, a in enumerate(passes):
        ea = [v[a] for v in rows.values() if a in v]
        if len(ea) >= 3:
            vars_.append(float(np.var(ea)))
        for b in passes[i + 1:]:
            both = [(v[a], v[b]) for v in rows.values() if a in v and b in v]
            if len(both) >= 3:
                covs.append(float(np.cov(np.array(both).T, bias=True)[0, 1]))
    if not covs:
        return None
    cov, var = float(np.mean(covs)), float(np.mean(vars_))
    bias = float(np.mean([e for v in rows.values() for e in v.values()]))
    return {"networks": len(rows), "passes": len(passes), "bias": bias, "one_pass_sd": var ** 0.5,
            "predictor_sd": max(cov, 0.0) ** 0.5, "timing_noise_sd": max(var - cov, 0.0) ** 0.5}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m predictor.validate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--serial", help="device serial ('local' = this host); default: the single attached device")
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE)
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--n", type=positive_int, default=50, help="held-out networks (random, never fitted on)")
    ap.add_argument("--fit", type=int, default=10, help="networks the composition is refined on (0: none)")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--plot", type=Path, help="scatter plot PNG (default: next to --json, or measurements/)")
    ap.add_argument("--lut-out", type=Path, help="write the LUT with its composition (one file: what nas.search "
                    "and predictor.predict read)")
    ap.add_argument("--noise-networks", type=int, default=3, help="networks re-measured for the noise floor")
    ap.add_argument("--noise-repeats", type=int, default=5)
    ap.add_argument("--max-noise", type=float, default=0.02, help="flag the run when the noise floor's CV exceeds this")
    ap.add_argument("--anchors", type=int, default=24, help="measured blocks timed again before and after the "
                    "networks; entries are rescaled by their drift since they were stored (0: as stored)")
    ap.add_argument("--passes", type=positive_int, default=3, help="time every network once per pass (each pass "
                    "in its own order) and keep its median pass: one timing on a shared device is not enough")
    ap.add_argument("--max-passes", type=positive_int, help="add passes, two at a time up to this many (default "
                    f"{MAX_PASSES}, or --passes if more), while the held-out networks' timings are noisier than "
                    "--pass-noise-target")
    ap.add_argument("--pass-noise-target", type=float, default=PASS_NOISE_TARGET, help="the scored CV (the held-out "
                    "networks' CV between passes / sqrt(passes)) above which more passes are timed")
    ap.add_argument("--paired", action=argparse.BooleanOptionalAction, default=True,
                    help="time every model (networks, anchors, probes) alternately with the reference network, in "
                    "blocks of invokes, as its ratio to it times the reference's stored level: a disturbed period "
                    "cancels (on a phone, whole benchmark_model invocations alternate: slow changes cancel; kept "
                    "apart from plain timings in the store). --no-paired: time each alone, a guard waits out "
                    "disturbed periods")
    ap.add_argument("--guard-tolerance", type=float, default=Guard.tolerance, help="with --no-paired: how far the "
                    "reference may move from its first timing before the device counts as disturbed (relative); also "
                    "the limit on the anchors' and probes' move that flags a run")
    add_measure_arguments(ap, export_workers=default_workers())
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = ValidateConfig(args.serial, measure_settings_from_args(args), args.store, args.space, args.n, args.fit,
                             args.json, args.plot, args.lut_out, args.noise_networks, args.noise_repeats,
                             args.max_noise, args.anchors, args.passes, args.max_passes, args.pass_noise_target,
                             args.paired, args.guard_tolerance)
        report = validate(cfg)
    except (ProfilerError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report["noisy"]:
        print(f"warning: {report['noisy']}", file=sys.stderr)
    print(json.dumps({k: report[k] for k in ("n", "acc10", "acc5", "mape", "rmse_ms", "fit", "composed_fit0",
                                             "block_sum", "anchors", "noise_floor", "noise_floor_passes",
                                             "error_split", "noisy")}))
    return 0


def validate(cfg: ValidateConfig) -> dict:
    space = create_space(cfg.space)
    target = open_target(cfg.serial)
    sess = DeviceSession(ProfileJob(target.serial, (), cfg.settings, cfg.store), target)
    try:
        return _validate(cfg, space, sess)
    finally:
        sess.close()


def probe_curve(sess: DeviceSession) -> dict[WeightStreamProbe, float]:
    """The weight-stream probes timed now (probe -> ms): the in-network term of the networks measured beside them."""
    done = measure_probes(sess, Summary(serial=sess.target.serial))
    grid = weight_stream_grid(sess.job.protocol.probe_mb, sess.job.protocol.probe_tokens)
    missing = [p.key for p in grid if p.key not in done]
    if missing:
        raise ProfilerError(f"the weight-stream probe(s) {', '.join(missing)} could not be measured on "
                            f"{sess.target.serial} (see the store's failures table): without them block entries "
                            "cannot be composed into networks")
    return {p: done[p.key] for p in grid}


def probe_composition(before: dict[WeightStreamProbe, float], after: dict[WeightStreamProbe, float]
                      ) -> tuple[Composition, float, dict]:
    """The composition from probes timed before and after the networks (their mean), how far the probes
    moved (mean relative change over the grid: one noisy small probe is not a moved curve, a cache step
    that moves the large ones is) and the probes for the report."""
    mean = {p: (before[p] + after[p]) / 2 for p in before}
    chains = {(p.tokens, p.weight_mb): ms for p, ms in mean.items() if p.layers > 1}
    alone = {p.tokens: ms for p, ms in mean.items() if p.layers == 1}
    alone_mb = next(p.weight_mb for p in mean if p.layers == 1)
    shift = float(np.mean([abs(after[p] / before[p] - 1) for p in before]))
    report = {"shift": shift, "probes": [{"key": p.key, "tokens": p.tokens, "weight_mb": p.weight_mb,
                                          "before_ms": before[p], "after_ms": after[p]} for p in before]}
    return Composition.from_probes(chains, alone, alone_mb), shift, report


def pick_anchors(measured: dict[str, float], n: int, seed: int) -> list[BlockCfg]:
    """`n` of the measured blocks (seeded), taken round-robin over block types (the most measured type first)."""
    keys = sorted(measured)
    by_type: dict[str, list[str]] = {}
    for k in random.Random(seed).sample(keys, len(keys)):
        by_type.setdefault(parse_key(k).type, []).append(k)
    picks: list[str] = []
    while len(picks) < min(n, len(keys)):  # round-robin over types, the largest first
        for t in sorted(by_type, key=lambda t: -len(by_type[t])):
            if by_type[t] and len(picks) < n:
                picks.append(by_type[t].pop())
    return [parse_key(k) for k in picks]


def anchor_drift(stored: dict[str, float], before: dict[str, float], after: dict[str, float]) -> dict:
    """How much slower (> 1) the device runs the anchors now than when they were stored: the median over anchors
    of their mean time now / stored time; `shift`: how far they moved between before and after the networks."""
    both = [k for k in before if k in after and k in stored]
    if not both:
        raise ProfilerError("no anchor block could be timed both before and after the networks "
                            "(see the store's failures table); re-run, or --anchors 0 to use the entries as stored")
    ratios = np.array([(before[k] + after[k]) / 2 / stored[k] for k in both])
    return {"blocks": len(both), "factor": float(np.median(ratios)),
            "p10": float(np.percentile(ratios, 10)), "p90": float(np.percentile(ratios, 90)),
            "shift": float(np.median([abs(after[k] / before[k] - 1) for k in both]))}


def _networks(space: SearchSpace, lut: Lut, subnets: list[Subnet]) -> list[Network]:
    flat = lut.flat()
    return [[(b, flat[b.key]) for b in space.blocks_of(s)] for s in subnets]


@dataclass
class NetworkTimings:
    """What one measuring run around a set of networks got: their timings and everything timed beside them."""

    truth_ms: dict[str, float]  # subnet_key -> its timing (median pass)
    probes_before: dict[WeightStreamProbe, float]
    probes_after: dict[WeightStreamProbe, float]
    drift: dict | None  # anchor_drift of the re-timed anchors; None without anchors
    guard: Guard | None  # None when timed paired (the pairing takes the guard's place)
    held_passes_ms: dict[str, dict[int, float]]  # held-out key -> {pass: ms}; empty with one pass
    level: dict | None = None  # paired: the reference, its stored level, its plain timings at both ends

    @property
    def pass_noise(self) -> dict | None:
        """`pass_noise` of the held-out networks; None with one pass."""
        return pass_noise(self.held_passes_ms)

    def rescaled(self, factor: float) -> NetworkTimings:
        """Every timing times `factor` (what the anchors' drift says too): the same run on another level."""
        def times(d: dict) -> dict:
            return {k: v * factor for k, v in d.items()}
        drift = self.drift and {**self.drift, **{k: self.drift[k] * factor for k in ("factor", "p10", "p90")}}
        return dataclasses.replace(self, truth_ms=times(self.truth_ms), probes_before=times(self.probes_before),
                                   probes_after=times(self.probes_after), drift=drift,
                                   held_passes_ms={k: times(v) for k, v in self.held_passes_ms.items()})


def more_passes(held_passes_ms: dict[str, dict[int, float]], passes: int, max_passes: int, target_cv: float) -> bool:
    """Whether two more passes are due: the held-out networks' scored CV (`pass_noise`) is above `target_cv` and
    two more fit under `max_passes`."""
    noise = pass_noise(held_passes_ms)
    return noise is not None and passes + 2 <= max_passes and noise["scored_cv"] > target_cv


def time_networks(sess: DeviceSession, space: SearchSpace, measured: dict[str, float], stored: Lut,
                  fitting: list[Subnet], held: list[Subnet], anchors: int, passes: int, seed: int,
                  paired: bool, guard_tolerance: float = Guard.tolerance, max_passes: int = MAX_PASSES,
                  pass_noise_target: float = PASS_NOISE_TARGET) -> NetworkTimings:
    """The measuring protocol of validate and its benchmark: `anchors` measured blocks and the weight-stream
    probes timed before and after the networks, the networks in `passes` guarded passes, two more at a time (up
    to `max_passes`) while `more_passes` says so. `paired`: everything from here on is timed paired with the
    reference network (`profiler.paired`) instead of guarded by it."""
    picks = pick_anchors({k: v for k, v in measured.items() if k in stored.entries}, anchors, seed + 3)
    summary = Summary(serial=sess.target.serial)
    reference = reference_model(space, held[0], sess.job.run.model_format)
    start = time_plainly(sess, reference, LEVEL_REPEATS) if paired else []
    unit_ms = pair_with(sess, reference, timed=start) if paired else None
    guard = None if paired else Guard(reference, tolerance=guard_tolerance)
    anchors_before = measure_anchors(sess, picks, summary) if picks else {}
    before = probe_curve(sess)
    # fitting and held-out networks interleaved (seeded): a device that drifts during the run shifts both sets
    # alike instead of fitting one period and scoring another
    order = random.Random(seed + 2).sample(fitting + held, len(fitting) + len(held))
    truth_ms = measure_subnets(sess, order, space.stage_names, guard, passes=passes, seed=seed + 5)
    held_passes = pass_timings(sess, held, passes) if passes > 1 else {}
    while more_passes(held_passes, passes, max_passes, pass_noise_target):
        log.warning("the held-out networks' timings moved by a scored CV of %.1f%% over %d passes: timing 2 more",
                    100 * pass_noise(held_passes)["scored_cv"], passes)  # type: ignore[index]
        passes += 2  # stored passes are kept: only the new ones are timed
        truth_ms = measure_subnets(sess, order, space.stage_names, guard, passes=passes, seed=seed + 5)
        held_passes = pass_timings(sess, held, passes)
    after = probe_curve(sess)  # the probes bracket the networks: a curve that moved is a disturbed run
    drift = anchor_drift(measured, anchors_before, measure_anchors(sess, picks, summary)) if picks else None
    timed = NetworkTimings(truth_ms, before, after, drift, guard, held_passes)
    if unit_ms is None:
        return timed
    # paired timings are on the stored level (`unit_ms`); the run is put on the level of its own period
    timings = {"start": [r.stats["median_ms"] for r in start],
               "end": [r.stats["median_ms"] for r in time_plainly(sess, reference, LEVEL_REPEATS)]}
    level_ms = run_level(timings["start"] + timings["end"])
    moved = statistics.median(timings["end"]) / statistics.median(timings["start"]) - 1
    return dataclasses.replace(timed.rescaled(level_ms / unit_ms), level={
        "reference": reference.name, "reference_ms": level_ms, "stored_level_ms": unit_ms,
        "timings_ms": timings, "moved": moved})


def _validate(cfg: ValidateConfig, space: SearchSpace, sess: DeviceSession) -> dict:
    serial, run, seed = sess.target.serial, cfg.settings.run, cfg.settings.protocol.seed
    measured = sess.measured()
    stored = fit_lut(space, measured, serial, run.backend, seed)
    fitting, held = draw_networks(space, cfg.fit, cfg.n, seed)
    timed = time_networks(sess, space, measured, stored, fitting, held, cfg.anchors, cfg.passes, seed, cfg.paired,
                          cfg.guard_tolerance, cfg.passes_at_most, cfg.pass_noise_target)
    truth_by_key, drift, guard = timed.truth_ms, timed.drift, timed.guard
    lut = stored.scaled(drift["factor"]) if drift else stored
    if drift:
        lut.meta["anchor_drift"] = drift["factor"]
    probe, curve_shift, probe_report = probe_composition(timed.probes_before, timed.probes_after)
    fitting = [s for s in fitting if subnet_key(s) in truth_by_key]
    held = [s for s in held if subnet_key(s) in truth_by_key]
    if len(held) < 2:
        raise ProfilerError("fewer than 2 held-out subnets could be measured; see the store's failures table")
    composition = probe.fit(_networks(space, lut, fitting), [truth_by_key[subnet_key(s)] for s in fitting])
    truth = np.array([truth_by_key[subnet_key(s)] for s in held])
    pred = SubnetPredictor(lut, space, composition).predict(held)
    plain = SubnetPredictor(lut, space, plain=True).predict(held)
    fit0 = SubnetPredictor(lut, space, probe.probes_only()).predict(held)
    fit0_stored = SubnetPredictor(stored, space, probe.probes_only()).predict(held) if drift else fit0
    report: dict = {"format": REPORT_FORMAT, "format_version": REPORT_VERSION, "device": serial,
                    "fingerprint": sess.fingerprint.hash, "space": space.name, "n": len(held),
                    "prediction": f"composed block entries, refined on {len(fitting)} other networks",
                    **metrics.summary(pred, truth),
                    "fit": {"networks": len(fitting), "composition": composition.get_state()},
                    "composed_fit0": metrics.summary(fit0, truth), "block_sum": metrics.summary(plain, truth),
                    "composed_fit0_as_stored": metrics.summary(fit0_stored, truth), "anchors": drift,
                    "probes": probe_report}
    lut.meta[META_KEY] = composition.get_state()
    level = timed.level
    if level:  # the level its networks are on: a later timing of the reference tells whether it moved
        lut.meta["paired"] = level
    if cfg.lut_out:
        save_lut(lut, cfg.lut_out)
    noisy = held[:: max(1, len(held) // max(1, cfg.noise_networks))][:cfg.noise_networks]
    report["noise_floor"] = noise_floor(sess, noisy, cfg.noise_repeats) if cfg.noise_networks > 0 else None
    report["noise_floor_reference"] = guard.report() if guard else None
    report["paired"] = level
    report["noise_floor_passes"] = timed.pass_noise
    report["error_split"] = error_split({subnet_key(s): float(c) for s, c in zip(held, pred)}, timed.held_passes_ms)
    cvs = [report["noise_floor"]["mean_cv"] if report["noise_floor"] else 0.0, guard.report()["cv"] if guard else 0.0,
           report["noise_floor_passes"]["scored_cv"] if report["noise_floor_passes"] else 0.0]
    why = [f"CV {100 * max(cvs):.1f}% > {100 * cfg.max_noise:.1f}%"] if max(cvs) > cfg.max_noise else []
    if drift and drift["shift"] > cfg.guard_tolerance:
        why.append(f"the anchor blocks moved {100 * drift['shift']:.0f}% between the start and the end")
    if curve_shift > cfg.guard_tolerance:
        why.append(f"the weight-stream probes moved {100 * curve_shift:.0f}% between the start and the end")
    report["noisy"] = (f"the device was noisy during this run ({'; '.join(why)}): its figures are not meaningful; "
                       "re-run on a quiet device" if why else None)
    report["lut"] = {"measured": lut.count("measured"), "predicted": lut.count("predicted")}
    report["settings"] = {"run": run.to_dict(), "protocol": cfg.settings.protocol.to_dict(), "seed": seed,
                          "fit": cfg.fit, "n": cfg.n, "passes": cfg.passes, "max_passes": cfg.passes_at_most,
                          "pass_noise_target": cfg.pass_noise_target, "paired": cfg.paired,
                          "guard_tolerance": cfg.guard_tolerance}
    report["pairs"] = [{"subnet": subnet_key(s), "set": "held-out", "mmacs": subnet_costs(space, s)["macs"] / 1e6,
                        "plain_ms": float(p), "fit0_ms": float(f0), "predicted_ms": float(c), "measured_ms": float(t)}
                       for s, p, f0, c, t in zip(held, plain, fit0, pred, truth)]
    report["fit_pairs"] = [{"subnet": subnet_key(s), "measured_ms": truth_by_key[subnet_key(s)]} for s in fitting]
    plot = cfg.plot or (cfg.json_out.with_suffix(".png") if cfg.json_out
                        else Path("measurements") / f"validate_{serial.replace(':', '_')}.png")
    scatter_plot(plain, truth, f"{serial}, {len(held)} held-out subnets: ±10% {100 * report['acc10']:.0f}% "
                 f"(fit {len(fitting)})", plot, pred, f"composed, refined on {len(fitting)} other networks")
    report["plot"] = str(plot)
    sess.store.add_validation(sess.device_id, report)
    if cfg.json_out:
        cfg.json_out.parent.mkdir(parents=True, exist_ok=True)
        cfg.json_out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(main())
