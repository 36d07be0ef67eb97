"""FP16: weights and compute in float16, float32 I/O kept, a graph the ONNX checker accepts (ORT's converter leaves
the nodes unsorted), and node / op-type exclusions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgeconv.quantizers.onnx_fp16 import to_fp16, toposort
from edgeconv.validation import snr_db
from tests.quantizers.pitfall_models import outlier_cnn
from tests.quantizers.test_onnx_qdq import ort_run


def test_fp16_keep_io_valid_and_blocks(tmp_path: Path) -> None:
    src = outlier_cnn(tmp_path / "m.onnx")
    model = onnx.load(str(src))
    fp16 = to_fp16(model, keep_io_types=True, node_block_list=["conv_out"])
    onnx.checker.check_model(fp16)  # sorted: the raw converter output fails this check
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_out = next(n for n in fp16.graph.node if n.name == "conv_out")
    types = {i.name: i.data_type for i in fp16.graph.initializer}
    assert types[conv_out.input[1]] == onnx.TensorProto.FLOAT  # blocked node keeps float32 weights
    assert types["conv_in_w"] == onnx.TensorProto.FLOAT16
    out = tmp_path / "fp16.onnx"
    onnx.save(fp16, str(out))
    x = np.random.default_rng(0).uniform(0, 1, (4, 3, 16, 16)).astype(np.float32)
    assert snr_db(ort_run(src, x), ort_run(out, x)) > 40


def test_toposort_orders_nodes() -> None:
    from onnx import TensorProto, helper

    a = helper.make_node("Relu", ["x"], ["y"], name="a")
    b = helper.make_node("Neg", ["y"], ["z"], name="b")
    g = helper.make_graph([b, a], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    m = toposort(helper.make_model(g))
    assert [n.name for n in m.graph.node] == ["a", "b"]
