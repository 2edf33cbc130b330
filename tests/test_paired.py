"""Paired timing: a model invoked alternately with a reference, timed as its ratio to it times the reference's level."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from nas.registry import create_space
from profiler.errors import ParseError, ProfilerError, RunnerError
from profiler.settings import MeasureSettings, RunSettings
from profiler.targets import LocalTarget

PAIRED = RunSettings(backend="onnx", warmup_runs=1, num_runs=6, reference="/x/ref.onnx", reference_ms=2.0)


def _onnx_blocks(space, n: int) -> list[Path]:
    from nas.export import export_block
    from profiler.plan import candidate_blocks

    blocks = [b for b in candidate_blocks(space, []) if b.key.startswith("conv")][:n]
    return [export_block(b, "onnx") for b in blocks]


def test_paired_timings_are_filed_apart_from_plain_ones() -> None:
    assert RunSettings().store_runner == "linux-python"
    assert PAIRED.store_runner == "linux-python+ref:ref.onnx"
    assert RunSettings(reference="/y/other.onnx", reference_ms=2.0).store_runner != PAIRED.store_runner
    for bad in ({"reference": "/x/ref.onnx"}, {"reference_ms": 2.0}, {"reference": "/x/r.onnx", "reference_ms": 0.0},
                {"reference": "/x/r.onnx", "reference_ms": float("nan")}):
        with pytest.raises(ValueError, match="paired timing needs a reference model and its positive level"):
            RunSettings(**bad)


def test_a_paired_sample_is_its_ratio_to_the_reference_times_the_level() -> None:
    from profiler.runners.linux_python import _samples

    got = _samples({"samples_us": [2000.0, 6000.0], "reference_samples_us": [1000.0, 2000.0], "attempts": 1}, PAIRED)
    assert got.samples_us == pytest.approx((4000.0, 6000.0))  # ratios 2 and 3 times 2 ms
    assert got.info["model_samples_us"] == [2000.0, 6000.0] and got.info["reference_samples_us"] == [1000.0, 2000.0]
    for ref in (None, [1000.0], [1000.0, 0.0], [1000.0, "x"]):  # a missing or broken pair is an error, never a ratio
        data = {"samples_us": [2000.0, 6000.0], **({} if ref is None else {"reference_samples_us": ref})}
        with pytest.raises(ParseError, match="paired timing"):
            _samples(data, PAIRED)
    plain = _samples({"samples_us": [2000.0, 6000.0]}, RunSettings(backend="onnx"))
    assert plain.samples_us == (2000.0, 6000.0)


def test_benchmark_model_pairs_whole_invocations(tmp_path: Path, space) -> None:
    """On a phone the reference and the model alternate as benchmark_model invocations in one device command."""
    from nas.export import export_block
    from profiler.plan import candidate_blocks
    from profiler.runners.tflite_benchmark import TFLiteBenchmarkRunner

    convs = [c for c in candidate_blocks(space, []) if c.key.startswith("conv")][:2]
    a, b = (export_block(c, "tflite") for c in convs)
    target = LocalTarget(workdir=tmp_path)
    runner = TFLiteBenchmarkRunner(binary=Path(__file__).parents[1] / "device_scripts" / "litert_benchmark_model.py",
                                   repeats=3)
    settings = RunSettings(runner="tflite-benchmark", warmup_runs=1, num_runs=4, reference=str(b), reference_ms=3.0)
    runner.prepare(target, settings)
    got = runner.measure(target, str(a), settings, None)
    model, ref = got.info["model_samples_us"], got.info["reference_samples_us"]
    assert len(model) == 3 and len(ref) == 4 and all(x > 0 for x in model + ref)  # reference first, between, last
    ratios = tuple(m / (0.5 * (ref[i] + ref[i + 1])) for i, m in enumerate(model))
    assert got.samples_us == pytest.approx(tuple(r * 3000.0 for r in ratios))
    assert (tmp_path / "reference.tflite").read_bytes() == b.read_bytes()
    selfpaired = sorted(runner.measure(target, str(b), settings, None).samples_us)[1]
    assert 0.5 * 3000.0 < selfpaired < 2.0 * 3000.0  # the reference over itself: about its level
    with pytest.raises(ParseError):  # an invocation that prints no timings is an error, never a ratio
        runner.measure(target, str(tmp_path / "missing.tflite"), settings, None)


def test_the_device_script_times_each_model_paired_with_the_reference(tmp_path: Path, space) -> None:
    from profiler.runners.linux_python import LinuxPythonRunner
    from profiler.settings import ProtocolSettings

    a, b = _onnx_blocks(space, 2)
    target = LocalTarget(workdir=tmp_path)
    runner = LinuxPythonRunner()
    settings = RunSettings(backend="onnx", warmup_runs=1, num_runs=6, reference=str(b), reference_ms=3.0)
    runner.prepare(target, settings)
    one = runner.measure(target, str(a), settings, None)
    batch = runner.measure_batch(target, [str(a), str(b)], settings, None, ProtocolSettings())
    for got in (one, *batch):
        model, ref = got.info["model_samples_us"], got.info["reference_samples_us"]
        assert len(model) == len(ref) == 6 and all(x > 0 for x in model + ref)
        assert got.samples_us == pytest.approx(tuple(m / r * 3000.0 for m, r in zip(model, ref)))
    assert (tmp_path / "reference.onnx").read_bytes() == b.read_bytes()  # pushed once, beside the script
    # the reference paired with itself: ratios about 1, so about its level (the two invokes differ only by order)
    selfpaired = sorted(batch[1].samples_us)[len(batch[1].samples_us) // 2]
    assert 0.5 * 3000.0 < selfpaired < 2.0 * 3000.0
    missing = RunSettings(backend="onnx", reference=str(tmp_path / "nope.onnx"), reference_ms=1.0)
    with pytest.raises(RunnerError, match="reference model .*nope.onnx does not exist"):
        runner.measure(target, str(a), missing, None)


def test_pair_with_times_the_level_once_and_a_later_session_reuses_it(tmp_path: Path, space) -> None:
    from profiler.paired import LEVEL_KIND, pair_with
    from profiler.session import DeviceSession, ProfileJob
    from profiler.targets import open_target

    ref = _onnx_blocks(space, 1)[0]
    store = tmp_path / "m.sqlite"
    settings = MeasureSettings(run=RunSettings(backend="onnx", warmup_runs=1, num_runs=4))
    levels = []
    for _ in range(2):
        sess = DeviceSession(ProfileJob("local", (), settings, store), open_target("local"))
        try:
            levels.append(pair_with(sess, ref, repeats=3))
            assert sess.job.run.reference == str(ref) and sess.job.run.reference_ms == levels[-1]
            assert sess.settings["run"]["reference_ms"] == levels[-1]  # what is stored from now on says so
            with pytest.raises(ProfilerError, match="already times paired"):
                pair_with(sess, ref)
        finally:
            sess.close()
    assert levels[0] > 0 and levels[1] == levels[0]
    with sqlite3.connect(store) as c:
        rows = c.execute("SELECT runner, key, info_json FROM measurements WHERE kind = ?", (LEVEL_KIND,)).fetchall()
    assert len(rows) == 1 and rows[0][0] == f"linux-python+ref:{ref.name}" and rows[0][1] == ref.name
    assert len(json.loads(rows[0][2])["timings_ms"]) == 3


def test_a_reference_that_cannot_be_converted_is_one_line(monkeypatch):
    import profiler.paired as v

    def broken(sub, fmt):
        raise RuntimeError("Failed to export a node '%1539'\n  (a long converter trace)")

    monkeypatch.setattr(v, "export_subnet", broken)
    with pytest.raises(ProfilerError, match=r"^could not convert the reference network to onnx: RuntimeError: "
                                            r"Failed to export a node '%1539'$"):
        v.reference_model(create_space("elasticvit"), create_space("elasticvit").min_subnet(), "onnx")
