"""PyTorch → ExecuTorch .pte: torch.export (a .pt2 program as is; an eager module exported with the source's input
shapes) → `to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])` → `to_executorch()` (the partitioner's
configs corrected where XNNPACK cannot build what they claim: xnnpack_partitioner.py).

int8: PT2E post-training quantization with XNNPACKQuantizer (symmetric int8, per-channel weights, static activations):
`prepare_pt2e` on the program's module, calibrated on edgeconv's calibration data (quantizers/calibration.py),
`convert_pt2e`, exported again, then lowered like fp32 (XNNPACK takes the quantized patterns).

Delegate coverage: `executorch.devtools.backend_debug.get_delegation_info` on the lowered graph: how many nodes XNNPACK
took, how many stay on the portable CPU kernels, and which op types those are (notes.executorch.delegation).
TorchScript archives cannot be torch.exported: exit 4 with the way out (torch.export.save the model).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import warnings
from typing import Any, Iterator

from edgeconv.context import StepContext
from edgeconv.converters.base import Converter
from edgeconv.deps import require, version_of
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.onnx_graph import stem_of
from edgeconv.targets.family_options import refuses_precision
from edgeconv.sources.torch_source import contiguous_inputs
from edgeconv.targets.executorch.options import ExecuTorchOptions, parse
from edgeconv.targets.executorch.runtime import native_output_silenced

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "int8")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torchao logs CUDA kernels it cannot load and torch warns about deprecated pytree APIs: keep them at -vv."""
    sink = io.StringIO()
    # torch.utils._pytree warns once per torchao enum it registers, through a handler torch made at import time
    loggers = [logging.getLogger(n) for n in ("torchao", "root", "executorch", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings(), \
                native_output_silenced():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def exported_program(handle: Any, args: tuple) -> Any:
    torch = require("torch", "torch")
    if isinstance(handle, torch.jit.ScriptModule):
        raise UnsupportedError("ExecuTorch needs a torch.export program; a TorchScript archive cannot be exported",
                               "save the model with torch.export.save(torch.export.export(model, args), 'model.pt2') "
                               "and convert the .pt2, or pass --model pkg.module:factory")
    if hasattr(handle, "program"):
        return handle.program
    try:
        return torch.export.export(handle, args)
    except Exception as e:
        raise UnsupportedError(f"torch.export cannot capture the model: {first_line(e)}",
                               "ExecuTorch needs torch.export; see docs/targets/executorch.md") from e


LOG_DOMAIN_SAMPLES = 16  # calibration samples the range statistics are measured on


def _policy_quantizer_class() -> Any:
    from torchao.quantization.pt2e.quantizer import Quantizer

    class XnnpackPolicies(Quantizer):
        """XNNPACKQuantizer, with two kinds of node left unannotated (so they run unquantized):
        - integer arithmetic: XNNPACK annotates every add / mul, also the int64 `arange + offset` of transformers'
          position indices, and its observer hands the index op a float tensor ("tensors used as indices must be
          long": BERT-tiny at executorch-int8);
        - the chains feeding Log / Sqrt / Reciprocal that int8 cannot resolve (quantizers/log_domain.py, measured on
          the graph XNNPACK annotates)."""

        def __init__(self, inner: Any, samples: list[tuple]) -> None:
            super().__init__()
            self.inner, self.samples = inner, samples
            self.kept: list[Any] = []  # log_domain.FloatNode

        def transform_for_annotation(self, model: Any) -> Any:
            model = self.inner.transform_for_annotation(model)
            _integer_scalars_stay_integer(model)
            return model

        def annotate(self, model: Any) -> Any:
            from edgeconv.quantizers.log_domain import fx_log_domain_nodes

            self.kept = fx_log_domain_nodes(model, self.samples, 8) if self.samples else []
            model = self.inner.annotate(model)
            names = {k.node for k in self.kept}
            for node in model.graph.nodes:
                if node.name in names or not _floating(node):
                    node.meta.pop("quantization_annotation", None)
                annotation = node.meta.get("quantization_annotation")
                if annotation is not None:  # nor an observer on an integer input of a float op
                    annotation.input_qspec_map = {k: v for k, v in annotation.input_qspec_map.items() if _floating(k)}
            return model

        def validate(self, model: Any) -> None:
            self.inner.validate(model)

    return XnnpackPolicies


def _integer_scalars_stay_integer(model: Any) -> int:
    """XNNPACK's transform_for_annotation turns the scalar operand of every add / mul / sub into a float32 tensor
    attribute, also in integer arithmetic (`arange(n) + offset`, transformers' position indices), which then computes
    in float and breaks the index op that reads it. Such an attribute gets the integer dtype of the op it feeds back
    (when its values are whole numbers); returns the attributes fixed."""
    import torch

    fixed = 0
    for node in model.graph.nodes:
        if node.op != "call_function" or _floating(node):
            continue
        dtype = node.meta["val"].dtype
        for arg in node.args:
            if not (isinstance(arg, torch.fx.Node) and arg.op == "get_attr"):
                continue
            value = getattr(model, arg.target, None)
            if isinstance(value, torch.Tensor) and value.is_floating_point() and torch.equal(value, value.round()):
                setattr(model, arg.target, value.to(dtype))
                fixed += 1
    return fixed


def _floating(node: Any) -> bool:
    """Whether an fx node computes a floating-point tensor (what int8 quantization is for); unknown counts as yes."""
    value = node.meta.get("val")
    dtype = getattr(value, "dtype", None)
    return dtype is None or bool(getattr(dtype, "is_floating_point", True))


def xnnpack_policies(inner: Any, samples: list[tuple]) -> Any:
    """`inner` wrapped by XnnpackPolicies (the class is made on first use: torchao imports lazily)."""
    return _policy_quantizer_class()(inner, samples)


def quantize_int8(program: Any, args: tuple, ctx: StepContext, options: ExecuTorchOptions) -> Any:
    torch = require("torch", "torch")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgeconv.quantizers.calibration import samples_for

    xnnpack = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=options.per_channel))
    samples = samples_for(ctx)
    log_domain = bool(ctx.profile.quantize.options.get("log_domain_float", True))
    quantizer = xnnpack_policies(xnnpack, [tuple(torch.from_numpy(f[s.name]) for s in ctx.source.inputs)
                                           for f in itertools.islice(samples, LOG_DOMAIN_SAMPLES)] if log_domain else [])
    try:
        prepared = prepare_pt2e(program.module(), quantizer)
    except Exception as e:
        raise UnsupportedError(f"PT2E cannot prepare the program for XNNPACK int8: {first_line(e)}",
                               "use executorch-fp32; see docs/targets/executorch.md") from e
    sample_args: tuple = ()
    try:
        with torch.no_grad():
            for feeds in samples:
                sample_args = tuple(torch.from_numpy(feeds[s.name]) for s in ctx.source.inputs)
                prepared(*sample_args)
        converted = convert_pt2e(prepared)
    except Exception as e:  # noqa: BLE001 - an observer the quantizer put where the program cannot take it
        raise UnsupportedError(f"PT2E could not calibrate the program for XNNPACK int8: {first_line(e)}",
                               "use executorch-fp32; see docs/targets/executorch.md") from e
    ctx.notes.setdefault("executorch", {})["pt2e"] = {
        "quantizer": "XNNPACKQuantizer", "config": "symmetric int8, " + ("per-channel" if options.per_channel else
                                                                         "per-tensor") + " weights, static activations",
        "calibration_samples": len(samples), "torchao": version_of("torchao")}
    kept = getattr(quantizer, "kept", [])
    if kept:
        ctx.notes["executorch"]["pt2e"]["log_domain_float"] = [k.to_json() for k in kept]
        ctx.warn(f"left {len(kept)} op(s) float that feed Log / Sqrt / Reciprocal with values int8 cannot resolve (an "
                 f"in-graph power spectrum?): {', '.join(k.node for k in kept[:4])}" + (" ..." if len(kept) > 4 else ""))
    # re-exported with the samples' shapes: a dynamic batch of the source program is not carried through PT2E's
    # convert, and a .pte fixed at the example's batch refused the validation samples (set_inputs error 0x10)
    return torch.export.export(converted, sample_args or args)


