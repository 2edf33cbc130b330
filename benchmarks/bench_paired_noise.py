"""How much of one timing's noise a reference timed alongside would remove (a dev measurement for issue 12).

    python benchmarks/bench_paired_noise.py --seed 141 --networks 6 --windows 12 [--json OUT]

Draws `--networks` held-out networks the way `predictor.validate --seed S` does (use a dev seed: nothing here is
scored), converts them and validate's reference network (a mid-size released subnet) to TFLite, and times them
in `--windows` rounds, each network once per round with ai-edge-litert (1 thread, XNNPACK), two ways at once:
alone (`--runs` invokes, median) and interleaved with the reference (invoke network, invoke reference, and so
on; the median of the per-pair ratios). Per network it prints the spread over rounds (SD of the log) of the
alone timing, of the reference's, and of the ratio to the reference: when a disturbance slows every model by
the same factor (a neighbour on the shared cache and memory bus), the ratio keeps the network and drops the
period. Also the slope of log network on log reference over rounds (1: the disturbance is one common factor).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from nas.export import export_subnet  # noqa: E402
from nas.registry import create_space  # noqa: E402
from predictor.validate import draw_networks  # noqa: E402
from profiler.paired import reference_model  # noqa: E402


def _interpreter(path: Path):
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
    return it.invoke


def _ms(run) -> float:
    t = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - t) / 1e6


def measure(models: list[Path], ref: Path, windows: int, runs: int, warmup: int) -> dict[str, np.ndarray]:
    """Per round and network: alone median ms, reference median ms (paired), median network/reference ratio."""
    ref_run, runs_ = _interpreter(ref), [_interpreter(m) for m in models]
    alone, ref_ms, ratio = (np.zeros((windows, len(models))) for _ in range(3))
    for w in range(windows):
        for j, run in enumerate(runs_):
            for _ in range(warmup):
                run()
                ref_run()
            alone[w, j] = np.median([_ms(run) for _ in range(runs)])
            pairs = [(_ms(run), _ms(ref_run)) for _ in range(runs)]
            ref_ms[w, j] = np.median([r for _, r in pairs])
            ratio[w, j] = np.median([n / r for n, r in pairs])
        print(f"round {w + 1}/{windows}: reference {np.median(ref_ms[w]):.2f} ms", file=sys.stderr, flush=True)
    return {"alone_ms": alone, "reference_ms": ref_ms, "ratio": ratio}


def summarise(m: dict[str, np.ndarray]) -> dict:
    la, lr, lq = np.log(m["alone_ms"]), np.log(m["reference_ms"]), np.log(m["ratio"])
    per = []
    for j in range(la.shape[1]):
        slope = float(np.polyfit(lr[:, j], np.log(m["ratio"][:, j] * m["reference_ms"][:, j]), 1)[0])
        per.append({"alone_median_ms": float(np.exp(np.median(la[:, j]))), "sd_alone": float(la[:, j].std(ddof=1)),
                    "sd_reference": float(lr[:, j].std(ddof=1)), "sd_ratio": float(lq[:, j].std(ddof=1)),
                    "slope_on_reference": slope})
    return {"networks": per, "mean_sd_alone": float(np.mean([p["sd_alone"] for p in per])),
            "mean_sd_ratio": float(np.mean([p["sd_ratio"] for p in per])),
            "mean_sd_reference": float(np.mean([p["sd_reference"] for p in per]))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=141, help="validate's seed whose held-out networks to draw (dev)")
    ap.add_argument("--networks", type=int, default=6)
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    space = create_space("elasticvit")
    _, held = draw_networks(space, 0, args.networks, args.seed)
    models = [export_subnet(s, "tflite") for s in held]
    ref = reference_model(space, held[0], "tflite")
    m = measure(models, ref, args.windows, args.runs, args.warmup)
    out = {"seed": args.seed, "windows": args.windows, "runs": args.runs, **summarise(m),
           "raw": {k: v.tolist() for k, v in m.items()}}
    print(f"{'network':>8} {'ms':>7} {'SD alone':>9} {'SD ref':>7} {'SD ratio':>9} {'slope':>6}")
    for j, p in enumerate(out["networks"]):
        print(f"{j:>8} {p['alone_median_ms']:7.2f} {100 * p['sd_alone']:8.1f}% {100 * p['sd_reference']:6.1f}% "
              f"{100 * p['sd_ratio']:8.1f}% {p['slope_on_reference']:6.2f}")
    print(f"mean SD over rounds: alone {100 * out['mean_sd_alone']:.1f}%, reference "
          f"{100 * out['mean_sd_reference']:.1f}%, ratio to the reference {100 * out['mean_sd_ratio']:.1f}%")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
