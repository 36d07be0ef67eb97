"""ONNX sources, including models whose tensors live in external data files.

External data locations are checked before anything reads them, for every tensor of the model (initializers, sparse
initializers, Constant / attribute tensors, in subgraphs and functions too): a path that escapes the model's folder
(`../`, absolute, or a symlink pointing outside), a symlink loop, or a FIFO, socket or device (never opened: a pipe
blocks its reader forever) is refused (exit 7); a missing or short file, or a directory, is invalid input (exit 3).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeconv.context import ConvertOptions
from edgeconv.errors import InvalidInputError, SafetyError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.onnx_graph import DTYPE_NAMES, UNFEEDABLE_DTYPES, initializers, io_specs
from edgeconv.sources import SourceLoader, SourceModel


def check_input_dtypes(model: Any, path: Path, names: set[str]) -> None:
    """Exit 4 for graph inputs of a type edgeconv cannot generate or feed samples for (UNFEEDABLE_DTYPES, or a type
    outside DTYPE_NAMES)."""
    bad = []
    for value in model.graph.input:
        if value.name not in names:
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            bad.append(f"{value.name} ({kind or 'no type'})")
            continue
        elem = value.type.tensor_type.elem_type
        if elem in UNFEEDABLE_DTYPES or elem not in DTYPE_NAMES:
            bad.append(f"{value.name} ({UNFEEDABLE_DTYPES.get(elem, f'onnx type {elem}')})")
    if bad:
        raise UnsupportedError(
            f"{path}: unsupported input dtype: {', '.join(bad)}",
            "edgeconv feeds numeric tensors (float, int, uint, bool); wrap the model so these inputs are computed "
            "inside it, or feed them as numbers",
            details={"inputs": bad},
        )


def model_tensors(model: Any) -> Iterator[tuple[Any, str]]:
    """Every TensorProto of a model, with how an error names it: initializers and sparse initializers (values and
    indices) of the graph and of every subgraph (If / Loop / Scan bodies, at any depth), node attribute tensors
    (Constant `value` / `sparse_value`, `tensors`), in functions and training graphs too. onnx's own walker
    (`_get_all_tensors`) misses the sparse ones and the subgraphs of functions."""
    graphs: list[Any] = [model.graph]
    graphs += [g for info in model.training_info for g in (info.initialization, info.algorithm)]
    node_lists: list[Any] = [f.node for f in model.functions]
    while graphs or node_lists:
        if graphs:
            graph = graphs.pop()
            for tensor in graph.initializer:
                yield tensor, f"tensor {tensor.name!r}"
            for sparse in graph.sparse_initializer:
                name = sparse.values.name or sparse.indices.name
                yield sparse.values, f"sparse initializer {name!r} (values)"
                yield sparse.indices, f"sparse initializer {name!r} (indices)"
            node_lists.append(graph.node)
            continue
        for node in node_lists.pop():
            where = f"node {node.name or node.op_type!r}"
            for attr in node.attribute:
                what = f"attribute {attr.name!r} of {where}"
                if attr.HasField("t"):
                    yield attr.t, f"tensor {attr.t.name!r} ({what})" if attr.t.name else f"the tensor of {what}"
                for tensor in attr.tensors:
                    yield tensor, f"tensor {tensor.name!r} ({what})"
                for sparse in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors):
                    yield sparse.values, f"the sparse tensor's values ({what})"
                    yield sparse.indices, f"the sparse tensor's indices ({what})"
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)


_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _refuse_loop(model_path: Path, what: str, location: str) -> SafetyError:
    return SafetyError(
        f"{model_path}: {what} points to external data {location!r}, a symbolic link loop",
        "replace the link with the data file itself; do not load models from untrusted sources",
    )


def _check_data_file(model_path: Path, path: Path, location: str, what: str, end: int) -> None:
    """The data file exists, is a regular file (never opened otherwise: a FIFO blocks its reader forever, a device
    never ends) and holds `end` bytes. Only stat is called; nothing is opened."""
    try:
        st = path.stat()  # follows links (checked above to stay inside the folder)
    except FileNotFoundError:
        raise InvalidInputError(f"{model_path}: external data file {location!r} of {what} is missing",
                                "copy it next to the model") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse_loop(model_path, what, location) from None
        raise InvalidInputError(f"{model_path}: external data file {location!r} of {what} cannot be read: "
                                f"{e.strerror or e}", "check the data file next to the model") from None
    for test, kind in _SPECIAL_FILES:
        if test(st.st_mode):
            raise SafetyError(
                f"{model_path}: external data {location!r} of {what} is {kind}, not a regular file",
                "external data must be a plain file beside the model; edgeconv never reads pipes, sockets or devices",
            )
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else f"not a regular file (mode {st.st_mode:o})"
        raise InvalidInputError(f"{model_path}: external data {location!r} of {what} is {kind}, not a regular file",
                                "copy the data file itself next to the model")
    if st.st_size < end:
        raise InvalidInputError(
            f"{model_path}: external data file {location!r} of {what} is too short ({st.st_size} bytes, needs {end})",
            "the data file is truncated; copy it again",
        )


def external_data_files(model: Any, model_path: Path) -> dict[Path, int]:
    """Every external data file the model references (any tensor, see model_tensors) → the bytes it must hold at
    least. Safety-checked: escaping the folder, symlink loops, FIFOs / sockets / devices: exit 7; missing, short, a
    directory: exit 3."""
    from onnx.external_data_helper import uses_external_data

    base = model_path.parent.resolve()
    needed: dict[Path, int] = {}
    users: dict[Path, tuple[str, str]] = {}  # data file → (location, the first tensor naming it)
    for tensor, what in model_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if "\x00" in location:
            raise InvalidInputError(f"{model_path}: {what} has an external data location holding a NUL byte: "
                                    f"{location!r}", "the model file is damaged")
        if not location or os.path.isabs(location) or location.startswith(("/", "\\")) or ".." in Path(location).parts:
            raise SafetyError(
                f"{model_path}: {what} points to external data {location!r} outside the model's folder",
                "external data must sit beside the model; do not load files from untrusted sources",
            )
        path = model_path.parent / location
        try:
            resolved = path.resolve()
        except RuntimeError as e:  # Python < 3.13: "Symlink loop from ..."
            raise _refuse_loop(model_path, what, location) from e
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _refuse_loop(model_path, what, location) from e
            raise InvalidInputError(f"{model_path}: external data file {location!r} of {what} cannot be read: "
                                    f"{e.strerror or e}", "check the data file next to the model") from e
        if base not in resolved.parents and resolved != base:
            raise SafetyError(
                f"{model_path}: {what}: external data {location!r} is a link to {resolved}, outside the model's folder",
                "copy the data file next to the model instead of linking it",
            )
        try:
            offset, length = int(info.get("offset", 0) or 0), int(info.get("length", 0) or 0)
        except ValueError as e:
            raise InvalidInputError(f"{model_path}: {what} has a bad external data offset/length "
                                    f"({info.get('offset')!r}, {info.get('length')!r})", "the model file is damaged") from e
        if offset < 0 or length < 0:
            raise InvalidInputError(f"{model_path}: {what} has a negative external data offset/length",
                                    "the model file is damaged")
        end = offset + length
        needed[path] = max(needed.get(path, 0), end)
        users.setdefault(path, (location, what))
    for path, end in needed.items():
        _check_data_file(model_path, path, *users[path], end)
    return needed


def load_onnx_checked(path: Path, *, with_data: bool = True) -> Any:
    """onnx.load with the external-data safety checks and one-line errors."""
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:
        raise InvalidInputError(f"cannot parse ONNX model {path}: {first_line(e)}", "the file is damaged or not ONNX") from e
    external_data_files(model, path)
    if with_data:
        try:
            from onnx.external_data_helper import (
                load_external_data_for_tensor,
                uses_external_data,
            )

            for tensor, _ in model_tensors(model):  # sparse initializers too (onnx's loader skips them)
                if uses_external_data(tensor):
                    load_external_data_for_tensor(tensor, str(path.parent))
        except Exception as e:
            raise InvalidInputError(f"cannot read external data of {path}: {first_line(e)}", "check the data files") from e
    return model


class OnnxSourceLoader(SourceLoader):
    name = "onnx"
    formats = frozenset({Format.ONNX})

    def open(self, artifact: Artifact, options: ConvertOptions) -> SourceModel:
        model = load_onnx_checked(artifact.path, with_data=False)
        check_input_dtypes(model, artifact.path, {v.name for v in model.graph.input} - initializers(model.graph).keys())
        inputs = io_specs(model).inputs
        outputs = tuple(o.name for o in model.graph.output)
        if not outputs:
            raise InvalidInputError(f"{artifact.path} has no graph outputs", "the model is incomplete")
        companions = tuple(external_data_files(model, artifact.path))
        src_artifact = Artifact(artifact.path, artifact.format, artifact.variant, companions, artifact.io)
        return SourceModel(src_artifact, inputs, outputs, "onnx", self)

    def load_handle(self, source: SourceModel) -> Any:
        return source.artifact.path
