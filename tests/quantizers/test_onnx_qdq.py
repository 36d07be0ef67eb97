"""Static INT8/INT16 quantization on a model trained on real data and on graphs with real exporters' pitfalls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeconv.errors import AccuracyGateError, UnsupportedError
from edgeconv.formats import TensorSpec
from edgeconv.quantizers.calibration import open_samples
from edgeconv.quantizers.checks import check_quantized
from edgeconv.quantizers.onnx_qdq import StaticSettings, quantize_file, stride_for
from edgeconv.validation import snr_db
from model_zoo import accuracy
from tests.helpers import convert, model_path, target_record
from tests.quantizers.pitfall_models import detector_head, outlier_cnn, pitfall_cnn, save_uniform_samples


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs on edgeconv's reference session (exact 8-bit arithmetic on every host: runtimes/ort.py)."""
    from edgeconv.runtimes.ort import cpu_session

    session = cpu_session(str(path))
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


@pytest.fixture(scope="module")
def pitfall(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pitfall")
    return pitfall_cnn(root / "pitfall.onnx"), save_uniform_samples(root / "calib", 32, (1, 3, 32, 32), seed=1)


@pytest.fixture(scope="module")
def outlier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("outlier")
    return outlier_cnn(root / "outlier.onnx"), save_uniform_samples(root / "calib", 32, (1, 3, 16, 16), seed=2)


@pytest.mark.slow
@pytest.mark.parametrize("target,int_op", [("onnx-int8-qdq", "QuantizeLinear"), ("cpu-int8-qop", "QLinearConv")])
def test_digits_int8_accuracy_within_one_point(digits, tmp_path: Path, target: str, int_op: str) -> None:
    manifest = convert(digits.onnx, [target], tmp_path / "out", calib=str(digits.calib), eval=str(digits.eval),
                       report=True)
    int8 = model_path(manifest, tmp_path / "out", target)
    x, y = digits.split.x_test, digits.split.y_test  # the whole held-out split (450 images)
    acc_fp32 = accuracy(ort_run(digits.onnx, x), y)
    acc_int8 = accuracy(ort_run(int8, x), y)
    assert acc_fp32 > 0.9
    assert abs(acc_fp32 - acc_int8) <= 0.01, (acc_fp32, acc_int8)
    record = target_record(manifest, target)
    q = record["notes"]["quantize"]
    assert q["check"]["float_weights_left"] == [] and q["check"]["size_ratio"] < 0.45
    assert q["settings"]["activations"] == "uint8" and q["settings"]["per_channel"] is True
    assert record["validation"]["metrics"]["snr_db"] > 30
    assert record["notes"]["calibration"]["kind"] == "files" and record["notes"]["calibration"]["count"] == 64
    assert int_op in {n.op_type for n in onnx.load(str(int8)).graph.node}
    layers = q["layers"]  # --report: per-layer rows, worst first
    assert len(layers) >= 4 and all(r["snr_db"] > 25 for r in layers)
    assert [r["worst_channel_snr_db"] for r in layers] == sorted(r["worst_channel_snr_db"] for r in layers)


def test_qoperator_fallback_is_judged_in_qoperator_format(transformer, tmp_path: Path) -> None:
    """ORT's QOperator kernels (QLinearMatMul, QLinearAdd, ... chained in integers) lose far more on the transformer
    block than its QDQ twin (12 dB vs 33 dB). The fallback search used to judge the QDQ twin, found the gate met, kept
    nothing in float, and the QOperator model then failed validation (exit 5). Trials are now QOperator models.
    ORT's default op set (the attention op-set trial off): with the compute ops only the block needs no fallback."""
    manifest = convert(transformer / "transformer.pt2", ["cpu-int8-qop"], tmp_path / "out",
                       calib=str(transformer / "calib"), eval=str(transformer / "eval"),
                       overrides=("quantize.options.attention_op_set=default",))
    record = target_record(manifest, "cpu-int8-qop")
    fallback = record["notes"]["quantize"]["fallback"]
    assert fallback["before"]["snr_db"] < 18 and not fallback["gate_passed_before"]  # the QOperator model itself
    assert 1 <= len(fallback["nodes"]) <= 8 and fallback["gate_passed_after"]
    assert record["validation"]["metrics"]["snr_db"] > 25
    ops = {n.op_type for n in onnx.load(str(model_path(manifest, tmp_path / "out", "cpu-int8-qop"))).graph.node}
    assert "QLinearMatMul" in ops or "MatMulInteger" in ops


def test_qoperator_attention_op_set_is_judged_in_qoperator_format(transformer, tmp_path: Path) -> None:
    """The same block with the op-set trial on: both candidates are QOperator models, and the compute ops only (no
    QLinearAdd / QLinearSoftmax chained in integers) meet the gate without a fallback."""
    manifest = convert(transformer / "transformer.pt2", ["cpu-int8-qop"], tmp_path / "out",
                       calib=str(transformer / "calib"), eval=str(transformer / "eval"))
    q = target_record(manifest, "cpu-int8-qop")["notes"]["quantize"]
    measured = q["attention_op_set"]["measured"]
    assert q["attention_op_set"]["chosen"] == "compute"
    assert measured["default"]["snr_db"] < 18 < measured["compute"]["snr_db"], measured  # the QOperator figures
    assert not (q.get("fallback") or {}).get("nodes")
    ops = {n.op_type for n in onnx.load(str(model_path(manifest, tmp_path / "out", "cpu-int8-qop"))).graph.node}
    assert "QLinearMatMul" in ops or "MatMulInteger" in ops
    assert not ops & {"QLinearAdd", "QLinearSoftmax"}


def test_ort_defaults_fail_on_pitfall_graph(pitfall, tmp_path: Path) -> None:
    """What the issue measured: ORT's defaults leave Constant-node weights float (file bigger than fp32), and
    per-channel on opset 11 writes an invalid graph. The checks catch both."""
    from onnxruntime.quantization import quantize_static

    model, calib = pitfall
    samples = open_samples(str(calib), (TensorSpec("input", ("N", 3, 32, 32)),), 8)
    reader = iter(list(samples))

    class Reader:
        def get_next(self):  # noqa: ANN202
            return next(reader, None)

    default = tmp_path / "default.onnx"
    quantize_static(str(model), str(default), Reader())
    assert default.stat().st_size > model.stat().st_size  # int8 "quantized" file larger than the float one
    with pytest.raises(UnsupportedError, match="kept float weights"):
        check_quantized(model, default, integer_weights=True)


@pytest.mark.slow
def test_pitfall_graph_quantizes_valid_small_accurate(trained_pitfall, tmp_path: Path) -> None:
    """Constant weights, opset 11, unfused BN, shape subgraph, dynamic batch: valid, <= 0.3x, accuracy kept."""
    model = trained_pitfall.onnx
    manifest = convert(model, ["cpu-int8"], tmp_path / "out", calib=str(trained_pitfall.calib),
                       eval=str(trained_pitfall.eval))
    record = target_record(manifest, "cpu-int8")
    out = model_path(manifest, tmp_path / "out", "cpu-int8")
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    q = record["notes"]["quantize"]
    assert q["check"]["size_ratio"] <= 0.3, q["check"]
    assert q["check"]["float_weights_left"] == [] and q["fallback"]["nodes"] == []
    norm = record["notes"]["normalise"]
    assert norm["constant_nodes_after"] == 0 and norm["batchnorm_after"] == 0 and norm["shape_nodes_after"] == 0
    x, y = trained_pitfall.test_split()
    ref, got = ort_run(model, x), ort_run(out, x)
    assert snr_db(ref, got) > 25
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.99
    assert abs(accuracy(ref, y) - accuracy(got, y)) <= 0.01 and accuracy(ref, y) > 0.9
    import onnxruntime as ort  # dynamic batch survives quantization

    batch = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x[:4]})[0]
    assert batch.shape == (4, 10)


