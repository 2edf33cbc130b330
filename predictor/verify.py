"""`python -m predictor.verify`: export chosen subnets with a supernet's trained weights, time them on a device,
and set the measured latency beside the predicted one.

    python -m predictor.verify --serial local --subnet min --subnet S --lut LUT [--checkpoint C] [--format onnx]
    python -m predictor.verify --serial SERIAL --benchmark-binary ./benchmark_model --subnet M --lut LUT

Each subnet is exported whole (the graph `profiler`, `predictor.validate` and `nas.export` make) with the
weights of a `nas.train` checkpoint (read as tensors only), or with the profiler's seeded random weights when
there is none; then it is timed through the same device session, runner and protocol as `profiler.run` and
`predictor.validate`: by default paired with validate's reference network (each subnet's timing its ratio to the
reference timed alternately with it, so a disturbed period cancels; with `--lut`, put on the LUT's level, the
reference's plain level over validate's run, as its held-out networks and fitted composition were); with
`--no-paired` timed alone, a reference network (the first subnet's own model) re-timed around each chunk: a disturbed
period is waited out and a chunk that ended disturbed is timed again. As in `predictor.validate`,
each subnet is timed once per pass (`--passes`, default 3; each pass in its own seeded order), each timing
stored as kind 'network-pass', and its network measurement (kind 'network', key `profiler.networks.subnet_key`)
is a copy of its median pass, the latest replacing an older one of the same device and run settings, so
`predictor.validate` and a later fit use it. A subnet that cannot be converted or run gets its error in its
row (and in the store's failures table); the others go on.

`verify(space, candidates, VerifySettings(...))` is the same as a function (`nas.search --verify` calls it).
Exit codes: 0 every subnet timed; 1 some could not be (their rows say why); 2 bad input, checkpoint or device.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from nas.accuracy import weights_sha256
from nas.export import FORMATS, export_subnet, load_supernet_weights
from nas.registry import create_space, list_spaces
from nas.searchspace import SearchSpace
from nas.specs import resolve_subnet
from nas.subnet import Subnet
from nas.supernet import Supernet
from predictor import metrics
from predictor.lut_io import LutFormatError, lut_space, open_lut
from predictor.subnet_predictor import SubnetPredictor
from profiler.errors import ProfilerError
from profiler.measure_args import add_measure_arguments, measure_settings_from_args
from profiler.networks import KIND, PASS_KIND, Guard, in_guarded_chunks, keep_median_pass, pass_key, subnet_key
from profiler.paired import pair_with, reference_model
from profiler.session import DeviceSession, ProfileJob, RunStopped, Summary, measure_models
from profiler.settings import BACKEND_FORMATS, MeasureSettings
from profiler.store import DEFAULT_STORE
from profiler.targets import Target, open_target

log = logging.getLogger(__name__)
Chosen = tuple[str, Subnet, float | None]  # (name, subnet, predicted latency in ms or None)


@dataclass(frozen=True)
class VerifySettings:
    """Where and how to time the subnets; the model format is the run backend's (`tflite` or `onnx`)."""

    serial: str | None  # "local" = this host; None: $ANDROID_SERIAL, else the single attached device
    measure: MeasureSettings = field(default_factory=MeasureSettings)  # runner, backend, threads, binary, protocol
    checkpoint: Path | None = None  # a nas.train checkpoint; None: the seeded random weights the profiler times
    store: Path = DEFAULT_STORE  # the profiler store the timings go to
    # time each subnet paired with validate's reference network (profiler.paired); False: alone, under the guard
    paired: bool = True
    guard: bool = True  # unpaired: re-time a reference network around each chunk; wait out and re-time disturbed ones
    chunk: int = 5  # subnets between two reference timings
    remeasure: int = 2  # times a chunk that ended disturbed is timed again
    seed: int = 0  # the random weights' seed when there is no checkpoint (and the passes' orders)
    passes: int = 3  # each subnet timed once per pass, the median pass kept (as predictor.validate)
    # paired: the level of the LUT whose predictions are compared (its meta "paired", predictor.validate's run
    # level): the timings are put on it instead of the store's level, so predicted and measured share one level
    level: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.chunk < 1 or self.remeasure < 0 or self.passes < 1:
            raise ValueError("chunk and passes must be >= 1 and remeasure >= 0")

    @property
    def model_format(self) -> str:
        return self.measure.run.model_format

    def to_dict(self) -> dict[str, Any]:
        m = self.measure
        return {"serial": self.serial, "model_format": self.model_format, "run": m.run.to_dict(),
                "protocol": m.protocol.to_dict(), "benchmark_binary": str(m.benchmark_binary or "") or None,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None, "store": str(self.store),
                "paired": self.paired, "guard": self.guard and not self.paired, "chunk": self.chunk,
                "remeasure": self.remeasure, "seed": self.seed,
                "passes": self.passes, "level": self.level}


