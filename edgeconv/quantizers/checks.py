"""Checks after quantizing: the graph is valid and loads in ONNX Runtime, no float weights are left where integer
weights were asked, and how much smaller the file got."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.errors import UnsupportedError, first_line
from edgeconv.onnx_graph import producers

WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
INTEGER_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "DynamicQuantizeMatMul",
                         "MatMulIntegerToFloat", "QAttention", "DynamicQuantizeLSTM"})
FLOAT_ELEM = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass
class QuantCheck:
    valid: bool
    float_bytes: int
    quant_bytes: int
    size_ratio: float
    float_weights_left: list[str] = field(default_factory=list)  # nodes of WEIGHT_OPS whose weight stayed float
    float_param_bytes: int = 0  # float tensors still stored (scales included)
    ops: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def file_bytes(path: Path) -> int:
    return path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(path.name + ".data"))


def float_weight_nodes(model: Any, skip: set[str]) -> list[str]:
    """Nodes of WEIGHT_OPS (not in `skip`) whose weight is stored as float: a float initializer / Constant feeding the
    node directly, or through a QuantizeLinear→DequantizeLinear pair (quantized at run time: the file keeps it float,
    which is what ORT does with weights left in Constant nodes)."""
    import numpy as np

    floats = {i.name for i in model.graph.initializer if i.data_type in FLOAT_ELEM and int(np.prod(i.dims or [1])) > 1}
    floats |= {n.output[0] for n in model.graph.node if n.op_type == "Constant" and n.attribute and
               n.attribute[0].HasField("t") and n.attribute[0].t.data_type in FLOAT_ELEM and
               int(np.prod(n.attribute[0].t.dims or [1])) > 1}
    producer = producers(model.graph)
    left = []
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS or node.name in skip or len(node.input) < 2:
            continue
        name = node.input[1]
        for _ in range(3):  # DQ ← Q ← float tensor
            src = producer.get(name)
            if src is None or src.op_type not in ("DequantizeLinear", "QuantizeLinear"):
                break
            name = src.input[0]
        if name in floats:
            left.append(node.name or node.output[0])
    return left


def check_quantized(float_path: Path, quant_path: Path, *, integer_weights: bool, skip_nodes: set[str] | None = None,
                    skip_op_types: set[str] | None = None) -> QuantCheck:
    """Raise UnsupportedError if the result is not a loadable ONNX model, or if weights stayed float where integer
    weights were asked (`integer_weights`); otherwise return the facts for the manifest."""
    import numpy as np
    import onnx

    model = onnx.load_model(str(quant_path))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise UnsupportedError(f"the quantized model is not valid ONNX: {first_line(e)}",
                               "this is a quantizer bug for this graph; keep the named node in float with "
                               "--set quantize.options.nodes_to_exclude=[...]") from e
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        ort.InferenceSession(str(quant_path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise UnsupportedError(f"ONNX Runtime cannot load the quantized model: {first_line(e)}",
                               "keep the failing node in float with --set quantize.options.nodes_to_exclude=[...]") from e
    skip = set(skip_nodes or ())
    skip |= {n.name for n in model.graph.node if n.op_type in (skip_op_types or set())}
    left = float_weight_nodes(model, skip) if integer_weights else []
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    float_params = sum(int(np.prod(i.dims or [1])) * (2 if i.data_type in (10, 16) else 4)
                       for i in model.graph.initializer if i.data_type in FLOAT_ELEM)
    fb, qb = file_bytes(float_path), file_bytes(quant_path)
    result = QuantCheck(True, fb, qb, round(qb / fb, 4) if fb else 0.0, left, float_params, ops)
    op_of = {n.name or n.output[0]: n.op_type for n in model.graph.node}
    if left and {op_of.get(n) for n in left} == {"ConvTranspose"} and any(op.startswith("QLinear") for op in ops):
        raise UnsupportedError(  # the U-Net's up-sampling in cpu-int8-qop: ORT's quantizer leaves it float
            f"the QOperator format has no integer ConvTranspose (ONNX defines none, nor does ONNX Runtime): "
            f"{len(left)} node(s) would keep float weights ({', '.join(left[:8])})",
            "use the QDQ format (cpu-int8), which quantizes ConvTranspose, or accept float for them with "
            "--set quantize.options.nodes_to_exclude=[...]",
            details={"check": result.to_json()},
        )
    if left:
        raise UnsupportedError(
            f"{len(left)} node(s) kept float weights although integer weights were asked: {', '.join(left[:8])}",
            "the weights are probably computed in the graph (not constants); run normalisation, or accept float "
            "for them with --set quantize.options.nodes_to_exclude=[...]",
            details={"check": result.to_json()},
        )
    return result
