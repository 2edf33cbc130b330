"""Measuring whole exported subnets on a device (validation of the predictor), stored as kind='network'."""
from __future__ import annotations

import hashlib
import time
from typing import Sequence

from functools import partial

from tqdm import tqdm

from nas.subnet import Subnet
from profiler.errors import DeviceDisconnected, DeviceOffline, ParseError, RunnerError
from profiler.prefetch import prefetch
from profiler.protocol import timed
from profiler.session import DeviceSession, ProfileJob

KIND = "network"


def subnet_key(subnet: Subnet) -> str:
    """Stable id of a subnet in the store: `net_<space>_<sha256 of its JSON, 16 hex>`."""
    return f"net_{subnet.space}_{hashlib.sha256(subnet.to_json().encode()).hexdigest()[:16]}"


def measure_subnets(job: ProfileJob, subnets: Sequence[Subnet], stage_names: tuple[str, ...]) -> dict[str, float]:
    """Measure each subnet not yet in the store; return subnet_key -> latency_ms for all of them."""
    from nas.export import export_subnet

    sess = DeviceSession(job)
    try:
        done = sess.measured(KIND)
        todo = [s for s in subnets if subnet_key(s) not in done]
        if job.export_workers > 1:
            prefetch(todo, partial(export_subnet, fmt=job.run.model_format), subnet_key, job.export_workers,
                     desc=f"{sess.target.serial} export networks")
        bar = tqdm(total=len(subnets), initial=len(subnets) - len(todo), desc=f"{sess.target.serial} networks",
                   unit="net", dynamic_ncols=True)
        for i, sub in enumerate(todo):
            if i and i % job.protocol.batch_size == 0:
                sess.cool_down()
            started = time.time()
            try:
                model, export_s = timed(lambda: export_subnet(sub, job.run.model_format))
                res = sess.measure(model, export_s)
            except (ParseError, RunnerError) as e:
                sess.record_failure(KIND, subnet_key(sub), str(e))
            except (DeviceDisconnected, DeviceOffline):
                bar.close()
                raise
            else:
                sess.store_result(KIND, subnet_key(sub), res, started, {"subnet": sub.to_dict(stage_names)})
            bar.update(1)
        bar.close()
        r = job.run
        measured = sess.store.latencies(sess.target.serial, r.runner, r.backend, r.threads, KIND)
    finally:
        sess.close()
    return {subnet_key(s): measured[subnet_key(s)] for s in subnets if subnet_key(s) in measured}
