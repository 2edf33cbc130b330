"""How block entries compose into a network, from the device's own probes, optionally refitted.

A block is timed alone, so it finds its weights in cache from its previous run; inside a network the
rest of the network has evicted them (`benchmarks/results/network_gap.md`: same ops, the gap is
cache state; per block, measured as differences of network prefixes, the gap sits in the blocks with
weights, not in the conv blocks with many ops and few weights). What evicted weights cost depends on
how many MB of weights the whole network cycles through (last-level cache or DRAM) and on how many
rows a layer multiplies (a multi-row product re-reads its weight panels). The profiler measures
weight-stream probes (`nas.probes.weight_stream_grid`) at sizes W of 8 to 128 MB and rows M of 1 to 64,
each beside its one-layer reference, so E_M(W) = (chain - K x one layer) / W is the extra cost of one
MB of weights in a network of W MB over the same MB alone. A block's in-network entry in a network
with W_net MB of weights is

    entry = scale * (type_scale[block type] * alone_ms
                     + weight_scale * sum over its weighted ops of MB(op) * E_M(op)(W_net) + ms_per_op * ops)

with M(op) the op's rows (interpolated in log M between the probed rows, clamped at the ends) and E clamped at
the smallest probe below it. From the probes alone (`fit` 0, `probes_only`) an op is charged the one-row curve plus
half of what its rows' probes cost beyond it (`multi_row_weight` 0.5, format 7): the multi-row probes' excess is a
small difference of two large compute times, too noisy to carry a network's level in full, yet left out it
under-charges the multi-row products. The option `own_footprint`
(format 6) charges MB(op) * (E(W_net) - E(W_block)) instead, with E 0 at the one-layer reference's size and
W_block the block's own weight MB: a block timed alone
already streams its weights when they outgrow the caches near the core (the pooling head's 17-24 MB is charged
twice without it: from the probes alone the smallest subnets were over-predicted by 14-20%). A fitted
composition uses it (FIT_OWN_FOOTPRINT: better at fit 10 in 10 of 12 dev sets); from the probes alone it is off,
since there it lowers the level of random networks by 5-15% (benchmarks/results/network_composition_choice.md).
And
scale = weight_scale = type_scale = 1, ms_per_op = 0 when no network was measured (`fit` 0): the sum of
the entries predicts a network by construction, from blocks and probes only. `fit` on measured networks
refines the numbers (ridge towards those values). Why a scale per block type: how much slower a block runs
inside a network than alone beyond its weights differs between the types (convolutions' activations,
attention's many small ops); on four earlier runs' networks (fit on 10 random ones, score the rest, 200
splits) it lowered the MAPE in every run (5.7 -> 5.4%, 7.7 -> 7.5%, 5.4 -> 4.5%, 5.8 -> 5.4%; with 30: 5.3 ->
5.0%, 7.3 -> 6.9%, 4.7 -> 3.8%, 5.3 -> 5.1%; benchmarks/results/network_composition_choice.md).
Saved, versioned, with the LUT (`META_KEY`); compositions made another way (older versions, the old
fitted network correction) are refused, never mixed.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np

from nas.blocks import BlockCfg
from nas.costs import block_features, block_ops
from predictor.lut import Lut
from predictor.lut_io import LutFormatError

FORMAT_NAME = "mobilevit-nas/composition"
# 5: per-type scales (a version-4 state reads as all 1); 6: a block's own footprint; 7: multi_row_weight
FORMAT_VERSION = 7
READ_VERSIONS = (4, 5, 6, 7)  # 4 and 5 read with own_footprint off, 4-6 with multi_row_weight 1: as they were made
METHOD = "weight-stream-grid-v4"  # how the in-network term is measured (nas.probes.weight_stream_grid)
META_KEY = "composition"  # where a Lut's meta keeps it
_OLD_META_KEY = "network_correction"  # LUTs made before entries composed (refused)
Network = Sequence[tuple[BlockCfg, float]]  # a network as its blocks with their alone entries (ms), in order
# A composition fitted on measured networks charges each block only the footprint beyond its own. On the 7 runs'
# random held-out networks and 5 sets of small complexity-sampler networks (all dev, network_composition_choice.md)
# it lowered the fit-10 MAPE in 10 of 12 (e.g. 5.0 -> 4.6%, 5.4 -> 4.9%; small networks timed in the same period as
# the fit: 11.3 -> 8.4%), while from the probes alone (fit 0) its level is 5-15% low for random networks.
FIT_OWN_FOOTPRINT = True
# From the probes alone, the share of the multi-row probes' excess over the one-row curve that an op is charged
# (`probes_only`). Chosen on the dev runs' held-out networks (TFLite 1 thread, runs 181-331; and 2 threads 221, 271,
# 351, ONNX 341; `benchmarks/bench_fit0_forms.py`): at 0.5 the fit-0 ±10% was >= 90% in 11 of 12 one-thread runs
# (the one-row curve, 0: 9; every row in full, 1: 6), mean MAPE 4.1% (4.6%, 6.3%); on the other backends 2 of 4
# (0 of 4, 2 of 4). 0.25-0.6 score alike on one thread; the midpoint, since the other backends want more.
FIT0_MULTI_ROW_WEIGHT = 0.5


def weight_mb(cfg: BlockCfg) -> float:
    return block_features(cfg)["weight_bytes"] / 2**20


def n_ops(cfg: BlockCfg) -> float:
    return block_features(cfg)["n_ops"]


@lru_cache(maxsize=1 << 16)
def mb_by_tokens(cfg: BlockCfg, tokens: tuple[int, ...], field: str = "weight_bytes") -> tuple[float, ...]:
    """The block's MB of one `nas.costs.OpCost` byte field (its weights by default) spread over the probed row
    counts: each op's MB goes to the two probed rows around its own (linear in log rows; clamped at the ends).
    For weights it sums to `weight_mb(cfg)`."""
    out = np.zeros(len(tokens))
    log_t = np.log(np.asarray(tokens, dtype=float))
    for op in block_ops(cfg):
        nbytes = getattr(op, field)
        if nbytes <= 0:
            continue
        mb = nbytes / 2**20
        x = float(np.clip(np.log(max(op.work_items, 1)), log_t[0], log_t[-1]))
        if len(tokens) == 1:
            out[0] += mb
            continue
        i = min(int(np.searchsorted(log_t, x, side="right")) - 1, len(tokens) - 2)
        t = (x - log_t[i]) / (log_t[i + 1] - log_t[i])
        out[i] += (1 - t) * mb
        out[i + 1] += t * mb
    return tuple(float(v) for v in out)


@dataclass(frozen=True)
class Composition:
    tokens: tuple[int, ...]  # probed rows, increasing
    curve_mb: tuple[float, ...]  # weight-stream probe sizes (MB), increasing
    curve_ms: tuple[tuple[float, ...], ...]  # per row count, the probes' medians (ms) at each size
    alone_ms: tuple[float, ...]  # per row count, one probe layer alone (ms)
    alone_mb: float = 1.0  # that layer's weight MB
    weight_scale: float = 1.0  # multiplies the in-network weight term (1: as the probes say)
    scale: float = 1.0
    ms_per_op: float = 0.0  # in-network cost per op (nas.costs' op count) beyond weights; fitted only
    type_scales: tuple[tuple[str, float], ...] = ()  # (block type, factor on its alone entries); fitted only; absent: 1
    fitted_networks: int = 0  # networks `fit` saw (0: from blocks and probes alone)
    method: str = METHOD
    # Weights term: the network's footprint beyond the block's own (format 6). Off from the probes alone (fit 0: its
    # level is too low for random networks), on once fitted (FIT_OWN_FOOTPRINT); LUTs keep what they were made with.
    own_footprint: bool = False
    # The share of the multi-row probes' extra cost beyond the one-row curve that is charged (1: in full; format 7).
    multi_row_weight: float = 1.0

    def __post_init__(self) -> None:
        mb, ms, alone = (np.asarray(self.curve_mb, float), np.asarray(self.curve_ms, float),
                         np.asarray(self.alone_ms, float))
        tk = np.asarray(self.tokens, float)
        if (len(mb) < 1 or len(tk) < 1 or ms.shape != (len(tk), len(mb)) or alone.shape != tk.shape
                or not all(np.all(np.isfinite(a)) and np.all(a > 0) for a in (mb, ms, alone, tk))
                or not (math.isfinite(self.alone_mb) and self.alone_mb > 0)):
            raise LutFormatError(f"composition needs positive, finite probe sizes, rows and times: {self}")
        if np.any(np.diff(mb) <= 0) or np.any(np.diff(tk) <= 0):
            raise LutFormatError(f"composition probe sizes and rows must increase: {self.curve_mb}, {self.tokens}")
        if not (math.isfinite(self.weight_scale) and math.isfinite(self.ms_per_op) and math.isfinite(self.scale)
                and self.scale > 0 and all(math.isfinite(v) and v > 0 for _, v in self.type_scales)):
            raise LutFormatError(f"composition has non-finite or non-positive terms: {self}")
        if not 0 <= self.multi_row_weight <= 1:  # also refuses NaN
            raise LutFormatError(f"composition: multi_row_weight {self.multi_row_weight} is not between 0 and 1")
        if self.own_footprint and not self.alone_mb < mb[0]:
            raise LutFormatError(f"composition: the one-layer reference ({self.alone_mb} MB) must be smaller than the "
                                 f"smallest probe ({mb[0]} MB)")

    @classmethod
    def from_probes(cls, chains: Mapping[tuple[int, float], float], alone: Mapping[int, float],
                    alone_mb: float = 1.0) -> Composition:
        """From the weight-stream probes: (rows, MB streamed) -> median ms, and rows -> one layer alone (ms)."""
        bad = {k: v for k, v in [*chains.items(), *alone.items()] if not v > 0}
        tokens = sorted({t for t, _ in chains})
        sizes = sorted({mb for _, mb in chains})
        missing = [(t, mb) for t in tokens for mb in sizes if (t, mb) not in chains] + \
            [t for t in tokens if t not in alone]
        if not chains or bad or missing:
            raise ValueError(f"probes are not a usable grid of measurements (need rows x MB -> ms > 0 and each "
                             f"row count alone): bad {bad}, missing {missing}")
        return cls(tokens=tuple(int(t) for t in tokens), curve_mb=tuple(float(m) for m in sizes),
                   curve_ms=tuple(tuple(float(chains[t, m]) for m in sizes) for t in tokens),
                   alone_ms=tuple(float(alone[t]) for t in tokens), alone_mb=float(alone_mb))

    def extra_ms_per_mb(self, network_weight_mb: np.ndarray | float) -> np.ndarray:
        """Per probed row count (last axis): what one MB of weights costs in a network of `network_weight_mb`
        MB beyond its cost alone (beyond the largest probe: its value; below the smallest: down to 0 at the
        one-layer reference's size with `own_footprint`, else the smallest probe's value)."""
        mb = np.asarray(self.curve_mb)
        per_layer = np.asarray(self.alone_ms) / self.alone_mb
        extra = np.maximum(np.asarray(self.curve_ms) - per_layer[:, None] * mb[None, :], 0.0) / mb[None, :]
        extra = extra[:1] + self.multi_row_weight * (extra - extra[:1])
        if self.own_footprint:
            mb, extra = np.r_[self.alone_mb, mb], np.column_stack([np.zeros(len(extra)), extra])
        w = np.clip(np.asarray(network_weight_mb, dtype=float), mb[0], mb[-1])
        return np.stack([np.interp(w, mb, e) for e in extra], axis=-1)

    def probes_only(self) -> Composition:
        """What `fit` 0 uses, from the probes alone: each op charged the one-row curve plus FIT0_MULTI_ROW_WEIGHT (half)
        of its rows' excess over it. The multi-row probes' extra cost is a small difference of two large compute times
        (at 64 rows a layer computes about 19x as long as at one row): between nine paired validate runs their 16- and
        64-row costs per MB swung from 0.8x to 2.7x the one-row cost, and the fit-0 level with them (measured /
        predicted 0.94-1.11). The one-row curve alone (fit 0 from 2026-12-07 noon to evening) was steadier there, but
        the fresh runs after it fell 6-16% low where the probes' multi-row excess was large or their one-row cost
        near 0 (311, 321; 2 threads 351); charging half the excess did better than either on the one-thread runs
        and than the one-row curve on the others (FIT0_MULTI_ROW_WEIGHT). A fit on measured networks keeps the rows
        in full (their shape helped ±5% at fit 10) and scales them."""
        if len(self.tokens) == 1 or self.multi_row_weight == FIT0_MULTI_ROW_WEIGHT:
            return self
        return replace(self, multi_row_weight=FIT0_MULTI_ROW_WEIGHT)

    def by_tokens(self, cfg: BlockCfg) -> tuple[float, ...]:
        return mb_by_tokens(cfg, self.tokens)

    def own_ms(self, cfg: BlockCfg) -> float:
        """What `cfg`'s weights already cost in its alone entry beyond a cached layer's rate (0 without
        `own_footprint`): subtracted from its in-network weight term."""
        if not self.own_footprint:
            return 0.0
        return float(np.dot(self.by_tokens(cfg), self.extra_ms_per_mb(weight_mb(cfg))))

    def type_scale(self, cfg: BlockCfg) -> float:
        """The factor on `cfg`'s alone entry (its type's; 1 for a type no fit has seen)."""
        return dict(self.type_scales).get(cfg.type, 1.0)

    def network_ms(self, alone_ms: np.ndarray | float, weight_mb_by_row: np.ndarray,
                   ops: np.ndarray | float, own_ms: np.ndarray | float = 0.0) -> np.ndarray:
        """Sum of a network's in-network entries from the sum of its alone entries (each times `type_scale`),
        its weight MB per probed row count (last axis, `by_tokens` summed over its blocks), its ops and the sum
        of its blocks' `own_ms`."""
        weights = self._weights_ms(weight_mb_by_row) - np.asarray(own_ms, dtype=float)
        return self.scale * (np.asarray(alone_ms, dtype=float) + self.weight_scale * weights
                             + self.ms_per_op * np.asarray(ops, dtype=float))

    def _weights_ms(self, weight_mb_by_row: np.ndarray) -> np.ndarray:
        """A network's in-network weight term (before weight_scale) from its weight MB per probed row count."""
        wb = np.asarray(weight_mb_by_row, dtype=float)
        return (wb * self.extra_ms_per_mb(wb.sum(-1))).sum(-1)

    def entries(self, network: Network) -> list[float]:
        """Each block's in-network entry (ms); they sum to the network's prediction."""
        per_mb = self.extra_ms_per_mb(sum(weight_mb(cfg) for cfg, _ in network))
        return [self.scale * (ms * self.type_scale(cfg)
                              + self.weight_scale * (float(np.dot(self.by_tokens(cfg), per_mb)) - self.own_ms(cfg))
                              + self.ms_per_op * n_ops(cfg)) for cfg, ms in network]

    def _sums(self, networks: Sequence[Network]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per network: the sums of its alone entries (times `type_scale`), weight MB per probed row count, ops
        and `own_ms`."""
        return (np.array([sum(ms * self.type_scale(cfg) for cfg, ms in net) for net in networks], dtype=float),
                np.array([np.sum([self.by_tokens(cfg) for cfg, _ in net], axis=0) for net in networks],
                         dtype=float).reshape(len(networks), len(self.tokens)),
                np.array([sum(n_ops(cfg) for cfg, _ in net) for net in networks], dtype=float),
                np.array([sum(self.own_ms(cfg) for cfg, _ in net) for net in networks], dtype=float))

    def predict(self, networks: Sequence[Network]) -> np.ndarray:
        return self.network_ms(*self._sums(networks))

    def fit(self, networks: Sequence[Network], measured_ms: Sequence[float], ridge: float = 1.0) -> Composition:
        """Refit the type scales, weight_scale and ms_per_op on measured networks (relative least squares, each
        term pulled towards this composition's values by `ridge` x its column's mean square); `scale` is then the
        alone-weighted mean of the fitted types' factors and `type_scales` relative to it. Returns a new one,
        with `own_footprint` on (FIT_OWN_FOOTPRINT) where the probes allow it."""
        y = np.asarray(measured_ms, dtype=float)
        if len(networks) != len(y):
            raise ValueError(f"{len(networks)} networks but {len(y)} measured latencies")
        if len(y) == 0:
            return self.probes_only()
        if self.multi_row_weight != 1.0:  # a fit charges every probed row in full (chosen so) and scales them
            return replace(self, multi_row_weight=1.0).fit(networks, measured_ms, ridge)
        if FIT_OWN_FOOTPRINT and not self.own_footprint and self.alone_mb < self.curve_mb[0]:
            fitted = replace(self, own_footprint=True).fit(networks, measured_ms, ridge)
            return fitted if fitted.fitted_networks else self.probes_only()  # a failed fit: the probes' formula
        # y = sum_t a_t * alone_t + b * weights + c * ops: a_t = scale * type_scale_t, b = scale * weight_scale,
        # c = scale * ms_per_op
        types = sorted({cfg.type for net in networks for cfg, _ in net})
        by_type = np.array([[sum(ms for cfg, ms in net if cfg.type == t) for t in types] for net in networks])
        _, wb, ops, own = self._sums(networks)
        a = np.column_stack([by_type, self._weights_ms(wb) - own, ops]) / y[:, None]
        now = dict(self.type_scales)
        prior = self.scale * np.array([*(now.get(t, 1.0) for t in types), self.weight_scale, self.ms_per_op])
        lam = ridge * np.diag(np.maximum((a ** 2).mean(axis=0), 1e-12))
        # A type whose factor comes out <= 0 (blocks that take no time: noise, not a device; seen for the stem, one
        # small block per network, the weakest column) is held at its prior value and the rest refitted.
        held = np.zeros(len(prior), dtype=bool)
        while True:
            free = ~held
            rhs = np.ones_like(y) - a[:, held] @ prior[held]
            theta = prior.copy()
            theta[free] = np.linalg.solve(a[:, free].T @ a[:, free] + lam[np.ix_(free, free)],
                                          a[:, free].T @ rhs + lam[np.ix_(free, free)] @ prior[free])
            bad = (theta[: len(types)] <= 0) & free[: len(types)]
            if not bad.any():
                break
            held[: len(types)] |= bad
        per_type = theta[: len(types)]
        if np.any(per_type <= 0):
            return self.probes_only()  # its prior too says a type takes no time: not a composition to refine
        scale = float(per_type @ by_type.sum(0) / by_type.sum())
        return replace(self, scale=scale, weight_scale=float(theta[-2] / scale), ms_per_op=float(theta[-1] / scale),
                       type_scales=tuple({**now, **{t: float(v / scale) for t, v in zip(types, per_type)}}.items()),
                       fitted_networks=len(y))

    def get_state(self) -> dict:
        state = asdict(self)
        state["tokens"], state["curve_mb"] = list(self.tokens), list(self.curve_mb)
        state["curve_ms"], state["alone_ms"] = [list(r) for r in self.curve_ms], list(self.alone_ms)
        state["type_scales"] = {t: v for t, v in self.type_scales}
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **state}

    @classmethod
    def from_state(cls, state: dict) -> Composition:
        if state.get("format") != FORMAT_NAME or state.get("format_version") not in READ_VERSIONS:
            raise LutFormatError(f"composition state {state.get('format')!r} version {state.get('format_version')!r} "
                                 f"cannot be read by this code ({FORMAT_NAME!r} version {FORMAT_VERSION}): it was "
                                 "made another way; re-run `python -m predictor.validate ... --lut-out` for its device")
        try:
            kw = {k: v for k, v in state.items() if k not in ("format", "format_version")}
            kw["tokens"], kw["curve_mb"] = tuple(map(int, kw["tokens"])), tuple(map(float, kw["curve_mb"]))
            kw["curve_ms"] = tuple(tuple(map(float, r)) for r in kw["curve_ms"])
            kw["alone_ms"] = tuple(map(float, kw["alone_ms"]))
            kw["multi_row_weight"] = float(kw["multi_row_weight"]) if state["format_version"] >= 7 else 1.0
            for k in ("weight_scale", "scale", "ms_per_op", "alone_mb"):
                kw[k] = float(kw[k])
            kw["fitted_networks"] = int(kw["fitted_networks"])
            kw["type_scales"] = tuple((str(t), float(v)) for t, v in dict(kw.get("type_scales", {})).items())
            own = kw["own_footprint"] if state["format_version"] >= 6 else False
            if not isinstance(own, bool):
                raise ValueError(f"own_footprint = {own!r} is not true or false")
            kw["own_footprint"] = own
            return cls(**kw)
        except (TypeError, KeyError, ValueError) as e:
            raise LutFormatError(f"composition state is malformed: {e}") from e

    @classmethod
    def of_lut(cls, lut: Lut) -> Composition | None:
        """The LUT's composition; None for LUTs without one (published phone LUTs: plain block sums).
        A LUT made before entries composed (a fitted 'network_correction' instead) is refused."""
        if _OLD_META_KEY in lut.meta and META_KEY not in lut.meta:
            raise LutFormatError(f"LUT of {lut.device} was made before block entries composed (it carries the old "
                                 "network correction): re-run `python -m predictor.validate ... --lut-out` for it")
        state = lut.meta.get(META_KEY)
        return cls.from_state(state) if state else None
