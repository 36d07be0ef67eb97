"""[quantize.options] backend_rules = "qnn" (the hexagon-* profiles): ONNX Runtime's QNN compatibility overrides.

The HTP computes a 16-bit Tanh with a fixed output encoding (scale 1/32768 around 32768) whatever the QDQ graph says.
With the calibrated encoding ORT's quantizer writes, the Gemm after it got its int32 bias scaled for the wrong input
scale: a BERT pooler (Linear → Tanh) into a classifier with a bias gave 6.1 dB on the HTP while ONNX Runtime's CPU ran
the same QDQ graph at 59 dB. A model of that shape, on the real compiler and simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.quantizers.onnx_qdq import StaticSettings, qnn_compat_overrides
from edgeconv.targets import resolve
from tests.conftest import save_samples
from tests.helpers import convert, target_record

pytest.importorskip("onnxruntime_qnn")


def pooler_classifier(folder: Path) -> Path:
    """[1, 64] → Gemm → Tanh → Gemm (3 classes, a bias of +-0.1 as torch's Linear init gives)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.02, (64, 64)).astype(np.float32), "w_pool"),
             numpy_helper.from_array(np.zeros(64, np.float32), "b_pool"),
             numpy_helper.from_array(rng.normal(0, 0.12, (3, 64)).astype(np.float32), "w_head"),
             numpy_helper.from_array(np.array([0.11, -0.1, -0.12], np.float32), "b_head")]
    nodes = [helper.make_node("Gemm", ["x", "w_pool", "b_pool"], ["pooled"], transB=1, name="pool"),
             helper.make_node("Tanh", ["pooled"], ["tanh"], name="tanh"),
             helper.make_node("Gemm", ["tanh", "w_head", "b_head"], ["logits"], transB=1, name="head")]
    graph = helper.make_graph(nodes, "pooler", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "pooler.onnx"))
    for name, seed in (("calib", 1), ("eval", 2)):
        save_samples(folder / name, np.random.default_rng(seed).normal(0, 1, (24, 64)))
    return folder


def test_hexagon_profiles_use_the_qnn_rules() -> None:
    for name in ("hexagon-int8", "hexagon-int16"):
        assert StaticSettings.from_scheme(resolve(name).quantize).backend_rules == "qnn"
    assert StaticSettings.from_scheme(resolve("cpu-int8").quantize).backend_rules == ""


def test_sixteen_bit_tanh_gets_the_htp_encoding(tmp_path: Path) -> None:
    folder = pooler_classifier(tmp_path)
    settings = StaticSettings.from_scheme(resolve("hexagon-int16").quantize)
    overrides = qnn_compat_overrides(folder / "pooler.onnx", settings, {})
    tanh = overrides["tanh"][0]
    assert float(tanh["scale"]) == pytest.approx(1 / 32768) and int(tanh["zero_point"]) == 32768
    settings8 = StaticSettings.from_scheme(resolve("hexagon-int8").quantize)
    assert "tanh" not in qnn_compat_overrides(folder / "pooler.onnx", settings8, {})  # 8-bit: calibrated, as ORT does


def _int16_on_htp(folder: Path, out: Path) -> tuple[dict, float]:
    manifest = convert(folder / "pooler.onnx", ["hexagon-int16"], out, calib=str(folder / "calib"),
                       eval=str(folder / "eval"), no_cache=True,
                       overrides=("validate.gate.min_snr_db=0", "validate.gate.min_cosine=0",
                                  "validate.gate.min_top1_agreement=0"))
    return manifest, target_record(manifest, "hexagon-int16")["validation"]["metrics"]["snr_db"]


@pytest.mark.slow
def test_pooler_classifier_at_int16_on_the_htp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = pooler_classifier(tmp_path / "model")
    out = tmp_path / "out"
    _, snr = _int16_on_htp(folder, out)
    assert snr > 30.0, snr  # measured 35.3 dB
    with monkeypatch.context() as patch:  # control: the calibrated Tanh encoding, on the same compiler and simulator
        patch.setattr("edgeconv.quantizers.onnx_qdq.qnn_compat_overrides", lambda path, settings, overrides, nodes=(): overrides)
        _, without = _int16_on_htp(folder, tmp_path / "without")
    assert without < 15.0, without  # measured 6.2 dB: the head's bias lands 2.4x too large on the HTP
    qdq = onnx.load_model(str(out / "hexagon-int16" / "pooler.int16.onnx"))
    scales = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    tanh_q = next(n for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "tanh")
    assert float(scales[tanh_q.input[1]]) == pytest.approx(1 / 32768)
