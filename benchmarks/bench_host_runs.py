"""Every whole-network validation and independent check kept in benchmarks/results, as one table and one plot.

    python benchmarks/bench_host_runs.py

Reads `host_validation*.json` (what `predictor.validate --json` wrote) and `independent_check_seed*.json` (what
`bench_independent_check.py` wrote), and writes `host_runs.md` and `host_runs.png` beside them. Nothing is timed or
recomputed: each row is what its run reported with the method of its day (the composition format it carried), so
the tallies count the figures as they were scored. Dates are those of the last commit that wrote each file.
"""
from __future__ import annotations

import json
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Issue 12's targets on this host (TFLite, 1 thread, >= 50 held-out networks)
FIT10_ACC10, FIT10_ACC5, FIT10_MAPE, FIT0_ACC10 = 0.99, 0.90, 0.03, 0.90


@dataclass(frozen=True)
class Run:
    name: str
    committed: str
    fingerprint: str
    backend: str
    n: int
    fit: int
    acc10: float
    acc5: float
    mape: float
    fit0_acc10: float | None
    plain_acc10: float | None
    composition_format: int | None
    noisy: bool
    passes: int | None
    paired: bool

    @property
    def tallied(self) -> bool:
        # Where the targets apply, with paired timing (validate's default since run 181; earlier runs are history).
        return self.backend == "tflite-1" and self.n >= 50 and self.fit == 10 and self.paired


def committed(path: Path) -> str:
    # The last commit that wrote the file: some were written again by a later run under the same name.
    out = subprocess.run(["git", "log", "-1", "--format=%ad", "--date=format:%Y-%m-%d %H:%M", "--", path.name],
                         cwd=path.parent, capture_output=True, text=True).stdout.strip()
    return out or "uncommitted"


def read_run(path: Path) -> Run:
    d = json.loads(path.read_text())
    run = d["settings"]["run"]
    backend = "onnx" if run["backend"] == "onnx" else f"tflite-{run['threads']}"
    fit = d.get("fit") or {}
    comp = fit.get("composition") or {}
    fit0, plain = d.get("composed_fit0") or {}, d.get("block_sum") or {}
    passes = (d.get("noise_floor_passes") or {}).get("passes")
    return Run(path.stem.removeprefix("host_validation").lstrip("_") or "(unsuffixed)", committed(path),
               d.get("fingerprint", "?"), backend, int(d["n"]), int(fit.get("networks", d["settings"].get("fit", 0))),
               d["acc10"], d["acc5"], d["mape"], fit0.get("acc10"), plain.get("acc10"), comp.get("format_version"),
               bool(d.get("noisy")), passes, bool(d["settings"].get("paired")))


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.0f}%"


def yes(flag: bool) -> str:
    return "yes" if flag else ""


def run_table(runs: list[Run]) -> list[str]:
    lines = ["| run | committed | device | backend | n | fit 10 ±10% | ±5% | MAPE | fit 0 ±10% | plain ±10% | format | "
             "paired | passes | noisy |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in runs:
        lines.append(f"| {r.name} | {r.committed} | {r.fingerprint[:8]} | {r.backend} | {r.n} | {pct(r.acc10)} | "
                     f"{pct(r.acc5)} | {100 * r.mape:.1f}% | {pct(r.fit0_acc10)} | {pct(r.plain_acc10)} | "
                     f"{r.composition_format or ''} | {yes(r.paired)} | {r.passes or ''} | {yes(r.noisy)} |")
    return lines


def check_table(checks: list[tuple[Path, dict]]) -> list[str]:
    lines = ["| check | sampler | when | LUT | ±10% | ±5% | MAPE | median predicted / measured "
             "| reference now / LUT level |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for p, d in checks:
        ratio = statistics.median(r["predicted_ms"] / r["measured_ms"] for r in d["rows"])
        level = d.get("level_ratio")
        lines.append(f"| {p.stem.removeprefix('independent_check_')} | {d['sampler']} | {d['when']} | "
                     f"{Path(d['lut']).stem} | "
                     f"{pct(d['acc10'])} | {pct(d['acc5'])} | {100 * d['mape']:.1f}% | {ratio:.3f} | "
                     f"{'' if level is None else f'{level:.3f}'} |")
    return lines


def tally(runs: list[Run]) -> list[str]:
    scored = [r for r in runs if r.tallied]
    met = {"fit 10 ±10% ≥ 99%": sum(r.acc10 >= FIT10_ACC10 for r in scored),
           "fit 10 ±5% ≥ 90%": sum(r.acc5 >= FIT10_ACC5 for r in scored),
           "fit 10 MAPE ≤ 3%": sum(r.mape <= FIT10_MAPE for r in scored),
           "all three fit 10 targets": sum(r.acc10 >= FIT10_ACC10 and r.acc5 >= FIT10_ACC5 and r.mape <= FIT10_MAPE
                                           for r in scored),
           "fit 0 ±10% ≥ 90% (as reported)": sum((r.fit0_acc10 or 0) >= FIT0_ACC10 for r in scored)}
    return [f"- {k}: {v} of {len(scored)}" for k, v in met.items()]


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in runs if r.tallied]
    x = range(len(scored))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(x, [100 * r.acc10 for r in scored], "o-", label="fit 10, ±10%")
    ax.plot(x, [100 * r.acc5 for r in scored], "s-", label="fit 10, ±5%")
    ax.plot(x, [100 * (r.fit0_acc10 or 0) for r in scored], "^-", label="fit 0, ±10% (the form of its day)")
    for y, style in ((99, ":"), (90, "--")):
        ax.axhline(y, color="grey", linestyle=style, linewidth=0.8)
    ax.set_xticks(list(x), [r.name.removeprefix("seed") for r in scored], rotation=60, fontsize=8)
    ax.set_ylabel("held-out networks within (%)")
    ax.set_title("predictor.validate on this host: paired runs, TFLite 1 thread, 50 held-out networks "
                 "(targets 99 / 90%)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    runs = sorted((read_run(p) for p in RESULTS.glob("host_validation*.json")), key=lambda r: (r.committed, r.name))
    checks = sorted(((p, json.loads(p.read_text())) for p in RESULTS.glob("independent_check_seed*.json")),
                    key=lambda c: c[1]["when"])
    lines = ["# Every whole-network validation and independent check on this host", "",
             "`python benchmarks/bench_host_runs.py`: each row as its run reported it, with the method of its day "
             "(composition format; fit 0's form changed over the formats, see the README). Targets (issue 12) apply "
             "to TFLite 1 thread, 50 held-out networks, fit 10. Device = fingerprint (the host was reinstalled "
             "twice). The plot is `host_runs.png`.", "", "## Tally", "",
             "Runs the targets apply to, with paired timing (validate's default since run 181):", "",
             *tally(runs), "", "## Runs (`host_validation*.json`)", "", *run_table(runs), "",
             "## Independent checks (`independent_check_seed*.json`)", "",
             "Predicted from the LUT named, timed by the check's own loop right after (or later, see the README). "
             "The last column is the LUT's reference network timed in the check's loop over its level in the LUT: "
             "below 1 the host ran faster than when the LUT was made.", "", *check_table(checks), ""]
    (RESULTS / "host_runs.md").write_text("\n".join(lines))
    plot(runs, RESULTS / "host_runs.png")
    print("\n".join(tally(runs)))


if __name__ == "__main__":
    main()
