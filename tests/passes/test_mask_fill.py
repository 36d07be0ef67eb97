"""passes/mask_fill: a -3.4e38 attention-mask fill becomes -100; the float model computes the same, and a 16-bit
quantizer keeps the attention scores (with the huge fill every score rounded to one value: uniform attention)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.mask_fill import MASK_FILL, bound_mask_fill

FINFO_MIN = np.finfo(np.float32).min


def _attention(fill: float, *, softmax: bool = True, mul_form: bool = False) -> onnx.ModelProto:
    """scores [1, 4, 8] + additive mask from an int64 attention_mask [1, 8] (transformers' where form, or the
    older `(1 - mask) * fill`), then Softmax over the keys."""
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(fill, np.float32), "fill"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    if mul_form:
        nodes = [helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
                 helper.make_node("Sub", ["one", "m"], ["inv"]),
                 helper.make_node("Mul", ["inv", "fill"], ["additive"])]
    else:
        nodes = [helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.BOOL),
                 helper.make_node("Where", ["m", "zero", "fill"], ["additive"])]
    nodes += [helper.make_node("Add", ["scores", "additive"], ["masked"]),
              helper.make_node("Softmax" if softmax else "Relu", ["masked"], ["probs"], **({"axis": -1} if softmax else {}))]
    graph = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4, 8]),
                                                   helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, 8])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _feeds(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((1, 8), np.int64)
    mask[0, 5 + seed % 3:] = 0  # padded tail, as a tokenizer writes it
    return {"scores": rng.normal(0, 2.0, (1, 4, 8)).astype(np.float32), "attention_mask": mask}


def _run(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("mul_form", [False, True])
def test_fill_bounded_and_float_outputs_unchanged(mul_form: bool) -> None:
    model = _attention(FINFO_MIN, mul_form=mul_form)
    feeds = _feeds(0)
    before = _run(model, feeds)
    assert bound_mask_fill(model) == 1
    fill = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "fill"))
    assert float(fill) == MASK_FILL
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model, feeds), before, rtol=0, atol=1e-30)


@pytest.mark.parametrize("fill", [-10000.0, -1.0])
def test_moderate_fills_left_alone(fill: float) -> None:
    assert bound_mask_fill(_attention(fill)) == 0


def test_fill_not_reaching_a_softmax_left_alone() -> None:
    assert bound_mask_fill(_attention(FINFO_MIN, softmax=False)) == 0


def test_uint16_quantized_attention_keeps_its_scores(tmp_path: Path) -> None:
    from onnxruntime import quantization as q

    def quantized_snr(model: onnx.ModelProto, name: str) -> float:
        float_path, qdq_path = tmp_path / f"{name}.onnx", tmp_path / f"{name}.qdq.onnx"
        onnx.save_model(model, str(float_path))

        class Reader(q.CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter([_feeds(i) for i in range(16)])

            def get_next(self):
                return next(self.it, None)

        q.quantize_static(str(float_path), str(qdq_path), Reader(), quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QUInt16, weight_type=q.QuantType.QInt8,
                          op_types_to_quantize=["Where", "Add", "Softmax", "Mul", "Sub"],
                          extra_options={"UseQDQContribOps": True})
        ref = np.concatenate([_run(float_path, _feeds(i)) for i in range(16, 24)])
        got = np.concatenate([_run(qdq_path, _feeds(i)) for i in range(16, 24)])
        return float(10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum()))

    model = _attention(FINFO_MIN)
    before = quantized_snr(model, "before")
    bound_mask_fill(model)
    after = quantized_snr(model, "after")
    assert before < 10.0, before  # every score rounds to one uint16 step of 5e33: uniform attention
    assert after > 45.0, after
