"""`profiler.run --budget N`: a block chooser picks which blocks to measure, batch by batch.

The chooser is a strategy passed in by the caller (the predictor's sampler, wired up by the
`profiler.run` command line): the profiler layer measures and stores; it does not know how blocks
are chosen. Each batch the chooser asks for is exported, measured and stored before it picks the
next. Blocks this device has already measured are served from the store without touching it, so a
killed run restarted with the same command makes the same choices and measures nothing twice.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from tqdm import tqdm

from nas.blocks import BlockCfg
from nas.searchspace import SearchSpace
from profiler.plan import shuffled
from profiler.session import ProfileJob, Summary, measure_blocks, open_session, run_until_stopped
from profiler.targets import Target

MeasureBatch = Callable[[list[BlockCfg]], list[float]]  # blocks -> latency_ms each (nan: failed)


class BlockChooser(Protocol):
    def __call__(self, space: SearchSpace, blocks: Sequence[BlockCfg], budget: int, measure: MeasureBatch,
                 seed: int) -> None:
        """Call `measure` with batches of `blocks`, `budget` blocks in all."""


def profile_adaptive(job: ProfileJob, space: SearchSpace, budget: int, chooser: BlockChooser,
                     stop: threading.Event | None = None, target: Target | None = None) -> Summary:
    t0 = time.time()
    blocks = space.enumerate_blocks()
    budget = min(budget, len(blocks))
    summary = Summary(serial=job.serial or "?", total=budget)
    sess = open_session(job, target, summary)
    if sess is None:
        return summary
    stored = sess.measured()
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

    return run_until_stopped(sess, summary, bar, t0, lambda: chooser(space, blocks, budget, measure, job.protocol.seed))
