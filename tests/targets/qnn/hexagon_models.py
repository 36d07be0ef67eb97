"""Small ONNX graphs for the Hexagon tests, built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def shape_subgraph_model(path: Path, seed: int = 0) -> Path:
    """Conv → Relu → Reshape(x, Concat(Shape(x)[0], -1)) → MatMul → + Range(0, Shape(y)[1]) * 0.01.

    Every dim is static, so the shape subgraphs (Shape → Gather → Concat, Shape → Gather → Range → Cast) are
    constants — but only once folded: as written, the HTP refuses Shape, Range and everything that depends on them."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b1"),
             numpy_helper.from_array(np.array([0], np.int64), "i0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array(0.01, np.float32), "step"),
             numpy_helper.from_array(rng.normal(0, 0.1, (8 * 8 * 8, 10)).astype(np.float32), "wf")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Shape", ["r1"], ["s1"], name="shape_batch"),
        helper.make_node("Gather", ["s1", "i0"], ["batch"], axis=0, name="gather_batch"),
        helper.make_node("Concat", ["batch", "minus1"], ["flat_shape"], axis=0, name="concat_shape"),
        helper.make_node("Reshape", ["r1", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "wf"], ["logits0"], name="fc"),
        helper.make_node("Shape", ["logits0"], ["s2"], name="shape_classes"),
        helper.make_node("Gather", ["s2", "one"], ["classes"], axis=0, name="gather_classes"),
        helper.make_node("Range", ["zero", "classes", "one"], ["positions"], name="range"),
        helper.make_node("Cast", ["positions"], ["positions_f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["positions_f", "step"], ["bias"], name="scale_bias"),
        helper.make_node("Add", ["logits0", "bias"], ["logits"], name="add_bias"),
    ]
    graph = helper.make_graph(nodes, "shape_subgraph", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    return _save_checked(graph, path)


def log_batchnorm_model(path: Path, seed: int = 0) -> Path:
    """features [1, 16, 20] (positive, as mel energies) → Log → BatchNormalization (per feature: nothing to fold it into)
    → Transpose → MatMul [16, 8] → logits [1, 20, 8]: the keyword spotter's head after its front end, with the same
    statistics on every channel (gamma 1, beta 0, mean -4, var 9: the corpus keyword spotter's fixed log-mel
    normalisation; random per-channel statistics measured right on the HTP)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    rows = {"gamma": np.ones(16), "beta": np.zeros(16), "mean": np.full(16, -4.0), "var": np.full(16, 9.0)}
    inits = [*(numpy_helper.from_array(v.astype(np.float32), k) for k, v in rows.items()),
             numpy_helper.from_array(rng.normal(0, 0.4, (16, 8)).astype(np.float32), "w")]
    nodes = [helper.make_node("Log", ["features"], ["logf"], name="log"),
             helper.make_node("BatchNormalization", ["logf", "gamma", "beta", "mean", "var"], ["normed"], name="norm"),
             helper.make_node("Transpose", ["normed"], ["frames"], perm=[0, 2, 1], name="to_frames"),
             helper.make_node("MatMul", ["frames", "w"], ["logits"], name="head")]
    graph = helper.make_graph(nodes, "log_batchnorm", [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 16, 20])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 20, 8])], inits)
    return _save_checked(graph, path)


def stft_frontend_model(path: Path, seed: int = 0) -> Path:
    """waveform [1, 4000] → Unsqueeze → STFT (Hann 256, hop 128, onesided: [1, 30, 129, 2]) → re² + im² → mel MatMul
    [129, 20] → + 1e-6 → Log → features [1, 30, 20]: the torch.stft keyword spotter's front end as torch.export writes
    it (ONNX STFT), which the HTP took and then could not build (QNN_COMMON_ERROR_MEM_ALLOC)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(np.array([2], np.int64), "axis"),
             numpy_helper.from_array(np.array(128, np.int64), "hop"),
             numpy_helper.from_array(np.hanning(256).astype(np.float32), "window"),
             numpy_helper.from_array(np.array([-1], np.int64), "last"),
             numpy_helper.from_array(np.abs(rng.normal(0, 0.1, (129, 20))).astype(np.float32), "mel"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps")]
    nodes = [helper.make_node("Unsqueeze", ["waveform", "axis"], ["signal"], name="to_signal"),
             helper.make_node("STFT", ["signal", "hop", "window"], ["spectrum"], name="stft", onesided=1),  # as
             # torch writes it (ONNX shape inference reads a missing onesided as 0: 256 bins, where ORT computes 129)
             helper.make_node("Mul", ["spectrum", "spectrum"], ["squares"], name="square"),
             helper.make_node("ReduceSum", ["squares", "last"], ["power"], keepdims=0, name="power"),
             helper.make_node("MatMul", ["power", "mel"], ["energies"], name="mel"),
             helper.make_node("Add", ["energies", "eps"], ["floored"], name="floor"),
             helper.make_node("Log", ["floored"], ["features"], name="log")]
    graph = helper.make_graph(nodes, "stft_frontend", [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, 4000])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 30, 20])], inits)
    return _save_checked(graph, path)


