"""Initializers of If / Loop bodies renamed where their name is already taken in the model.

Normalisation moves Constant nodes into initializers, per graph; torch's exporter names constants per scope
(`/Constant_output_0` in the main graph and again in a Loop body), so a scripted model with control flow ends up with
two initializers of one name in different graphs. That is valid ONNX (the inner one shadows the outer), but ONNX
Runtime's float16 converter keys initializers by name across all graphs and stops ("AssertionError", onnx-fp16 exit
4). Renaming the inner one, and every use of it inside its graph and the graphs nested in it, computes the same.
"""

from __future__ import annotations

from typing import Any


def unique_subgraph_initializers(model: Any) -> int:
    seen = {t.name for t in model.graph.initializer}
    return sum(_subgraphs(node, seen, {}) for node in model.graph.node)


def _subgraphs(node: Any, seen: set[str], outer: dict[str, str]) -> int:
    renamed = 0
    for attr in node.attribute:
        if attr.type == attr.GRAPH:
            renamed += _graph(attr.g, seen, outer)
        elif attr.type == attr.GRAPHS:
            renamed += sum(_graph(g, seen, outer) for g in attr.graphs)
    return renamed


def _graph(graph: Any, seen: set[str], outer: dict[str, str]) -> int:
    mapping = dict(outer)  # names renamed in an enclosing graph, still visible here
    renamed = 0
    for init in graph.initializer:
        old = init.name
        if old in seen:
            new = f"{old}__{graph.name or 'body'}"
            while new in seen:
                new += "_"
            init.name = new
            mapping[old] = new
            seen.add(new)
            renamed += 1
        else:
            mapping.pop(old, None)  # this graph's own tensor shadows the outer one of that name
            seen.add(old)
    for info in graph.input:
        mapping.pop(info.name, None)
    if mapping:
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name in mapping:
                    node.input[i] = mapping[name]
        for out in graph.output:
            if out.name in mapping:
                out.name = mapping[out.name]
    for node in graph.node:
        renamed += _subgraphs(node, seen, mapping)
    return renamed
