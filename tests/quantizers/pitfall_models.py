"""ONNX graphs with the pitfalls real third-party exports have, built with onnx.helper (no downloads), for the
quantization tests and bench/bench_quant.py.

- `pitfall_cnn`: opset 11, every weight and BatchNorm parameter in a Constant node, Conv→BatchNormalization (unfused,
  per-channel gamma spread over two orders of magnitude)→Relu, a Shape→Gather→Unsqueeze→Concat→Reshape flatten,
  a dynamic batch dim `N`; wide enough (width=32: ~0.5 MB of weights) that the size ratio measures the weights.
- `outlier_cnn`: a clean graph whose first activation has one channel ~1000x larger than the others (what LayerNorm /
  detector heads produce): uint8 per-tensor activations crush the other channels, only a higher-precision node fixes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _const(nodes: list, name: str, array: np.ndarray) -> str:
    from onnx import helper, numpy_helper

    nodes.append(helper.make_node("Constant", [], [name], name=f"{name}_const", value=numpy_helper.from_array(array, name)))
    return name


def pitfall_cnn(path: Path, width: int = 32, hw: int = 32, classes: int = 10, seed: int = 0) -> Path:
    """Input `input` [N, 3, hw, hw] → `logits` [N, classes]. Three conv blocks (stride 2 on the last two)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    nodes: list = []
    prev, cin = "input", 3
    for i, (cout, stride) in enumerate([(width, 1), (2 * width, 2), (4 * width, 2)]):
        w = rng.normal(0, np.sqrt(2.0 / (cin * 9)), (cout, cin, 3, 3)).astype(np.float32)
        _const(nodes, f"w{i}", w)
        _const(nodes, f"b{i}", rng.normal(0, 0.05, cout).astype(np.float32))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"conv{i}"], name=f"Conv_{i}",
                                      pads=[1, 1, 1, 1], strides=[stride, stride]))
        gamma = rng.uniform(0.1, 2.0, cout).astype(np.float32) * np.where(rng.random(cout) < 0.15, 10.0, 1.0).astype(np.float32)
        for tag, arr in (("g", gamma), ("b", rng.normal(0, 0.1, cout)), ("m", rng.normal(0, 0.1, cout)),
                         ("v", rng.uniform(0.5, 2.0, cout))):
            _const(nodes, f"bn{i}_{tag}", np.asarray(arr, np.float32))
        nodes.append(helper.make_node("BatchNormalization", [f"conv{i}", f"bn{i}_g", f"bn{i}_b", f"bn{i}_m", f"bn{i}_v"],
                                      [f"bn{i}"], name=f"BatchNorm_{i}", epsilon=1e-5))
        nodes.append(helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"], name=f"Relu_{i}"))
        prev, cin = f"relu{i}", cout
    side = hw // 4
    nodes.append(helper.make_node("MaxPool", [prev], ["pool"], name="MaxPool_0", kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(helper.make_node("Shape", ["pool"], ["pool_shape"], name="Shape_0"))
    _const(nodes, "zero", np.array(0, dtype=np.int64))
    nodes.append(helper.make_node("Gather", ["pool_shape", "zero"], ["batch"], name="Gather_0", axis=0))
    nodes.append(helper.make_node("Unsqueeze", ["batch"], ["batch_1d"], name="Unsqueeze_0", axes=[0]))
    _const(nodes, "minus_one", np.array([-1], dtype=np.int64))
    nodes.append(helper.make_node("Concat", ["batch_1d", "minus_one"], ["flat_shape"], name="Concat_0", axis=0))
    nodes.append(helper.make_node("Reshape", ["pool", "flat_shape"], ["flat"], name="Reshape_0"))
    features = cin * (side // 2) ** 2
    _const(nodes, "fc_w", rng.normal(0, np.sqrt(1.0 / features), (classes, features)).astype(np.float32))
    _const(nodes, "fc_b", rng.normal(0, 0.05, classes).astype(np.float32))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="Gemm_0", transB=1))
    graph = helper.make_graph(nodes, "pitfall_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, hw, hw])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="pitfall-exporter")
    model.ir_version = 6
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def outlier_cnn(path: Path, seed: int = 0) -> Path:
    """Input `input` [N, 3, 16, 16] → `features` [N, 8, 16, 16], four convs. conv_a's channel 0 is ~1000x the others;
    conv_b reads it with tiny weights, so the output depends on the small channels that a shared uint8 scale wipes out.
    Keeping the tensor between conv_a and conv_b in higher precision fixes it; conv_in and conv_out can stay int8."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def conv_weight(cout: int, cin: int) -> np.ndarray:
        return rng.normal(0, np.sqrt(2.0 / (cin * 9)), (cout, cin, 3, 3)).astype(np.float32)

    w_in, wa, wb, w_out = conv_weight(16, 3), conv_weight(16, 16), conv_weight(16, 16), conv_weight(8, 16)
    wa[0] *= 1000.0
    wb[:, 0] *= 1e-4
    inits, nodes, prev = [], [], "input"
    for name, w, act in (("conv_in", w_in, True), ("conv_a", wa, True), ("conv_b", wb, True), ("conv_out", w_out, False)):
        inits += [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(np.zeros(w.shape[0], np.float32), f"{name}_b")]
        out = "features" if name == "conv_out" else f"{name}_y"
        nodes.append(helper.make_node("Conv", [prev, f"{name}_w", f"{name}_b"], [out], name=name, pads=[1, 1, 1, 1]))
        if act:
            nodes.append(helper.make_node("Relu", [out], [f"{name}_relu"], name=f"{name}_relu"))
            out = f"{name}_relu"
        prev = out
    graph = helper.make_graph(nodes, "outlier_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 8, 16, 16])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def save_uniform_samples(folder: Path, count: int, shape: tuple[int, ...], seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        np.save(folder / f"{i:04d}.npy", rng.uniform(0, 1, shape).astype(np.float32))
    return folder
