"""nas.export_speedups: converted bytes unchanged, and a later-registered op is still seen."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas import export_speedups

REPO = Path(__file__).resolve().parents[1]
CONVERT = """
import hashlib, json, sys, typing
import torch._ops
from nas import export_speedups
from nas.export import export_tflite
from nas.modules import build_block, example_input, is_channel_last
from nas.registry import create_space
from profiler.plan import candidate_blocks
blocks = list(candidate_blocks(create_space("elasticvit"), []))
picked = [next(b for b in blocks if b.key.startswith(t)) for t in ("conv", "transattn", "transds")]
out = {}
for i, b in enumerate(picked + picked[1:2]):  # the attention block twice: its second conversion reuses lowerings
    p = export_tflite(build_block(b, 0), example_input(b), f"{sys.argv[1]}/{i}.tflite", is_channel_last(b))
    out[f"{i}:{b.key}"] = hashlib.sha256(open(p, "rb").read()).hexdigest()
print(json.dumps({"hashes": out, "stats": export_speedups.stats,
                  "typing_callable": torch._ops.Callable is typing.Callable}))
"""


def _convert(tmp: Path, plain: bool) -> dict:
    import json

    env = {**os.environ, export_speedups.DISABLE_ENV: "1" if plain else "0", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", CONVERT, str(tmp)], env=env, capture_output=True, text=True,
                       timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_converted_bytes_identical_with_and_without(tmp_path: Path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "fast").mkdir()
    plain = _convert(tmp_path / "plain", plain=True)
    fast = _convert(tmp_path / "fast", plain=False)
    assert plain["stats"]["cia_hits"] == plain["stats"]["jax_misses"] == 0 and not plain["typing_callable"]
    assert fast["stats"]["cia_hits"] > 0 and fast["typing_callable"]  # really converted with them
    assert fast["stats"]["jax_misses"] > 0 and fast["stats"]["jax_hits"] > 0
    assert len(fast["hashes"]) == 4
    assert fast["hashes"] == plain["hashes"]


def test_cache_sees_an_op_registered_later():
    export_speedups.install()
    from torch._export import utils

    before = utils._collect_all_valid_cia_ops()
    assert utils._collect_all_valid_cia_ops() == before  # served from the cache
    lib = torch.library.Library("mvnas_speedup_test", "DEF")
    lib.define("double(Tensor x) -> Tensor")
    lib.impl("double", lambda x: x + x, "CompositeImplicitAutograd")
    after = utils._collect_all_valid_cia_ops()
    assert torch.ops.mvnas_speedup_test.double.default in after
    assert before <= after
    after.clear()  # a caller mutating its copy does not touch the cache
    assert torch.ops.mvnas_speedup_test.double.default in utils._collect_all_valid_cia_ops()


def test_disabled_by_env(monkeypatch):
    monkeypatch.setenv(export_speedups.DISABLE_ENV, "1")
    assert export_speedups.install() is False
