"""ONNX float32 → float16 (weights and compute), optionally keeping float32 model inputs/outputs.

Uses onnxruntime.transformers.float16.convert_float_to_float16. Its output with keep_io_types is not topologically
sorted (the input Casts are appended at the end: onnx.checker rejects it, ORT happens to accept it), so nodes are
re-sorted before saving. Op types in quantize.exclude_op_types and nodes in [quantize.options] nodes_to_exclude stay
float32 (Cast nodes are inserted around them).
"""

from __future__ import annotations

from typing import Any

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.quantizers.base import Quantizer


def toposort(model: Any) -> Any:
    """Order graph nodes so every input is produced before it is used (stable for already-sorted graphs)."""
    graph = model.graph
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        remaining = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):  # a subgraph input or a cycle: keep the rest in their order
            ordered.extend(remaining)
            break
        pending = remaining
    del graph.node[:]
    graph.node.extend(ordered)
    return model


def to_fp16(model: Any, *, keep_io_types: bool, op_block_list: list[str] | None = None,
            node_block_list: list[str] | None = None) -> Any:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(op_block_list or ()))
    from edgeconv.quantizers.fp16_islands import drop_cast_round_trips

    fp16 = convert_float_to_float16(model, keep_io_types=keep_io_types, op_block_list=blocked,
                                    node_block_list=node_block_list or None)
    drop_cast_round_trips(fp16)
    return toposort(fp16)


class OnnxFp16(Quantizer):
    name = "onnx_fp16"
    precisions = frozenset({"fp16"})
    requires = ("onnxruntime",)

    def quantize(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        import onnx

        require("onnxruntime", "all")
        from edgeconv.quantizers.checks import check_quantized

        scheme = ctx.profile.quantize
        model = onnx.load_model(str(artifact.path))
        nodes = list(scheme.options.get("nodes_to_exclude", ()))
        islands = self._islands(model, ctx) if scheme.options.get("fp16_islands", True) else []
        nodes += [i.node for i in islands if i.node not in nodes]
        try:
            fp16 = to_fp16(model, keep_io_types=scheme.keep_io_types, op_block_list=list(scheme.exclude_op_types),
                           node_block_list=nodes)
        except Exception as e:
            raise UnsupportedError(f"float16 conversion failed: {first_line(e)}",
                                   "keep the failing op types in float32 with --set quantize.exclude_op_types=[...]") from e
        out = ctx.work_dir / "model.fp16.onnx"
        onnx.save_model(fp16, str(out))
        check = check_quantized(artifact.path, out, integer_weights=False)
        ctx.notes["quantize"] = {"quantizer": self.name, "keep_io_types": scheme.keep_io_types, "check": check.to_json(),
                                 "excluded_op_types": list(scheme.exclude_op_types), "excluded_nodes": nodes,
                                 "fp32_islands": [i.to_json() for i in islands]}
        if islands:
            ops = sorted({i.op_type for i in islands})
            ctx.warn(f"float16: {len(islands)} overflow-prone node(s) kept in float32 ({', '.join(ops)}); see "
                     "notes.quantize.fp32_islands")
        return Artifact(out, Format.ONNX)

    @staticmethod
    def _islands(model: Any, ctx: StepContext) -> list[Any]:
        """Measured on the validation samples (--eval, else --calib, else generated): what float16 cannot hold."""
        from edgeconv.quantizers.fp16_islands import DEFAULT_MAX_ABS, name_unnamed_nodes, overflow_prone_nodes
        from edgeconv.validation_stage import validation_samples

        name_unnamed_nodes(model)
        limit = float(ctx.profile.quantize.options.get("fp16_max_abs", DEFAULT_MAX_ABS))
        return overflow_prone_nodes(model, validation_samples(ctx), limit)
