"""HTP legalisation of QDQ graphs (LayerNorms, MatMuls, nodes mixing 8 and 16 bits): what ONNX Runtime's quantizer
(and the accuracy fallback) writes is refused by the HTP as is; after legalisation every node is placed and the
simulator agrees with the float model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edgeconv.targets.qnn._ep import htp_options, qnn_session
from edgeconv.targets.qnn._legalise import legalise_for_htp
from edgeconv.targets.qnn._placement import check_placement
from edgeconv.targets.qnn.socs import resolve_soc

pytest.importorskip("onnxruntime_qnn")
SOC = resolve_soc("8 Gen 3")


def two_layernorms(path: Path) -> Path:
    """x → LN(g, b) → MatMul → LN(g, b) → MatMul: both LayerNorms share gamma / beta (as exporters share identical
    constants); gamma and beta are not trivial (1 / 0), so a wrong requantization shows."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 2.0, 32).astype(np.float32), "g"),
             numpy_helper.from_array(rng.normal(0, 0.5, 32).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.2, (32, 32)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.2, (32, 16)).astype(np.float32), "w2")]
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln1"], axis=-1, name="ln1"),
             helper.make_node("MatMul", ["ln1", "w1"], ["h"], name="mm1"),
             helper.make_node("LayerNormalization", ["h", "g", "b"], ["ln2"], axis=-1, name="ln2"),
             helper.make_node("MatMul", ["ln2", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save_model(model, str(path))
    return path


def samples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": (rng.normal(size=(1, 8, 32)) * 3 + 1).astype(np.float32)} for _ in range(n)]


def quantize(src: Path, out: Path, **kwargs: Any) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    feeds = iter(samples(16, 1))
    reader = SimpleNamespace(get_next=lambda: next(feeds, None), rewind=lambda: None)
    quantize_static(str(src), str(out), reader, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, **kwargs)
    return out


def snr_vs_float(float_model: Path, ctx_or_qdq: Path) -> float:
    from edgeconv.runtimes.ort import cpu_session

    ref = cpu_session(str(float_model))
    htp = qnn_session(ctx_or_qdq, htp_options(SOC), {"session.disable_cpu_ep_fallback": 1})
    r = np.concatenate([ref.run(None, f)[0] for f in samples(8, 2)])
    h = np.concatenate([htp.run(None, f)[0] for f in samples(8, 2)])
    return float(10 * np.log10(np.sum(r ** 2) / np.sum((r - h) ** 2)))


@pytest.fixture(scope="module")
def float_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_layernorms(tmp_path_factory.mktemp("legalise") / "ln.onnx")


@pytest.mark.parametrize("case", ["a8w8", "fallback-int16", "fallback-float"])
def test_layernorms_placed_after_legalisation(case: str, float_model: Path, tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType

    kwargs: dict[str, Any] = {}
    if case == "fallback-int16":  # what the accuracy fallback writes: the LayerNorm's output widened to 16 bits
        kwargs["extra_options"] = {"TensorQuantOverrides": {"ln1": [{"quant_type": QuantType.QUInt16}]}}
    if case == "fallback-float":  # the LayerNorm kept in float, its gamma / beta DQs shared with the quantized one
        kwargs["nodes_to_exclude"] = ["ln1"]
    qdq = quantize(float_model, tmp_path / "q.onnx", **kwargs)
    before = check_placement(qdq, SOC)
    assert not before.complete and any(r.node.endswith("DequantizeLinear") or r.op_type == "LayerNormalization"
                                       for r in before.refused), before
    legal, report = legalise_for_htp(qdq, tmp_path / "legal.onnx")
    assert legal != qdq
    after = check_placement(legal, SOC)
    assert after.complete and after.partitions == 1, after.refused
    expected = {"a8w8": {"changed": {"ln1", "ln2"}},
                # ln1 reads 8 bits and writes 16, mm1 reads 16 and writes 8: both 16-bit throughout, with Converts
                "fallback-int16": {"widened": {"ln1", "mm1"}, "matmul_weights": {"mm1"}},
                "fallback-float": {"dequantized": {"ln1"}}}[case]
    for field_name, nodes in expected.items():
        assert set(getattr(report, field_name)) == nodes, report
    assert snr_vs_float(float_model, legal) > 25  # the requantized gamma / beta still compute the same thing
    if case != "fallback-float":  # a part without HTP fp16 refuses mixed 8/16-bit nodes (and float ones): none is left
        assert check_placement(legal, resolve_soc("7 Gen 3")).complete
    again, report2 = legalise_for_htp(legal, tmp_path / "again.onnx")
    assert again == legal and not any(report2.to_json().values())


def test_mixed_widths_made_uniform_for_a_part_without_fp16(tmp_path: Path) -> None:
    """The fallback `int16` widens one tensor: here the Mul's output, so the Mul reads 8 bits and writes 16, the Pow
    reads it beside its 8-bit constant exponent and writes 8. A 7 Gen 3 refuses both; legalisation makes them 16-bit
    throughout (Converts, the exponent rewritten in 16 bits) without moving any value off its grid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType

    from edgeconv.quantizers.onnx_qdq import StaticSettings, quantize_file
    from edgeconv.runtimes.ort import cpu_session

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 2.0, (1, 16)).astype(np.float32), "gain"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [helper.make_node("Mul", ["x", "gain"], ["h"], name="mul"),
             helper.make_node("Pow", ["h", "two"], ["p"], name="pow")]
    graph = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.save_model(model, str(tmp_path / "f.onnx"))
    feeds = [{"x": rng.uniform(0, 1, (1, 16)).astype(np.float32)} for _ in range(8)]
    qdq = tmp_path / "q.onnx"
    quantize_file(tmp_path / "f.onnx", qdq, feeds, StaticSettings(all_op_types=True),
                  tensor_overrides={"h": [{"quant_type": QuantType.QUInt16}]})
    part = resolve_soc("7 Gen 3")
    assert {r.node for r in check_placement(qdq, part).refused} == {"mul", "pow"}
    legal, report = legalise_for_htp(qdq, tmp_path / "legal.onnx")
    assert report.widened == ["mul", "pow"] and check_placement(legal, part).complete
    cpu_before, cpu_after = cpu_session(str(qdq)), cpu_session(str(legal))
    htp = qnn_session(legal, htp_options(part), {"session.disable_cpu_ep_fallback": 1})
    before = np.concatenate([cpu_before.run(None, f)[0] for f in feeds])
    after = np.concatenate([cpu_after.run(None, f)[0] for f in feeds])
    on_htp = np.concatenate([htp.run(None, f)[0] for f in feeds])

    def snr(ref: np.ndarray, got: np.ndarray) -> float:
        return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - got) ** 2), 1e-30)))

    assert snr(before, after) > 60 and snr(after, on_htp) > 40, (snr(before, after), snr(after, on_htp))
    again, report2 = legalise_for_htp(legal, tmp_path / "again.onnx")
    assert again == legal and not any(report2.to_json().values())
