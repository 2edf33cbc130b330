"""Convert every model a run needs before measuring: in parallel, and never while a benchmark runs.

Conversion (PyTorch -> TFLite) takes 1-3 s per block and ~20 s per whole subnet on this kind of
machine; doing it up front in a process pool uses every host core, and keeps the host quiet while
`--serial local` measures. Converted files land in the content-keyed export cache, so a killed run
loses no conversion either.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)
T = TypeVar("T")


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _init_worker() -> None:
    # The converters print per-model INFO/deprecation lines on the worker's stderr (C++ and Python);
    # a failed conversion still raises and its exception is reported by the parent.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    import torch

    torch.set_num_threads(1)  # one conversion per core


def prefetch(items: Sequence[T], convert: Callable[[T], Path], name: Callable[[T], str], workers: int,
             desc: str = "export") -> dict[str, str]:
    """Convert items in `workers` processes; returns name -> error text for items that failed."""
    errors: dict[str, str] = {}
    if not items:
        return errors
    if workers <= 1:
        for it in tqdm(items, desc=desc, unit="model", dynamic_ncols=True):
            try:
                convert(it)
            except Exception as e:  # noqa: BLE001 - reported per item; the measuring loop records it
                errors[name(it)] = f"{type(e).__name__}: {e}"
        return errors
    ctx = mp.get_context("spawn")  # fork after torch threads started is unsafe
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        futures = {pool.submit(convert, it): name(it) for it in items}
        for fut in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="model", dynamic_ncols=True):
            try:
                fut.result()
            except Exception as e:  # noqa: BLE001 - as above
                errors[futures[fut]] = f"{type(e).__name__}: {e}"
    return errors
