"""ONNX Runtime as edgeconv's reference for quantized ONNX: its 8-bit kernels must compute exactly on every host."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.runtimes.ort import cpu_session

X_SCALE, W_SCALE, Y_SCALE, Y_ZERO = 1 / 255, 0.01, 0.25, 128


def _qdq_conv(path: str, weights: np.ndarray) -> None:
    """x (float) → Q/DQ uint8 → Conv 1x1 with int8 weights → Q/DQ uint8: the shape of every quantized CNN's first
    layers (ORT's quantize_static writes it so: uint8 activations, int8 per-channel or per-tensor weights)."""
    init = [numpy_helper.from_array(np.array(X_SCALE, np.float32), "xs"),
            numpy_helper.from_array(np.array(0, np.uint8), "xz"),
            numpy_helper.from_array(weights, "wq"),
            numpy_helper.from_array(np.array(W_SCALE, np.float32), "ws"),
            numpy_helper.from_array(np.array(0, np.int8), "wz"),
            numpy_helper.from_array(np.array(Y_SCALE, np.float32), "ys"),
            numpy_helper.from_array(np.array(Y_ZERO, np.uint8), "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])]
    channels = weights.shape[0]
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, channels, 4, 4])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_int8_conv_is_exact_where_avx2_kernels_saturate(tmp_path) -> None:
    """u8 inputs near 255 times s8 weights near ±127: a pair of products is past int16, where ORT's AVX2 (non-VNNI)
    kernels saturate (measured on an AMD EPYC without VNNI: a 16-channel Conv of a real graph 381 of 1024 outputs off, by up to 30 steps). edgeconv's
    reference session computes them exactly, as VNNI CPUs, ARM and the Hexagon HTP do."""
    rng = np.random.default_rng(0)
    channels = 64
    weights = rng.integers(-127, 128, (channels, channels, 1, 1)).astype(np.int8)
    _qdq_conv(str(tmp_path / "m.onnx"), weights)
    x = rng.uniform(0.8, 1.0, (1, channels, 4, 4)).astype(np.float32)
    xq = np.clip(np.round(x / X_SCALE), 0, 255)
    exact = np.einsum("oc,nchw->nohw", weights[:, :, 0, 0].astype(np.int64), xq.astype(np.int64)) * X_SCALE * W_SCALE
    expected = (np.clip(np.round(exact / Y_SCALE) + Y_ZERO, 0, 255) - Y_ZERO) * Y_SCALE
    assert np.abs(exact).max() > 20 * Y_SCALE  # outputs span the range: the saturation would show
    (out,) = cpu_session(str(tmp_path / "m.onnx")).run(None, {"x": x})
    assert np.abs(out - expected).max() <= Y_SCALE * 1.01  # at most one step (rounding of ties), never more
    assert (np.abs(out - expected) > Y_SCALE / 2).mean() < 0.02



def test_a_model_the_exact_option_refuses_runs_on_a_default_session() -> None:
    """ORT's QLinearMatMul refuses per-column zero points under the exact option ("input zero point must be a scalar
    or 1D tensor of size 1": the log-mel MatMul of the corpus audio model, exit 1, test_route_cell[audio_kws-cpu-int8]
    is the real-model case); such a model runs on ORT's default arithmetic instead. Any other error is raised."""
    from edgeconv.runtimes.ort import ExactInt8Session

    class Refusing:
        def run(self, *_):
            raise RuntimeError("QLinearMatmul : input zero point must be a scalar or 1D tensor of size 1")

    class Default:
        def run(self, *_):
            return ["default"]

    session = ExactInt8Session(lambda exact: Refusing() if exact else Default())
    assert session.run(None, {}) == ["default"] and session.exact is False

    class Broken:
        def run(self, *_):
            raise RuntimeError("Got invalid dimensions for input: x")

    with pytest.raises(RuntimeError, match="invalid dimensions"):
        ExactInt8Session(lambda exact: Broken()).run(None, {})
