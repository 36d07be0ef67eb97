"""ExecuTorch runtime (executorch.runtime, the portable runtime with the XNNPACK delegate linked in): runs a .pte's
`forward` with the source model's inputs in order; outputs come back flattened, in the source's output order."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, first_line
from edgeconv.formats import Artifact, Format, TensorSpec
from edgeconv.runtimes.base import Runtime, Session

if TYPE_CHECKING:
    from edgeconv.context import StepContext

# c10::ScalarType codes in a .pte's method metadata
_SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
                 11: "bool"}


def _flush_c_stdio() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """The runtime's cpuinfo probe writes lines from C++ to file descriptors 1 and 2 on x86 ("Failed to open midr
    file"); torchao logs the CUDA kernels it cannot load. Library code never prints: point both at /dev/null."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
    except (OSError, ValueError, AttributeError):  # no real fds (embedded / captured): nothing to hide
        yield
        return
    sink = io.StringIO()  # the runtime's log lines also reach Python's sys.stdout / sys.stderr (pybind11)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        _flush_c_stdio()  # C stdio buffers (stdout is block-buffered when not a terminal): empty them into /dev/null
        for fd, copy in zip((1, 2), saved):
            with contextlib.suppress(OSError, ValueError):
                getattr(sys, "stdout" if fd == 1 else "stderr").flush()
            os.dup2(copy, fd)
            os.close(copy)


def load_program(path: str) -> Any:
    with native_output_silenced():  # importing the runtime probes the CPU too
        runtime = require("executorch.runtime", "executorch", purpose="running .pte programs")
    try:
        with native_output_silenced():
            return runtime.Runtime.get().load_program(path)
    except Exception as e:
        raise InvalidInputError(f"ExecuTorch cannot load {path}: {first_line(e)}",
                                "the .pte is damaged or needs a backend this runtime lacks") from e


def pte_io(artifact: Artifact) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
    """A bare .pte's inputs (from its method metadata; names are positional) and output names."""
    meta = load_program(str(artifact.path)).metadata("forward")
    inputs = []
    for i in range(meta.num_inputs()):
        tensor = meta.input_tensor_meta(i)
        inputs.append(TensorSpec(f"input_{i}", tuple(int(d) for d in tensor.sizes()),
                                 _SCALAR_TYPES.get(int(tensor.dtype()), "float32")))
    return tuple(inputs), tuple(f"output_{i}" for i in range(meta.num_outputs()))


class ExecuTorchSession(Session):
    def __init__(self, method: Any, inputs: tuple[TensorSpec, ...], output_names: tuple[str, ...]):
        self.method = method
        self.inputs = inputs
        self.output_names = output_names
        self._first = True  # XNNPACK probes the CPU (cpuinfo lines on fd 2) on the first call

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = require("torch", "torch")
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise InvalidInputError(f"no sample for input(s) {', '.join(missing)}", f"samples have: {', '.join(feeds)}")
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self.inputs]
        try:
            if self._first:
                with native_output_silenced():
                    outputs = self.method.execute(args)
                self._first = False
            else:
                outputs = self.method.execute(args)
        except Exception as e:
            raise InvalidInputError(f"ExecuTorch failed to run the program: {first_line(e)}",
                                    "check that the samples' shapes match the model's inputs") from e
        return [o.detach().numpy().copy() if hasattr(o, "detach") else np.asarray(o) for o in outputs]


class ExecuTorchRuntime(Runtime):
    name = "executorch"
    formats = frozenset({Format.EXECUTORCH})
    extra = "executorch"
    requires = ("executorch", "torch")

    @classmethod
    def accelerator_share(cls, notes: dict[str, Any]) -> str:
        """'XNNPACK 96%': the share of the graph's nodes the delegate took (the edge's delegation report)."""
        delegation = (notes.get("executorch") or {}).get("delegation") or {}
        if delegation.get("coverage") is not None:
            return f"XNNPACK {100 * float(delegation['coverage']):.0f}%"
        return ""

    def load(self, artifact: Artifact, ctx: "StepContext") -> Session:
        program = load_program(str(artifact.path))
        try:
            with native_output_silenced():
                method = program.load_method("forward")
        except Exception as e:
            raise InvalidInputError(f"ExecuTorch cannot load the forward method of {artifact.path.name}: "
                                    f"{first_line(e)}", "the program needs a backend this runtime lacks") from e
        inputs = ctx.source.inputs or pte_io(artifact)[0]
        return ExecuTorchSession(method, tuple(inputs), tuple(ctx.source.output_names))
