"""`python -m predictor.predict --lut LUT --subnet SPEC [--subnet SPEC ...]`: latency of subnets.

Prints one JSON line per subnet, `{"subnet": <name or JSON>, "latency_ms": <float>}`, from the LUT
file `predictor.validate --lut-out` wrote (its entries and in-network composition travel in that
one file; a published LUT without one gives the plain block sum, and says so on stderr). SPEC is
what `profiler.run --subnet` takes: a released name, `min`, `max`, or a subnet JSON file or string.
Exit codes: 0 done; 2 bad input (unknown subnet, unreadable or incomplete LUT).
"""
from __future__ import annotations

import argparse
import json
import sys

from nas.registry import create_space, list_spaces
from nas.specs import resolve_subnet
from predictor.lut_io import LutFormatError, lut_space, open_lut
from predictor.subnet_predictor import SubnetPredictor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", required=True, help="the LUT file (predictor.validate --lut-out), or pixel4 | xiaomi11")
    ap.add_argument("--subnet", action="append", required=True, metavar="SPEC",
                    help="released name, min, max, or a subnet JSON file/string (repeatable)")
    ap.add_argument("--space", help=f"one of {list_spaces()} (default: the LUT's own, else elasticvit)")
    ap.add_argument("--plain-sum", action="store_true", help="sum the alone entries, without the composition")
    args = ap.parse_args(argv)
    try:
        space = create_space(args.space or lut_space(args.lut))
        lut = open_lut(args.lut, space)
        predictor = SubnetPredictor(lut, space, plain=args.plain_sum)
        subnets = [resolve_subnet(space, spec) for spec in args.subnet]
        latency = predictor.predict(subnets)
    except (LutFormatError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if predictor.composition is None and not args.plain_sum:
        print(f"note: {args.lut} has no in-network composition: plain block sums", file=sys.stderr)
    named = {"min", "max", *space.released}
    for spec, sub, ms in zip(args.subnet, subnets, latency):
        label = spec if spec in named else sub.to_dict(space.stage_names)
        print(json.dumps({"subnet": label, "latency_ms": round(float(ms), 6)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
