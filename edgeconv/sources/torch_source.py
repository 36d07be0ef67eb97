"""PyTorch sources: TorchScript archives, torch.export `.pt2` programs, and Python factories (`--model pkg.mod:fn`,
optionally `--weights state_dict.pt` loaded with weights_only=True). Whole pickled modules, and `.pt2` archives with
pickled payloads (sources/pt2_safety.py), run code when loaded: they are refused unless --trust-code (alias
--trust-pickle). A factory is Python the user named: its failures (a syntax error, an exception or sys.exit() at
import or call) are invalid input (exit 3) naming the module and line, never a silent exit."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from edgeconv.context import ConvertOptions
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, SafetyError, first_line
from edgeconv.formats import EXPORTED_PROGRAM, TORCH_FACTORY, TORCH_PICKLE, TORCHSCRIPT, Artifact, Format, TensorSpec
from edgeconv.sources import SourceLoader, SourceModel
from edgeconv.sources.user_code import exit_error, import_factory


def _torch():
    return require("torch", "torch", purpose="PyTorch sources")


def forward_input_names(module: Any) -> list[str]:
    forward = module.forward
    schema = getattr(forward, "schema", None)  # TorchScript
    if schema is not None:
        return [a.name for a in schema.arguments[1:]]
    params = inspect.signature(forward).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


class TorchSourceLoader(SourceLoader):
    name = "torch"
    formats = frozenset({Format.TORCH})
    extra = "torch"

    def open(self, artifact: Artifact, options: ConvertOptions) -> SourceModel:
        torch = _torch()
        if artifact.variant == TORCH_PICKLE:
            module = self._load_pickle(artifact, options)
        elif artifact.variant == TORCHSCRIPT:
            try:
                module = torch.jit.load(str(artifact.path), map_location="cpu")
            except Exception as e:  # torch raises RuntimeError for damaged archives
                raise InvalidInputError(f"{artifact.path} looks like TorchScript but cannot be loaded: {first_line(e)}",
                                        "the archive is damaged or from a newer PyTorch; save it again") from e
        elif artifact.variant == EXPORTED_PROGRAM:
            return self._open_exported_program(artifact, options)
        elif artifact.variant == TORCH_FACTORY:
            module = self._build_factory(artifact, options)
        else:
            raise InvalidInputError(f"unknown PyTorch source kind {artifact.variant!r}", "")
        module.eval()
        names = forward_input_names(module)
        inputs = tuple(TensorSpec(n, (), rank_known=False) for n in names)
        return SourceModel(artifact, inputs, options.output_names, "torch", self, options.model_factory or "", module)

    def load_handle(self, source: SourceModel) -> Any:
        raise AssertionError("torch sources are loaded in open()")

    def _load_pickle(self, artifact: Artifact, options: ConvertOptions) -> Any:
        torch = _torch()
        try:
            obj = torch.load(str(artifact.path), map_location="cpu", weights_only=True)
        except Exception as safe_error:
            if not options.trust_code:
                raise SafetyError(
                    f"{artifact.path} is a pickled Python object; loading it would run code from the file "
                    f"({first_line(safe_error)})",
                    "save the model with torch.jit.save or torch.export.save, or pass --trust-code (alias --trust-pickle) "
                    "if you trust its origin",
                ) from safe_error
            try:
                obj = torch.load(str(artifact.path), map_location="cpu", weights_only=False)
            except Exception as e:
                raise InvalidInputError(f"cannot unpickle {artifact.path}: {first_line(e)}", "the file is damaged, or its classes are not importable") from e
        if isinstance(obj, dict):
            raise InvalidInputError(
                f"{artifact.path} holds a state_dict (weights only), not a model",
                "pass --model package.module:function to build the module and --weights for this file",
            )
        if not isinstance(obj, torch.nn.Module):
            raise InvalidInputError(f"{artifact.path} holds a {type(obj).__name__}, not a torch.nn.Module", "")
        return obj

    def _build_factory(self, artifact: Artifact, options: ConvertOptions) -> Any:
        torch = _torch()
        fn = import_factory(options.model_factory or "")
        try:
            module = fn()
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # an exception, or sys.exit() in the user's factory
            raise exit_error(e, f"--model {options.model_factory}", (options.model_factory or "").split(":")[0]) from e
        if not isinstance(module, torch.nn.Module):
            raise InvalidInputError(f"--model {options.model_factory} returned {type(module).__name__}, not an nn.Module", "")
        if options.weights is not None:
            from edgeconv.formats import ZIP_MAGIC
            from edgeconv.sources.archive_safety import check_zip

            weights = Path(options.weights)
            if weights.is_file():
                with weights.open("rb") as f:
                    is_zip = f.read(4) == ZIP_MAGIC
                if is_zip:
                    check_zip(weights)  # escaping names, symlink members, zip bombs: exit 7, as for model archives
            try:
                state = torch.load(str(options.weights), map_location="cpu", weights_only=True)
            except Exception as e:
                raise SafetyError(
                    f"--weights {options.weights} is not a plain state_dict (it cannot be loaded with weights_only=True): "
                    f"{first_line(e)}",
                    "save weights with torch.save(model.state_dict(), path)",
                ) from e
            try:
                module.load_state_dict(state)
            except Exception as e:
                raise InvalidInputError(f"--weights {options.weights} does not fit {options.model_factory}: {first_line(e)}",
                                        "check that the weights belong to this model") from e
        return module

    def _open_exported_program(self, artifact: Artifact, options: ConvertOptions) -> SourceModel:
        from edgeconv.sources.pt2_safety import check_exported_program

        torch = _torch()
        check_exported_program(artifact.path, options.trust_code)  # the zip only: before torch.export.load
        try:
            program = torch.export.load(str(artifact.path))
        except Exception as e:
            raise InvalidInputError(f"{artifact.path} looks like a torch.export program but cannot be loaded: {first_line(e)}",
                                    "save it again with torch.export.save") from e
        user_inputs = list(program.graph_signature.user_inputs)
        inputs = []
        for node in program.graph.nodes:
            if node.op == "placeholder" and node.name in user_inputs:
                val = node.meta.get("val")
                shape = tuple(int(d) if isinstance(d, int) else str(d) for d in getattr(val, "shape", ()))
                dtype = str(getattr(val, "dtype", "torch.float32")).replace("torch.", "")
                inputs.append(TensorSpec(node.name, shape, dtype))
        module = program.module()
        return SourceModel(artifact, tuple(inputs), options.output_names, "torch", self, "",
                           _ExportedModule(program, module))


def contiguous_inputs(program: Any) -> int:
    """A program exported with a slice of a batch records a non-contiguous example (strides of size-1 dims are
    arbitrary: (64, 1, 8, 1) for [1, 1, 8, 8]). coremltools refuses such inputs ("non-contiguous dim order"), and
    ExecuTorch takes that dim order for the input, after which XNNPACK refuses every contiguous tensor ("Propagating
    input shapes failed"). The input's layout does not matter to either: record a contiguous example instead."""
    torch = _torch()
    fixed = 0
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph_module.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" and node.name in user_inputs else None
        if isinstance(val, torch.Tensor) and val.dim() and val.dim_order() != tuple(range(val.dim())):
            node.meta["val"] = val.clone(memory_format=torch.contiguous_format)
            fixed += 1
    return fixed


class _ExportedModule:
    """An ExportedProgram with the nn.Module interface the exporter and runtime use.

    `program` is a fresh copy on every access: the converters lower it (torch.onnx's and coremltools' decompositions,
    ExecuTorch's edge passes) and those passes can rewrite the program they are given, so one target's export changed
    the next one's (the same .pt2 gave other node names, hence other bytes, depending on the targets before it)."""

    def __init__(self, program: Any, module: Any):
        self._program = program
        self.module = module

    @property
    def program(self) -> Any:
        import copy

        return copy.deepcopy(self._program)

    def __call__(self, *args: Any) -> Any:
        return self.module(*args)

    def eval(self) -> "_ExportedModule":
        return self