def with_format(measure: MeasureSettings, fmt: str | None) -> MeasureSettings:
    """`measure` with a backend that runs `fmt` models: `onnx` turns the default `cpu` backend into `onnx`;
    None keeps the backend's own format; a backend of the other format is a ValueError."""
    if fmt is None or measure.run.model_format == fmt:
        return measure
    if fmt not in FORMATS:
        raise ValueError(f"unknown model format {fmt!r}; known: {list(FORMATS)}")
    if fmt == "onnx" and measure.run.backend == "cpu":
        return replace(measure, run=replace(measure.run, backend="onnx"))
    runs = sorted(b for b, f in BACKEND_FORMATS.items() if f == fmt)
    raise ValueError(f"--format {fmt} does not run on --backend {measure.run.backend} "
                     f"({measure.run.model_format} models); use --backend {' or '.join(runs)}")


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def export_candidate(space: SearchSpace, sub: Subnet, fmt: str, net: Supernet | None = None, seed: int = 0) -> Path:
    """`sub` in `fmt` with the weights of `net` (the supernet's active slices), or `build_subnet`'s seeded random
    weights without one: the cached file the device times. Raises on a subnet outside `space`."""
    space.validate(sub)
    if net is None:
        return export_subnet(sub, fmt, seed=seed)  # type: ignore[arg-type]
    net.set_active_subnet(sub)
    return export_subnet(sub, fmt, module=net.get_active_subnet().eval())  # type: ignore[arg-type]


@dataclass
class _Item:
    row: dict[str, Any]
    key: str
    model: Path
    extra: dict[str, Any]
    pass_ms: dict[int, float] = field(default_factory=dict)  # this run's timing in each pass (passes > 1)


def _set_measured(row: dict[str, Any], ms: float) -> None:
    ms *= row.get("level_factor", 1.0)  # paired, on the LUT's level (verify)
    row.update(measured_ms=ms, error=None)
    pred = row["predicted_ms"]
    row["error_pct"] = 100.0 * (pred / ms - 1) if pred is not None else None


def _measure(sess: DeviceSession, item: _Item, bar: tqdm, n_pass: int | None) -> None:
    """Time one exported subnet and store it (the latest timing replaces an older one): as its network row, or
    as pass `n_pass`'s row (the network row is then its median pass, `_measure_all`); the error goes in the row."""
    summary = Summary(serial=sess.target.serial, total=1)
    kind, key = (KIND, item.key) if n_pass is None else (PASS_KIND, pass_key(item.key, n_pass))
    got = measure_models(sess, [item], kind, lambda it: key, lambda it: it.model, summary, bar, None,
                         lambda it: it.extra, prefetched=True, replace=True)
    if key in got:
        if n_pass is None:
            _set_measured(item.row, got[key])
        else:
            item.pass_ms[n_pass] = got[key]
    elif item.row["measured_ms"] is None and not item.pass_ms:  # a failed re-timing leaves the earlier timing
        item.row["error"] = summary.failures[-1].split(": ", 1)[-1] if summary.failures else "not measured"


def _measure_all(sess: DeviceSession, items: list[_Item], guard: Guard | None, settings: VerifySettings) -> None:
    """Each subnet timed once per pass, each pass in its own seeded order under the guard: on a shared host the
    same network timed minutes apart moves by several percent, so one timing is not a measurement of it."""
    passes = settings.passes
    with tqdm(total=len(items) * passes, desc=f"{sess.target.serial} verify"
              + (f" ({passes} passes)" if passes > 1 else ""), unit="net", dynamic_ncols=True) as bar:
        for n in range(passes):
            order = items if passes == 1 else random.Random(settings.seed + n).sample(items, len(items))

            def measure(part: list[_Item], again: bool, n: int = n) -> None:
                for item in part:
                    _measure(sess, item, bar, n if passes > 1 else None)
            in_guarded_chunks(sess, order, measure, bar, guard, settings.chunk, settings.remeasure)
    for item in items:
        if item.pass_ms:
            _set_measured(item.row, keep_median_pass(sess, item.key, item.pass_ms))
            item.row["pass_ms"] = [item.pass_ms[n] * item.row.get("level_factor", 1.0) for n in sorted(item.pass_ms)]


