"""Block-wise int4 weights for MatMul (ONNX Runtime's MatMulNBitsQuantizer): each MatMul with a constant [K, N]
weight becomes a MatMulNBits node holding 4-bit weights with one float scale (and, asymmetric, one zero point) per
`block_size` weights along K; activations stay float and no calibration data is needed (round-to-nearest). A Gather
from a constant float table (an embedding) becomes GatherBlockQuantized, the same 4-bit blocks. For transformer
encoders and decoders on ONNX Runtime CPU, where MatMul weights and embeddings are most of the file (BERT-tiny: 0.60x
with MatMul alone, 0.21x with its embeddings).

`[quantize.options]`: block_size (default 32: a power of two, at least 16), accuracy_level (MatMulNBits' compute type:
0 ORT's default, 4 int8 activations, faster on CPUs with VNNI), op_types (default MatMul and Gather), nodes_to_exclude; the
scheme's symmetric_weights picks symmetric (no zero points) or asymmetric blocks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import UnsupportedError, UsageError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.quantizers.base import Quantizer

log = logging.getLogger(__name__)
DEFAULT_OP_TYPES = ("MatMul", "Gather")
QUANTIZABLE = frozenset({"MatMul", "Gather"})  # what MatMulNBitsQuantizer takes (Gather: embedding tables)


class OnnxInt4(Quantizer):
    name = "onnx_int4"
    precisions = frozenset({"int4"})
    requires = ("onnxruntime",)

    def quantize(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        require("onnxruntime", "all")
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        from edgeconv.quantizers.onnx_qdq import excluded_by_op_type, prepare_float
        from edgeconv.targets.quantize_options import parse_quantize_options
        from edgeconv.targets.family_options import Table

        scheme = ctx.profile.quantize
        options = parse_quantize_options(dict(scheme.options), Table("quantize.options", ctx.profile.name,
                                                                     ctx.profile.source_file or ctx.profile.name))
        block = options.block_size
        if block & (block - 1):
            raise UsageError(f"quantize.options.block_size = {block} is not a power of two",
                             "use 16, 32, 64, 128 or 256 (--set quantize.options.block_size=32)")
        op_types = tuple(options.op_types) if isinstance(options.op_types, (tuple, list)) and options.op_types else DEFAULT_OP_TYPES
        unknown = sorted(set(op_types) - QUANTIZABLE)
        if unknown:
            raise UsageError(f"int4 block-wise quantization takes MatMul and Gather, not {', '.join(unknown)}",
                             "--set 'quantize.options.op_types=[\"MatMul\"]'")
        float_path = prepare_float(artifact, ctx.work_dir, False, "float32")
        excluded = [*options.nodes_to_exclude, *excluded_by_op_type(float_path, tuple(scheme.exclude_op_types))]
        model = onnx.load_model(str(float_path))
        gemms = 0
        if "MatMul" in op_types and "Gemm" not in scheme.exclude_op_types:  # nn.Linear exports as Gemm: the quantizer
            from edgeconv.passes.gemm_to_matmul import gemm_to_matmul  # takes MatMul only

            gemms = gemm_to_matmul(model)
        rewritten = ctx.work_dir / "model.prepared.onnx"  # the float model the quantizer reads (Gemms as MatMul)
        onnx.save_model(model, str(rewritten))

        def quantize(kept_float: list[str], path: Path) -> Path:
            try:
                quantizer = MatMulNBitsQuantizer(
                    onnx.load_model(str(rewritten)), bits=4, block_size=block, is_symmetric=scheme.symmetric_weights,
                    accuracy_level=options.accuracy_level or None, nodes_to_exclude=[*excluded, *kept_float] or None,
                    op_types_to_quantize=op_types)
                quantizer.process()
                quantizer.model.save_model_to_file(str(path), use_external_data_format=False)
            except Exception as e:  # noqa: BLE001 - ORT's quantizer raises bare exceptions of many kinds
                raise UnsupportedError(f"ONNX Runtime could not quantize the MatMul weights to int4: {first_line(e)}",
                                       "keep the failing nodes float with --set quantize.options.nodes_to_exclude=[...]"
                                       ) from e
            return path

        from edgeconv.quantizers import int4_fallback

        first = quantize([], ctx.work_dir / "model.int4.onnx")
        out, fallback = int4_fallback.search(float_path, quantize, _candidates(model, op_types, set(excluded)), ctx,
                                             first)
        counts = {**_int4_report(float_path, out), "gemm_to_matmul": gemms}
        if not counts["quantized"] and not counts["gathers_quantized"]:
            ctx.warn(f"{ctx.profile.name}: no MatMul or Gemm with a constant 2-D weight to quantize "
                     f"({counts['matmuls']} MatMul/Gemm node(s)): the model stays float; for a CNN use --target cpu-int8")
        ctx.notes["quantize"] = {"quantizer": self.name, "bits": 4, "block_size": block,
                                 "symmetric": scheme.symmetric_weights, "accuracy_level": options.accuracy_level,
                                 "op_types": list(op_types), "excluded_nodes": excluded, **counts}
        if fallback is not None:
            ctx.notes["quantize"]["fallback"] = fallback.to_json()
        return Artifact(out, Format.ONNX)


def _candidates(model: Any, op_types: tuple[str, ...], excluded: set[str]) -> list[str]:
    """The nodes the quantizer takes (MatMul with a constant 2-D weight, Gather from a constant float table), largest
    weights first: what the accuracy fallback may keep float."""
    from edgeconv.onnx_graph import initializers

    inits = initializers(model.graph)
    sized = []
    for node in model.graph.node:
        if node.op_type not in op_types or not node.name or node.name in excluded:
            continue
        weight = inits.get(node.input[1] if node.op_type == "MatMul" else node.input[0])
        if weight is not None and len(weight.dims) == 2 and weight.data_type == 1:
            sized.append((int(weight.dims[0]) * int(weight.dims[1]), node.name))
    return [name for _, name in sorted(sized, key=lambda s: (-s[0], s[1]))]


def _int4_report(float_path: Path, out: Path) -> dict[str, Any]:
    """How many MatMul / Gemm nodes the float model has and how many became MatMulNBits, and the two file sizes."""
    import onnx

    before = onnx.load_model(str(float_path), load_external_data=False).graph.node
    after = onnx.load_model(str(out), load_external_data=False).graph.node
    return {"matmuls": sum(n.op_type in ("MatMul", "Gemm") for n in before),
            "quantized": sum(n.op_type == "MatMulNBits" for n in after),
            "gathers_quantized": sum(n.op_type == "GatherBlockQuantized" for n in after),
            "float_bytes": float_path.stat().st_size, "bytes": out.stat().st_size}
