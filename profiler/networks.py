"""Measuring whole exported subnets on a device (validation of the predictor), stored as kind='network'."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import partial

from tqdm import tqdm

from nas.subnet import Subnet
from profiler.session import DeviceSession, Summary, measure_models

KIND = "network"


def subnet_key(subnet: Subnet) -> str:
    """Stable id of a subnet in the store: `net_<space>_<sha256 of its JSON, 16 hex>`."""
    return f"net_{subnet.space}_{hashlib.sha256(subnet.to_json().encode()).hexdigest()[:16]}"


def measure_subnets(sess: DeviceSession, subnets: Sequence[Subnet], stage_names: tuple[str, ...]) -> dict[str, float]:
    """Measure each subnet this device has not measured yet; return subnet_key -> latency_ms for all
    measured ones (failures are in the store's failures table)."""
    from nas.export import export_subnet  # torch and the converters load only once a device is ready

    summary = Summary(serial=sess.target.serial, total=len(subnets))
    done = sess.measured(KIND)
    todo = [s for s in subnets if subnet_key(s) not in done]
    with tqdm(total=len(subnets), initial=len(subnets) - len(todo), desc=f"{summary.serial} networks",
              unit="net", dynamic_ncols=True) as bar:
        measure_models(sess, todo, KIND, subnet_key, partial(export_subnet, fmt=sess.job.run.model_format), summary,
                       bar, None, lambda s: {"subnet": s.to_dict(stage_names)})
    measured = sess.measured(KIND)
    return {subnet_key(s): measured[subnet_key(s)] for s in subnets if subnet_key(s) in measured}
