"""A fingerprint of the code that defines exported graphs and their weights.

Export caches key on it, so a change to a block's `forward`, its weight init or the export settings
re-converts without anyone remembering to bump a version. It hashes the syntax tree, so comments,
docstrings and formatting do not invalidate the cache.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

NAS_DIR = Path(__file__).resolve().parent
# What an exported file's bytes depend on besides its key: the modules, how subnets are assembled,
# and the exporter settings.
GRAPH_SOURCES: tuple[str, ...] = ("modules/*.py", "supernet.py", "export.py", "probes.py")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(paths: list[Path], root: Path = NAS_DIR) -> str:
    """sha256 over each file's name relative to `root` and its docstring-free AST, in name order."""
    h = hashlib.sha256()
    for path in sorted(paths):
        tree = _strip_docstrings(ast.parse(path.read_text(), filename=str(path)))
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(ast.dump(tree).encode() + b"\0")
    return h.hexdigest()[:16]


def graph_sources() -> list[Path]:
    return sorted(p for pattern in GRAPH_SOURCES for p in NAS_DIR.glob(pattern))


@functools.lru_cache(maxsize=1)
def graph_code_version() -> str:
    return source_fingerprint(graph_sources())
