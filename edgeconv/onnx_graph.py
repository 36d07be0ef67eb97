"""The one ONNX helper: producers, consumers, initializers, I/O specs and dtypes.

Everything here reads an onnx ModelProto / GraphProto and never changes it. `onnx` itself is imported only by the
functions that load a file or need its dtype helper, numpy only where a numpy dtype is returned.

The readers of a graph's inputs and outputs differ in two ways their callers rely on, so both are parameters:
- a dim stored as `dim_value: 0` (or a negative value) reads as unknown (None) by default, like a dim with neither
  value nor name; `keep_dim_values=True` keeps the value as written (the TFLite edge reports the shapes so);
- an element type outside DTYPE_NAMES is named `onnx-type-N` by default; `numpy_dtype_names=True` names it as numpy
  does (onnx.helper.tensor_dtype_to_np_dtype: `object` for strings, `float8_e4m3fn`...; the undefined type 0 raises).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeconv.errors import InvalidInputError
from edgeconv.formats import TensorSpec

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto

# ONNX element type → dtype name, for the types edgeconv makes samples for and feeds
DTYPE_NAMES: dict[int, str] = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
                               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
# input types no sample can be made for (strings, complex, sub-byte and 8-bit floats)
UNFEEDABLE_DTYPES: dict[int, str] = {8: "string", 14: "complex64", 15: "complex128", 17: "float8e4m3fn",
                                     18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4",
                                     22: "int4", 23: "float4e2m1", 24: "float8e8m0", 25: "uint2", 26: "int2"}
# ONNX Runtime's type names (`tensor(float)`) are ONNX's, lower case: the two that differ from the dtype names
_ORT_ALIASES = {"float": "float32", "double": "float64"}
_NO_NUMPY_DTYPE = frozenset({"bfloat16"})  # in DTYPE_NAMES, but no plain numpy dtype


def dtype_name(elem_type: int, *, numpy_dtype_names: bool = False) -> str:
    """The dtype name of an ONNX element type (`float32`, `int64`, `bool`...); outside DTYPE_NAMES `onnx-type-N`,
    or numpy's name with `numpy_dtype_names` (see the module docstring)."""
    name = DTYPE_NAMES.get(elem_type)
    if name is not None:
        return name
    if numpy_dtype_names:
        import onnx

        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type).name)
    return f"onnx-type-{elem_type}"


def ort_dtype_name(ort_type: str) -> str:
    """The dtype name of an ONNX Runtime type string: `tensor(float)` → `float32`, `tensor(int64)` → `int64`; a type
    without a dtype name keeps ONNX's (`tensor(string)` → `string`)."""
    name = ort_type.replace("tensor(", "").rstrip(")")
    return _ORT_ALIASES.get(name, name)


def ort_numpy_dtype(ort_type: str) -> Any | None:
    """The numpy dtype of an ONNX Runtime type string, None where numpy has no plain one (bfloat16, strings, 8-bit
    floats). A numpy dtype is falsy: test the result with `is None`."""
    import numpy as np

    name = ort_dtype_name(ort_type)
    if name not in DTYPE_NAMES.values() or name in _NO_NUMPY_DTYPE:
        return None
    return np.dtype(name)


# ------------------------------------------------------------------------------------------------------------ graph
def producers(graph: GraphProto) -> dict[str, NodeProto]:
    """Tensor name → the node writing it (graph inputs and initializers have none)."""
    return {o: n for n in graph.node for o in n.output}


def consumers(graph: GraphProto) -> dict[str, list[NodeProto]]:
    """Tensor name → the nodes reading it, in graph order; a node reading a tensor twice (Mul(x, x)) is listed
    twice, so `len(...) == 1` means one single use. Reads inside If / Loop / Scan bodies are not counted."""
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def initializers(graph: GraphProto) -> dict[str, TensorProto]:
    """Initializer name → its TensorProto (`name in initializers(graph)` tells a weight from an activation)."""
    return {t.name: t for t in graph.initializer}


def subgraphs(node: NodeProto) -> list[GraphProto]:
    """The bodies of an If / Loop / Scan node (its graph attributes), in attribute order."""
    graphs: list[Any] = []
    for attr in node.attribute:
        graphs += ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
    return graphs


def all_nodes(graph: GraphProto) -> list[NodeProto]:
    """The nodes of `graph` and of every If / Loop / Scan body below it, each graph's nodes in order."""
    nodes: list[Any] = []
    for node in graph.node:
        nodes.append(node)
        for sub in subgraphs(node):
            nodes += all_nodes(sub)
    return nodes


# -------------------------------------------------------------------------------------------------------------- I/O
@dataclass(frozen=True)
class ModelIo:
    """A model's graph inputs (initializers listed as inputs left out) and outputs, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def value_spec(value_info: ValueInfoProto, *, keep_dim_values: bool = False,
               numpy_dtype_names: bool = False) -> TensorSpec:
    """A graph input / output as a TensorSpec: dims are ints, a symbolic dim its name (`batch`), an unknown one None
    (for `keep_dim_values` and `numpy_dtype_names` see the module docstring)."""
    tt = value_info.type.tensor_type
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and (keep_dim_values or d.dim_value > 0):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return TensorSpec(value_info.name, tuple(dims), dtype_name(tt.elem_type, numpy_dtype_names=numpy_dtype_names))


def io_specs(model: ModelProto, *, keep_dim_values: bool = False, numpy_dtype_names: bool = False) -> ModelIo:
    """The model's inputs and outputs (see value_spec)."""
    graph = model.graph
    inits = initializers(graph)
    inputs = tuple(value_spec(v, keep_dim_values=keep_dim_values, numpy_dtype_names=numpy_dtype_names)
                   for v in graph.input if v.name not in inits)
    outputs = tuple(value_spec(v, keep_dim_values=keep_dim_values, numpy_dtype_names=numpy_dtype_names)
                    for v in graph.output)
    return ModelIo(inputs, outputs)


def read_io_specs(path: Path, *, keep_dim_values: bool = False, numpy_dtype_names: bool = False) -> ModelIo:
    """io_specs of an ONNX file (its external data is not read)."""
    import onnx

    model = onnx.load_model(str(path), load_external_data=False)
    return io_specs(model, keep_dim_values=keep_dim_values, numpy_dtype_names=numpy_dtype_names)


def stem_of(path: Path) -> str:
    """The stem an output file is named after: the model file's stem, a folder's (SavedModel) own name, else `model`."""
    return (path.stem if path.suffix else path.name) or "model"


def static_shape_error(who: str, dynamic: Sequence[TensorSpec]) -> InvalidInputError:
    """The error (exit 3) for dynamic inputs where `who` ("target hexagon-int8", "the Hexagon HTP") needs static
    shapes: each input with its shape, and the --input-shape flags that fix them (a dynamic dim written as 1, an
    input of unknown rank as DIMS)."""
    fix = " ".join(f"--input-shape {s.name}="
                   f"{'x'.join(str(d) if isinstance(d, int) and d > 0 else '1' for d in s.shape) or 'DIMS'}"
                   for s in dynamic)
    return InvalidInputError(
        f"{who} needs static shapes; dynamic input(s): " + ", ".join(f"{s.name} [{s.shape_str()}]" for s in dynamic),
        f"fix them with {fix} (your real sizes)",
        details={"dynamic_inputs": [s.name for s in dynamic]},
    )
