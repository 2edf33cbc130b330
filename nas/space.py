"""`python -m nas.space`: inspect a search space (block keys, subnets, MACs)."""
from __future__ import annotations

import argparse
import json
import random
import sys

from nas.costs import subnet_costs
from nas.registry import create_space, list_spaces
from nas.specs import resolve_subnet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nas.space", description=__doc__)
    ap.add_argument("--space", default="elasticvit", help=f"one of {list_spaces()}")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--keys", action="store_true", help="print every distinct block key subnets can use")
    what.add_argument("--subnet", help="a released subnet name, 'min', 'max', or a JSON file/string")
    what.add_argument("--sample", type=int, metavar="SEED", help="print a random subnet drawn with this seed")
    what.add_argument("--list", action="store_true", help="list the released subnets with their MACs")
    ap.add_argument("--blocks", action="store_true", help="with --subnet: also list its block keys")
    args = ap.parse_args(argv)
    try:
        space = create_space(args.space)
        if args.keys:
            sys.stdout.writelines(b.key + "\n" for b in space.enumerate_blocks())
            return 0
        if args.list:
            for name, sub in space.released.items():
                f = subnet_costs(space, sub)
                print(f"{name:5s} R={sub.resolution:3d} MMACs={f['macs_ref'] / 1e6:7.1f} "
                      f"(all ops {f['macs'] / 1e6:7.1f}) params={f['params'] / 1e6:5.2f}M")
            return 0
        if args.sample is not None:
            sub = space.sample(random.Random(args.sample))
        else:
            sub = resolve_subnet(space, args.subnet)
        feats = subnet_costs(space, sub)
        out = {
            "subnet": sub.to_dict(space.stage_names),
            # macs_ref: the released counter's conventions (the MMACs table); macs: every op counted.
            "mmacs_ref": round(feats["macs_ref"] / 1e6, 3),
            "mmacs": round(feats["macs"] / 1e6, 3),
            "params_m": round(feats["params"] / 1e6, 4),
        }
        if args.blocks:
            out["blocks"] = [b.key for b in space.blocks_of(sub)]
        print(json.dumps(out, indent=2))
        return 0
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
