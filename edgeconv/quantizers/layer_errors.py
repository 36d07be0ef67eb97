"""Per-layer error: float vs quantized intermediate activations on the same samples, streamed, ranked by SNR.

In a QDQ model made by ONNX Runtime a float tensor `T` that was quantized reappears as `T_DequantizeLinear_Output`;
a tensor computed in float keeps its name. Both models get those tensors added as graph outputs and run side by side
(graph optimisations off, so nothing is fused away). Signal and noise energies are accumulated per tensor and per
channel (axis 1), so memory stays bounded whatever the number of samples.

Each row says how far the layer's output is from float (cumulative error up to that point, `snr_db`), its worst
channel (`worst_channel_snr_db`: mixed-range tensors such as a detector's concat of pixel boxes and 0..1 scores look
fine as a whole and are useless per channel) and how much error the node itself adds (`drop_db`: its inputs' SNR
minus its output's).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeconv.onnx_graph import consumers, initializers, producers

DQ_SUFFIX = "_DequantizeLinear_Output"
CAP_DB = 60.0  # above int8 noise levels: "exact" for ranking purposes (graph inputs, float layers)
JSON_CAP = 300.0  # what validation.py reports for identical outputs
FLOAT_TYPES = (1, 10, 16)  # FLOAT, FLOAT16, BFLOAT16
SKIP_OPS = frozenset({"Constant", "Shape", "QuantizeLinear", "DequantizeLinear"})


@dataclass(frozen=True)
class LayerError:
    node: str
    op_type: str
    tensor: str
    snr_db: float
    worst_channel_snr_db: float
    input_snr_db: float
    drop_db: float
    quantized: bool  # the tensor goes through Q/DQ in the quantized model

    @property
    def cost_db(self) -> float:
        """How much error this node adds, per tensor or per channel, whichever is worse (for ranking)."""
        inp = min(self.input_snr_db, CAP_DB)
        return max(self.drop_db, inp - min(self.worst_channel_snr_db, CAP_DB))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost_db"] = self.cost_db
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(max(-JSON_CAP, min(JSON_CAP, value)), 2) if math.isfinite(value) else (
                    None if math.isnan(value) else (JSON_CAP if value > 0 else -JSON_CAP))
        return out


def _snr(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return math.inf
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


class _Accumulator:
    """Signal/noise energy of one tensor, whole and per channel (axis 1)."""

    __slots__ = ("signal", "noise", "ch_signal", "ch_noise", "ch_peak")

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0
        self.ch_signal: np.ndarray | None = None
        self.ch_noise: np.ndarray | None = None
        self.ch_peak: np.ndarray | None = None

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        a = np.asarray(ref, np.float64)
        b = np.asarray(got, np.float64)
        if a.shape != b.shape:
            if a.size != b.size:
                return
            b = b.reshape(a.shape)
        err = (a - b) ** 2
        self.signal += float((a * a).sum())
        self.noise += float(err.sum())
        if a.ndim < 2 or a.shape[1] > 8192:
            return
        axes = tuple(i for i in range(a.ndim) if i != 1)
        cs, cn, cp = (a * a).sum(axis=axes), err.sum(axis=axes), np.abs(a).max(axis=axes) if a.size else None
        if self.ch_signal is None or self.ch_signal.shape != cs.shape:
            self.ch_signal, self.ch_noise, self.ch_peak = cs, cn, cp
        else:
            assert self.ch_noise is not None and self.ch_peak is not None
            self.ch_signal += cs
            self.ch_noise += cn
            self.ch_peak = np.maximum(self.ch_peak, cp) if cp is not None else self.ch_peak  # an empty batch has no peak

    def snr(self) -> float:
        return _snr(self.signal, self.noise)

    def worst_channel(self) -> float:
        if self.ch_signal is None or self.ch_peak is None or self.ch_noise is None or not self.ch_signal.size:
            return self.snr()
        peak = float(self.ch_peak.max())
        keep = self.ch_peak > 1e-4 * peak  # channels that carry (next to) nothing have no meaningful SNR
        if not keep.any():
            return self.snr()
        return min(_snr(float(s), float(n)) for s, n in zip(self.ch_signal[keep], self.ch_noise[keep]))


def _load(model: Any) -> Any:
    import onnx

    return model if isinstance(model, onnx.ModelProto) else onnx.load_model(str(model))


def _with_outputs(model: Any, names: list[str]) -> bytes:
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    have = {o.name for o in copy.graph.output}
    for name in names:
        if name not in have:
            copy.graph.output.append(onnx.ValueInfoProto(name=name))
    return copy.SerializeToString()


def _session(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    from edgeconv.runtimes.ort import exact_int8_options

    options = exact_int8_options(ort.SessionOptions())
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def matched_tensors(float_model: Any, quant_model: Any) -> dict[str, tuple[str, str, str, bool]]:
    """float tensor → (producing node, op type, name in the quantized model, quantized?)."""
    import onnx

    fm = onnx.shape_inference.infer_shapes(float_model, strict_mode=False)
    types = {v.name: v.type.tensor_type.elem_type for v in (*fm.graph.value_info, *fm.graph.output, *fm.graph.input)}
    q_producer = {o: n.op_type for o, n in producers(quant_model.graph).items()}
    pairs: dict[str, tuple[str, str, str, bool]] = {}
    for node in float_model.graph.node:
        if node.op_type in SKIP_OPS:
            continue
        for out in node.output:
            if out and types.get(out, 1) in FLOAT_TYPES:
                if out + DQ_SUFFIX in q_producer:
                    pairs[out] = (node.name or out, node.op_type, out + DQ_SUFFIX, True)
                elif out in q_producer:  # graph outputs keep their name on the DequantizeLinear that makes them
                    pairs[out] = (node.name or out, node.op_type, out, q_producer[out] == "DequantizeLinear")
    return pairs


def layer_errors(float_model: Any, quant_model: Any, feeds: Iterable[dict[str, np.ndarray]]) -> list[LayerError]:
    """Rows for every float node output that both models compute, worst (lowest worst-channel SNR) first.
    Raises ValueError when nothing matches (e.g. a QOperator model: compare its QDQ twin instead)."""
    fm, qm = _load(float_model), _load(quant_model)
    pairs = matched_tensors(fm, qm)
    if not pairs:
        raise ValueError("no tensor of the float model could be matched in the quantized one")
    sf = _session(_with_outputs(fm, list(pairs)))
    sq = _session(_with_outputs(qm, [p[2] for p in pairs.values()]))
    f_names = [o.name for o in sf.get_outputs()]
    q_names = [o.name for o in sq.get_outputs()]
    f_inputs = {i.name for i in sf.get_inputs()}
    q_inputs = {i.name for i in sq.get_inputs()}
    acc = {name: _Accumulator() for name in pairs}
    # a tensor read only by Relu: ORT gives it the Relu's (non-negative) range, which clips what the Relu drops
    # anyway — compare what the Relu makes of it, or every pre-activation looks broken
    readers = consumers(fm.graph)
    relu_only = {name for name in pairs if {n.op_type for n in readers.get(name, [])} == {"Relu"}}
    count = 0
    for feed in feeds:
        f_out = dict(zip(f_names, sf.run(None, {k: v for k, v in feed.items() if k in f_inputs})))
        q_out = dict(zip(q_names, sq.run(None, {k: v for k, v in feed.items() if k in q_inputs})))
        for name, (_, _, q_name, _) in pairs.items():
            if name in relu_only:
                acc[name].add(np.maximum(f_out[name], 0), np.maximum(q_out[q_name], 0))
            else:
                acc[name].add(f_out[name], q_out[q_name])
        count += 1
    if count == 0:
        raise ValueError("no samples to compare on")
    snr = {name: a.snr() for name, a in acc.items()}
    producer = producers(fm.graph)
    rows = []
    inits = initializers(fm.graph)

    def upstream(tensor: str, depth: int = 0) -> float:
        """SNR of a node input: its own, or that of the nearest compared tensors above it (fused-away tensors such
        as a Conv output feeding a Relu are not compared)."""
        if tensor in snr:
            return snr[tensor]
        node = producer.get(tensor)
        if node is None or tensor in inits or depth > 8:
            return math.inf
        return min((upstream(i, depth + 1) for i in node.input if i), default=math.inf)

    for name, (node_name, op, _, quantized) in pairs.items():
        in_snr = min((upstream(i) for i in producer[name].input if i), default=math.inf)
        out_snr = snr[name]
        drop = min(in_snr, CAP_DB) - min(out_snr, CAP_DB)
        rows.append(LayerError(node_name, op, name, out_snr, acc[name].worst_channel(), in_snr, drop, quantized))
    rows.sort(key=lambda r: (r.worst_channel_snr_db, r.snr_db))
    return rows
