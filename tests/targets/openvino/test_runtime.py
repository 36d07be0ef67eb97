"""The OpenVINO runtime: an IR made from the digits ONNX runs like ONNX Runtime runs the ONNX; .xml detection;
`edgeconv bench` on an IR with and without the manifest beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import InvalidInputError
from edgeconv.formats import Format, detect
from edgeconv.targets.openvino._offline import no_telemetry

no_telemetry()  # before openvino is imported: importing it writes ~/intel/ and counts usage otherwise
ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def digits_ir(digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ir")
    ov.save_model(ov.convert_model(str(digits.onnx)), str(folder / "digits.xml"), compress_to_fp16=False)
    return folder / "digits.xml"


def test_detect_ir(digits_ir: Path, tmp_path: Path) -> None:
    artifact = detect(digits_ir)
    assert artifact.format == Format.OPENVINO and artifact.companions == (digits_ir.with_suffix(".bin"),)
    lonely = tmp_path / "lonely.xml"
    shutil.copyfile(digits_ir, lonely)
    with pytest.raises(InvalidInputError, match="lonely.bin"):
        detect(lonely)


def test_runs_like_onnxruntime(digits, digits_ir: Path, tmp_path: Path) -> None:
    from edgeconv.benchmark import artifact_context, step_context
    from edgeconv.runtimes.ort import cpu_session
    from edgeconv.targets.openvino.runtime import OpenVinoRuntime

    actx = artifact_context(digits_ir)
    assert [s.name for s in actx.inputs] == ["image"] and actx.inputs[0].shape == (1, 1, 8, 8)
    session = OpenVinoRuntime().load(detect(digits_ir), step_context(actx, "openvino", tmp_path))
    ort = cpu_session(str(digits.onnx))
    x = digits.split.x_test[:32]
    got = np.concatenate([session.run({"image": x[i:i + 1]})[0] for i in range(len(x))])
    want = np.concatenate([ort.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.abs(got - want).max() < 1e-4  # f32 inference precision (the CPU plugin's default may be bf16)


def test_bench_bare_ir(digits_ir: Path) -> None:
    from edgeconv.benchmark import benchmark

    result = benchmark(digits_ir, runs=5, warmup=1)
    assert result.runtime == "openvino" and result.format == "openvino" and result.inputs == {"image": [1, 1, 8, 8]}
    assert result.latency_ms["p50"] > 0


def test_doctor_and_targets_rows() -> None:
    from edgeconv.availability import availability
    from edgeconv.doctor import diagnose
    from edgeconv.targets import resolve

    report = diagnose()
    backends = {b["name"]: b for b in report.backends}
    assert backends["openvino"]["extra"] == "openvino" and backends["openvino"]["version"]
    assert backends["nncf"]["extra"] == "openvino"
    rows = {t["name"]: t for t in report.targets}
    for name in ("openvino-fp32", "openvino-fp16", "openvino-w8", "openvino-int8"):
        assert rows[name]["usable"] and rows[name]["validation"] == "numerical", rows[name]
        assert availability(resolve(name)).usable


# `edgeconv bench` throughput on an IR: -j (AsyncInferQueue), --streams (NUM_STREAMS), --mode (PERFORMANCE_HINT),
# on a corpus CNN (ResNet, 3x32x32) converted with `edgeconv convert -t openvino-fp32`


@pytest.fixture(scope="module")
def resnet_ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import run_cli
    from tests.corpus import registry
    from tests.corpus.test_route_matrix import ROOT

    assert not registry.ensure(ROOT, ["resnet"])
    out = tmp_path_factory.mktemp("resnet-ov") / "out"
    result = run_cli("convert", *registry.cli_args(ROOT, "resnet"), "-t", "openvino-fp32", "-o", out, "--json")
    assert result.code == 0, result.stderr
    return out / "openvino-fp32" / "resnet.xml"


def test_bench_jobs_and_streams_json(cli, resnet_ir: Path) -> None:
    import json

    result = cli("bench", resnet_ir, "-n", "40", "--warmup", "2", "-j", "2", "--streams", "2", "--json")
    assert result.code == 0, result.stderr
    bench = json.loads(result.stdout)
    assert bench["runtime"] == "openvino" and bench["target"] == "openvino-fp32"
    assert bench["jobs"] == 2 and bench["streams"] == 2 and bench["mode"] == "latency"
    assert bench["requested"] == {"jobs": 2, "streams": 2} and "AsyncInferQueue of 2" in bench["driver"]
    assert bench["config"]["NUM_STREAMS"] == 2 and bench["config"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert bench["runs"] == 40 and bench["throughput_per_s"] > 0
    lat = bench["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_two_streams_compile_to_two_streams(resnet_ir: Path, tmp_path: Path) -> None:
    """The runtime really has the streams asked for (compiled_model.get_property), and its AsyncInferQueue keeps 2
    requests in flight; `auto` lets the plugin choose."""
    from edgeconv.benchmark import artifact_context, random_feeds, step_context
    from edgeconv.targets.openvino.runtime import OpenVinoRuntime

    actx = artifact_context(resnet_ir)
    ctx = step_context(actx, "openvino", tmp_path)
    session = OpenVinoRuntime().load_tuned(actx.artifact, ctx, streams=2)
    assert session.compiled.get_property("NUM_STREAMS") == 2
    latencies, wall = session.run_parallel(random_feeds(actx.inputs), jobs=2, runs=12)
    assert len(latencies) == 12 and all(t > 0 for t in latencies) and wall > 0
    auto = OpenVinoRuntime().load_tuned(actx.artifact, ctx, streams="AUTO", mode="throughput")
    assert str(auto.compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    assert auto.compiled.get_property("NUM_STREAMS") >= 1
    plain = OpenVinoRuntime().load(actx.artifact, ctx)  # what validation uses: the latency hint, one stream
    assert str(plain.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert plain.compiled.get_property("NUM_STREAMS") == 1


def test_bench_modes(resnet_ir: Path) -> None:
    import os

    from edgeconv.benchmark import benchmark

    plain = benchmark(resnet_ir, runs=10, warmup=1)
    assert plain.jobs == 1 and plain.mode == "latency" and plain.streams == 1 and plain.requested == {}
    assert plain.driver == "one run() at a time" and plain.throughput_per_s > 0
    tput = benchmark(resnet_ir, runs=20, warmup=1, mode="throughput")  # no -j: the plugin's optimal request count
    assert tput.mode == "throughput" and tput.jobs == tput.config["OPTIMAL_NUMBER_OF_INFER_REQUESTS"] >= 1
    assert tput.streams == tput.config["NUM_STREAMS"] >= 1 and tput.runs == 20 and tput.throughput_per_s > 0
    one = benchmark(resnet_ir, runs=8, warmup=0, jobs=1)  # -j 1: the async queue with one request
    assert one.jobs == 1 and "AsyncInferQueue of 1 infer request" == one.driver and one.runs == 8
    if (os.cpu_count() or 1) < 16:  # the CPU plugin caps streams at what the cores allow, and bench says so
        capped = benchmark(resnet_ir, runs=6, warmup=0, streams="64")
        assert capped.streams < 64 and "asked for 64 streams" in capped.note


def test_bench_bad_parallel_values_exit_2(cli, resnet_ir: Path) -> None:
    import json

    from edgeconv.benchmark import benchmark
    from edgeconv.errors import UsageError

    for args, says in ((["-j", "0"], "-j"), (["--streams", "foo"], "--streams")):
        result = cli("bench", resnet_ir, "-n", "2", *args, "--json")
        assert result.code == 2, (args, result.stdout, result.stderr)
        error = json.loads(result.stdout)["error"]
        assert error["kind"] == "usage" and says in error["message"]
    for kwargs in ({"streams": "0"}, {"mode": "fast"}, {"jobs": -1}):
        with pytest.raises(UsageError):
            benchmark(resnet_ir, runs=2, **kwargs)


def test_openvino_errors_say_why(digits_ir: Path) -> None:
    """OpenVINO's exception text starts with `Exception from src/...cpp:117:` lines; the error names the reason."""
    from edgeconv.errors import UnsupportedError
    from edgeconv.targets.openvino.options import OpenVinoOptions
    from edgeconv.targets.openvino.runtime import compile_model, ov_message, read_model

    with pytest.raises(UnsupportedError) as info:  # a value only the plugin checks (bench validates --streams first)
        compile_model(read_model(detect(digits_ir)), OpenVinoOptions(), streams="foo")
    assert "Exception from src" not in info.value.message and "foo" in info.value.message
    assert ov_message(RuntimeError("Exception from src/a.cpp:1:\nException from src/b.cpp:2:\nCheck 'x' failed")) \
        == "Check 'x' failed"


