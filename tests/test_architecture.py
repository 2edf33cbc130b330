"""The layer contract (pyproject's [tool.importlinter]) holds, covers every module, and the module
import graph has no cycle, imports inside functions included; ruff is clean."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas", "profiler", "predictor")
tomllib = pytest.importorskip("tomllib")


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _layers() -> list[list[str]]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in cfg["contracts"] if c["type"] == "layers"]
    return [[m.strip() for m in line.replace("|", ":").split(":")] for line in layers]


def test_import_contracts_hold():
    beside = Path(sys.executable).parent / "lint-imports"  # the environment running the tests, not a shim
    exe = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert exe, "import-linter is a test dependency: pip install -e '.[test]'"
    p = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]


def test_every_module_has_a_layer():
    named = [m for layer in _layers() for m in layer]
    assert len(named) == len(set(named)), "a module is named in two layers"
    unplaced = sorted(m for m in _graph().modules
                      if m not in PACKAGES and not any(m == n or m.startswith(n + ".") for n in named))
    assert not unplaced, f"modules in no layer of pyproject's [tool.importlinter] contract: {unplaced}"


def test_module_graph_is_acyclic():
    g = _graph()
    modules = sorted(g.modules)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in modules:
        if root in state:
            continue
        stack = [(root, iter(sorted(g.find_modules_directly_imported_by(root))))]
        state[root] = 1
        path = [root]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if state.get(child) == 1:
                cycle = path[path.index(child):] + [child]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(g.find_modules_directly_imported_by(child)))))


def test_ruff_is_clean():
    p = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-3000:]