@pytest.mark.parametrize("fallback", ["fp32", "int16"])
def test_fallback_keeps_costly_layer_in_higher_precision(outlier, tmp_path: Path, fallback: str) -> None:
    model, calib = outlier
    manifest = convert(model, ["onnx-int8-qdq"], tmp_path / "out", calib=str(calib),
                       overrides=(f"quantize.fallback={fallback}",))
    record = target_record(manifest, "onnx-int8-qdq")
    fb = record["notes"]["quantize"]["fallback"]
    assert fb["gate_passed_before"] is False and fb["before"]["snr_db"] < 5
    assert fb["gate_passed_after"] is True and record["validation"]["passed"] is True
    assert 1 <= len(fb["nodes"]) <= 2
    kept = fb["nodes"][0]
    assert kept["tensor"] == "conv_a_relu" and kept["gain"] > 15
    assert record["validation"]["metrics"]["snr_db"] > 18
    out = model_path(manifest, tmp_path / "out", "onnx-int8-qdq")
    q = onnx.load(str(out))
    dq_inputs = {n.input[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    assert all(any(i.startswith(f"{c}_w") for i in dq_inputs) for c in ("conv_in", "conv_a", "conv_b", "conv_out"))
    if fallback == "fp32":  # the activation (and the Relu input above it) stays float; every weight stays int8
        assert kept["nodes"] == [] and kept["float_tensors"] == ["conv_a_relu", "conv_a_y"]
        quantized = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
        assert not quantized & {"conv_a_relu", "conv_a_y"} and "conv_in_relu" in quantized
        assert record["notes"]["quantize"]["check"]["size_ratio"] < 0.6
    else:
        assert kept["nodes"] == []
        types = {i.name: i.data_type for i in q.graph.initializer}
        assert types.get("conv_a_relu_zero_point") == onnx.TensorProto.UINT16
    assert any("kept 1 layer output" in w for w in record["warnings"])


def test_detector_concat_scores_rescued(tmp_path: Path) -> None:
    """Boxes in pixels concatenated with 0..1 scores: whole-output SNR looks fine (the boxes dominate) while every
    score is 0 or 2.5; the per-channel check finds it and the concat stays float."""
    model = detector_head(tmp_path / "det.onnx")
    calib = save_uniform_samples(tmp_path / "calib", 16, (1, 3, 16, 16), seed=5)
    manifest = convert(model, ["onnx-int8-qdq"], tmp_path / "out", calib=str(calib))
    fb = target_record(manifest, "onnx-int8-qdq")["notes"]["quantize"]["fallback"]
    assert fb["before"]["snr_db"] > 30 and fb["before"]["worst_channel_snr_db"] < 3  # hidden by the whole-output SNR
    assert fb["gate_passed_before"] is False and fb["gate_passed_after"] is True
    assert [n["tensor"] for n in fb["nodes"]] == ["detections"] and fb["nodes"][0]["float_tensors"] == ["detections"]
    assert fb["after"]["worst_channel_snr_db"] > 25
    x = np.random.default_rng(8).uniform(0, 1, (8, 3, 16, 16)).astype(np.float32)
    ref, got = ort_run(model, x), ort_run(model_path(manifest, tmp_path / "out", "onnx-int8-qdq"), x)
    assert snr_db(ref[:, 4:], got[:, 4:]) > 25  # the scores survive


def test_fallback_budget_zero_fails_gate(outlier, tmp_path: Path) -> None:
    model, calib = outlier
    with pytest.raises(AccuracyGateError):
        convert(model, ["onnx-int8-qdq"], tmp_path / "out", calib=str(calib), max_fallback=0)


@pytest.mark.parametrize("settings,expect_ops", [
    (StaticSettings(format="qoperator"), {"QLinearConv"}),
    (StaticSettings(activations="int8", symmetric_activations=True, method="entropy"), {"QuantizeLinear"}),
    (StaticSettings(activations="uint16", method="percentile", extra={"CalibPercentile": 99.999}), {"QuantizeLinear"}),
])
def test_scheme_variants(pitfall, tmp_path: Path, settings: StaticSettings, expect_ops: set[str]) -> None:
    from edgeconv.formats import Artifact, Format
    from edgeconv.normalise import normalise

    model, calib = pitfall
    norm, _ = normalise(Artifact(model, Format.ONNX), tmp_path / "norm.onnx", 17, {})
    samples = open_samples(str(calib), (TensorSpec("input", ("N", 3, 32, 32)),), 12)
    out = tmp_path / "q.onnx"
    quantize_file(norm.path, out, samples, settings)
    check = check_quantized(norm.path, out, integer_weights=True)
    assert expect_ops <= set(check.ops) and check.size_ratio < 0.3
    q = onnx.load(str(out))
    zero_points = [i for i in q.graph.initializer if i.name.endswith("_zero_point") and "weight" not in i.name]
    if settings.activations == "int8":  # symmetric int8 activations: every activation zero point is 0
        acts = [i for i in zero_points if i.data_type == onnx.TensorProto.INT8 and not i.dims]
        assert acts and all(int(onnx.numpy_helper.to_array(z)) == 0 for z in acts)
    if settings.activations == "uint16":
        assert any(i.data_type == onnx.TensorProto.UINT16 for i in zero_points)
    x = np.random.default_rng(3).uniform(0, 1, (8, 3, 32, 32)).astype(np.float32)
    assert snr_db(ort_run(norm.path, x), ort_run(out, x)) > 20


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_strided_calibration_matches_single_pass(outlier, tmp_path: Path, method: str) -> None:
    """Calibration is fed in strides (bounded memory, histogram methods too); the ranges equal one pass over all."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    assert stride_for(64) == 16 and stride_for(17) == 1 and stride_for(12) == 12 and stride_for(1) == 1
    model, calib = outlier
    samples = open_samples(str(calib), (TensorSpec("input", ("N", 3, 16, 16)),), 12)
    ranges = []
    for stride in (12, 4):
        cache = tmp_path / f"cache{stride}.json"
        quantize_file(model, tmp_path / f"q{stride}.onnx", samples,
                      StaticSettings(method=method, extra={"CalibStridedMinMax": stride}), cache_path=cache)
        data = load_tensors_data(cache).data
        ranges.append({k: (float(np.min(v.range_value[0])), float(np.max(v.range_value[1]))) for k, v in data.items()})
    assert ranges[0].keys() == ranges[1].keys()
    for name, (lo, hi) in ranges[0].items():
        assert ranges[1][name] == pytest.approx((lo, hi), rel=0.05, abs=1e-3), name


def test_quantize_cli_file_output_and_json(cli, outlier, tmp_path: Path) -> None:
    model, calib = outlier
    out = tmp_path / "q.onnx"
    result = cli("quantize", model, "--mode", "int16", "--calib", calib, "-o", out, "--json")
    assert result.code == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert out.is_file() and not list(tmp_path.glob(".q.onnx.*"))
    record = manifest["targets"][0]
    assert record["target"] == "onnx-int16-qdq" and record["validation"]["passed"]
    assert record["notes"]["quantize"]["settings"]["activations"] == "uint16"
    again = cli("quantize", model, "--mode", "int8", "--calib", calib, "-o", out, "--json")
    assert again.code == 2 and "already exists" in json.loads(again.stdout)["error"]["message"]
    no_calib = cli("quantize", model, "--mode", "int8", "-o", tmp_path / "y.onnx", "--json")
    assert no_calib.code == 3 and "--calib" in json.loads(no_calib.stdout)["error"]["hint"]


def _save_mlp(nodes: list, inits: list, path: Path) -> Path:
    """An opset-21 graph from `input` [1, 16] to `y` [1, 8]."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    proto.ir_version = 10
    onnx.save_model(proto, str(path))
    return path


def test_extra_op_types_put_qdq_around_an_op_ort_leaves_float(tmp_path: Path) -> None:
    """Gelu is not in ORT's quantizer registry: by default it reads a DequantizeLinear and, followed by a Reshape (as in
    exported MLPs, before a Gemm), writes float (a float island); with extra_op_types = ["Gelu"] its output is
    quantized too."""
    from onnx import helper, numpy_helper

    from edgeconv.quantizers.onnx_qdq import op_types_to_quantize

    assert op_types_to_quantize(StaticSettings()) is None  # ORT's own default
    assert op_types_to_quantize(StaticSettings(op_types=("MatMul",), extra_op_types=("Gelu",))) == ["MatMul", "Gelu"]
    default_and_gelu = op_types_to_quantize(StaticSettings(extra_op_types=("Gelu",)))
    assert default_and_gelu is not None and {"Conv", "MatMul", "LayerNormalization", "Gelu"} <= set(default_and_gelu)
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (16, 32)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (32, 8)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([1, 32], np.int64), "flat")]
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h"], name="fc1"),
             helper.make_node("Gelu", ["h"], ["g"], name="gelu"), helper.make_node("Reshape", ["g", "flat"], ["r"], name="flat"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    model = _save_mlp(nodes, inits, tmp_path / "mlp.onnx")
    calib = save_uniform_samples(tmp_path / "calib", 16, (1, 16), seed=1)
    samples = open_samples(str(calib), (TensorSpec("input", (1, 16)),), 16)
    readers = {}
    for name, settings in (("default", StaticSettings()), ("extra", StaticSettings(extra_op_types=("Gelu",)))):
        out = tmp_path / f"{name}.onnx"
        quantize_file(model, out, samples, settings)
        q = onnx.load(str(out))
        readers[name] = {n.op_type for n in q.graph.node if "g" in n.input}
    assert readers == {"default": {"Reshape"}, "extra": {"QuantizeLinear"}}
    x = np.random.default_rng(2).uniform(0, 1, (8, 16)).astype(np.float32)
    assert snr_db(ort_run(model, x), ort_run(tmp_path / "extra.onnx", x)) > 25


def test_op_types_all_quantizes_every_op_in_the_graph(tmp_path: Path) -> None:
    """ONNX Runtime's quantizer registry lacks Sub, Pow, ReduceMean, Sqrt, Div and Tanh: with its default list they
    compute in float between Q/DQ (islands). `op_types = "all"` (the hexagon profiles) asks for every op type of the
    graph, Cast excepted, as ORT's get_qnn_qdq_config does: each one reads DequantizeLinear and writes QuantizeLinear."""
    from onnx import helper, numpy_helper

    from edgeconv.quantizers.onnx_qdq import NEVER_QUANTIZED, op_types_to_quantize
    from tests.targets.qnn.hexagon_models import float_nodes

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (16, 32)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, (32,)).astype(np.float32), "shift"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array([-1], np.int64), "last"),
             numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
             numpy_helper.from_array(rng.normal(0, 0.3, (32, 8)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h"], name="fc1"),
             helper.make_node("Sub", ["h", "shift"], ["s"], name="sub"),
             helper.make_node("Pow", ["s", "two"], ["p"], name="pow"),
             helper.make_node("ReduceMean", ["p", "last"], ["v"], name="mean"),
             helper.make_node("Add", ["v", "eps"], ["ve"], name="add_eps"),
             helper.make_node("Sqrt", ["ve"], ["r"], name="sqrt"),
             helper.make_node("Div", ["s", "r"], ["n"], name="div"),
             helper.make_node("Tanh", ["n"], ["t"], name="tanh"),
             helper.make_node("MatMul", ["t", "w2"], ["y"], name="fc2")]
    model = _save_mlp(nodes, inits, tmp_path / "norm.onnx")
    every = StaticSettings(all_op_types=True)
    assert op_types_to_quantize(every, model) == sorted({n.op_type for n in nodes}) and NEVER_QUANTIZED == {"Cast"}
    calib = save_uniform_samples(tmp_path / "calib", 16, (1, 16), seed=1)
    samples = open_samples(str(calib), (TensorSpec("input", (1, 16)),), 16)
    x = np.random.default_rng(2).uniform(0, 1, (16, 16)).astype(np.float32)
    islands, snr = {}, {}
    for name, settings in (("default", StaticSettings()), ("all", every)):
        out = tmp_path / f"{name}.onnx"
        quantize_file(model, out, samples, settings)
        islands[name] = {entry.split(" ")[0] for entry in float_nodes(out)}
        snr[name] = snr_db(ort_run(model, x), ort_run(out, x))
    assert {"sub", "pow", "mean", "sqrt", "div"} <= islands["default"] and islands["all"] == set()
    assert snr["all"] > 20 and snr["all"] > snr["default"] - 1, snr  # measured 23.1 and 23.2 dB (ORT CPU)
