"""TensorRT targets. CPU part (runs everywhere, CI included): the TensorRT-ready ONNX each tensorrt-* profile writes is
valid, has the Q/DQ placement TensorRT fuses, validates on ONNX Runtime, and the engine is recorded "not built" (exit 0;
exit 4 with --require-engine). GPU part: builds and runs real engines; skipped, saying why, without an NVIDIA GPU and
the tensorrt package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.context import ShapeRange
from edgeconv.targets.tensorrt import _tools as trt_tools
from edgeconv.errors import EXIT_UNSUPPORTED, EXIT_USAGE, UnsupportedError, UsageError
from edgeconv.formats import TensorSpec
from edgeconv.targets.tensorrt import qdq as _tensorrt_qdq
from model_zoo import accuracy
from tests.helpers import convert, model_path, target_record

TARGETS = ["tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"]
NO_ENGINE = trt_tools.why_no_engine()
gpu = pytest.mark.skipif(NO_ENGINE is not None, reason=f"TensorRT GPU test skipped: {NO_ENGINE}")


@pytest.fixture(scope="module")
def digits_trt(digits: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("trt") / "out"
    manifest = convert(digits.onnx, TARGETS, out, calib=str(digits.calib), eval=str(digits.eval))
    return manifest, out


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


# ------------------------------------------------------------------------------------------------ CPU: every profile
@pytest.mark.skipif(NO_ENGINE is None, reason="this machine can build engines: the CPU-only path is not taken here")
def test_without_gpu_onnx_is_written_validated_and_engine_marked_not_built(digits_trt: tuple[dict[str, Any], Path]) -> None:
    manifest, out = digits_trt
    for name in TARGETS:
        record = target_record(manifest, name)
        roles = {a["role"]: a for a in record["artifacts"]}
        assert set(roles) == {"model", "not-built"}, record["artifacts"]
        assert roles["model"]["format"] == "onnx" and roles["not-built"]["format"] == "tensorrt-engine"
        assert "NVIDIA GPU" in roles["not-built"]["note"]
        notes = record["notes"]["tensorrt"]
        assert notes["engine"] == "not built" and notes["build_later"].startswith("edgeconv build-engine ")
        assert notes["gpu"]["available"] is False
        validation = record["validation"]
        assert validation["runtime"] == "onnxruntime" and validation["kind"] == "numerical" and validation["passed"]
        assert "tensorrt cannot run onnx" in validation["note"]
        onnx.checker.check_model(onnx.load_model(str(out / roles["model"]["path"])), full_check=True)
    metrics = {n: target_record(manifest, n)["validation"]["metrics"] for n in TARGETS}
    assert metrics["tensorrt-fp32"]["snr_db"] > 100
    assert metrics["tensorrt-fp16"]["snr_db"] > 50 and metrics["tensorrt-fp16"]["top1_agreement"] == 1.0
    assert metrics["tensorrt-int8"]["snr_db"] > 30 and metrics["tensorrt-int8"]["top1_agreement"] >= 0.99


def test_int8_onnx_has_tensorrt_qdq_placement_and_keeps_accuracy(digits: Any, digits_trt: tuple[dict[str, Any], Path]) -> None:
    manifest, out = digits_trt
    path = model_path(manifest, out, "tensorrt-int8", "onnx")
    model = onnx.load_model(str(path))
    facts = _tensorrt_qdq.describe(model)
    assert facts["problems"] == []
    assert facts["zero_point_types"] == ["int8"]  # symmetric int8, zero point 0 (checked by describe)
    assert facts["per_channel_weights"] == 3 and facts["per_tensor_weights"] == 0  # 2 Conv + 1 Gemm, per channel
    assert set(facts["dq_feeds"]) <= {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add"}
    assert facts["dq_feeds"] == {"Conv": 4, "Gemm": 2}  # activation + weight of each weighted op, nothing else
    assert not set(facts["q_after"]) & _tensorrt_qdq.WEIGHTED  # no Q/DQ on weighted-op outputs
    assert all(i.data_type != TensorProto.INT32 for i in model.graph.initializer)  # biases stay float
    assert [o.domain for o in model.opset_import] == [""] and model.opset_import[0].version >= 13
    x, y = digits.split.x_test, digits.split.y_test
    acc_fp32 = accuracy(ort_logits(model_path(manifest, out, "tensorrt-fp32", "onnx"), x), y)
    acc_int8 = accuracy(ort_logits(path, x), y)
    assert acc_fp32 > 0.9 and abs(acc_int8 - acc_fp32) <= 0.01, (acc_fp32, acc_int8)


def test_fp16_onnx_is_float16_with_float32_io(digits_trt: tuple[dict[str, Any], Path]) -> None:
    manifest, _ = digits_trt
    facts = target_record(manifest, "tensorrt-fp16")["notes"]["tensorrt"]["onnx"]
    assert facts["initializers"]["float16"] > 0 and facts["initializers"]["float32"] == 0
    assert set(facts["io_types"].values()) == {"float"}
    assert facts["qdq"]["QuantizeLinear"] == 0
    assert target_record(manifest, "tensorrt-fp32")["notes"]["tensorrt"]["onnx"]["initializers"]["float16"] == 0


# ------------------------------------------------------------------- Q/DQ placement on residual and LayerNorm graphs
def _f32(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr.astype(np.float32), name)


def residual_cnn(path: Path) -> Path:
    """x[N,3,16,16] → conv-relu → conv-relu → conv → Add(skip from the first relu) → relu → maxpool → GAP → Gemm."""
    rng = np.random.default_rng(0)
    inits = [_f32("w0", rng.normal(0, 0.3, (8, 3, 3, 3))), _f32("b0", rng.normal(0, 0.1, 8)),
             _f32("w1", rng.normal(0, 0.15, (8, 8, 3, 3))), _f32("b1", rng.normal(0, 0.1, 8)),
             _f32("w2", rng.normal(0, 0.15, (8, 8, 3, 3))), _f32("b2", rng.normal(0, 0.1, 8)),
             _f32("fc_w", rng.normal(0, 0.3, (10, 8))), _f32("fc_b", rng.normal(0, 0.1, 10))]
    conv = dict(pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", **conv),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", **conv),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", **conv),
             helper.make_node("Add", ["c2", "r0"], ["a0"], name="add_residual"),
             helper.make_node("Relu", ["a0"], ["r2"], name="relu2"),
             helper.make_node("MaxPool", ["r2"], ["p0"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
             helper.make_node("GlobalAveragePool", ["p0"], ["g0"], name="gap"),
             helper.make_node("Flatten", ["g0"], ["f0"], name="flatten"),
             helper.make_node("Gemm", ["f0", "fc_w", "fc_b"], ["y"], transB=1, name="fc")]
    graph = helper.make_graph(nodes, "residual_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def mlp_block(path: Path) -> Path:
    """x[1,8,16] → LayerNorm → MatMul+bias → Relu → MatMul+bias → Add(residual x): a transformer FFN."""
    rng = np.random.default_rng(1)
    inits = [_f32("ln_s", np.ones(16)), _f32("ln_b", np.zeros(16)),
             _f32("w1", rng.normal(0, 0.25, (16, 32))), _f32("bias1", rng.normal(0, 0.1, 32)),
             _f32("w2", rng.normal(0, 0.18, (32, 16))), _f32("bias2", rng.normal(0, 0.1, 16))]
    nodes = [helper.make_node("LayerNormalization", ["x", "ln_s", "ln_b"], ["ln"], axis=-1, name="ln"),
             helper.make_node("MatMul", ["ln", "w1"], ["m1"], name="mm1"),
             helper.make_node("Add", ["m1", "bias1"], ["m1b"], name="add_bias1"),
             helper.make_node("Relu", ["m1b"], ["h"], name="relu"),
             helper.make_node("MatMul", ["h", "w2"], ["m2"], name="mm2"),
             helper.make_node("Add", ["m2", "bias2"], ["m2b"], name="add_bias2"),
             helper.make_node("Add", ["m2b", "x"], ["y"], name="add_residual")]
    graph = helper.make_graph(nodes, "mlp_block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16])], inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def dq_inputs(model: onnx.ModelProto, node_name: str) -> list[bool]:
    """For each input of the node: is it read through a DequantizeLinear?"""
    producers = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    return [producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in node.input]


def save_calib(folder: Path, shape: tuple[int, ...], count: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        np.save(folder / f"{i:03d}.npy", rng.normal(0, 1, shape).astype(np.float32))
    return folder


def test_residual_add_quantizes_only_the_skip_branch_with_dynamic_batch(tmp_path: Path) -> None:
    src = residual_cnn(tmp_path / "residual.onnx")
    calib = save_calib(tmp_path / "calib", (1, 3, 16, 16), 16, 0)
    ranges = {"x": ShapeRange((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    manifest = convert(src, ["tensorrt-int8"], tmp_path / "out", calib=str(calib), shape_ranges=ranges)
    record = target_record(manifest, "tensorrt-int8")
    model = onnx.load_model(str(model_path(manifest, tmp_path / "out", "tensorrt-int8", "onnx")))
    assert dq_inputs(model, "add_residual") == [False, True]  # conv2 output float, skip branch (relu0) int8
    for conv in ("conv0", "conv1", "conv2"):
        assert dq_inputs(model, conv) == [True, True, False]  # activation, per-channel weight; bias float
    assert dq_inputs(model, "fc") == [True, True, False]
    assert all(not any(dq_inputs(model, n)) for n in ("relu2", "pool", "gap", "flatten"))
    facts = _tensorrt_qdq.describe(model)
    assert facts["problems"] == [] and facts["per_channel_weights"] == 4
    assert not any(i.name.endswith(("_scale", "_zero_point")) and i.name.startswith("c2") for i in model.graph.initializer)
    notes = record["notes"]["tensorrt"]
    assert notes["shape_ranges"] == {"x": [[1, 3, 16, 16], [4, 3, 16, 16], [8, 3, 16, 16]]}
    assert notes["onnx"]["inputs"][0]["shape"][0] in ("N", None)  # the batch dim stays dynamic in the ONNX
    if NO_ENGINE is not None:
        assert "--shape-range x=1x3x16x16:4x3x16x16:8x3x16x16" in notes["build_later"]
    from edgeconv.cli.build_engine import recorded_settings  # what `edgeconv build-engine` will reuse

    recorded = recorded_settings(model_path(manifest, tmp_path / "out", "tensorrt-int8", "onnx"))
    assert recorded["shape_ranges"] == ranges and recorded["compiler"] == {"workspace_mib": 1024, "tf32": True}
    assert record["validation"]["metrics"]["snr_db"] > 25


def test_layernorm_and_bias_adds_stay_float(tmp_path: Path) -> None:
    src = mlp_block(tmp_path / "mlp.onnx")
    calib = save_calib(tmp_path / "calib", (1, 8, 16), 16, 1)
    manifest = convert(src, ["tensorrt-int8"], tmp_path / "out", calib=str(calib))
    model = onnx.load_model(str(model_path(manifest, tmp_path / "out", "tensorrt-int8", "onnx")))
    by_type: dict[str, list[str]] = {}
    for node in model.graph.node:
        by_type.setdefault(node.op_type, []).append(node.name)
    # normalisation (onnxslim) turns MatMul + bias on 3-D inputs into Reshape -> Gemm(bias) -> Reshape
    weighted = by_type.get("MatMul", []) + by_type.get("Gemm", [])
    assert len(weighted) == 2
    for name in weighted:
        assert dq_inputs(model, name)[:2] == [True, True] and not any(dq_inputs(model, name)[2:])  # bias float
    assert dq_inputs(model, "ln") == [False, False, False]  # shares x with the residual Add, but reads it float
    for name in by_type.get("Reshape", []) + by_type.get("Relu", []):
        assert not any(dq_inputs(model, name))
    assert dq_inputs(model, "add_residual") == [False, True]  # weighted-op side float, skip side int8
    facts = _tensorrt_qdq.describe(model)
    assert facts["problems"] == [] and facts["per_channel_weights"] == 2
    assert target_record(manifest, "tensorrt-int8")["validation"]["metrics"]["snr_db"] > 30


def test_describe_flags_what_tensorrt_rejects() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(3, np.uint8), "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq")]
    model = helper.make_model(helper.make_graph(nodes, "asym", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    problems = _tensorrt_qdq.describe(model)["problems"]
    assert any("zero point is not 0" in p for p in problems) and any("uint8" in p for p in problems)


# ------------------------------------------------------------------------------- shape ranges, require-engine, CLI
def test_shape_ranges_are_checked() -> None:
    inputs = [TensorSpec("x", ("N", 3, 16, 16)), TensorSpec("mask", (1, 16))]
    good = {"x": ShapeRange((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    assert trt_tools.resolve_shape_ranges(inputs, good) == good  # static `mask` needs no range
    warnings: list[str] = []
    default = trt_tools.resolve_shape_ranges(inputs, {}, warnings.append)
    one = (1, 3, 16, 16)
    assert default == {"x": ShapeRange(one, one, one)}  # a dynamic input without a range: built for batch 1
    assert warnings and "--shape-range x=MIN:OPT:MAX" in warnings[0]
    bad = [{"y": good["x"]},  # unknown input
           {"x": ShapeRange((1, 3, 16), (4, 3, 16), (8, 3, 16))},  # rank
           {"x": ShapeRange((1, 4, 16, 16), (4, 4, 16, 16), (8, 4, 16, 16))},  # fixed dim changed
           {"x": ShapeRange((4, 3, 16, 16), (1, 3, 16, 16), (8, 3, 16, 16))}]  # min > opt
    for given in bad:
        with pytest.raises(UsageError) as err:
            trt_tools.resolve_shape_ranges(inputs, given)
        assert err.value.exit_code == EXIT_USAGE


@pytest.mark.skipif(NO_ENGINE is None, reason="this machine can build engines")
def test_require_engine_fails_with_exit_4_without_gpu(digits: Any, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError) as err:
        convert(digits.onnx, ["tensorrt-fp16"], tmp_path / "out", require_engine=True)
    assert err.value.exit_code == EXIT_UNSUPPORTED
    assert "NVIDIA GPU" in err.value.message and "build-engine" in err.value.hint
    assert not (tmp_path / "out").exists()  # all or nothing


@pytest.mark.slow
@pytest.mark.skipif(NO_ENGINE is None, reason="this machine can build engines")
def test_cli_exit_codes_without_gpu(digits: Any, tmp_path: Path, cli: Any) -> None:
    ok = cli("convert", digits.onnx, "--target", "tensorrt-fp16", "-o", tmp_path / "out", "--json")
    assert ok.code == 0, ok.stderr
    record = target_record(json.loads(ok.stdout), "tensorrt-fp16")
    assert any(a["role"] == "not-built" for a in record["artifacts"]) and record["validation"]["passed"]
    onnx_path = tmp_path / "out" / "tensorrt-fp16" / "digits_cnn.onnx"
    assert onnx_path.is_file()
    refused = cli("convert", digits.onnx, "--target", "tensorrt-fp16", "-o", tmp_path / "out2", "--require-engine", "--json")
    assert refused.code == 4 and json.loads(refused.stdout)["error"]["kind"] == "unsupported"
    assert not (tmp_path / "out2").exists()
    later = cli("build-engine", onnx_path)
    assert later.code == 4 and "NVIDIA GPU" in later.stderr and "edgeconv[tensorrt]" in later.stderr


def test_gpu_detection_never_imports_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    trt_tools.detect_gpu.cache_clear()
    monkeypatch.setenv("EDGECONV_NO_GPU", "1")
    info = trt_tools.detect_gpu()
    assert info.available is False and "EDGECONV_NO_GPU" in info.reason
    assert "building a TensorRT engine needs an NVIDIA GPU" in (trt_tools.why_no_engine() or "")
    trt_tools.detect_gpu.cache_clear()
    monkeypatch.delenv("EDGECONV_NO_GPU")
    trt_tools.detect_gpu()
    trt_tools.detect_gpu.cache_clear()
    assert "tensorrt" not in sys.modules or NO_ENGINE is None


# ------------------------------------------------------------------------------------------------------------- GPU
@gpu
@pytest.mark.gpu
def test_gpu_engines_build_run_and_validate(digits: Any, digits_trt: tuple[dict[str, Any], Path]) -> None:
    manifest, out = digits_trt
    for name in TARGETS:
        record = target_record(manifest, name)
        notes = record["notes"]["tensorrt"]
        assert notes["engine"] == "built" and notes["tensorrt"] and notes["gpu"]["available"]
        assert record["validation"]["runtime"] == "tensorrt" and record["validation"]["passed"]
        assert notes["vs_onnxruntime"]["latency"]["p50_ms"] > 0
        formats = {a["format"] for a in record["artifacts"] if a["role"] == "model"}
        assert formats == {"tensorrt-engine", "onnx"}
        assert any(a["path"].endswith(".timing.cache") for a in record["artifacts"])
    snr = {n: target_record(manifest, n)["validation"]["metrics"]["snr_db"] for n in TARGETS}
    assert snr["tensorrt-fp32"] > 40 and snr["tensorrt-fp16"] > 30 and snr["tensorrt-int8"] > 18, snr
    engine_vs_ort = target_record(manifest, "tensorrt-int8")["notes"]["tensorrt"]["vs_onnxruntime"]["metrics"]
    assert engine_vs_ort["snr_db"] > 25  # TensorRT's int8 kernels agree with ORT's reference Q/DQ arithmetic


@gpu
@pytest.mark.gpu
def test_gpu_build_engine_reuses_timing_cache_and_runs_dynamic_batch(tmp_path: Path) -> None:
    from edgeconv.targets.tensorrt._engine import EngineRunner
    from edgeconv.targets.tensorrt.onnx_to_tensorrt import build_engine_file

    src = residual_cnn(tmp_path / "residual.onnx")
    ranges = {"x": ShapeRange((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    first = build_engine_file(src, tmp_path / "a.engine", shape_ranges=ranges, timing_cache=tmp_path / "t.cache")
    second = build_engine_file(src, tmp_path / "b.engine", shape_ranges=ranges, timing_cache=tmp_path / "t.cache")
    assert (tmp_path / "t.cache").stat().st_size > 0 and second["timing_cache_reused"]
    assert first["optimisation_profile"] == {"x": [[1, 3, 16, 16], [4, 3, 16, 16], [8, 3, 16, 16]]}
    runner = EngineRunner(tmp_path / "b.engine")
    x = np.random.default_rng(0).normal(0, 1, (8, 3, 16, 16)).astype(np.float32)
    ref = ort_logits(src, x)
    for batch in (1, 4, 8):
        (y,) = runner.run({"x": x[:batch]})
        assert y.shape == (batch, 10)
        assert np.abs(y - ref[:batch]).max() < 1e-2


@pytest.mark.slow
def test_transformer_block_int8_placement(transformer: Path, tmp_path: Path) -> None:
    """A real exported graph (PyTorch encoder block: attention MatMuls, LayerNorms, two residual Adds)."""
    out = tmp_path / "out"
    manifest = convert(transformer / "transformer.pt2", ["tensorrt-int8"], out, calib=str(transformer / "calib"),
                       eval=str(transformer / "eval"))
    record = target_record(manifest, "tensorrt-int8")
    assert [s["name"] for s in record["steps"]] == ["torch_to_onnx", "normalise", "quantize int8"]
    model = onnx.load_model(str(model_path(manifest, out, "tensorrt-int8", "onnx")))
    facts = _tensorrt_qdq.describe(model)
    assert facts["problems"] == [] and set(facts["dq_feeds"]) <= {"Add", "Gemm", "MatMul"}
    assert not set(facts["q_after"]) & _tensorrt_qdq.WEIGHTED
    residual = _tensorrt_qdq.residual_adds(model)
    assert len(residual) == 2
    for name in residual:
        assert sorted(dq_inputs(model, name)) == [False, True]  # only the skip branch carries Q/DQ
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert not any(dq_inputs(model, node.name)), node.name
    assert record["validation"]["metrics"]["snr_db"] > 30
