"""ONNX graphs with the pitfalls real third-party exports have, built with onnx.helper (no downloads), for the
quantization tests and bench/bench_quant.py.

- `pitfall_cnn`: opset 11, every weight and BatchNorm parameter in a Constant node, Conv→BatchNormalization
  (unfused)→Relu, a Shape→Gather→Unsqueeze→Concat→Reshape flatten, a dynamic batch dim `N`; wide enough (width=32:
  ~0.4 MB of weights) that the size ratio measures the weights. Trained on digits (digits_images: 3-channel,
  upsampled) with train_pitfall_weights so that agreement and accuracy mean something; random weights otherwise.
- `detector_head`: boxes in pixels concatenated with 0..1 scores (the "numerically useless detector" case).
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


def digits_images(hw: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits as 3-channel hw x hw images in [0, 1] (nearest upsampling; channels x, 1-x, x/2):
    (x_train, y_train, x_test, y_test), the same split as model_zoo.digits_split."""
    from model_zoo import digits_split

    split = digits_split(seed)

    def rgb(x: np.ndarray) -> np.ndarray:
        up = np.kron(x, np.ones((1, 1, hw // 8, hw // 8), np.float32))
        return np.concatenate([up, 1.0 - up, 0.5 * up], axis=1).astype(np.float32)

    return rgb(split.x_train), split.y_train, rgb(split.x_test), split.y_test


def train_pitfall_weights(width: int = 32, hw: int = 16, epochs: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Train the pitfall architecture (PyTorch) on digits_images(hw); return its weights and BatchNorm statistics."""
    import torch
    from model_zoo import train_classifier
    from torch import nn

    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    cin = 3
    for cout, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
        layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))
    x, y, _, _ = digits_images(hw, seed)
    train_classifier(net, x, y, epochs, seed)
    out: dict[str, np.ndarray] = {}
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    bns = [m for m in net if isinstance(m, nn.BatchNorm2d)]
    for i, (conv, bn) in enumerate(zip(convs, bns)):
        out[f"w{i}"], out[f"b{i}"] = conv.weight.detach().numpy(), conv.bias.detach().numpy()
        out[f"bn{i}_g"], out[f"bn{i}_b"] = bn.weight.detach().numpy(), bn.bias.detach().numpy()
        out[f"bn{i}_m"], out[f"bn{i}_v"] = bn.running_mean.numpy(), bn.running_var.numpy()
    fc = net[-1]
    out["fc_w"], out["fc_b"] = fc.weight.detach().numpy(), fc.bias.detach().numpy()
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def pitfall_cnn(path: Path, width: int = 32, hw: int = 32, classes: int = 10, seed: int = 0,
                weights: dict[str, np.ndarray] | None = None) -> Path:
    """Input `input` [N, 3, hw, hw] → `logits` [N, classes]: three conv-BN-ReLU blocks (stride 2 on the last two),
    global average pool, a Shape→Gather→Unsqueeze→Concat→Reshape flatten, Gemm. Random weights unless `weights`
    (from train_pitfall_weights) are given."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    w = dict(weights or {})
    nodes: list = []
    prev, cin = "input", 3
    for i, (cout, stride) in enumerate([(width, 1), (2 * width, 2), (4 * width, 2)]):
        if not weights:
            w[f"w{i}"] = rng.normal(0, np.sqrt(2.0 / (cin * 9)), (cout, cin, 3, 3)).astype(np.float32)
            w[f"b{i}"] = rng.normal(0, 0.05, cout).astype(np.float32)
            w[f"bn{i}_g"] = (rng.uniform(0.1, 2.0, cout) * np.where(rng.random(cout) < 0.15, 10.0, 1.0)).astype(np.float32)
            w[f"bn{i}_b"], w[f"bn{i}_m"] = rng.normal(0, 0.1, cout).astype(np.float32), rng.normal(0, 0.1, cout).astype(np.float32)
            w[f"bn{i}_v"] = rng.uniform(0.5, 2.0, cout).astype(np.float32)
        _const(nodes, f"w{i}", w[f"w{i}"])
        _const(nodes, f"b{i}", w[f"b{i}"])
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"conv{i}"], name=f"Conv_{i}",
                                      pads=[1, 1, 1, 1], strides=[stride, stride]))
        for tag in ("g", "b", "m", "v"):
            _const(nodes, f"bn{i}_{tag}", w[f"bn{i}_{tag}"])
        nodes.append(helper.make_node("BatchNormalization", [f"conv{i}", f"bn{i}_g", f"bn{i}_b", f"bn{i}_m", f"bn{i}_v"],
                                      [f"bn{i}"], name=f"BatchNorm_{i}", epsilon=1e-5))
        nodes.append(helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"], name=f"Relu_{i}"))
        prev, cin = f"relu{i}", cout
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["pool"], name="GlobalAveragePool_0"))
    nodes.append(helper.make_node("Shape", ["pool"], ["pool_shape"], name="Shape_0"))
    _const(nodes, "zero", np.array(0, dtype=np.int64))
    nodes.append(helper.make_node("Gather", ["pool_shape", "zero"], ["batch"], name="Gather_0", axis=0))
    nodes.append(helper.make_node("Unsqueeze", ["batch"], ["batch_1d"], name="Unsqueeze_0", axes=[0]))
    _const(nodes, "minus_one", np.array([-1], dtype=np.int64))
    nodes.append(helper.make_node("Concat", ["batch_1d", "minus_one"], ["flat_shape"], name="Concat_0", axis=0))
    nodes.append(helper.make_node("Reshape", ["pool", "flat_shape"], ["flat"], name="Reshape_0"))
    if not weights:
        w["fc_w"] = rng.normal(0, np.sqrt(1.0 / cin), (classes, cin)).astype(np.float32)
        w["fc_b"] = rng.normal(0, 0.05, classes).astype(np.float32)
    _const(nodes, "fc_w", w["fc_w"])
    _const(nodes, "fc_b", w["fc_b"])
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="Gemm_0", transB=1))
    graph = helper.make_graph(nodes, "pitfall_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, hw, hw])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="pitfall-exporter")
    model.ir_version = 6
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def _save_opset17(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def outlier_cnn(path: Path, seed: int = 0) -> Path:
    """Input `input` [N, 3, 16, 16] → `features` [N, 8, 16, 16], four convs. conv_a's channel 0 is ~1000x the others;
    conv_b reads it with tiny weights, so the output depends on the small channels that a shared uint8 scale wipes out.
    Keeping the tensor between conv_a and conv_b in higher precision fixes it; conv_in and conv_out can stay int8."""
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
    return _save_opset17(graph, path)


def detector_head(path: Path, seed: int = 0) -> Path:
    """Input `input` [N, 3, 16, 16] → `detections` [N, 6, 256]: a YOLO-style head that concatenates 4 box channels in
    pixels (0..640) with 2 score channels (0..1). One uint8 scale for the concat makes every score 0 or 2.5 while the
    whole-output SNR stays high (the boxes dominate it): only a per-channel look finds it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.4, (16, 3, 3, 3)).astype(np.float32), "w_h"),
        numpy_helper.from_array(np.zeros(16, np.float32), "b_h"),
        numpy_helper.from_array(rng.normal(0, 0.3, (6, 16, 3, 3)).astype(np.float32), "w_det"),
        numpy_helper.from_array(np.zeros(6, np.float32), "b_det"),
        numpy_helper.from_array(np.array([0, 6, -1], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"), numpy_helper.from_array(np.array([4], np.int64), "s4"),
        numpy_helper.from_array(np.array([6], np.int64), "s6"), numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array(640.0, np.float32), "pixels"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w_h", "b_h"], ["h"], name="conv_h", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["h_relu"], name="relu_h"),
        helper.make_node("Conv", ["h_relu", "w_det", "b_det"], ["det"], name="conv_det", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["det", "flat_shape"], ["det_flat"], name="reshape_det"),
        helper.make_node("Slice", ["det_flat", "s0", "s4", "ax1"], ["box_logits"], name="slice_boxes"),
        helper.make_node("Sigmoid", ["box_logits"], ["box_unit"], name="sigmoid_boxes"),
        helper.make_node("Mul", ["box_unit", "pixels"], ["boxes"], name="scale_boxes"),
        helper.make_node("Slice", ["det_flat", "s4", "s6", "ax1"], ["score_logits"], name="slice_scores"),
        helper.make_node("Sigmoid", ["score_logits"], ["scores"], name="sigmoid_scores"),
        helper.make_node("Concat", ["boxes", "scores"], ["detections"], name="concat_out", axis=1),
    ]
    graph = helper.make_graph(nodes, "detector_head",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["N", 6, 256])],
                              initializer=inits)
    return _save_opset17(graph, path)


def save_uniform_samples(folder: Path, count: int, shape: tuple[int, ...], seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        np.save(folder / f"{i:04d}.npy", rng.uniform(0, 1, shape).astype(np.float32))
    return folder
