"""What the passes need to know about a graph's tensors: who reads them (names read inside If / Loop / Scan bodies count
too: a body may read any outer tensor or initializer by name), and their rank and element type as shape inference
knows them. The graph walking itself is onnx_graph's."""

from __future__ import annotations

from typing import Any

from edgeconv.onnx_graph import subgraphs


def subgraph_reads(graph: Any) -> set[str]:
    """Every name read by a node of a subgraph at any depth below `graph`'s nodes."""
    names: set[str] = set()
    for node in graph.node:
        for sub in subgraphs(node):
            names.update(i for n in sub.node for i in n.input)
            names.update(o.name for o in sub.output)
            names |= subgraph_reads(sub)
    return names


def _inferred_values(model: Any) -> tuple[Any, ...]:
    """The value infos of `model`'s main graph after shape inference (the model's own where inference fails: unknown
    ranks and types only make a pass skip a node)."""
    import onnx

    try:
        graph = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # noqa: BLE001
        graph = model.graph
    return (*graph.value_info, *graph.input, *graph.output)


def tensor_ranks(model: Any) -> dict[str, int]:
    """Rank of every tensor whose shape inference knows it."""
    return {v.name: len(v.type.tensor_type.shape.dim) for v in _inferred_values(model)
            if v.type.tensor_type.HasField("shape")}


def tensor_dims(model: Any) -> dict[str, tuple[int | None, ...]]:
    """Dims of every tensor whose shape inference knows its rank (None for a dim it does not know)."""
    return {v.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
            for v in _inferred_values(model) if v.type.tensor_type.HasField("shape")}


def tensor_types(model: Any) -> dict[str, int]:
    """ONNX element type (TensorProto.FLOAT, ...) of every tensor shape inference knows, and of every initializer."""
    types = {v.name: v.type.tensor_type.elem_type for v in _inferred_values(model)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


def drop_unused_initializers(graph: Any) -> None:
    """Remove the initializers nothing reads any more (folded constants, weights replaced by a copy)."""
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output} | subgraph_reads(graph)
    kept = [t for t in graph.initializer if t.name in read]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)
