"""precision.py: the precision read from a bare ONNX artifact. An int8 QDQ model with a few tensors widened to 16 bit
by the accuracy fallback (hexagon-int8's `fallback = "int16"`) is int8 and gets int8's gate; a model whose
activations are mostly 16-bit is int16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeconv.formats import detect
from edgeconv.precision import infer_precision


def _qdq_chain(path: Path, widths: list[int]) -> Path:
    """x → (Q/DQ at each width → Relu)* → y: one activation QuantizeLinear per entry of `widths` (8 or 16 bits)."""
    nodes, inits, current = [], [], "x"
    for i, bits in enumerate(widths):
        dtype = np.uint16 if bits == 16 else np.uint8
        inits += [numpy_helper.from_array(np.array(0.01, np.float32), f"s{i}"),
                  numpy_helper.from_array(np.array(0, dtype), f"z{i}")]
        nodes += [helper.make_node("QuantizeLinear", [current, f"s{i}", f"z{i}"], [f"q{i}"]),
                  helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", f"z{i}"], [f"d{i}"]),
                  helper.make_node("Relu", [f"d{i}"], [f"r{i}"])]
        current = f"r{i}"
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def test_int8_model_with_a_few_16_bit_fallback_tensors_is_int8(tmp_path: Path) -> None:
    inferred = infer_precision(detect(_qdq_chain(tmp_path / "m.onnx", [8, 8, 8, 16, 8, 8])))
    assert inferred.precision == "int8", inferred


def test_mostly_16_bit_activations_is_int16(tmp_path: Path) -> None:
    inferred = infer_precision(detect(_qdq_chain(tmp_path / "m.onnx", [16, 16, 16, 8])))
    assert inferred.precision == "int16", inferred
