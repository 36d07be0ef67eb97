"""The shared ONNX helper (edgeconv/onnx_graph.py) on small graphs built with onnx.helper: producers and consumers,
initializers, graph I/O specs (symbolic batch dims, int64 / float16 / bool inputs, the two readings of dim 0 and of
unknown dtypes), subgraph walking, stem_of and the static-shape error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.errors import InvalidInputError
from edgeconv.formats import TensorSpec
from edgeconv.onnx_graph import (DTYPE_NAMES, UNFEEDABLE_DTYPES, all_nodes, consumers, dtype_name, initializers,
                                 io_specs, ort_dtype_name, ort_numpy_dtype, producers, read_io_specs,
                                 static_shape_error, stem_of, subgraphs, value_spec)


def _model(nodes: list, inputs: list, outputs: list, inits: list | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])


def _chain() -> onnx.ModelProto:
    """x → Mul(x, x) → Add(·, w) → Relu → y, with w an initializer also listed as a graph input."""
    w = numpy_helper.from_array(np.ones([1, 4], np.float32), "w")
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"], name="mul"),
             helper.make_node("Add", ["sq", "w"], ["sum"], name="add"),
             helper.make_node("Relu", ["sum"], ["y"], name="relu")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 4])]
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])


def test_producers_map_each_output_to_its_node() -> None:
    graph = _chain().graph
    found = producers(graph)
    assert {name: node.name for name, node in found.items()} == {"sq": "mul", "sum": "add", "y": "relu"}
    assert "x" not in found and "w" not in found  # graph inputs and initializers have no producer


def test_consumers_list_each_read_in_graph_order() -> None:
    graph = _chain().graph
    readers = consumers(graph)
    assert [n.name for n in readers["x"]] == ["mul", "mul"]  # Mul(x, x) reads x twice: not a single use
    assert [n.name for n in readers["sq"]] == ["add"]
    assert [n.name for n in readers["w"]] == ["add"]
    assert "y" not in readers  # a graph output nobody reads
    readers["y"] = []  # a plain dict the caller may keep current (qnn/_widths adds the nodes it writes)


def test_initializers_by_name() -> None:
    graph = _chain().graph
    inits = initializers(graph)
    assert list(inits) == ["w"]
    assert numpy_helper.to_array(inits["w"]).shape == (1, 4)
    assert "x" not in inits


def test_io_specs_leave_initializers_out_and_keep_a_symbolic_batch() -> None:
    io = io_specs(_chain())
    assert io.inputs == (TensorSpec("x", ("batch", 4), "float32"),)
    assert io.outputs == (TensorSpec("y", ("batch", 4), "float32"),)
    assert not io.inputs[0].is_static and io.inputs[0].dynamic_dims == [0]


def test_io_specs_dtypes() -> None:
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 16]),
              helper.make_tensor_value_info("half", TensorProto.FLOAT16, [1, 3, 8, 8]),
              helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, 16])]
    nodes = [helper.make_node("Cast", ["ids"], ["a"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["mask"], ["b"], to=TensorProto.FLOAT),
             helper.make_node("Identity", ["half"], ["c"])]
    outputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 16]),
               helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 16]),
               helper.make_tensor_value_info("c", TensorProto.FLOAT16, [1, 3, 8, 8])]
    io = io_specs(_model(nodes, inputs, outputs))
    assert [(s.name, s.dtype, s.shape) for s in io.inputs] == [
        ("ids", "int64", ("batch", 16)), ("half", "float16", (1, 3, 8, 8)), ("mask", "bool", (1, 16))]
    assert [s.dtype for s in io.outputs] == ["float32", "float32", "float16"]
    # the same under numpy's names: they agree on every type of the table
    assert io_specs(_model(nodes, inputs, outputs), numpy_dtype_names=True) == io


def test_dim_zero_reads_unknown_unless_kept_as_written() -> None:
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 3, None, "seq"])
    assert value_spec(value).shape == (None, 3, None, "seq")  # the source reader's: 0 is no size
    assert value_spec(value, keep_dim_values=True).shape == (0, 3, None, "seq")  # the TFLite edge's: as written


def test_dtype_names_outside_the_table() -> None:
    assert dtype_name(TensorProto.FLOAT) == "float32" and dtype_name(TensorProto.DOUBLE) == "float64"
    assert dtype_name(TensorProto.STRING) == "onnx-type-8"
    assert dtype_name(TensorProto.STRING, numpy_dtype_names=True) == "object"
    assert not set(DTYPE_NAMES) & set(UNFEEDABLE_DTYPES)
    for elem, name in DTYPE_NAMES.items():  # one table, the names numpy gives the same types
        assert helper.tensor_dtype_to_np_dtype(elem).name == name


def test_ort_dtype_names() -> None:
    assert ort_dtype_name("tensor(float)") == "float32"
    assert ort_dtype_name("tensor(double)") == "float64"
    assert ort_dtype_name("tensor(int64)") == "int64"
    assert ort_dtype_name("tensor(string)") == "string"
    assert ort_numpy_dtype("tensor(float16)") == np.float16
    assert ort_numpy_dtype("tensor(bool)") == np.bool_
    assert ort_numpy_dtype("tensor(bfloat16)") is None and ort_numpy_dtype("tensor(string)") is None


def test_read_io_specs_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "chain.onnx"
    onnx.save_model(_chain(), str(path))
    assert read_io_specs(path) == io_specs(_chain())


def test_all_nodes_walks_subgraphs() -> None:
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"], name="inner_then")], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="inner_else")], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1])])
    branch = helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=other)
    model = _model([branch], [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    assert [g.name for g in subgraphs(model.graph.node[0])] == ["else", "then"]  # attribute order (sorted by onnx)
    assert [n.name for n in all_nodes(model.graph)] == ["if", "inner_else", "inner_then"]


@pytest.mark.parametrize("name, stem", [("model.onnx", "model"), ("resnet.int8.onnx", "resnet.int8"),
                                        ("saved_model", "saved_model"), ("", "model")])
def test_stem_of(name: str, stem: str) -> None:
    assert stem_of(Path("/models") / name if name else Path("")) == stem


def test_static_shape_error_names_inputs_and_the_fix() -> None:
    dynamic = [TensorSpec("x", ("batch", 3, 224, 224)), TensorSpec("ids", (None, "seq"), "int64"),
               TensorSpec("audio", (), rank_known=False)]
    error = static_shape_error("target hexagon-int8", dynamic)
    assert isinstance(error, InvalidInputError) and error.exit_code == 3
    assert error.message == ("target hexagon-int8 needs static shapes; dynamic input(s): x [batchx3x224x224], "
                             "ids [?xseq], audio [unknown]")
    assert error.hint == ("fix them with --input-shape x=1x3x224x224 --input-shape ids=1x1 --input-shape audio=DIMS "
                          "(your real sizes)")
    assert error.details == {"dynamic_inputs": ["x", "ids", "audio"]}
    htp = static_shape_error("the Hexagon HTP", dynamic[:1])
    assert htp.message == "the Hexagon HTP needs static shapes; dynamic input(s): x [batchx3x224x224]"
