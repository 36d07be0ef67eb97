"""PyTorch sources: TorchScript archives, torch.export `.pt2` programs, and Python factories (`--model pkg.mod:fn`,
optionally `--weights state_dict.pt` loaded with weights_only=True). Whole pickled modules run code when loaded: they
are refused unless --trust-pickle."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from edgeconv.context import ConvertOptions
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, SafetyError, UsageError, first_line
from edgeconv.formats import EXPORTED_PROGRAM, TORCH_FACTORY, TORCH_PICKLE, TORCHSCRIPT, Artifact, Format, TensorSpec
from edgeconv.sources import SourceLoader, SourceModel


def _torch():
    return require("torch", "torch", purpose="PyTorch sources")


def import_factory(spec: str) -> Any:
    """`pkg.module:function` → the function. The current directory is importable, as with `python -m`."""
    if ":" not in spec:
        raise UsageError(f"bad --model {spec!r}", "use --model package.module:function")
    module_name, fn_name = spec.split(":", 1)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InvalidInputError(f"cannot import {module_name} for --model {spec}: {e}", "check the module path and PYTHONPATH") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise InvalidInputError(f"{module_name} has no callable {fn_name!r}", "--model must name a function returning an nn.Module")
    return fn


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
            return self._open_exported_program(artifact)
        elif artifact.variant == TORCH_FACTORY:
            module = self._build_factory(artifact, options)
        else:
            raise InvalidInputError(f"unknown PyTorch source kind {artifact.variant!r}", "")
        module.eval()
        names = forward_input_names(module)
        inputs = tuple(TensorSpec(n, (), rank_known=False) for n in names)
        return SourceModel(artifact, inputs, (), "torch", self, options.model_factory or "", module)

    def load_handle(self, source: SourceModel) -> Any:
        raise AssertionError("torch sources are loaded in open()")

    def _load_pickle(self, artifact: Artifact, options: ConvertOptions) -> Any:
        torch = _torch()
        try:
            obj = torch.load(str(artifact.path), map_location="cpu", weights_only=True)
        except Exception as safe_error:
            if not options.trust_pickle:
                raise SafetyError(
                    f"{artifact.path} is a pickled Python object; loading it would run code from the file "
                    f"({first_line(safe_error)})",
                    "save the model with torch.jit.save or torch.export.save, or pass --trust-pickle if you trust its origin",
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
        except Exception as e:
            raise InvalidInputError(f"--model {options.model_factory} raised {type(e).__name__}: {first_line(e)}", "fix the factory function") from e
        if not isinstance(module, torch.nn.Module):
            raise InvalidInputError(f"--model {options.model_factory} returned {type(module).__name__}, not an nn.Module", "")
        if options.weights is not None:
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

    def _open_exported_program(self, artifact: Artifact) -> SourceModel:
        torch = _torch()
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
        return SourceModel(artifact, tuple(inputs), (), "torch", self, "", _ExportedModule(program, module))


class _ExportedModule:
    """An ExportedProgram with the nn.Module interface the exporter and runtime use."""

    def __init__(self, program: Any, module: Any):
        self.program = program
        self.module = module

    def __call__(self, *args: Any) -> Any:
        return self.module(*args)

    def eval(self) -> "_ExportedModule":
        return self