def _save_checked(graph, path: Path) -> Path:
    """An opset-17 model of `graph`, checked (full_check) and saved at `path`."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def save_calib(folder: Path, shape: tuple[int, ...], n: int = 16, seed: int = 1, low: float = 0.0,
               high: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        np.save(folder / f"{i:03d}.npy", rng.uniform(low, high, shape).astype(np.float32))
    return folder


def rmsnorm_digits_classifier(folder: Path, epochs: int = 10, reciprocal: bool = False) -> Path:
    """A digits classifier whose hidden features go through ops ONNX Runtime's quantizer registry lacks: Conv → Relu →
    Linear(512, 32) → RMSNorm written out (x / Sqrt(ReduceMean(Pow(x, 2)) + eps) * gamma) → Sub (a learnt shift) →
    Tanh → Linear(32, 10). Trained briefly on scikit-learn's digits, exported by PyTorch's TorchScript exporter at
    opset 17 (Pow, ReduceMean, Add, Sqrt, Div, Mul, Sub, Tanh as separate nodes; nothing fuses them). Writes
    `rmsnorm_digits.onnx` (input `image` [1, 1, 8, 8], output `logits` [1, 10]), calib/ (64 training images) and
    eval/ (128 held-out images) into `folder`. `reciprocal`: the norm as x * Reciprocal(Sqrt(...)), as tf2onnx writes
    Keras's LayerNormalization (`rmsnorm_reciprocal_digits.onnx`)."""
    import torch

    from model_zoo import digits_split, train_classifier
    from tests.conftest import save_samples

    split = digits_split()
    torch.manual_seed(0)

    class RmsNormNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.fc1 = torch.nn.Linear(8 * 64, 32)
            self.gamma = torch.nn.Parameter(torch.ones(32))
            self.shift = torch.nn.Parameter(torch.zeros(32))
            self.fc2 = torch.nn.Linear(32, 10)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            h = self.fc1(torch.relu(self.conv(image)).flatten(1))
            rms = torch.sqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)
            h = (h * torch.reciprocal(rms) if reciprocal else h / rms) * self.gamma
            return self.fc2(torch.tanh(h - self.shift))

    model = train_classifier(RmsNormNet(), split.x_train, split.y_train, epochs)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("rmsnorm_reciprocal_digits.onnx" if reciprocal else "rmsnorm_digits.onnx")
    torch.onnx.export(model, (torch.from_numpy(split.x_test[:1]),), str(path), input_names=["image"],
                      output_names=["logits"], opset_version=17, dynamo=False)
    save_samples(folder / "calib", split.x_train[:64])
    save_samples(folder / "eval", split.x_test[:128])
    return path


def float_nodes(model_path: Path) -> list[str]:
    """Nodes of a QDQ model that compute in float: a float input not read from a DequantizeLinear, or a float output
    not read by QuantizeLinears only (the islands an integer-only HTP refuses)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load_model(str(model_path)))
    graph = model.graph
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    types.update({i.name: i.data_type for i in graph.initializer})
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    outputs = {o.name for o in graph.output}
    found = []
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        float_in = [i for i in n.input if i and types.get(i) in floats
                    and (i not in producers or producers[i].op_type != "DequantizeLinear")]
        float_out = [o for o in n.output if types.get(o) in floats
                     and (o in outputs or set(consumers.get(o, [])) != {"QuantizeLinear"})]
        if float_in or float_out:
            found.append(f"{n.name} ({n.op_type})")
    return found
