"""Export: every block type to TFLite and ONNX, checked in the real runtimes against PyTorch."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nas import export
from nas.blocks import BLOCK_TYPES, parse_key
from nas.codehash import NAS_DIR, graph_code_version, graph_sources, source_fingerprint
from nas.modules import build_block, example_input, is_channel_last
from nas.registry import create_space
from nas.supernet import build_subnet
from tests.runtimes import rel_err, run_onnx, run_tflite

# One small config per block type (odd sides and stride 2 where the type allows).
BLOCKS = {
    "firstconv": "firstconv_128_3_16_2_3",
    "conv": "conv_7_16_24_4_2_hard_swish_5_se",
    "transds": "transds_5_80_144_2_6",
    "transattn": "transattn_4_64_hard_swish_3_ln",
    "transffn": "transffn_4_64_3_hard_swish_ln",
    "mbpool": "mbpool_3_160_1984_6_hard_swish",
    "effstem": "effstem_66_32",
    "effffn": "effffn_9_48_3",
    "effattn": "effattn_7_96_3_2",
    "effconvds": "effconvds_9_48_96",
    "effattnds": "effattnds_7_96_176",
    "effhead": "effhead_4_176",
}
# Blocks whose graphs have no TRANSPOSE at all; attention keeps the head split/merge transposes.
NO_TRANSPOSE = {"firstconv", "conv", "transds", "transffn", "mbpool"}
REL_TOL = 1e-4


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-cache")


def tflite_ops(path: Path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPACK delegate, so the ops are listed as converted, not as "DELEGATE".
    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return [op["op_name"] for op in it._get_ops_details()]


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy() if t.dim() == 4 else t.numpy()


def test_every_block_type_is_covered() -> None:
    assert sorted(BLOCKS) == sorted(BLOCK_TYPES)


@pytest.mark.slow
@pytest.mark.parametrize("block_type", sorted(BLOCKS))
def test_block_tflite_matches_pytorch(block_type: str, cache_dir: Path) -> None:
    cfg = parse_key(BLOCKS[block_type])
    x = example_input(cfg)
    with torch.no_grad():
        ref = build_block(cfg)(x)
    path = export.export_block(cfg, "tflite", cache_dir=cache_dir)
    if is_channel_last(cfg):  # conv blocks: NHWC in, NHWC out
        out, want = run_tflite(path, nhwc(x)), nhwc(ref)
    else:
        out, want = run_tflite(path, x.numpy()), ref.numpy()
    assert out.shape == want.shape
    assert rel_err(out, want) < REL_TOL
    ops = tflite_ops(path)
    if block_type in NO_TRANSPOSE:
        assert "TRANSPOSE" not in ops, ops
    if is_channel_last(cfg):
        assert ops[0] != "TRANSPOSE" and ops[-1] != "TRANSPOSE", ops


@pytest.mark.parametrize("block_type", sorted(BLOCKS))
def test_block_onnx_matches_pytorch(block_type: str, cache_dir: Path) -> None:
    cfg = parse_key(BLOCKS[block_type])
    x = example_input(cfg)
    with torch.no_grad():
        ref = build_block(cfg)(x).numpy()
    out = run_onnx(export.export_block(cfg, "onnx", cache_dir=cache_dir), x.numpy())
    assert out.shape == ref.shape
    assert rel_err(out, ref) < REL_TOL


@pytest.mark.slow
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_min_subnet_exports(fmt: export.Format, cache_dir: Path) -> None:
    space = create_space("elasticvit")
    sub = space.min_subnet()
    assert sub.resolution == 128
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = build_subnet(sub, space)(x).numpy()
    path = export.export_subnet(sub, fmt, cache_dir=cache_dir)
    out = run_tflite(path, nhwc(x)) if fmt == "tflite" else run_onnx(path, x.numpy())
    assert out.shape == (1, 1000)
    assert rel_err(out, ref) < REL_TOL


@pytest.mark.slow
def test_released_subnet_exports_to_onnx(cache_dir: Path) -> None:
    """M runs its attention blocks below the supernet's widest token grid and channels: elastic slicing by the
    input's sizes must export as constants (the ONNX tracer once kept them symbolic and failed)."""
    space = create_space("elasticvit")
    sub = space.subnet("M")
    x = torch.randn(1, 3, sub.resolution, sub.resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = build_subnet(sub, space)(x).numpy()
    out = run_onnx(export.export_subnet(sub, "onnx", cache_dir=cache_dir), x.numpy())
    assert out.shape == (1, 1000) and rel_err(out, ref) < REL_TOL


def test_cache_converts_once(cache_dir: Path) -> None:
    cfg = parse_key("transffn_2_48_2_hard_swish_ln")
    before = dict(export.conversions)
    first = export.export_block(cfg, "onnx", cache_dir=cache_dir)
    inode = first.stat().st_ino  # a rewrite (temporary file renamed over it) would give a new inode
    second = export.export_block(cfg, "onnx", cache_dir=cache_dir)
    assert first == second and second.stat().st_ino == inode
    assert export.conversions["onnx"] == before["onnx"] + 1
    # Other content, other file: a different weights seed.
    other = export.export_block(cfg, "onnx", cache_dir=cache_dir, seed=1)
    assert other != first and export.conversions["onnx"] == before["onnx"] + 2


def test_module_export_is_keyed_by_weights(cache_dir: Path) -> None:
    sub = create_space("elasticvit").min_subnet()
    a, b = build_subnet(sub, seed=0), build_subnet(sub, seed=1)
    assert export.weights_hash(a) == export.weights_hash(build_subnet(sub, seed=0))
    assert export.weights_hash(a) != export.weights_hash(b)
    pa = export.cache_path(sub.to_json(), "onnx", export.weights_hash(a), "s", cache_dir)
    pb = export.cache_path(sub.to_json(), "onnx", export.weights_hash(b), "s", cache_dir)
    assert pa != pb


def test_default_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path))
    assert export.default_cache_dir() == tmp_path
    monkeypatch.delenv(export.CACHE_ENV)
    assert export.default_cache_dir() == Path.home() / ".cache" / "mobilevit-nas" / "export"


