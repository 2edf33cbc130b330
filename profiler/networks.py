"""Measuring whole exported subnets on a device (validation of the predictor), stored as kind='network'."""
from __future__ import annotations

import hashlib
from functools import partial
from typing import Sequence

from tqdm import tqdm

from nas.subnet import Subnet
from profiler.session import DeviceSession, ProfileJob, Summary, measure_models

KIND = "network"


def subnet_key(subnet: Subnet) -> str:
    """Stable id of a subnet in the store: `net_<space>_<sha256 of its JSON, 16 hex>`."""
    return f"net_{subnet.space}_{hashlib.sha256(subnet.to_json().encode()).hexdigest()[:16]}"


def measure_subnets(job: ProfileJob, subnets: Sequence[Subnet], stage_names: tuple[str, ...]) -> dict[str, float]:
    """Measure each subnet not yet in the store; return subnet_key -> latency_ms for all measured ones."""
    from nas.export import export_subnet

    summary = Summary(serial=job.serial or "?", total=len(subnets))
    sess = DeviceSession(job)
    summary.serial = sess.target.serial
    try:
        done = sess.measured(KIND)
        todo = [s for s in subnets if subnet_key(s) not in done]
        with tqdm(total=len(subnets), initial=len(subnets) - len(todo), desc=f"{summary.serial} networks",
                  unit="net", dynamic_ncols=True) as bar:
            measure_models(sess, todo, KIND, subnet_key, partial(export_subnet, fmt=job.run.model_format), summary,
                           bar, None, lambda s: {"subnet": s.to_dict(stage_names)})
        r = job.run
        measured = sess.store.latencies(sess.target.serial, r.runner, r.backend, r.threads, KIND)
    finally:
        sess.close()
    return {subnet_key(s): measured[subnet_key(s)] for s in subnets if subnet_key(s) in measured}
