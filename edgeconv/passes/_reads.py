"""What the passes need to know about who reads a tensor: names read inside If / Loop / Scan bodies count too (a body
may read any outer tensor or initializer by name). The graph walking itself is onnx_graph's."""

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


def drop_unused_initializers(graph: Any) -> None:
    """Remove the initializers nothing reads any more (folded constants, weights replaced by a copy)."""
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output} | subgraph_reads(graph)
    kept = [t for t in graph.initializer if t.name in read]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)
