"""PyTorch → Core ML ML program with coremltools, directly (no ONNX: coremltools has no ONNX front end).

Route: torch.export (an .pt2 program as is, a module exported with the source's input shapes) → run_decompositions({})
(ATen inference dialect, high-level ops such as linear / layer_norm / sdpa kept) → ct.convert. TorchScript archives are
converted as TorchScript, frozen first (torch.jit.freeze: scripted BatchNorm's `if self.training` folds away); a
module that torch.export cannot capture falls back to torch.jit.trace.

torch ≥ 2.5 drops trailing default arguments from exported nodes (max_pool2d(x, [2, 2]) without stride/padding), and
coremltools 9 reads them positionally ("max_pool2d got 2 input(s), expected minimum 3"): `fill_default_args` writes
the schema defaults back before conversion.

w8a8: an eager module (--model factory, trusted pickle) is calibrated in PyTorch (targets/coreml/compression.py, torch_w8a8) and the
fake-quantized module traced; a .pt2 / TorchScript is converted in float and its activations calibrated on the converted
program (Core ML on macOS, the NumPy MIL reference executor elsewhere; see targets/coreml/_convert.py).
"""

from __future__ import annotations

import logging
from typing import Any

from edgeconv.context import StepContext
from edgeconv.targets.coreml import _convert
from edgeconv.converters.base import Converter
from edgeconv.converters.torch_to_onnx import example_inputs
from edgeconv.deps import require
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.sources.torch_source import contiguous_inputs

log = logging.getLogger(__name__)


def fill_default_args(program: Any) -> int:
    """Append the schema defaults of trailing positional arguments that torch.export left out; returns nodes fixed."""
    torch = require("torch", "torch")
    fixed = 0
    for node in program.graph_module.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        positional = [a for a in node.target._schema.arguments if not a.kwarg_only]
        args = list(node.args)
        if len(args) >= len(positional):
            continue
        for arg in positional[len(args):]:
            if arg.name in node.kwargs:
                args.append(node.kwargs[arg.name])
            elif arg.has_default_value():
                args.append(arg.default_value)
            else:
                break
        if len(args) > len(node.args):
            used = {a.name for a in positional[: len(args)]}
            node.args = tuple(args)
            node.kwargs = {k: v for k, v in node.kwargs.items() if k not in used}
            fixed += 1
    if fixed:
        program.graph_module.recompile()
    return fixed


def _count_outputs(module: Any, args: tuple) -> int:
    torch = require("torch", "torch")
    from edgeconv.runtimes.torch_runtime import flatten_outputs

    with torch.no_grad():
        return len(flatten_outputs(module(*args)))


def _is_plain_module(handle: Any) -> bool:
    """An eager nn.Module (a --model factory or a trusted pickle), the only kind LinearQuantizer can prepare: it matches
    nn.Conv2d / nn.Linear modules, which TorchScript and torch.export programs no longer have."""
    torch = require("torch", "torch")
    return isinstance(handle, torch.nn.Module) and not isinstance(handle, torch.jit.ScriptModule) \
        and not isinstance(handle, torch.fx.GraphModule)


def _op_types(mlmodel: Any) -> dict[str, int]:
    spec = mlmodel.get_spec()
    function = spec.mlProgram.functions["main"]
    counts: dict[str, int] = {}
    for op in function.block_specializations[function.opset].operations:
        counts[op.type] = counts.get(op.type, 0) + 1
    return counts


def _proxy_metrics(module: Any, quantized: Any, samples: list[tuple]) -> dict[str, object]:
    """The w8a8 module in PyTorch (fake-quantized) against the float module on --eval (else calibration) samples: what int8
    activations cost, measured without the Core ML runtime (a proxy for the Core ML result, which macOS validates)."""
    torch = require("torch", "torch")
    from edgeconv.runtimes.torch_runtime import flatten_outputs
    from edgeconv.validation import compare

    with torch.no_grad():
        refs = [[t.numpy() for t in flatten_outputs(module(*a))] for a in samples]
        acts = [[t.numpy() for t in flatten_outputs(quantized(*a))] for a in samples]
    metrics = compare([f"output_{i}" for i in range(len(refs[0]))], refs, acts).to_json()
    metrics.pop("outputs", None)
    return metrics


def _calibration_args(ctx: StepContext) -> list[tuple]:
    from edgeconv.quantizers.calibration import samples_for

    return _as_args(ctx, samples_for(ctx))


def _sample_args(ctx: StepContext, spec: str | None, limit: int) -> list[tuple]:
    from edgeconv.quantizers.calibration import open_samples, preprocess_spec

    return _as_args(ctx, open_samples(spec, ctx.source.inputs, limit, seed=ctx.options.seed + 1, purpose="validation",
                                      preprocess=preprocess_spec(ctx)))


def _as_args(ctx: StepContext, samples: Any) -> list[tuple]:
    torch = require("torch", "torch")
    return [tuple(torch.from_numpy(feeds[s.name]) for s in ctx.source.inputs) for feeds in samples]


