"""Small ONNX models whose one weight lives in external data, stored in each place a TensorProto can sit: a dense or
sparse initializer, a Constant node's `value` / `sparse_value`, an If branch (initializer, Constant, sparse
initializer), a model-local function's body. y = x + w, x and y float32 [4]; w = [1, 0, 0, 2]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PLACES = ("initializer", "sparse-initializer", "constant", "constant-sparse", "if-initializer", "if-constant",
          "if-sparse-initializer", "function-constant", "function-if-initializer")
W = np.array([1.0, 0.0, 0.0, 2.0], np.float32)


class _Blob:
    """The bytes of the externalised tensors, in the order they are added; each tensor records `location`."""

    def __init__(self, location: str) -> None:
        self.location, self.data = location, bytearray()

    def ext(self, tensor: Any) -> Any:
        raw = tensor.raw_data
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", str(len(self.data))), ("length", str(len(raw)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self.data += raw
        return tensor


def _dense(blob: _Blob, name: str = "w") -> Any:
    return blob.ext(numpy_helper.from_array(W, name))


def _sparse(blob: _Blob, name: str = "w") -> Any:
    values = blob.ext(numpy_helper.from_array(np.array([1.0, 2.0], np.float32), name))
    indices = blob.ext(numpy_helper.from_array(np.array([0, 3], np.int64), f"{name}_indices"))
    return helper.make_sparse_tensor(values, indices, [4])


def _branch(name: str, out: str, initializers: list[Any] = (), sparse: list[Any] = (), nodes: list[Any] = (),
            source: str = "w") -> Any:
    vi = helper.make_tensor_value_info(out, TensorProto.FLOAT, [4])
    return helper.make_graph([*nodes, helper.make_node("Identity", [source], [out])], name, [], [vi],
                             list(initializers), sparse_initializer=list(sparse))


def _if(blob: _Blob, inner: str, out: str = "wv") -> Any:
    """If(True) whose then branch holds the external tensor (as `inner` says), the else branch zeros."""
    if inner == "initializer":
        then = _branch("then", "t_out", initializers=[_dense(blob)])
    elif inner == "constant":
        then = _branch("then", "t_out", nodes=[helper.make_node("Constant", [], ["w"], value=_dense(blob, "wc"))])
    else:
        then = _branch("then", "t_out", sparse=[_sparse(blob)])
    other = _branch("else", "e_out", initializers=[numpy_helper.from_array(np.zeros(4, np.float32), "z")], source="z")
    return helper.make_node("If", ["cond"], [out], then_branch=then, else_branch=other)


def build(folder: Path, place: str, location: str = "weights.bin") -> Path:
    """folder/model.onnx with w in `place`, recorded at `location`; its bytes written to folder/weights.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = _Blob(location)
    initializers: list[Any] = []
    sparse: list[Any] = []
    nodes: list[Any] = []
    functions: list[Any] = []
    domain = "edgeconv.test"
    if place == "initializer":
        initializers.append(_dense(blob))
    elif place == "sparse-initializer":
        sparse.append(_sparse(blob))
    elif place == "constant":
        nodes.append(helper.make_node("Constant", [], ["w"], value=_dense(blob, "wc")))
    elif place == "constant-sparse":
        nodes.append(helper.make_node("Constant", [], ["w"], sparse_value=_sparse(blob)))
    elif place.startswith("if-"):
        initializers.append(numpy_helper.from_array(np.array(True), "cond"))
        nodes.append(_if(blob, place[3:]))
    elif place.startswith("function-"):
        if place == "function-constant":
            body = [helper.make_node("Constant", [], ["wf"], value=_dense(blob, "wc"))]
        else:
            body = [helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True), "c")),
                    _if(blob, "initializer", out="wf")]
        functions.append(helper.make_function(domain, "Weight", [], ["wf"], body, [helper.make_opsetid("", 17)]))
        nodes.append(helper.make_node("Weight", [], ["w"], domain=domain))
    else:
        raise AssertionError(place)
    nodes.append(helper.make_node("Add", ["x", "wv" if place.startswith("if-") else "w"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializers,
                              sparse_initializer=sparse)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if functions else [])
    model = helper.make_model(graph, opset_imports=opsets, functions=functions)
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save_model(model, str(path))
    (folder / "weights.bin").write_bytes(bytes(blob.data))
    return path


def tensor_named(place: str) -> str:
    """What the error names: the tensor, or the Constant node's attribute."""
    if place in ("constant", "if-constant", "function-constant"):
        return "wc"
    if place == "constant-sparse":
        return "sparse_value"
    return "'w'"


def relocate(path: Path, location: str) -> None:
    """Point every initializer's external data of the model at `path` to `location` (an attack, or a moved file)."""
    model = onnx.load_model(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(path))


def make_special_file(data: Path, kind: str) -> Path | None:
    """Put a FIFO ("fifo"), a link to a FIFO ("link-to-fifo") or a Unix socket ("socket") where the file `data` was.
    Returns the FIFO a link points to (None otherwise)."""
    import os
    import socket

    data.unlink()
    if kind == "fifo":
        os.mkfifo(data)
    elif kind == "link-to-fifo":
        os.mkfifo(data.parent / "pipe")
        data.symlink_to("pipe")
        return data.parent / "pipe"
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(str(data))
    else:
        raise ValueError(kind)
    return None
