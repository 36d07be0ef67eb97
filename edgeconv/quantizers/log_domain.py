"""Which nodes of a float ONNX model must stay float when its activations become integers: the chains feeding an op
that needs *relative* precision (Log, Reciprocal, Sqrt, a Div's divisor), where a per-tensor integer scale cannot
resolve the values. Measured on calibration samples.

An audio front end computed in the graph (STFT as two Convs, |X|² as Mul + Mul + Add, a mel MatMul, `+ eps`, Log)
makes a power spectrum spanning 1e-9 to 300 with a median of 0.05 (the corpus keyword spotter). uint8's step over that
range is 1.05: almost every bin becomes 0 and Log returns log(eps) everywhere, so the int8 model computed noise
(-4.5 dB on the HTP, -4.3 dB in ExecuTorch) and 16-bit activations did no better. Those tensors are kept float; after
the Log, the log-mel features have an ordinary range and are quantized as usual.

Rule: a tensor is *unresolved* at `bits` when more than UNRESOLVED_SHARE of its non-zero values are within
RELATIVE_STEPS quantization steps of zero (their relative error exceeds 1 / (2 * RELATIVE_STEPS)), the step being
(max - min) / (2^bits - 1) of its calibrated range (zero included, as the quantizers set it). A sensitive op whose
input is unresolved stays float. Walking back from that input, an unresolved tensor's producer stays float and the walk
continues through that producer's activation inputs that carry magnitudes (non-negative on every sample: power,
energies, variances) or are squared by it (Mul(x, x), Pow(x, 2): the STFT outputs of |X|²), and through every input of
an op that only moves values (Concat, Slice, Reshape...: torch.stft's real and imaginary parts concatenated and sliced
apart again before the square, in Core ML's MIL); it stops at a resolved
tensor, a signed tensor, a graph input or a weight. A LayerNorm's variance spans a narrow range and is resolved: its chain is left alone.

Three graph kinds, one walk: ONNX (quantizers/onnx_qdq.py), torch.fx (ExecuTorch int8) and Core ML's MIL (coreml-w8a8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

SENSITIVE_INPUTS = {"Log": (0,), "Reciprocal": (0,), "Sqrt": (0,), "Div": (1,)}  # op → inputs needing relative precision
# ops whose output is their input's values rearranged (ONNX names): the walk goes through them to what they move, as
# STFT real / imaginary parts concatenated and sliced apart again before |X|² (torch.stft in Core ML's MIL)
DATA_MOVEMENT = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Slice", "Split", "Identity",
                           "Flatten", "Expand", "Gather"})
RELATIVE_STEPS = 5.0  # within 5 steps of zero: relative error above 10%
UNRESOLVED_SHARE = 0.05


@dataclass(frozen=True)
class FloatNode:
    node: str
    op_type: str
    reason: str  # "feeds Log: 97% of values within 5 steps of 0 at 8 bits"

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "op_type": self.op_type, "reason": self.reason}


@dataclass
class TensorStats:
    """One tensor's calibrated range and a sample of its values, gathered over runs."""

    lo: float = np.inf
    hi: float = -np.inf
    values: list[np.ndarray] | None = None

    def add(self, array: np.ndarray) -> None:
        finite = array[np.isfinite(array)].astype(np.float64).ravel()
        if not finite.size:
            return
        self.lo, self.hi = min(self.lo, float(finite.min())), max(self.hi, float(finite.max()))
        self.values = (self.values or []) + [finite[:: max(1, finite.size // 4096)]]  # a sample of each run

    def unresolved_share(self, bits: int) -> float:
        if not self.values:
            return 0.0
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        step = (hi - lo) / (2 ** bits - 1) if hi > lo else 0.0
        values = np.abs(np.concatenate(self.values))
        nonzero = values[values > 0]
        if not nonzero.size or step == 0.0:
            return 0.0
        return float(np.mean(nonzero < RELATIVE_STEPS * step))


@dataclass(frozen=True)
class GraphNode:
    """One op of either graph kind (ONNX node, torch.fx node), as the walk needs it: op in ONNX's names, its activation
    inputs (weights left out) and the tensor it squares (Mul(x, x), Pow(x, 2)), if any."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    output: str
    squared: str = ""


def float_chains(nodes: list[GraphNode], stats: dict[str, TensorStats], bits: int) -> list[FloatNode]:
    """The walk of the module docstring over `nodes` (graph order), with `stats` per activation tensor."""
    producers = {n.output: n for n in nodes}
    kept: dict[str, FloatNode] = {}
    for sensitive in nodes:
        for k in SENSITIVE_INPUTS.get(sensitive.op_type, ()):
            first = sensitive.inputs[k] if k < len(sensitive.inputs) else ""
            if not first or first not in stats or stats[first].unresolved_share(bits) <= UNRESOLVED_SHARE:
                continue
            # the op itself reads float too: a quantizer that quantizes every op (the hexagon profiles) would put a
            # Q/DQ pair on its input otherwise
            kept.setdefault(sensitive.name, FloatNode(sensitive.name, sensitive.op_type,
                                                      "reads values integers cannot resolve"))
            todo, seen = [first], set()
            while todo:
                tensor = todo.pop()
                if tensor in seen or tensor not in producers or tensor not in stats:
                    continue
                seen.add(tensor)
                share = stats[tensor].unresolved_share(bits)
                if share <= UNRESOLVED_SHARE:
                    continue
                node = producers[tensor]
                kept.setdefault(node.name, FloatNode(node.name, node.op_type, f"feeds {sensitive.op_type}: {share:.0%} "
                                                     f"of its values within {RELATIVE_STEPS:g} steps of 0 at {bits} bits"))
                moved = node.op_type in DATA_MOVEMENT  # the same values rearranged: as unresolved as its output
                todo.extend(t for t in node.inputs if t == node.squared or (t in stats and (moved or stats[t].lo >= 0.0)))
    return list(kept.values())


def upstream(nodes: list[GraphNode]) -> set[str]:
    """The tensors a walk can reach: everything upstream of a sensitive input (what the statistics are needed for)."""
    producers = {n.output: n for n in nodes}
    reach: set[str] = set()
    todo = [n.inputs[k] for n in nodes for k in SENSITIVE_INPUTS.get(n.op_type, ()) if k < len(n.inputs)]
    while todo:
        tensor = todo.pop()
        if tensor and tensor not in reach and tensor in producers:
            reach.add(tensor)
            todo.extend(producers[tensor].inputs)
    return reach


def log_domain_nodes(model: Any, feeds: Iterable[dict[str, np.ndarray]], bits: int) -> list[FloatNode]:
    """The ONNX nodes to keep float at `bits`-bit activations (module docstring), from the float model's own tensors."""
    from edgeconv.quantizers.layer_errors import _session, _with_outputs

    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    nodes = [GraphNode(n.name or f"{n.op_type}_{i}", n.op_type, tuple(t if t not in initializers else "" for t in n.input),
                       n.output[0] if n.output else "", _squared_input(n, initializers, graph))
             for i, n in enumerate(graph.node)]
    reach = upstream(nodes)
    if not reach:
        return []
    session = _session(_with_outputs(model, sorted(reach)))
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    stats: dict[str, TensorStats] = {}
    for feed in feeds:
        for name, value in zip(names, session.run(None, {k: v for k, v in feed.items() if k in wanted})):
            if name in reach and isinstance(value, np.ndarray) and value.dtype.kind == "f":
                stats.setdefault(name, TensorStats()).add(value)
    return float_chains(nodes, stats, bits)


def _squared_input(node: Any, initializers: set[str], graph: Any) -> str:
    """The tensor a Mul(x, x) / Pow(x, 2) squares, else ""."""
    from onnx import numpy_helper

    if node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]:
        return str(node.input[0])
    if node.op_type == "Pow" and len(node.input) == 2 and node.input[1] in initializers:
        exponent = next(numpy_helper.to_array(i) for i in graph.initializer if i.name == node.input[1])
        if exponent.size == 1 and float(exponent.reshape(())) == 2.0:
            return str(node.input[0])
    return ""


# torch.fx (a torch.export program's ATen graph) → GraphNode: the ATen ops the walk needs by their ONNX names
_ATEN_OPS = {"log": "Log", "log1p": "Log", "log2": "Log", "log10": "Log", "sqrt": "Sqrt", "rsqrt": "Reciprocal",
             "reciprocal": "Reciprocal", "div": "Div", "mul": "Mul", "pow": "Pow", "add": "Add"}


def fx_log_domain_nodes(module: Any, samples: Iterable[tuple], bits: int) -> list[FloatNode]:
    """The fx nodes (by name) of an exported program's module to leave unquantized at `bits`: the same walk, its
    statistics from running the module on `samples` (tuples of positional tensors)."""
    import torch

    graph = module.graph
    nodes = [_fx_node(n) for n in graph.nodes if n.op == "call_function"]
    reach = upstream(nodes)
    if not reach:
        return []
    stats: dict[str, TensorStats] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            result = super().run_node(n)
            if n.name in reach and isinstance(result, torch.Tensor) and result.is_floating_point():
                stats.setdefault(n.name, TensorStats()).add(result.detach().float().numpy())
            return result

    with torch.no_grad():
        for args in samples:
            Recorder(module).run(*args)
    return float_chains(nodes, stats, bits)


def _fx_node(node: Any) -> GraphNode:
    import torch

    base = getattr(node.target, "__name__", str(node.target)).split(".")[0]
    op = _ATEN_OPS.get(base, base)
    inputs = tuple(a.name if isinstance(a, torch.fx.Node) and a.op != "get_attr" else "" for a in node.args)
    squared = ""
    if op == "Mul" and len(node.args) == 2 and node.args[0] is node.args[1] and isinstance(node.args[0], torch.fx.Node):
        squared = node.args[0].name
    if op == "Pow" and len(node.args) == 2 and node.args[1] == 2 and isinstance(node.args[0], torch.fx.Node):
        squared = node.args[0].name
    return GraphNode(node.name, op, inputs, node.name, squared)


# Core ML's MIL ops → GraphNode: the ops the walk needs by their ONNX names; binary ops read (x, y) in that order
_MIL_OPS = {"log": "Log", "sqrt": "Sqrt", "rsqrt": "Reciprocal", "inverse": "Reciprocal", "real_div": "Div",
            "mul": "Mul", "pow": "Pow", "add": "Add", "square": "Mul", "reshape": "Reshape", "transpose": "Transpose",
            "squeeze": "Squeeze", "expand_dims": "Unsqueeze", "concat": "Concat", "slice_by_index": "Slice",
            "slice_by_size": "Slice", "split": "Split", "identity": "Identity", "gather": "Gather"}


def mil_log_domain_nodes(program: Any, stats: dict[str, TensorStats], bits: int) -> list[FloatNode]:
    """The ops (by name) of a MIL program's `main` to leave without activation quantization at `bits`: the same walk,
    with `stats` from running the float program (coreml/_mil_reference.activation_stats)."""
    return float_chains(mil_graph_nodes(program), stats, bits)


def mil_graph_nodes(program: Any) -> list[GraphNode]:
    return [_mil_node(op) for op in program.functions["main"].operations if op.outputs]


def _mil_node(op: Any) -> GraphNode:
    def live(var: Any) -> str:
        return "" if var is None or isinstance(var, (list, tuple)) or (var.op is not None and var.op.op_type == "const") \
            else str(var.name)

    keys = ("x", "y") if "y" in op.inputs else tuple(op.inputs)[:1]
    first = op.inputs.get(keys[0]) if keys else None
    if isinstance(first, (list, tuple)):  # concat's `values`
        inputs = tuple(live(v) for v in first)
    else:
        inputs = tuple(live(op.inputs.get(k)) for k in keys)
    x = op.inputs.get("x")
    squared = ""
    if op.op_type == "square" or (op.op_type == "mul" and x is not None and op.inputs.get("y") is x):
        squared = live(x)
    if op.op_type == "pow" and op.inputs.get("y") is not None and op.inputs["y"].val is not None \
            and np.size(op.inputs["y"].val) == 1 and float(np.asarray(op.inputs["y"].val).reshape(())) == 2.0:
        squared = live(x)
    return GraphNode(op.name, _MIL_OPS.get(op.op_type, op.op_type), inputs, op.outputs[0].name, squared)