def _fake_quantized_matmul() -> tuple[object, np.ndarray, np.ndarray]:
    """A u8 activation x s8 weight MatMul (FakeQuantize on both, a 256-long reduction of large values: the worst case
    for a 16-bit pair sum), its input and the exact result in float64."""
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    k, n = 256, 64

    def const(v: object) -> object:
        return ops.constant(np.array(v, np.float32))

    def fq(node: object, lo: float, hi: float, levels: int) -> object:
        return ops.fake_quantize(node, const(lo), const(hi), const(lo), const(hi), levels)

    def fq_exact(v: np.ndarray, lo: float, hi: float, levels: int) -> np.ndarray:
        step = (hi - lo) / (levels - 1)
        return np.clip(np.round((v - lo) / step), 0, levels - 1) * step + lo

    w = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    w = np.sign(w) * np.maximum(np.abs(w), 0.9)
    x_in = ops.parameter([1, k], np.float32, name="x")
    y = ops.matmul(fq(x_in, 0.0, 4.0, 256), fq(ops.constant(w), -1.0, 1.0, 255), False, False)
    x = rng.uniform(3.5, 4.0, (1, k)).astype(np.float32)
    want = fq_exact(x.astype(np.float64), 0, 4, 256) @ fq_exact(w.astype(np.float64), -1, 1, 255)
    return ov.Model([y], [x_in]), x, want


def test_validation_computes_int8_exactly() -> None:
    """Validation (exact_int8) computes a FakeQuantize model as specified on any host; on an x86-64 CPU without VNNI
    the plugin's own int8 kernels (what `bench` runs) saturate: there they are off by a large fraction of the output."""
    from edgeconv.host_cpu import host_int8_saturates
    from edgeconv.targets.openvino.options import OpenVinoOptions
    from edgeconv.targets.openvino.runtime import compile_model

    model, x, want = _fake_quantized_matmul()
    exact = compile_model(model, OpenVinoOptions(), exact_int8=True)(x)[0]
    assert np.abs(exact - want).max() < 1e-3 * np.abs(want).max()
    kernels = compile_model(model, OpenVinoOptions())(x)[0]
    if host_int8_saturates():  # the reason for exact_int8: if this stops holding, OpenVINO fixed its AVX2 kernels
        assert np.abs(kernels - want).max() > 0.05 * np.abs(want).max()
    else:
        assert np.abs(kernels - want).max() < 0.02 * np.abs(want).max()
