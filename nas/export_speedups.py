"""Two speed-ups of litert-torch conversion, process-wide, that leave the converted bytes unchanged.

`litert_torch.convert` runs torch.export's `run_decompositions` four times per model (~60% of a block's
conversion). Each run (1) rebuilds the set of CompositeImplicitAutograd ops by walking every operator
of every non-aten namespace (torch caches only the aten part), and (2) re-registers a Python kernel
for each of those ~500 ops, where every registration builds `collections.abc.Callable[...]`
annotations anew (uncached generic aliases). Here (1) is cached, keyed by what could change it (the
dispatcher's operator count and each namespace's known op names, so an op registered later is still
seen), and (2) uses `typing.Callable`, whose subscriptions are cached: together ~20% less time per
block. Converted files are byte-identical with and without them (tests/test_export_speedups.py);
set MOBILEVIT_NAS_PLAIN_EXPORT=1 to convert without them.
"""
from __future__ import annotations

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
stats = {"cia_hits": 0, "cia_misses": 0}


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


def install() -> bool:
    """Apply both (idempotent, this process only); False when disabled by MOBILEVIT_NAS_PLAIN_EXPORT."""
    global _installed
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    with _lock:
        if not _installed:
            _cache_cia_ops()
            _cached_callable_annotations()
            _installed = True
    return True
