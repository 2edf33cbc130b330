"""`python -m predictor.validate`: predicted vs measured latency of whole exported subnets.

    python -m predictor.validate --serial local --store PATH --n 30 --json OUT.json
    python -m predictor.validate --serial SERIAL --benchmark-binary ./benchmark_model --n 30   # a phone

Fits the predictor to the device's block measurements in the store (the device is its
fingerprint, read first), fills the LUT, samples `n` subnets spread over the MACs range, exports
and measures each whole subnet on the device with the same run settings as `profiler.run`, and
reports RMSE, MAPE, ±5% and ±10% accuracy of the prediction (block sum plus the network-level
correction, cross-validated; the plain block sum under "block_sum"), the noise floor (the spread
of the same network measured repeatedly) and a predicted-vs-measured scatter plot. Everything is
kept in the store. `validate(ValidateConfig)` is the same as a function.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas.costs import subnet_costs
from nas.export import export_subnet
from nas.registry import create_space
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from predictor import metrics
from predictor.correction import Network, NetworkCorrection
from predictor.lut import Lut, fill_lut
from predictor.lut_io import export_nnmeter, save_lut
from predictor.subnet_predictor import SubnetPredictor
from predictor.xgb import LatencyPredictor
from profiler.errors import ProfilerError
from profiler.measure_args import add_measure_arguments, measure_settings_from_args, positive_int
from profiler.networks import measure_subnets, subnet_key
from profiler.prefetch import default_workers
from profiler.protocol import measure_model
from profiler.session import DeviceSession, ProfileJob
from profiler.settings import MeasureSettings
from profiler.store import DEFAULT_STORE
from profiler.targets import open_target

log = logging.getLogger("predictor.validate")
MIN_BLOCKS = 20


@dataclass(frozen=True)
class ValidateConfig:
    serial: str | None  # None: $ANDROID_SERIAL, else the single attached device
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    store: Path = DEFAULT_STORE
    space: str = "elasticvit"
    n: int = 100  # whole subnets to export and measure
    json_out: Path | None = None
    plot: Path | None = None  # default: next to json_out, or measurements/
    lut_out: Path | None = None  # the filled LUT (nn-Meter JSON) and beside it X.sources.json
    noise_networks: int = 3
    noise_repeats: int = 5

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError("--n must be at least 2")
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


def cross_validated_correction(networks: list[Network], truth: np.ndarray, folds: int,
                               rng: np.random.Generator) -> np.ndarray:
    """Out-of-fold predictions of the corrected block sum (no subnet is scored by a fit that saw it)."""
    out = np.empty_like(truth)
    idx = rng.permutation(len(truth))
    for f in range(folds):
        test = idx[f::folds]
        train = np.setdiff1d(idx, test)
        corr = NetworkCorrection().fit([networks[i] for i in train], truth[train])
        out[test] = corr.predict([networks[i] for i in test])
    return out


def scatter_plot(pred: np.ndarray, truth: np.ndarray, title: str, path: Path,
                 corrected: np.ndarray | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    hi = float(max(pred.max(), truth.max(), corrected.max() if corrected is not None else 0)) * 1.05
    xs = np.linspace(0, hi, 50)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.12, label="±10%")
    ax.fill_between(xs, xs * 0.95, xs * 1.05, color="tab:green", alpha=0.2, label="±5%")
    ax.plot(xs, xs, color="black", lw=0.8)
    ax.scatter(truth, pred, s=14, color="tab:blue", label="sum of LUT entries")
    if corrected is not None:
        ax.scatter(truth, corrected, s=14, color="tab:orange", marker="x",
                   label="with network correction (cross-validated)")
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="measured latency (ms)", ylabel="predicted latency (ms)", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m predictor.validate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--serial", help="device serial ('local' = this host); default: the single attached device")
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE)
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--n", type=positive_int, default=100, help="number of subnets to export and measure")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--plot", type=Path, help="scatter plot PNG (default: next to --json, or measurements/)")
    ap.add_argument("--lut-out", type=Path, help="write the filled LUT (nn-Meter flat JSON; beside it X.sources.json: "
                    "sources and the fitted network correction, what nas.search reads)")
    ap.add_argument("--noise-networks", type=int, default=3, help="networks re-measured for the noise floor")
    ap.add_argument("--noise-repeats", type=int, default=5)
    add_measure_arguments(ap, export_workers=default_workers())
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = ValidateConfig(args.serial, measure_settings_from_args(args), args.store, args.space, args.n,
                             args.json, args.plot, args.lut_out, args.noise_networks, args.noise_repeats)
        report = validate(cfg)
    except (ProfilerError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in ("n", "acc10", "acc5", "mape", "rmse_ms", "block_sum", "noise_floor")}))
    return 0


def validate(cfg: ValidateConfig) -> dict:
    space = create_space(cfg.space)
    target = open_target(cfg.serial)
    sess = DeviceSession(ProfileJob(target.serial, (), cfg.settings, cfg.store), target)
    try:
        return _validate(cfg, space, sess)
    finally:
        sess.close()


def _validate(cfg: ValidateConfig, space: SearchSpace, sess: DeviceSession) -> dict:
    serial, run, seed = sess.target.serial, cfg.settings.run, cfg.settings.protocol.seed
    lut = fit_lut(space, sess.measured(), serial, run.backend, seed)
    subnets = spread_over_macs(space, cfg.n, random.Random(seed))
    truth_by_key = measure_subnets(sess, subnets, space.stage_names)
    subnets = [s for s in subnets if subnet_key(s) in truth_by_key]
    if len(subnets) < 2:
        raise ProfilerError("fewer than 2 subnets could be measured; see the store's failures table")
    truth = np.array([truth_by_key[subnet_key(s)] for s in subnets])
    sums = SubnetPredictor(lut, space).predict(subnets)
    flat = lut.flat()
    networks = [[(b, flat[b.key]) for b in space.blocks_of(s)] for s in subnets]
    folds = min(5, len(subnets))
    corrected = cross_validated_correction(networks, truth, folds, np.random.default_rng(seed))
    # The predictor is the block sum plus the network-level correction (fitted on measured networks);
    # each subnet here is predicted by a correction fitted on the other folds only.
    report: dict = {"device": serial, "fingerprint": sess.fingerprint.hash, "space": space.name, "n": len(subnets),
                    "prediction": f"sum of LUT entries + network correction ({folds}-fold cross-validated)",
                    **metrics.summary(corrected, truth), "block_sum": metrics.summary(sums, truth),
                    "correction": NetworkCorrection().fit(networks, truth).get_state()}
    if cfg.lut_out:  # block entries as nn-Meter JSON; beside it the full LUT: sources + the network correction
        lut.meta[NetworkCorrection.META_KEY] = report["correction"]
        export_nnmeter(lut, cfg.lut_out)
        save_lut(lut, cfg.lut_out.with_suffix(".sources.json"))
    noisy = subnets[:: max(1, len(subnets) // max(1, cfg.noise_networks))][:cfg.noise_networks]
    report["noise_floor"] = noise_floor(sess, noisy, cfg.noise_repeats) if cfg.noise_networks > 0 else None
    report["lut"] = {"measured": lut.count("measured"), "predicted": lut.count("predicted")}
    report["settings"] = {"run": run.to_dict(), "protocol": cfg.settings.protocol.to_dict(), "seed": seed}
    report["pairs"] = [{"subnet": subnet_key(s), "mmacs": subnet_costs(space, s)["macs"] / 1e6,
                        "predicted_ms": float(p), "corrected_ms": float(cp), "measured_ms": float(t)}
                       for s, p, cp, t in zip(subnets, sums, corrected, truth)]
    plot = cfg.plot or (cfg.json_out.with_suffix(".png") if cfg.json_out
                        else Path("measurements") / f"validate_{serial.replace(':', '_')}.png")
    scatter_plot(sums, truth, f"{serial}, {len(subnets)} subnets: ±10% sum {100 * report['block_sum']['acc10']:.0f}%, "
                 f"corrected {100 * report['acc10']:.0f}%", plot, corrected)
    report["plot"] = str(plot)
    sess.store.add_validation(sess.device_id, report)
    if cfg.json_out:
        cfg.json_out.parent.mkdir(parents=True, exist_ok=True)
        cfg.json_out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(main())
