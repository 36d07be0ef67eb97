"""A Loop whose trip count is not int64 gets a Cast to int64 in front of it.

torch.onnx's TorchScript exporter writes `for _ in range(int(t.item()))` (a scripted loop whose count comes from a
tensor) as a Loop whose trip count M is the float tensor itself: the ONNX spec (and ONNX Runtime, which refuses to
load the model) require an int64 scalar, and types the body's iteration-number input float too (it must be int64).
Cast truncates toward zero, as Python's int() does, so the graph computes what the scripted model computed; a body that
reads its iteration number as float gets it through a Cast back. Loops inside If / Loop bodies are rewritten too.
"""

from __future__ import annotations

from typing import Any

INT64 = 7


def cast_loop_trip_counts(model: Any) -> int:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - advisory: without types every trip count not known to be int64 is cast
        inferred = model
    types = _elem_types(inferred.graph)
    return _rewrite(model.graph, types)


def _elem_types(graph: Any) -> dict[str, int]:
    types: dict[str, int] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                types.update(_elem_types(attr.g))
    return types


def _rewrite(graph: Any, types: dict[str, int]) -> int:
    from onnx import helper

    fixed = 0
    nodes = list(graph.node)
    out: list[Any] = []
    taken = {o for n in nodes for o in n.output} | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in nodes:
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                fixed += _rewrite(attr.g, types)
        if node.op_type == "Loop" and node.input and node.input[0] and types.get(node.input[0]) != INT64:
            name = f"{node.input[0]}_as_int64"
            while name in taken:
                name += "_"
            taken.add(name)
            out.append(helper.make_node("Cast", [node.input[0]], [name], to=INT64,
                                        name=f"{node.name or 'Loop'}_trip_count_int64"))
            node.input[0] = name
            fixed += 1
        if node.op_type == "Loop":
            fixed += _int64_iteration_number(node)
        out.append(node)
    if fixed:
        del graph.node[:]
        graph.node.extend(out)
    return fixed


def _int64_iteration_number(loop: Any) -> int:
    """Type the body's first input (the iteration number) int64; where the body reads it, through a Cast to the
    type it was declared with."""
    from onnx import helper

    body = next(a.g for a in loop.attribute if a.name == "body")
    if not body.input:
        return 0
    first = body.input[0]
    declared = first.type.tensor_type.elem_type if first.type.HasField("tensor_type") else 0
    if declared in (0, INT64):
        return 0
    old = first.name
    if any(old in n.input for n in body.node) or any(o.name == old for o in body.output):
        new = f"{old}_int64"
        first.name = new
        body.node.insert(0, helper.make_node("Cast", [new], [old], to=declared, name=f"{old}_as_declared"))
    first.type.tensor_type.elem_type = INT64
    return 1
