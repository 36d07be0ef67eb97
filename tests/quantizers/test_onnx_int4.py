"""onnx-int4 (quantizers/onnx_int4.py): block-wise 4-bit MatMul weights (ONNX Runtime's MatMulNBits) on a transformer
block exported by torch.onnx, whose Linear layers arrive as Gemm: every one is quantized, the file shrinks, ONNX
Runtime's output stays close, and `edgeconv validate` reads the precision back from the file."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edgeconv.formats import detect
from edgeconv.precision import infer_precision, profile_for_precision
from tests.helpers import convert, target_record


@pytest.mark.slow
def test_transformer_block_int4(transformer: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = convert(transformer / "transformer.pt2", ["onnx", "onnx-int4"], out, eval=str(transformer / "eval"))
    fp32, int4 = target_record(manifest, "onnx"), target_record(manifest, "onnx-int4")
    notes = int4["notes"]["quantize"]
    assert notes["quantizer"] == "onnx_int4" and notes["block_size"] == 32
    # the block's 4 Linear layers (attention in/out projections, MLP) are Gemms after export: all rewritten, quantized
    assert notes["gemm_to_matmul"] >= 4 and notes["quantized"] >= 4
    path = out / int4["artifacts"][0]["path"]
    ops = [n.op_type for n in onnx.load_model(str(path)).graph.node]
    assert ops.count("MatMulNBits") == notes["quantized"] and "Gemm" not in ops
    metrics = int4["validation"]["metrics"]
    assert int4["validation"]["passed"] and metrics["snr_db"] > 20 and metrics["cosine"] > 0.99
    assert metrics["snr_db"] < fp32["validation"]["metrics"]["snr_db"] - 40  # it really is 4-bit, not float
    assert int4["artifacts"][0]["bytes"] < 0.45 * fp32["artifacts"][0]["bytes"]
    inferred = infer_precision(detect(path))
    assert inferred is not None and inferred.precision == "int4"
    assert profile_for_precision(detect(path).format, inferred).name == "onnx-int4"


def test_cnn_quantizes_its_linear_layer_only(digits, tmp_path: Path) -> None:
    """The digits CNN: its one Linear (a Gemm) takes 4-bit weights, the Convs stay float."""
    manifest = convert(digits.onnx, ["onnx-int4"], tmp_path / "out", eval=str(digits.eval))
    record = target_record(manifest, "onnx-int4")
    notes = record["notes"]["quantize"]
    assert notes["matmuls"] == 1 and notes["quantized"] == 1 and not record["warnings"]
    ops = [n.op_type for n in onnx.load_model(str(tmp_path / "out" / record["artifacts"][0]["path"])).graph.node]
    assert ops.count("Conv") == 2 and ops.count("MatMulNBits") == 1
    assert record["validation"]["passed"] and record["validation"]["metrics"]["snr_db"] > 20


def test_conv_only_model_stays_float_and_says_so(tmp_path: Path) -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                               helper.make_node("Relu", ["c"], ["y"])], "convs",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "convs.onnx")
    manifest = convert(tmp_path / "convs.onnx", ["onnx-int4"], tmp_path / "out")
    record = target_record(manifest, "onnx-int4")
    assert record["notes"]["quantize"]["quantized"] == 0
    assert any("stays float" in w and "cpu-int8" in w for w in record["warnings"])
    assert record["validation"]["metrics"]["snr_db"] > 100


def test_embedding_table_takes_4_bit_blocks_too(tmp_path: Path) -> None:
    """An embedding (Gather from a constant float table, int64 token ids) then a projection: the table becomes
    GatherBlockQuantized and the projection MatMulNBits; the file shrinks below a third, the output stays close."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    table = rng.normal(size=(512, 64)).astype(np.float32)
    proj = rng.normal(size=(64, 32)).astype(np.float32) / 8
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["emb"]), helper.make_node("MatMul", ["emb", "proj"], ["y"])],
        "embed", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 32])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(proj, "proj")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "embed.onnx")
    (tmp_path / "eval").mkdir()
    for i in range(8):
        np.save(tmp_path / "eval" / f"{i}.npy", rng.integers(0, 512, size=(1, 16)).astype(np.int64))
    manifest = convert(tmp_path / "embed.onnx", ["onnx", "onnx-int4"], tmp_path / "out", eval=str(tmp_path / "eval"))
    fp32, int4 = target_record(manifest, "onnx"), target_record(manifest, "onnx-int4")
    notes = int4["notes"]["quantize"]
    assert notes["quantized"] == 1 and notes["gathers_quantized"] == 1
    assert int4["artifacts"][0]["bytes"] < 0.33 * fp32["artifacts"][0]["bytes"]
    assert 18 < int4["validation"]["metrics"]["snr_db"] < 60


@pytest.mark.slow
def test_fallback_keeps_the_costliest_weights_float_to_meet_the_gate(transformer: Path, tmp_path: Path) -> None:
    """A gate int4 alone misses (30 dB on the transformer block, which int4 brings to about 24 dB): the search keeps
    the weights that cost most in float, one at a time, until the gate passes; the rest stay 4-bit."""
    manifest = convert(transformer / "transformer.pt2", ["onnx-int4"], tmp_path / "out", eval=str(transformer / "eval"),
                       overrides=("validate.gate.min_snr_db=30",))
    record = target_record(manifest, "onnx-int4")
    notes = record["notes"]["quantize"]
    fallback = notes["fallback"]
    assert fallback["before"]["snr_db"] < 30 <= fallback["after"]["snr_db"]
    assert 1 <= len(fallback["kept_float"]) < fallback["candidates_measured"]
    assert notes["quantized"] == fallback["candidates_measured"] - len(fallback["kept_float"]) >= 1
    assert record["validation"]["passed"] and record["validation"]["metrics"]["snr_db"] >= 30
    assert any("kept" in w and "float to meet the accuracy gate" in w for w in record["warnings"])
