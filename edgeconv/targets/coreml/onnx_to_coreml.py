"""ONNX → Core ML through PyTorch: onnx2torch rebuilds the graph as a torch.fx module, torch.jit.trace freezes it,
coremltools converts the trace (coremltools removed its own ONNX front end in version 6).

Chosen by measurement (bench/bench_converters.py, bench/README.md "Converter choice"): before this edge an ONNX source
had no Core ML route at all (exit 4). What the detour costs is measured where it matters: validation runs the original
ONNX model (ONNX Runtime) against the Core ML program (Core ML on macOS, the MIL reference executor elsewhere), never
against the regenerated PyTorch module.

Preparation of the (already normalised) ONNX graph for onnx2torch 1.5, which implements opsets up to 17 for many ops
and Reshape without allowzero: step the opset down to 17 when it is higher, and clear Reshape's allowzero where the
shape holds no 0 (the two then mean the same). onnx2torch imports torchvision for NonMaxSuppression / RoiAlign only;
where torchvision is missing or cannot load (a CPU-only torch with the CUDA torchvision wheel), a stub stands in and
those two ops fail at conversion. Known limits (exit 4 naming the op): LSTM / GRU / STFT have no onnx2torch converter.
Only ONNX sources take this edge: PyTorch and Keras sources convert to Core ML directly.
"""

from __future__ import annotations

import re
import sys
import types
from typing import TYPE_CHECKING, Any

from edgeconv.context import StepContext
from edgeconv.targets.coreml import _convert
from edgeconv.converters.base import Converter
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

MAX_OPSET = 17  # onnx2torch 1.5.x: ReduceMean-18, Split-18, ... are not implemented
HINT = ("convert the original model instead (a PyTorch .pt2 / TorchScript / --model factory, or a Keras .keras/.h5 / "
        "SavedModel) when you have it: `edgeconv convert model.pt2 --target coreml-fp32`")


def import_onnx2torch() -> Any:
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or a CUDA build next to a CPU torch ("operator torchvision::nms does not exist")
        pass
    else:
        return require("onnx2torch", "coreml-onnx", purpose="ONNX → Core ML")
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    stub, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")

    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise UnsupportedError("NonMaxSuppression / RoiAlign need torchvision, which is not usable here",
                               "install a torchvision build matching torch (pip install torchvision)")

    ops.nms = ops.box_convert = ops.roi_align = missing  # type: ignore[attr-defined]  # a stand-in module built here
    stub.ops = ops  # type: ignore[attr-defined]  # a stand-in module built here
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, ops
    try:
        return require("onnx2torch", "coreml-onnx", purpose="ONNX → Core ML")
    finally:  # onnx2torch holds its references; nothing else may take the stub for torchvision (transformers probes it)
        del sys.modules["torchvision"], sys.modules["torchvision.ops"]


