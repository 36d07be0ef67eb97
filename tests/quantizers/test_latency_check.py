"""quantizers/latency_check: a quantized ONNX model slower than its float model on ORT CPU is reported with the cause;
fast float models are not timed; the convert pipeline puts the warning and notes.latency in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.quantizers import latency_check
from edgeconv.quantizers.latency_check import check_latency, unfused_ops

SHAPE = [1, 8, 128, 128]


def _chain(stages: int = 16) -> onnx.ModelProto:
    """x → [HardSwish → Mul(per-channel constant)] × stages → y: ORT has an int8 Mul, no int8 HardSwish, so in QDQ every
    HardSwish but the first (it reads the float input) runs in float between a DequantizeLinear and a QuantizeLinear."""
    rng = np.random.default_rng(0)
    nodes, inits, last = [], [], "x"
    for i in range(stages):
        nodes.append(helper.make_node("HardSwish", [last], [f"h{i}"]))
        inits.append(numpy_helper.from_array(rng.uniform(0.9, 1.1, size=(1, 8, 1, 1)).astype(np.float32), f"k{i}"))
        nodes.append(helper.make_node("Mul", [f"h{i}", f"k{i}"], [f"m{i}"]))
        last = f"m{i}"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path, dict]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantType,
        quantize_static,
    )

    folder = tmp_path_factory.mktemp("latency")
    float_path, quant_path = folder / "f.onnx", folder / "q.onnx"
    onnx.save(_chain(), str(float_path))
    samples = [{"x": np.random.default_rng(i).normal(size=SHAPE).astype(np.float32)} for i in range(4)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(samples)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(quant_path), Reader(), weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)
    return float_path, quant_path, samples[0]


def _fake(float_ms: float, quant_ms: float):
    """check_latency times float, quant, float, quant, ...: a clock that says so."""
    calls = []

    def timer(session, feeds) -> float:
        calls.append(1)
        return float_ms if len(calls) % 2 else quant_ms

    return timer


def test_unfused_ops_counted(models) -> None:
    _, quant_path, _ = models
    found = unfused_ops(onnx.load(str(quant_path)))
    assert found == {"HardSwish": 15}  # the Muls run as QLinearMul: not listed; the first HardSwish reads float x


def test_slower_model_reported_with_causes(models) -> None:
    float_path, quant_path, sample = models
    report = check_latency(float_path, quant_path, sample, "int8", timer=_fake(0.5, 0.9))
    assert report is not None and report.slower and report.ratio == pytest.approx(1.8)
    assert report.unfused == {"HardSwish": 15} and report.qdq_nodes > 0
    text = report.warning("int8")
    assert "ops left unfused" in text and "HardSwish ×15" in text
    assert "too small to gain" in text  # 0.5 ms float run


def test_fp16_cause_and_big_model_without_unfused_ops(models) -> None:
    float_path, _, sample = models
    report = check_latency(float_path, float_path, sample, "fp16", timer=_fake(5.0, 6.0))
    assert report is not None and report.slower
    assert len(report.causes) == 1 and report.causes[0].startswith("fp16 on a CPU")


def test_not_slower_and_too_fast_to_time(models) -> None:
    float_path, quant_path, sample = models
    report = check_latency(float_path, quant_path, sample, timer=_fake(2.0, 1.0))
    assert report is not None and not report.slower and not report.causes
    assert check_latency(float_path, quant_path, sample, timer=_fake(0.1, 0.5)) is None  # float under 0.2 ms


def test_real_clock_within_budget(models) -> None:
    import time

    float_path, quant_path, sample = models
    start = time.perf_counter()
    report = check_latency(float_path, quant_path, sample)
    assert time.perf_counter() - start < 3.0  # budget 0.8 s of timed runs plus two session loads
    assert report is None or (report.runs >= 1 and report.float_ms > 0)
    assert latency_check.MIN_FLOAT_MS == 0.2


def test_convert_warns_and_writes_the_note(cli, tmp_path: Path) -> None:
    """Through `edgeconv convert -t cpu-int8`: every HardSwish of the chain left in float between Q/DQ makes the int8
    model about twice as slow as the float one on ORT CPU (measured: 1.7-2.3x; the check warns above 1.05x)."""
    source = tmp_path / "chain.onnx"
    onnx.save(_chain(), str(source))
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        np.save(calib / f"{i}.npy", np.random.default_rng(i).normal(size=SHAPE).astype(np.float32))
    result = cli("convert", source, "-t", "cpu-int8", "--calib", calib, "-o", tmp_path / "out", "--json",
                 "--max-fallback", "0", "--set", "validate.gate.min_snr_db=0", "--set", "validate.gate.min_cosine=0",
                 "--set", "validate.gate.min_top1_agreement=0", "--no-cache")
    assert result.code == 0, result.stdout + result.stderr[-2000:]
    target = json.loads(result.stdout)["targets"][0]
    note = target["notes"]["latency"]
    assert note["float_ms"] >= 0.2 and set(note) >= {"quant_ms", "ratio", "runs", "slower", "causes", "unfused"}
    if note["slower"]:  # timing on a shared machine: the warning follows the measurement
        assert note["unfused"] == {"HardSwish": 15}
        assert any("slower than the float one" in w and "HardSwish ×15" in w for w in target["warnings"])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["targets"][0]["notes"]["latency"]["ratio"] == note["ratio"]


def test_dynamic_conv_named_as_the_cause(digits, tmp_path: Path) -> None:
    """The digits CNN with its convs quantized dynamically (ConvInteger, as `onnx-dynamic` with Conv in op_types
    writes it): a slower result names ConvInteger and points to static int8, not "no cause found"."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quant = tmp_path / "dyn.onnx"
    quantize_dynamic(str(digits.onnx), str(quant), op_types_to_quantize=["Conv"], weight_type=QuantType.QInt8)
    assert any(n.op_type == "ConvInteger" for n in onnx.load(str(quant)).graph.node)
    sample = {"image": np.load(sorted(digits.eval.iterdir())[0])}
    report = check_latency(digits.onnx, quant, sample, "dynamic", timer=_fake(2.0, 8.0))
    assert report is not None and report.slower
    assert any("ConvInteger" in c and "cpu-int8" in c for c in report.causes), report.causes
    assert "no cause found" not in report.warning("dynamic")
