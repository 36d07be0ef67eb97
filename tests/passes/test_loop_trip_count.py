"""passes/loop_trip_count: torch's TorchScript exporter writes a scripted `for _ in range(int(t.item()))` as a Loop
with a float trip count and a float iteration number, which ONNX Runtime refuses to load; after the pass it loads and
runs the loop int(t) times, as the scripted model does."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.loop_trip_count import cast_loop_trip_counts


def _float_trip_loop(reads_iteration: bool) -> onnx.ModelProto:
    """y = x + sum over i < int(n) of (i if reads_iteration else 1) * 0.5, written as torch's exporter writes it."""
    step = "i_f" if reads_iteration else "half"
    body_nodes = [helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    if reads_iteration:
        body_nodes.append(helper.make_node("Mul", ["i", "half"], ["i_f"]))
    body_nodes.append(helper.make_node("Add", ["acc_in", step], ["acc_out"]))
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("i", TensorProto.FLOAT, []),  # torch writes the iteration number as float
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    nodes = [helper.make_node("Clip", ["n", "lo", "hi"], ["trips"]),
             helper.make_node("Loop", ["trips", "true", "x"], ["y"], body=body, name="loop")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                                           helper.make_tensor_value_info("n", TensorProto.FLOAT, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(np.array(True), "true"),
                               numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
                               numpy_helper.from_array(np.array(8.0, np.float32), "hi")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _run(model: onnx.ModelProto, x: np.ndarray, n: float) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x, "n": np.array(n, np.float32)})[0]


@pytest.mark.parametrize("reads_iteration", [False, True])
def test_float_trip_count_cast_and_loop_runs_int_n_times(reads_iteration: bool) -> None:
    model = _float_trip_loop(reads_iteration)
    with pytest.raises(Exception, match="(?i)invalid|type"):
        _run(model, np.zeros((1, 4), np.float32), 2.7)
    assert cast_loop_trip_counts(model) == 2  # the trip count, and the body's iteration number
    onnx.checker.check_model(model, full_check=True)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    for n in (0.0, 2.7, 5.0):
        trips = int(n)  # Python's int(): toward zero
        added = sum(i * 0.5 for i in range(trips)) if reads_iteration else 0.5 * trips
        np.testing.assert_allclose(_run(model, x, n), x + added, rtol=1e-6)


def test_int64_trip_count_untouched() -> None:
    model = _float_trip_loop(False)
    cast_loop_trip_counts(model)
    assert cast_loop_trip_counts(model) == 0
