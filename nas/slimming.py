"""EfficientFormerV2's search as a strategy: greedy slimming from the largest subnet.

Start at the space's largest subnet; at each step consider every subnet one step smaller
(`SearchSpace.shrink_moves`: for EfficientFormerV2 remove a block, shrink a stage's width, shrink one FFN's
expansion, one attention block fewer, the next smaller resolution) and take the one with the smallest drop
of the objective (accuracy, ideally: `--objective accuracy`) per gain of efficiency, the Mobile Efficiency
Score with a constant Score (size and latency only, `nas.objectives.mes`), until the subnet meets the
limits. Deterministic: `rng` and `settings` are accepted for the strategy interface and unused.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from nas.evolution import (
    Candidate,
    Constraints,
    Evaluator,
    Infeasible,
    SearchResult,
    SearchSettings,
    _objective,
    feasible,
)
from nas.objectives import MES_SCORE, Objective, ObjectiveConfig, mes
from nas.searchspace import SearchSpace
from nas.subnet import Subnet


def _efficiency(c: Candidate, config: ObjectiveConfig) -> float:
    return float(mes(MES_SCORE, np.array([c.params]), np.array([c.latency_ms]), config)[0])


_SETTINGS, _MES = SearchSettings(), ObjectiveConfig()


def slim(space: SearchSpace, latency: Callable[[Sequence[Subnet]], np.ndarray], limits: Constraints,
         objective: str | Objective = "macs", settings: SearchSettings = _SETTINGS,
         rng: random.Random | None = None, top: int = 5, progress: bool = False,
         evaluator: Evaluator | None = None, mes_config: ObjectiveConfig = _MES) -> SearchResult:
    """Slim the largest subnet greedily until it meets `limits`. `best` is the subnet reached (one); the path's
    objective values are `best_per_generation` (one per step). Raises Infeasible when no move gains efficiency
    before the limits are met."""
    ev = evaluator or Evaluator(space, latency, _objective(space, objective))
    cur = ev([space.max_subnet()])[0]
    seen = {cur.subnet: cur}
    history = [cur.score]
    bar = tqdm(desc=f"slim to {limits.latency_ms:g} ms", unit="step", disable=not progress, dynamic_ncols=True)
    while not feasible(cur, limits):
        moves = ev(space.shrink_moves(cur.subnet))
        seen.update((c.subnet, c) for c in moves)
        base = _efficiency(cur, mes_config)
        ranked = [((cur.score - c.score) / gain, -gain, i, c) for i, c in enumerate(moves)
                  if (gain := _efficiency(c, mes_config) - base) > 0]
        if not ranked:
            raise Infeasible(f"greedy slimming of {space.name!r} stopped at {cur.latency_ms:.3f} ms, "
                             f"{cur.params / 1e6:.2f} M params: no smaller subnet gains efficiency")
        cur = min(ranked)[3]
        history.append(cur.score)
        bar.update()
        bar.set_postfix_str(f"{cur.latency_ms:.2f} ms")
    bar.close()
    feasible_seen = sorted((c for c in seen.values() if feasible(c, limits)), key=lambda c: -c.score)
    return SearchResult(best=[cur], evaluated=len(seen), best_per_generation=history, feasible_seen=feasible_seen)