def test_failed_export_leaves_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def half_write(module: object, args: object, f: str, **kwargs: object) -> None:
        Path(f).write_bytes(b"partial")
        raise RuntimeError("crash mid-export")

    monkeypatch.setattr(torch.onnx, "export", half_write)
    cfg = parse_key("transffn_2_48_2_hard_swish_ln")
    with pytest.raises(RuntimeError, match="crash"):
        export.export_block(cfg, "onnx", cache_dir=tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_export_restores_train_mode(tmp_path: Path) -> None:
    cfg = parse_key("transffn_2_48_2_hard_swish_ln")
    module = build_block(cfg).train()
    export.export_onnx(module, example_input(cfg), tmp_path / "m.onnx")
    assert all(m.training for m in module.modules())
    assert os.path.getsize(tmp_path / "m.onnx") > 0


def test_code_fingerprint_ignores_comments_and_docstrings_but_not_code(tmp_path: Path):
    src = tmp_path / "block.py"

    def fp(text: str) -> str:
        src.write_text(text)
        return source_fingerprint([src], root=tmp_path)

    base = fp('"""Doc."""\ndef forward(x):\n    return x * 2\n')
    assert fp('"""Other doc."""\n# a comment\ndef forward(x):\n    """Says why."""\n    return x*2  # same\n') == base
    assert fp('"""Doc."""\ndef forward(x):\n    return x * 3\n') != base
    # the real fingerprint covers every block module, weight init, the supernet and the exporter
    names = {p.relative_to(NAS_DIR).as_posix() for p in graph_sources()}
    assert {"modules/attention.py", "modules/mbconv.py", "modules/init.py", "supernet.py", "export.py"} <= names
    assert graph_code_version() == source_fingerprint(graph_sources())


@pytest.mark.slow
def test_export_cli_writes_the_subnet_with_a_checkpoints_weights(tmp_path: Path, capsys) -> None:
    import onnxruntime as ort

    from nas.checkpoint import CHECKPOINT_FORMAT
    from nas.supernet import Supernet

    space = create_space("elasticvit")
    net = Supernet(space, seed=3)
    torch.save({"format": CHECKPOINT_FORMAT, "supernet": net.state_dict()}, tmp_path / "ckpt.pt")
    out = tmp_path / "min.onnx"
    assert export.main(["--subnet", "min", "--format", "onnx", "--out", str(out),
                        "--checkpoint", str(tmp_path / "ckpt.pt")]) == 0
    net.set_active_subnet(space.min_subnet())
    sub = net.get_active_subnet().eval()
    r = space.min_subnet().resolution
    x = torch.randn(2, 3, r, r, generator=torch.Generator().manual_seed(1))
    sess = ort.InferenceSession(str(out))
    got = np.concatenate([sess.run(None, {"input": x[i:i + 1].numpy()})[0] for i in range(2)])
    with torch.no_grad():
        want = sub(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)  # the trained weights, not the random ones
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert export.main(["--subnet", "min", "--format", "onnx", "--out", str(out),
                        "--checkpoint", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint") and len(err.strip().splitlines()) == 1
    assert export.main(["--subnet", "L9", "--format", "onnx", "--out", str(out)]) == 2


class _RunsCode:
    """Unpickling this calls os.system: what a checkpoint must never be able to do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["supernet", "format"])
def test_export_cli_refuses_a_checkpoint_that_would_run_code(where: str, tmp_path: Path, capsys) -> None:
    marker, ckpt = tmp_path / "pwned", tmp_path / "c.pt"
    state: dict = {"format": 3, "supernet": {"w": torch.zeros(2)}}
    state[where] = _RunsCode(marker)
    torch.save(state, ckpt)
    code = export.main(["--subnet", "min", "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                        "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err.strip()
    assert not marker.exists()  # weights_only refused the call instead of making it
    assert code == 2 and err.startswith("error: checkpoint") and len(err.splitlines()) == 1 and "system" in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_load_supernet_weights_refuses_foreign_files_in_one_line(space, tmp_path: Path) -> None:
    from nas.checkpoint import CheckpointError

    cases = {"missing.pt": None, "dict.pt": {"weight": torch.zeros(3)},
             "old.pt": {"format": 1, "supernet": {"w": torch.zeros(1)}},
             "other_space.pt": {"format": 3, "supernet": {"w": torch.zeros(1)}}}
    for name, state in cases.items():
        if state is not None:
            torch.save(state, tmp_path / name)
        with pytest.raises(CheckpointError) as e:
            export.load_supernet_weights(space, tmp_path / name)
        assert str(e.value).startswith(f"checkpoint {tmp_path / name}") and len(str(e.value).splitlines()) == 1
