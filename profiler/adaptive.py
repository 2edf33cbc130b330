"""`profiler.run --budget N`: the predictor's sampler picks which blocks to measure.

Coverage first (space-filling per block type), then rounds where a bootstrap ensemble of the
predictor disagrees most; each batch the sampler asks for is exported, measured and stored before
it picks the next. Blocks already in the store are served from it without touching the device, so a
killed run restarted with the same command makes the same choices and measures nothing twice.
"""
from __future__ import annotations

import random
import threading
import time

import numpy as np
from tqdm import tqdm

from nas.blocks import BlockCfg
from nas.searchspace import SearchSpace
from profiler.plan import shuffled
from profiler.session import (
    ProfileJob,
    Summary,
    measure_blocks,
    open_session,
    run_until_stopped,
)
from profiler.targets import Target


def profile_adaptive(job: ProfileJob, space: SearchSpace, budget: int, stop: threading.Event | None = None,
                     target: Target | None = None) -> Summary:
    from predictor.lutfill import subnet_weights
    from predictor.sampler import choose

    t0 = time.time()
    blocks = space.enumerate_blocks()
    budget = min(budget, len(blocks))
    summary = Summary(serial=job.serial or "?", total=budget)
    sess = open_session(job, target, summary)
    if sess is None:
        return summary
    r = job.run
    stored = sess.store.latencies(sess.target.serial, r.runner, r.backend, r.threads)
    bar = tqdm(total=budget, desc=summary.serial, unit="block", position=job.progress_position, leave=True,
               dynamic_ncols=True)

    def measure(batch: list[BlockCfg]) -> list[float]:
        known = [b for b in batch if b.key in stored]
        summary.skipped += len(known)
        bar.update(len(known))
        new = measure_blocks(sess, shuffled([b for b in batch if b.key not in stored], job.protocol.seed),
                             summary, bar, stop)
        stored.update(new)
        return [stored.get(b.key, float("nan")) for b in batch]  # nan: failed, recorded in the store

    def work() -> None:
        seed = job.protocol.seed
        weights = subnet_weights(space, blocks, random.Random(seed))
        choose(blocks, budget, measure, np.random.default_rng(seed), weights=weights)

    return run_until_stopped(sess, summary, bar, t0, work)
