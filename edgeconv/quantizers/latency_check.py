"""Is the quantized ONNX model slower than the float one on ONNX Runtime CPU, and why?

Run after an ONNX target made by a quantize step (int8, int16, fp16, dynamic) passed validation on ONNX Runtime: both
models are timed on one validation sample (1 thread, alternating runs, best of each; about a second at most for small
models, one session each). A quantized model that runs slower than the float one (by more than `MARGIN`) gets a
warning and a manifest note (`notes.latency`) naming the likely cause:

- ops left unfused: a node reading DequantizeLinear outputs and writing into QuantizeLinear whose op ONNX Runtime has
  no integer kernel for (HardSwish, ReduceMean, Div, Sub, Pow, LayerNormalization ...) runs in float between a
  dequantize and a quantize: two extra passes over the tensor for nothing (counted per op type);
- Q/DQ overhead on a model too small to gain: a float run under `SMALL_MS` leaves no time for int8 kernels to save
  what the quantize / dequantize pairs cost;
- dynamic Conv (ConvInteger): each Conv input is quantized at run time, and ORT CPU has no fast kernel for it;
- fp16 / 16-bit activations: ONNX Runtime's CPU kernels are float32 / 8-bit; fp16 ops are cast, 16-bit Q/DQ is
  emulated;
- int4 weights (MatMulNBits, GatherBlockQuantized): blocks are dequantized as the MatMul runs; on small MatMuls that
  costs more than the memory it saves.

A float model under `MIN_FLOAT_MS` is not timed (too small to measure, too small to matter).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.onnx_graph import consumers, ort_numpy_dtype, producers

MIN_FLOAT_MS = 0.2  # float models faster than this are not timed
SMALL_MS = 1.0  # below this, Q/DQ overhead is named as the cause
MARGIN = 1.05  # slower than float by more than 5 %: noise on a shared CPU stays below
BUDGET_S = 0.8  # timed runs (both models together), after one warm-up run each
MAX_RUNS = 50

# Ops that ONNX Runtime's CPU provider runs on 8-bit data in a QDQ graph: fused into QLinear* / integer kernels
# (Conv, MatMul, Gemm, Add, Mul, pools, Sigmoid, Softmax, LeakyRelu, Concat, Where) or whose Q/DQ pairs it drops
# (data movement), or folded into the quantize (Relu, Clip).
ORT_INT8_OPS = frozenset({
    "Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "AveragePool", "GlobalAveragePool", "MaxPool",
    "GlobalMaxPool", "LeakyRelu", "Sigmoid", "Softmax", "Concat", "Where", "ArgMax", "ArgMin", "Relu", "Clip",
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Tile", "Slice", "Gather", "GatherElements",
    "Resize", "Split", "SpaceToDepth", "DepthToSpace", "Pad", "Identity", "Dropout"})
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass
class LatencyReport:
    float_ms: float
    quant_ms: float
    ratio: float
    runs: int
    slower: bool
    causes: list[str] = field(default_factory=list)
    unfused: dict[str, int] = field(default_factory=dict)  # op type → nodes run in float between DQ and Q
    qdq_nodes: int = 0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["float_ms"], out["quant_ms"], out["ratio"] = round(self.float_ms, 3), round(self.quant_ms, 3), round(self.ratio, 3)
        return out

    def warning(self, precision: str) -> str:
        return (f"the {precision} model runs slower than the float one on ONNX Runtime CPU ({self.quant_ms:.2f} ms vs "
                f"{self.float_ms:.2f} ms, {self.ratio:.2f}×): " + "; ".join(self.causes))


def unfused_ops(model: Any) -> dict[str, int]:
    """Op types (and counts) of the nodes between a DequantizeLinear and a QuantizeLinear that ORT has no 8-bit
    kernel for: each one computes in float on dequantized data and is requantized after."""
    producer = {o: n.op_type for o, n in producers(model.graph).items()}
    readers = {name: [n.op_type for n in nodes] for name, nodes in consumers(model.graph).items()}
    found: Counter = Counter()
    for node in model.graph.node:
        if node.op_type in QDQ or node.op_type in ORT_INT8_OPS or node.domain not in ("", "ai.onnx"):
            continue
        fed = any(producer.get(i) == "DequantizeLinear" for i in node.input)
        requantized = any("QuantizeLinear" in readers.get(o, []) for o in node.output)
        if fed and requantized:
            found[node.op_type] += 1
    return dict(found.most_common())


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _once(session: Any, feeds: dict[str, Any]) -> float:
    start = time.perf_counter()
    session.run(None, feeds)
    return (time.perf_counter() - start) * 1000


def check_latency(float_path: Path, quant_path: Path, feeds: dict[str, Any], precision: str = "int8", *,
                  budget_s: float = BUDGET_S, timer: Any = None) -> LatencyReport | None:
    """Time both models on `feeds` (one sample); None when the float model is too fast to bother (< MIN_FLOAT_MS).
    `timer(session, feeds) -> ms` replaces the clock (tests)."""
    import onnx

    once = timer or _once
    float_session, quant_session = _session(float_path), _session(quant_path)
    float_feeds, quant_feeds = _feeds_for(float_session, feeds), _feeds_for(quant_session, feeds)
    if float_feeds is None or quant_feeds is None:  # the sample does not fit the models' inputs: nothing to time
        return None
    float_ms, quant_ms = once(float_session, float_feeds), once(quant_session, quant_feeds)  # warm-up
    float_ms = once(float_session, float_feeds)
    if float_ms < MIN_FLOAT_MS:
        return None
    quant_ms = once(quant_session, quant_feeds)
    runs = 1
    spent = (float_ms + quant_ms) / 1000
    while runs < MAX_RUNS and spent + (float_ms + quant_ms) / 1000 <= budget_s:
        f, q = once(float_session, float_feeds), once(quant_session, quant_feeds)
        float_ms, quant_ms = min(float_ms, f), min(quant_ms, q)
        spent += (f + q) / 1000
        runs += 1
    ratio = quant_ms / float_ms
    report = LatencyReport(float_ms, quant_ms, ratio, runs, ratio > MARGIN)
    if not report.slower:
        return report
    model = onnx.load_model(str(quant_path), load_external_data=False)
    report.qdq_nodes = sum(n.op_type in QDQ for n in model.graph.node)
    report.unfused = unfused_ops(model)
    if report.unfused:
        listed = ", ".join(f"{op} ×{n}" for op, n in report.unfused.items())
        report.causes.append(f"ops left unfused: {sum(report.unfused.values())} node(s) ONNX Runtime has no integer "
                             f"kernel for run in float between DequantizeLinear and QuantizeLinear ({listed})")
    conv_integer = sum(n.op_type == "ConvInteger" for n in model.graph.node)
    if conv_integer:
        report.causes.append(f"{conv_integer} dynamically quantized Conv(s) (ConvInteger): ONNX Runtime quantizes each "
                             "Conv input at run time and has no fast ConvInteger kernel on CPU; for a CNN use static "
                             "int8 (--target cpu-int8 --calib DIR)")
    nbits = sum(n.op_type in ("MatMulNBits", "GatherBlockQuantized") for n in model.graph.node)
    if nbits:
        report.causes.append(f"int4 weights: {nbits} MatMulNBits / GatherBlockQuantized node(s) dequantize their 4-bit "
                             f"blocks as they run; with a float model at {report.float_ms:.2f} ms the MatMuls are too "
                             "small for the saved memory traffic to pay (int4 buys size here; "
                             "quantize.options.accuracy_level=4 computes with int8 on VNNI CPUs)")
    if precision == "fp16":
        report.causes.append("fp16 on a CPU: ONNX Runtime's CPU kernels are float32, fp16 ops are cast or run slowly; "
                             "fp16 profiles are for GPUs / NPUs")
    elif precision in ("int16", "w8a16"):
        report.causes.append("16-bit activations: ONNX Runtime CPU has no 16-bit integer kernels (Q/DQ emulated in "
                             "float); int16 profiles are for NPUs such as Hexagon HTP")
    if report.float_ms < SMALL_MS and report.qdq_nodes:
        report.causes.append(f"Q/DQ overhead on a model too small to gain: the float model runs in "
                             f"{report.float_ms:.2f} ms, its {report.qdq_nodes} QuantizeLinear / DequantizeLinear nodes "
                             f"cost more than the integer kernels save")
    if not report.causes:
        report.causes.append(f"Q/DQ overhead: {report.qdq_nodes} QuantizeLinear / DequantizeLinear nodes"
                             if report.qdq_nodes else "no cause found in the graph")
    return report


def _feeds_for(session: Any, sample: dict[str, Any]) -> dict[str, Any] | None:
    """The sample keyed by the session's input names (by position when the names differ), in its dtypes."""
    import numpy as np

    inputs = session.get_inputs()
    if all(i.name in sample for i in inputs):
        values = [sample[i.name] for i in inputs]
    elif len(inputs) == len(sample):
        values = list(sample.values())
    else:
        return None
    dtypes = [ort_numpy_dtype(i.type) for i in inputs]
    return {i.name: np.asarray(v).astype(np.asarray(v).dtype if dtype is None else dtype, copy=False)
            for i, v, dtype in zip(inputs, values, dtypes)}


def check_target(float_model: Any, quant_model: Any, ctx: Any) -> LatencyReport | None:
    """After a quantized ONNX target passed validation on ONNX Runtime: time it against the float ONNX it was made
    from on the first validation sample; a slower model is a warning (with the causes) and `notes.latency`."""
    from edgeconv.validation_stage import validation_samples

    sample = next(iter(validation_samples(ctx)), None)
    if sample is None:
        return None
    precision = ctx.profile.quantize.precision
    report = check_latency(float_model.path, quant_model.path, sample, precision)
    if report is None:
        return None
    ctx.notes["latency"] = {**report.to_json(), "runtime": "onnxruntime CPU, 1 thread", "sample": 0}
    if report.slower:
        ctx.warn(report.warning(precision))
    return report
