"""Speed-ups of litert-torch conversion, process-wide, that leave the converted bytes unchanged.

`litert_torch.convert` runs torch.export's `run_decompositions` four times per model (~50% of a block's
conversion). Each run (1) rebuilds the set of CompositeImplicitAutograd ops by walking every operator
of every non-aten namespace (torch caches only the aten part), and (2) re-registers Python kernels
for each of those ~500 ops, where every registration builds `collections.abc.Callable[...]`
annotations anew (uncached generic aliases) and a new not-implemented closure. Here (1) is cached,
keyed by what could change it (the dispatcher's operator count and each namespace's known op names,
so an op registered later is still seen), and (2) uses `typing.Callable`, whose subscriptions are
cached, and one closure per op. (3) Ops without a native lowering go through JAX (~30%): jit, lower
to StableHLO text, serialise to VHLO. litert-torch caches that per model, keyed by its own
fingerprint of the function, static arguments and input shapes; here the text and the VHLO bytes are
kept across models too, so a worker converting thousands of blocks lowers each distinct op once.
Converted files are byte-identical with and without them (tests/test_export_speedups.py); set
MOBILEVIT_NAS_PLAIN_EXPORT=1 to convert without them.
"""
from __future__ import annotations

import functools
import importlib
import os
import threading
import typing

import torch

DISABLE_ENV = "MOBILEVIT_NAS_PLAIN_EXPORT"
_CIA_MODULES = ("torch._export.utils", "torch.export.exported_program", "torch.export.decomp_utils")
_lock = threading.Lock()
_installed = False
_cached: tuple[tuple, frozenset] | None = None
stats = {"cia_hits": 0, "cia_misses": 0, "jax_hits": 0, "jax_misses": 0}
_JAX_TEXT_MAX = 20_000  # distinct lowerings kept per process (a few KB each)


def _registry_key() -> tuple:
    namespaces = tuple((name, len(getattr(torch.ops, name)._dir)) for name in torch.ops._dir)
    return len(torch._C._dispatch_get_all_op_names()), namespaces


def _cache_cia_ops() -> None:
    utils = importlib.import_module("torch._export.utils")
    original = getattr(utils, "_collect_all_valid_cia_ops", None)
    if original is None:  # another torch: nothing to speed up
        return

    def collect_cached() -> set:
        global _cached
        if _cached is not None and _cached[0] == _registry_key():
            stats["cia_hits"] += 1
        else:
            stats["cia_misses"] += 1
            ops = frozenset(original())
            _cached = (_registry_key(), ops)  # collecting materialises ops: key the state after it
        return set(_cached[1])  # callers may mutate what they get

    for name in _CIA_MODULES:
        mod = importlib.import_module(name)
        if getattr(mod, "_collect_all_valid_cia_ops", None) is original:
            mod._collect_all_valid_cia_ops = collect_cached


def _cached_callable_annotations() -> None:
    import collections.abc

    ops = importlib.import_module("torch._ops")
    if getattr(ops, "Callable", None) is collections.abc.Callable:  # only annotations and isinstance use it
        ops.Callable = typing.Callable


def _one_closure_per_op() -> None:
    ep = importlib.import_module("torch.export.exported_program")
    original = getattr(ep, "autograd_not_implemented", None)
    if original is None:
        return
    ep.autograd_not_implemented = functools.lru_cache(maxsize=None)(original)  # (op, deferred_error) -> closure


def _cache_jax_lowerings() -> None:
    try:
        wrap = importlib.import_module("litert_torch.backend.jax_bridge._wrap")
    except ImportError:
        return
    lower, to_vhlo = getattr(wrap, "_lower_to_ir_text", None), getattr(wrap, "_stablehlo_to_vhlo", None)
    fingerprint = getattr(wrap, "get_cache_fingerprint", None)
    if lower is None or to_vhlo is None or fingerprint is None:
        return
    texts: dict = {}

    def lower_cached(jaxfn, args, kwargs, ir_input_names=None):  # noqa: ANN001, ANN202 - litert's signature
        getter, ir_inputs = lower(jaxfn, args, kwargs, ir_input_names=ir_input_names)
        key = fingerprint((jaxfn, args, kwargs, ir_input_names))  # litert's own per-model cache key
        if key is None:
            return getter, ir_inputs

        def text() -> str:
            if key in texts:
                stats["jax_hits"] += 1
                return texts[key]
            stats["jax_misses"] += 1
            out = getter()
            if len(texts) < _JAX_TEXT_MAX:
                texts[key] = out
            return out

        return text, ir_inputs

    wrap._lower_to_ir_text = lower_cached
    wrap._stablehlo_to_vhlo = functools.lru_cache(maxsize=_JAX_TEXT_MAX)(to_vhlo)


def install() -> bool:
    """Apply them all (idempotent, this process only); False when disabled by MOBILEVIT_NAS_PLAIN_EXPORT."""
    global _installed
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    with _lock:
        if not _installed:
            _cache_cia_ops()
            _cached_callable_annotations()
            _one_closure_per_op()
            _cache_jax_lowerings()
            _installed = True
    return True
