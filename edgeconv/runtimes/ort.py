"""ONNX Runtime (CPU): runs ONNX sources and ONNX artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.context import StepContext
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, first_line
from edgeconv.formats import Artifact, Format, TensorSpec
from edgeconv.onnx_graph import ort_dtype_name
from edgeconv.runtimes.base import Runtime, Session


# ONNX Runtime's 8-bit kernels on x86-64 CPUs without VNNI (AVX2 only: e.g. AMD Zen 2/3, older Xeons) sum pairs of
# u8 x s8 products in 16 bits (vpmaddubsw), which saturates: a QDQ Conv came out up to 30 quantization steps off (exact
# on VNNI CPUs, ARM and the Hexagon HTP). This session option makes ORT compute them exactly, so validation, the
# accuracy-driven search and the per-layer report measure what the quantized model computes, on any host.
EXACT_INT8 = {"session.x64quantprecision": "1"}


def exact_int8_options(options: Any) -> Any:
    """`options` (an ort.SessionOptions) with the exact 8-bit arithmetic entries set (see EXACT_INT8)."""
    for key, value in EXACT_INT8.items():
        options.add_session_config_entry(key, value)
    return options


def cpu_session(path: str, threads: int = 0, exact_int8: bool = True) -> Any:
    """An ORT CPU session that computes 8-bit kernels exactly (EXACT_INT8), for validation and the quantizers' checks;
    exact_int8=False: ORT's default session, as deployed (`edgeconv bench`, quantizers/latency_check.py)."""
    ort = require("onnxruntime", "all")

    def make(exact: bool) -> Any:
        options = exact_int8_options(ort.SessionOptions()) if exact else ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            return ort.InferenceSession(utf8_path(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            if not exact or _S8_TO_U8_CLASH not in str(e):
                raise
            return ort.InferenceSession(utf8_path(path), options, providers=["CPUExecutionProvider"],
                                        disabled_optimizers=[_S8_TO_U8])

    return ExactInt8Session(make) if exact_int8 else make(False)


# what ORT's QLinearMatMul says when it meets per-column zero points under EXACT_INT8 (its int16 path takes scalars)
_EXACT_REFUSED = "zero point must be a scalar"
# Under EXACT_INT8, ORT 1.31's QDQS8ToU8Transformer rewrites int8 weights to uint8 and fails the whole session on some
# graphs ("AddInitializedOrtValue Attempt to replace the existing tensor": a BERT-style encoder and a Whisper-like
# encoder quantized by edgeconv, every QDQ int8 / int16 profile, exit 1). Without that one rewrite the session loads
# and computes the same outputs as the unfused QDQ graph.
_S8_TO_U8 = "QDQS8ToU8Transformer"
_S8_TO_U8_CLASH = "Attempt to replace the existing tensor"


class ExactInt8Session:
    """An ORT session with exact 8-bit arithmetic. ORT's QLinearMatMul (fused from a QDQ MatMul) refuses per-column
    zero points under that option; such a model is run again on a default session (ORT's own arithmetic, as before)."""

    def __init__(self, make: Any):
        self._make = make
        self._session = make(True)
        self.exact = True

    def run(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._session.run(*args, **kwargs)
        except Exception as e:
            if not self.exact or _EXACT_REFUSED not in str(e):
                raise
            self._session, self.exact = self._make(False), False
            return self._session.run(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def utf8_path(path: str) -> str:
    """ONNX Runtime takes paths as UTF-8 strings only; Linux paths may hold any bytes (`model\\xff.onnx`). Such a model
    is opened through a folder of symlinks with UTF-8 names (the model, and its folder's files for external data)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    import os
    import tempfile

    real = Path(path)
    try:
        name = real.name
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = "edgeconv-utf8-model.onnx"
    links = Path(tempfile.mkdtemp(prefix="ort-utf8-"))  # in the run's private TMPDIR, removed at exit
    for entry in real.parent.iterdir():
        try:
            entry.name.encode("utf-8")
        except UnicodeEncodeError:
            continue
        if entry.name != name:
            os.symlink(entry, links / entry.name)
    os.symlink(real, links / name)
    return str(links / name)


class OrtSession(Session):
    thread_safe_run = True  # InferenceSession.run is thread-safe: `bench -j N` runs N calls at once on it

    def __init__(self, session: Any, source_inputs: tuple[TensorSpec, ...]):
        self.session = session
        self.inputs = tuple(value_info_spec_from_ort(i) for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())
        self._names = [i.name for i in self.inputs]

    def config(self) -> dict[str, object]:
        threads = self.session.get_session_options().intra_op_num_threads
        return {"intra_op_num_threads": threads or "default (one per physical core, shared by concurrent runs)"}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        dtypes = {i.name: i.dtype for i in self.inputs}
        return list(self.session.run(None, {n: feeds[n].astype(dtypes[n], copy=False) for n in self._names}))


def value_info_spec_from_ort(node_arg: Any) -> TensorSpec:
    return TensorSpec(node_arg.name, tuple(d if isinstance(d, int) else d for d in node_arg.shape),
                      ort_dtype_name(node_arg.type))


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    formats = frozenset({Format.ONNX})
    requires = ("onnxruntime",)
    runs_sources = True

    def load(self, artifact: Artifact, ctx: StepContext) -> Session:
        """For validation: 8-bit kernels computed exactly on every host (EXACT_INT8)."""
        return self._load(artifact, ctx, exact_int8=True)

    def load_tuned(self, artifact: Artifact, ctx: StepContext, **settings: Any) -> Session:
        """For `bench`: ORT's default session, as deployed (its own 8-bit arithmetic on this CPU)."""
        if settings:
            raise NotImplementedError(f"{self.name} takes no bench settings ({', '.join(settings)})")
        return self._load(artifact, ctx, exact_int8=False)

    def _load(self, artifact: Artifact, ctx: StepContext, exact_int8: bool) -> Session:
        try:
            session = cpu_session(str(artifact.path), exact_int8=exact_int8)
        except Exception as e:
            raise InvalidInputError(f"ONNX Runtime cannot load {artifact.path.name}: {first_line(e)}",
                                    "the graph uses an op or type ONNX Runtime's CPU provider lacks") from e
        return OrtSession(session, ctx.source.inputs)