def verify(space: SearchSpace, candidates: Sequence[Chosen], settings: VerifySettings, *,
           target: Target | None = None, echo: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Export each (name, subnet, predicted_ms) with the checkpoint's weights, time it on the device, store it.

    Returns one row per candidate, in order: {name, subnet, key, predicted_ms, measured_ms, error_pct, model_format,
    weights, device, error}, paired also `level_factor` (measured_ms is the stored timing times it: on
    `settings.level`); `error_pct` = 100 * (predicted / measured - 1), None without a prediction; a subnet that
    failed has measured_ms None and its one-line `error`. `echo` (e.g. `print`) receives the predicted-vs-measured
    table. Raises CheckpointError (a ValueError) for an unreadable checkpoint, ProfilerError when the device or the
    store cannot be used at all."""
    fmt = settings.model_format
    net = load_supernet_weights(space, settings.checkpoint) if settings.checkpoint else None
    weights = (f"{settings.checkpoint} sha256:{weights_sha256(net.state_dict())[:16]}" if net is not None
               else f"seed{settings.seed}")
    target = target or open_target(settings.serial)
    rows = [{"name": name, "subnet": sub.to_dict(space.stage_names), "key": subnet_key(sub),
             "predicted_ms": None if pred is None else float(pred), "measured_ms": None, "error_pct": None,
             "model_format": fmt, "weights": weights, "device": target.serial, "error": None}
            for name, sub, pred in candidates]
    sess = DeviceSession(ProfileJob(target.serial, (), settings.measure, settings.store), target)
    try:
        items = []
        for row, (name, sub, _) in zip(rows, candidates):
            t0 = time.perf_counter()
            try:
                model = export_candidate(space, sub, fmt, net, settings.seed)
            except Exception as e:  # noqa: BLE001 - one subnet that cannot be converted must not stop the others
                row["error"] = f"could not convert to {fmt}: {_one_line(e)}"
                sess.record_failure(KIND, row["key"], row["error"])
                log.warning("%s: %s", name, row["error"])
                continue
            items.append(_Item(row, row["key"], model, {"subnet": row["subnet"], "weights": weights,
                                                        "source": "predictor.verify",
                                                        "export_s": round(time.perf_counter() - t0, 3)}))
        net = None  # the supernet is not needed while timing
        if items:
            if settings.paired:  # validate's reference: the timings share its level with the LUT's validation
                first = next(sub for (_, sub, _), row in zip(candidates, rows) if row["error"] is None)
                reference = reference_model(space, first, fmt)  # a space without released networks: `first`
                factor = level_factor(settings.level, reference.name, pair_with(sess, reference))
                for row in rows:
                    row["level_factor"] = factor
            # unpaired, the first subnet's own model is the guard's reference: it needs no other conversion
            guard = Guard(items[0].model) if settings.guard and not settings.paired else None
            try:
                _measure_all(sess, items, guard, settings)
                if guard is not None:
                    log.info("%s: reference timings %s", target.serial, guard.report())
            except RunStopped as e:  # the device is gone for good: the rest cannot be timed
                for item in items:
                    if item.row["measured_ms"] is None and item.row["error"] is None:
                        item.row["error"] = str(e)
    finally:
        sess.close()
    if echo is not None:
        for line in table(rows):
            echo(line)
    return rows


def level_factor(level: dict[str, Any] | None, reference: str, stored_ms: float) -> float:
    """What puts paired timings on the store's level `stored_ms` onto the LUT's `level` (1 without one); a LUT
    paired with another reference cannot say: its level is not used (a warning)."""
    if not level:
        return 1.0
    if level.get("reference") != reference:
        log.warning("the LUT was validated against %s, not %s: timings stay on the store's level",
                    level.get("reference"), reference)
        return 1.0
    return float(level["reference_ms"]) / stored_ms


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Predicted vs measured, one line per subnet, and a summary line."""
    width = max([len("subnet"), *(len(str(r["name"])) for r in rows)])
    lines = [f"{'subnet':<{width}}  {'predicted_ms':>12}  {'measured_ms':>11}  {'error':>7}"]
    for r in rows:
        pred = f"{r['predicted_ms']:.3f}" if r["predicted_ms"] is not None else "-"
        if r["error"] is not None:
            lines.append(f"{r['name']:<{width}}  {pred:>12}  {'-':>11}  failed: {r['error']}")
            continue
        err = f"{r['error_pct']:+.1f}%" if r["error_pct"] is not None else "-"
        lines.append(f"{r['name']:<{width}}  {pred:>12}  {r['measured_ms']:>11.3f}  {err:>7}")
    s = summary(rows)
    tail = f"; MAPE {100 * s['mape']:.1f}%, within ±10% {100 * s['acc10']:.0f}%" if "mape" in s else ""
    lines.append(f"{s['measured']} of {s['n']} measured ({rows[0]['model_format'] if rows else '-'}, "
                 f"{rows[0]['device'] if rows else '-'}){tail}")
    return lines


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts, and `predictor.metrics.summary` over the rows with both a prediction and a timing."""
    pairs = [(r["predicted_ms"], r["measured_ms"]) for r in rows
             if r["predicted_ms"] is not None and r["measured_ms"] is not None]
    out: dict[str, Any] = {"n": len(rows), "measured": sum(r["measured_ms"] is not None for r in rows),
                           "failed": sum(r["error"] is not None for r in rows)}
    if pairs:
        out.update(metrics.summary([p for p, _ in pairs], [t for _, t in pairs]))
    return out


def settings_from_args(args: argparse.Namespace) -> VerifySettings:
    """VerifySettings from the flags of `add_measure_arguments` and --serial, --format, --checkpoint, --store."""
    measure = with_format(measure_settings_from_args(args), args.format)
    return VerifySettings(args.serial, measure, args.checkpoint, args.store, paired=args.paired,
                          guard=not args.no_guard, passes=args.passes)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m predictor.verify", description=__doc__.split("\n\n")[0])
    ap.add_argument("--subnet", action="append", required=True, metavar="SPEC",
                    help="released name, min, max, or a subnet JSON file/string (repeatable)")
    ap.add_argument("--lut", help="predict each subnet from this LUT file (predictor.validate --lut-out); "
                    "without it only the timings are shown")
    ap.add_argument("--serial", help="device serial ('local' = this host); default: the single attached device")
    ap.add_argument("--checkpoint", type=Path, help="a nas.train checkpoint: export with its weights "
                    "(default: the profiler's seeded random weights)")
    ap.add_argument("--format", choices=FORMATS, help="model format (default: the backend's; onnx switches the "
                    "default cpu backend to onnx)")
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE)
    ap.add_argument("--space", help=f"one of {list_spaces()} (default: the --lut's own, else elasticvit)")
    ap.add_argument("--json", type=Path, help="write the rows, summary and settings here")
    ap.add_argument("--paired", action=argparse.BooleanOptionalAction, default=VerifySettings.paired,
                    help="time each subnet alternately with validate's reference network, as its ratio to it times "
                    "the reference's stored level (as predictor.validate does by default); --no-paired: time each "
                    "alone under the guard")
    ap.add_argument("--no-guard", action="store_true", help="with --no-paired: do not re-time a reference network "
                    "around chunks")
    ap.add_argument("--passes", type=int, default=VerifySettings.passes,
                    help="time each subnet once per pass and keep the median pass (default: %(default)s)")
    add_measure_arguments(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
        space = create_space(args.space or lut_space(args.lut))
        subnets = [resolve_subnet(space, spec) for spec in args.subnet]
        predicted: list[float | None] = [None] * len(subnets)
        if args.lut:
            lut = open_lut(args.lut, space)
            predicted = [float(ms) for ms in SubnetPredictor(lut, space).predict(subnets)]
            settings = replace(settings, level=lut.meta.get("paired"))
        rows = verify(space, list(zip(args.subnet, subnets, predicted)), settings, echo=print)
    except (ProfilerError, LutFormatError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "summary": summary(rows), "settings": settings.to_dict()},
                                        indent=2))
    return 1 if any(r["error"] is not None for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