def delegation(edge: Any) -> dict[str, Any]:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge.exported_program().graph_module)
    rows = info.get_operator_delegation_dataframe().to_dict("records")
    # `getitem` only unpacks a delegate's outputs and "Total" is the table's sum row: neither is an op left behind
    left = {r["op_type"]: int(r["occurrences_in_non_delegated_graphs"]) for r in rows
            if r["occurrences_in_non_delegated_graphs"] and r["op_type"] not in ("getitem", "Total")}
    delegated, non_delegated = int(info.num_delegated_nodes), sum(left.values())
    total = delegated + non_delegated
    return {"delegated_subgraphs": int(info.num_delegated_subgraphs), "delegated_nodes": delegated,
            "non_delegated_nodes": non_delegated, "coverage": round(delegated / total, 4) if total else 0.0,
            "non_delegated_ops": left}


class TorchToExecutorch(Converter):
    name = "torch_to_executorch"
    source = Format.TORCH
    target = Format.EXECUTORCH
    extra = "executorch"
    requires = ("torch", "executorch")
    cost = 5  # direct: the only route
    stage = "compile"

    def refuses(self, artifact: Artifact, profile: Any) -> str | None:
        return refuses_precision(profile, "executorch", PRECISIONS, "ExecuTorch")  # [compiler] keys were checked on load

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        require("torch", "torch", purpose="PyTorch → ExecuTorch")
        with quiet():
            require("executorch", "executorch", purpose="PyTorch → ExecuTorch")
            from executorch.exir import to_edge_transform_and_lower

        from edgeconv.converters.torch_to_onnx import example_inputs

        options = parse(ctx.profile)
        precision = ctx.profile.quantize.precision
        if precision not in PRECISIONS:
            raise UnsupportedError(f"ExecuTorch profiles take precision {', '.join(PRECISIONS)}, not {precision}",
                                   "see docs/targets/executorch.md")
        args = example_inputs(ctx)
        with quiet():
            program = exported_program(ctx.source.handle(), args)
            if precision == "int8":
                program = quantize_int8(program, args, ctx, options)
            contiguous_inputs(program)
            partitioner = []
            if options.delegate == "xnnpack":
                from edgeconv.targets.executorch.xnnpack_partitioner import xnnpack_partitioner

                partitioner = [xnnpack_partitioner()]
            try:
                edge = to_edge_transform_and_lower(program, partitioner=partitioner)
                coverage = delegation(edge)
                buffer = edge.to_executorch().buffer
            except Exception as e:
                raise UnsupportedError(f"ExecuTorch cannot lower the program: {first_line(e)}",
                                       "the message names the op; see docs/targets/executorch.md") from e
        notes = ctx.notes.setdefault("executorch", {})
        notes.update({"route": f"torch.export → to_edge_transform_and_lower({options.delegate}) → to_executorch "
                               f"(executorch {version_of('executorch')})", "delegate": options.delegate,
                      "delegation": coverage})
        if coverage["coverage"] < options.min_delegated:
            raise UnsupportedError(f"XNNPACK took {coverage['coverage']:.0%} of the graph's nodes, less than "
                                   f"compiler.min_delegated = {options.min_delegated:.0%}; left on portable kernels: "
                                   f"{', '.join(coverage['non_delegated_ops'])}",
                                   "see notes.executorch.delegation; lower min_delegated to accept it")
        out = ctx.work_dir / f"{stem_of(artifact.path)}.pte"
        out.write_bytes(buffer)
        return Artifact(out, Format.EXECUTORCH)