def prepare(model: Any) -> Any:
    """The ONNX graph as onnx2torch takes it: opset ≤ 17, Reshape allowzero cleared where it changes nothing."""
    from onnx import numpy_helper, version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > MAX_OPSET:
        try:
            model = version_converter.convert_version(model, MAX_OPSET)
        except Exception as e:
            raise UnsupportedError(f"cannot step the ONNX model from opset {opset} down to {MAX_OPSET} for onnx2torch: "
                                   f"{first_line(e)}", HINT) from e
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    _prelu_as_relu(model)  # and Min / Max
    for node in model.graph.node:
        shape = consts.get(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
        for attr in node.attribute:
            if attr.name == "allowzero" and attr.i == 1 and shape is not None and not (shape == 0).any():
                attr.i = 0
    return model


def _flat_outputs(torch: Any, module: Any) -> Any:
    """The module with its outputs as one flat tuple: onnx2torch returns a list, and nests TopK's (values, indices)
    pair in it, which torch.jit.trace cannot type."""
    from edgeconv.runtimes.torch_runtime import flatten_outputs

    class Flat(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> tuple:
            return tuple(flatten_outputs(self.inner(*args)))

    return Flat(module).eval()


def example_args(ctx: StepContext) -> tuple:
    """One input per source input for the trace: a dynamic batch becomes 1 (as in the Core ML input type); another
    dynamic dim needs --input-shape."""
    import numpy as np
    import torch

    rng = np.random.default_rng(ctx.options.seed)
    args = []
    for spec in ctx.source.inputs:
        unknown = [i for i in spec.dynamic_dims if i != 0]
        if unknown or not spec.rank_known:
            raise InvalidInputError(f"Core ML needs a fixed input shape; {spec.name} is [{spec.shape_str()}]",
                                    f"fix it with --input-shape {spec.name}=DIMS (your real sizes)")
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        value = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.ones(shape, dtype)
        args.append(torch.from_numpy(value))
    return tuple(args)


def _min_max_as_relu(helper: Any, node: Any) -> list[Any]:
    """Min / Max(a, b, ...) pairwise as a − Relu(a − b) / b + Relu(a − b): onnx2torch stacks broadcast copies of the
    inputs, which coremltools cannot convert ("Concat ... got 0 values"), and coremltools has no torch `greater`."""
    base = f"{node.name or node.output[0]}_{node.op_type.lower()}"
    out, acc = [], node.input[0]
    for i, other in enumerate(node.input[1:], 1):
        result = node.output[0] if i == len(node.input) - 1 else f"{base}_{i}"
        diff, gap = f"{base}_diff{i}", f"{base}_gap{i}"
        out += [helper.make_node("Sub", [acc, other], [diff], name=diff),
                helper.make_node("Relu", [diff], [gap], name=gap)]
        out.append(helper.make_node("Sub", [acc, gap], [result], name=f"{base}_{i}_out") if node.op_type == "Min"
                   else helper.make_node("Add", [other, gap], [result], name=f"{base}_{i}_out"))
        acc = result
    return out


def _prelu_as_relu(model: Any) -> int:
    """PRelu(x, slope) → Relu(x) − slope · Relu(−x): onnx2torch rebuilds PRelu with boolean-mask indexing, which becomes
    non_zero / gather_nd / scatter_nd in the Core ML program (data-dependent shapes, off the Neural Engine). Min / Max
    likewise (see _min_max_as_relu)."""
    from onnx import helper

    nodes, count = [], 0
    for node in model.graph.node:
        if node.op_type in ("Min", "Max") and len(node.input) >= 2:
            nodes += _min_max_as_relu(helper, node)
            count += 1
            continue
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        x, slope = node.input[0], node.input[1]
        base = f"{node.name or node.output[0]}_prelu"
        nodes += [helper.make_node("Relu", [x], [f"{base}_pos"], name=f"{base}_relu"),
                  helper.make_node("Neg", [x], [f"{base}_negx"], name=f"{base}_neg"),
                  helper.make_node("Relu", [f"{base}_negx"], [f"{base}_neg"], name=f"{base}_relu_neg"),
                  helper.make_node("Mul", [f"{base}_neg", slope], [f"{base}_scaled"], name=f"{base}_mul"),
                  helper.make_node("Sub", [f"{base}_pos", f"{base}_scaled"], list(node.output), name=f"{base}_sub")]
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


class OnnxToCoreml(Converter):
    name = "onnx_to_coreml"
    source = Format.ONNX
    target = Format.COREML
    extra = "coreml-onnx"
    requires = ("onnx2torch", "torch", "coremltools")
    cost = 40  # a detour through a regenerated PyTorch module: only ONNX sources take it (see refuses)
    stage = "compile"

    def refuses(self, artifact: Artifact, profile: "Profile") -> str | None:
        if artifact.format != Format.ONNX:  # PyTorch / Keras sources convert directly, never through ONNX
            return "PyTorch and Keras sources convert to Core ML directly"
        return None

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        import onnx

        from edgeconv.targets.coreml.torch_to_coreml import TorchToCoreml, _count_outputs

        torch = require("torch", "torch", purpose="ONNX → Core ML")
        _convert.coremltools()
        onnx2torch = import_onnx2torch()
        model = prepare(onnx.load(str(artifact.path)))
        try:
            module = onnx2torch.convert(model).eval()
        except Exception as e:
            raise UnsupportedError(f"onnx2torch could not rebuild the ONNX graph in PyTorch: {first_line(e)}",
                                   HINT) from e
        args = example_args(ctx)
        module = _flat_outputs(torch, module)
        with torch.no_grad():
            traced = TorchToCoreml._trace(module, args)
        mlmodel = _convert.convert(traced, ctx, inputs=_convert.tensor_types(ctx),
                                  outputs=_convert.output_types(ctx, _count_outputs(module, args)))
        ctx.notes["coreml_route"] = "ONNX → onnx2torch → torch.jit.trace → coremltools"
        # ML Program names are identifiers: an ONNX output called "25" keeps the name coremltools gave it
        names = [n if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n or "") else "" for n in ctx.source.output_names]
        return _convert.finish(mlmodel, ctx, names)

