"""PyTorch → ONNX with torch.onnx (the torch.export-based exporter; TorchScript modules use the TorchScript exporter).

The dynamo exporter runs without its own optimiser (`optimize=False`): onnxscript's rewriter matches constants with an
absolute tolerance of 1e-8, so it takes `x + 1e-10` for `x + 0` and deletes the Add, and a log-mel front end's
`log(power + 1e-10)` becomes log(0) = -inf on silence (NaN at the output). Normalisation (onnxslim) folds what the
optimiser would have, exactly."""

from __future__ import annotations

import contextlib
import io
import logging

from edgeconv.converters.base import Converter
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, UnsupportedError, UsageError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.context import StepContext

log = logging.getLogger(__name__)
EXTERNAL_DATA_THRESHOLD = 1_800_000_000  # bytes of parameters above which weights go to an external data file


def example_inputs(ctx: StepContext) -> tuple:
    torch = require("torch", "torch")
    missing = [s for s in ctx.source.inputs if not s.is_static]
    recorded = _recorded_example_inputs(ctx) if missing else None
    if recorded is not None:  # a .pt2 with dynamic dims: the program's own example (its dims stay dynamic in the export)
        return recorded
    if missing:
        names = ", ".join(s.name for s in missing)
        raise InvalidInputError(
            f"the input shape of {names} is not known (PyTorch models do not record it)",
            " ".join(f"--input-shape {s.name}=1x3x224x224" for s in missing) + " (your model's real dims)",
        )
    gen = torch.Generator().manual_seed(ctx.options.seed)
    tensors = []
    for spec in ctx.source.inputs:
        dtype = getattr(torch, spec.dtype, torch.float32)
        if dtype.is_floating_point:
            tensors.append(torch.randn(spec.shape, generator=gen, dtype=dtype))
        else:
            tensors.append(torch.zeros(spec.shape, dtype=dtype))
    return tuple(tensors)


def _recorded_example_inputs(ctx: StepContext) -> tuple | None:
    """The example inputs a torch.export program was exported with (ExportedProgram.example_inputs), when they fit the
    source's inputs: what a dynamic-batch .pt2 is exported with when --input-shape does not fix its dims."""
    program = getattr(ctx.source.handle(), "program", None)
    recorded = getattr(program, "example_inputs", None)
    if not recorded or not isinstance(recorded, tuple) or not recorded[0] or recorded[1]:
        return None
    args = tuple(recorded[0])
    if len(args) != len(ctx.source.inputs) or not all(hasattr(a, "shape") for a in args):
        return None
    return args


@contextlib.contextmanager
def _quiet_exporter_logs():
    """torch.onnx logs a warning per missing torchvision op and per opset conversion; keep them at -vv only."""
    logger = logging.getLogger("torch.onnx")
    previous = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _check_output_names(path, wanted: list[str]) -> None:
    """--output-names must name each output once: fewer names would leave some outputs unnamed, more name nothing."""
    import onnx

    have = [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
    if len(have) != len(wanted) or have != wanted:
        raise UsageError(f"--output-names gives {len(wanted)} name(s) ({', '.join(wanted)}), the model has "
                         f"{len(have)} output(s)", f"give {len(have)} comma-separated names, one per output in order")


class TorchToOnnx(Converter):
    name = "torch_to_onnx"
    source = Format.TORCH
    target = Format.ONNX
    extra = "torch"
    requires = ("torch", "onnxscript")
    cost = 10
    cache_profile_keys = ("opset",)  # the rest of what it reads (source, input specs) is in every stage cache key
    cache_option_keys = ("seed",)

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        torch = require("torch", "torch", purpose="PyTorch → ONNX export")
        handle = ctx.source.handle()
        module = getattr(handle, "program", handle)  # an ExportedProgram is exported as is
        args = example_inputs(ctx)
        out = ctx.work_dir / "model.onnx"
        names = [s.name for s in ctx.source.inputs]
        output_names = list(ctx.source.output_names) or None  # --output-names; else torch.onnx's (getitem_3, ...)
        n_bytes = sum(p.numel() * p.element_size() for p in getattr(module, "parameters", lambda: [])())
        scripted = isinstance(module, torch.jit.ScriptModule)
        buffer = io.StringIO()  # the exporter prints progress to stdout; keep --json output clean
        try:
            with contextlib.redirect_stdout(buffer), _quiet_exporter_logs(), torch.no_grad():
                if scripted:
                    torch.onnx.export(module, args, str(out), input_names=names, output_names=output_names, opset_version=ctx.profile.opset.preferred,
                                      dynamo=False, do_constant_folding=True)
                else:
                    torch.onnx.export(module, args, str(out), input_names=names, output_names=output_names, opset_version=ctx.profile.opset.preferred,
                                      dynamo=True, external_data=n_bytes > EXTERNAL_DATA_THRESHOLD, optimize=False)
        except Exception as e:
            log.debug("exporter output:\n%s", buffer.getvalue())
            raise UnsupportedError(
                f"torch.onnx could not export the model: {first_line(e)}",
                "the message names the op or Python construct; rewrite it, or export ONNX yourself and convert that",
            ) from e
        if output_names:
            _check_output_names(out, output_names)
        exporter = "torchscript" if scripted else "dynamo"
        ctx.notes["exporter"] = f"torch.onnx ({exporter}) {torch.__version__}"
        companions = tuple(p for p in out.parent.glob("model.onnx.data"))
        return Artifact(out, Format.ONNX, companions=companions)