def _frozen(script: Any, ctx: StepContext) -> Any:
    """torch.jit.freeze of the eval-mode module: attributes become constants, so `if self.training` branches (every
    scripted BatchNorm has them) fold away. coremltools reads an unfrozen `training` attribute as a string and fails
    on the first scripted `if` ("Op if.1 (op_type: cond) ... expects ... bool but got str"); frozen, the model's own
    data-dependent ifs and loops become MIL cond / while_loop."""
    torch = require("torch", "torch")
    try:
        return torch.jit.freeze(script.eval())
    except Exception as e:  # a module freeze cannot take converts as it is
        ctx.warn(f"torch.jit.freeze failed ({first_line(e)}); converting the TorchScript module unfrozen")
        return script


class TorchToCoreml(Converter):
    name = "torch_to_coreml"
    source = Format.TORCH
    target = Format.COREML
    extra = "coreml"
    requires = ("torch", "coremltools")
    cost = 5  # direct (ONNX sources alone take onnx_to_coreml, through onnx2torch)
    stage = "compile"

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        torch = require("torch", "torch", purpose="PyTorch → Core ML")
        _convert.coremltools()
        handle = ctx.source.handle()
        args = example_inputs(ctx)
        if ctx.profile.quantize.precision == "w8a8" and _is_plain_module(handle):
            return self._w8a8_in_torch(handle, args, ctx)
        if isinstance(handle, torch.jit.ScriptModule):
            handle = _frozen(handle, ctx)
            mlmodel = _convert.convert(handle, ctx, inputs=_convert.tensor_types(ctx),
                                      outputs=_convert.output_types(ctx, _count_outputs(handle, args)))
            ctx.notes["coreml_route"] = "TorchScript → coremltools"
            return _convert.finish(mlmodel, ctx, [])
        program = self._export(handle, args, ctx)
        if program is not None:
            mlmodel = _convert.convert(program, ctx, inputs=_convert.tensor_types(ctx),
                                      outputs=_convert.output_types(ctx, len(program.graph_signature.user_outputs)))
            ctx.notes["coreml_route"] = "torch.export → run_decompositions({}) → coremltools"
        else:
            traced = self._trace(handle, args)
            mlmodel = _convert.convert(traced, ctx, inputs=_convert.tensor_types(ctx),
                                      outputs=_convert.output_types(ctx, _count_outputs(handle, args)))
            ctx.notes["coreml_route"] = "torch.jit.trace → coremltools (torch.export failed)"
        return _convert.finish(mlmodel, ctx, [])

    def _w8a8_in_torch(self, module: Any, args: tuple, ctx: StepContext) -> Artifact:
        """Calibrate int8 activations in PyTorch (no Core ML runtime needed), trace, convert."""
        from edgeconv.targets.coreml import compression as cq

        calibration = _calibration_args(ctx)
        quantized = cq.torch_w8a8(module, args, calibration, ctx.profile.quantize)
        held_out = _sample_args(ctx, ctx.options.eval, 16) if ctx.options.eval else calibration[:8]
        ctx.notes["pytorch_fake_quant_proxy"] = _proxy_metrics(module, quantized, held_out)
        traced = self._trace(quantized, args)
        mlmodel = _convert.convert(traced, ctx, inputs=_convert.tensor_types(ctx),
                                  outputs=_convert.output_types(ctx, _count_outputs(quantized, args)))
        ops = _op_types(mlmodel)
        if not ops.get("quantize"):
            raise UnsupportedError("coremltools.optimize.torch found no layer to quantize (it matches nn.Conv/nn.Linear modules)",
                                   "convert the .pt2 (torch.export.save) instead: its activations are calibrated on the "
                                   "converted program; or use coreml-w8")
        ctx.notes["coreml_route"] = "nn.Module → LinearQuantizer (calibrated in PyTorch) → torch.jit.trace → coremltools"
        return _convert.finish(mlmodel, ctx, [], activations_done=True)

    def _export(self, handle: Any, args: tuple, ctx: StepContext) -> Any:
        torch = require("torch", "torch")
        try:
            program = handle.program if hasattr(handle, "program") else torch.export.export(handle, args)
            program = program.run_decompositions({})
        except Exception as e:
            if hasattr(handle, "program"):
                raise UnsupportedError(f"cannot lower the torch.export program for Core ML: {first_line(e)}",
                                       "export the model again with this PyTorch version") from e
            ctx.warn(f"torch.export failed ({first_line(e)}); converting a torch.jit.trace of the module instead")
            return None
        contiguous_inputs(program)
        fixed = fill_default_args(program)
        if fixed:
            log.debug("filled default arguments of %d exported node(s)", fixed)
        return program

    @staticmethod
    def _trace(module: Any, args: tuple) -> Any:
        torch = require("torch", "torch")
        try:
            with torch.no_grad():
                return torch.jit.trace(module, args, check_trace=False)
        except Exception as e:
            raise UnsupportedError(f"torch.jit.trace failed: {first_line(e)}",
                                   "save the model with torch.export.save and convert the .pt2") from e
