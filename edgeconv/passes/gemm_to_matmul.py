"""Gemm with a constant weight → MatMul (+ Add of the bias), for quantizers that take MatMul only.

torch.onnx's dynamo exporter writes every nn.Linear as Reshape → Gemm(transB=1) → Reshape, so a BERT's 14 Linear
layers reach ONNX Runtime's MatMulNBitsQuantizer (block-wise int4) as Gemm nodes, which it skips: the "int4" model
stayed float. Rewritten as MatMul(A, Bᵀ stored [K, N]) and Add(C), with alpha and beta folded into the constants, it
computes the same thing (A is 2-D: a Gemm's input always is) and the quantizer takes it.
"""

from __future__ import annotations

from typing import Any

from edgeconv.onnx_graph import all_nodes, initializers


def gemm_to_matmul(model: Any) -> int:
    import numpy as np
    from onnx import helper, numpy_helper

    inits = initializers(model.graph)
    nodes: list[Any] = []
    replaced: set[str] = set()
    rewritten = 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or int(attrs.get("transA", 0))
                or (len(node.input) > 2 and node.input[2] and node.input[2] not in inits)):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if weight.ndim != 2 or weight.dtype.kind != "f":
            nodes.append(node)
            continue
        weight = weight.T if int(attrs.get("transB", 0)) else weight
        weight = (weight * np.asarray(attrs.get("alpha", 1.0), dtype=weight.dtype)).astype(weight.dtype)
        name = node.name or f"gemm_{rewritten}"
        w_name = f"{node.input[1]}_{name}_kn"
        replaced.add(node.input[1])
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), w_name))
        has_bias = len(node.input) > 2 and bool(node.input[2])
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [product], name=f"{name}_matmul"))
        if has_bias:
            bias = numpy_helper.to_array(inits[node.input[2]])
            bias = (bias * np.asarray(attrs.get("beta", 1.0), dtype=bias.dtype)).astype(bias.dtype)
            b_name = f"{node.input[2]}_{name}_bias"
            replaced.add(node.input[2])
            model.graph.initializer.append(numpy_helper.from_array(bias, b_name))
            nodes.append(helper.make_node("Add", [product, b_name], [node.output[0]], name=f"{name}_bias"))
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        used = {i for n in all_nodes(model.graph) for i in n.input} | {o.name for o in model.graph.output}
        unused = [i for i in model.graph.initializer if i.name in replaced and i.name not in used]
        for init in unused:  # the Gemms' own constants, now stored [K, N] under new names
            model.graph.initializer.remove(init)
    return rewritten
