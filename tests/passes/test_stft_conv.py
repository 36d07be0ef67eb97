"""passes/stft_conv: a constant-parameter STFT of a real signal becomes a strided Conv over the windowed DFT basis,
computing what ONNX Runtime's STFT computes, in STFT's [batch, frames, bins, 2] layout."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.passes.stft_conv import stft_to_conv

LENGTH = 2000


def _stft_model(window: np.ndarray | None, frame_length: int | None, onesided: int = 1, step: int = 64,
                signal_width: int = 1) -> onnx.ModelProto:
    """waveform [2, L] → Unsqueeze → STFT → |X|² summed with the raw spectrum's mean, as a spectrogram front end."""
    inits = [numpy_helper.from_array(np.array(step, np.int64), "step"),
             numpy_helper.from_array(np.array([2], np.int64), "axis")]
    stft_inputs = ["signal", "step", "", ""]
    if window is not None:
        inits.append(numpy_helper.from_array(window.astype(np.float32), "window"))
        stft_inputs[2] = "window"
    if frame_length is not None:
        inits.append(numpy_helper.from_array(np.array(frame_length, np.int64), "frame_length"))
        stft_inputs[3] = "frame_length"
    while stft_inputs[-1] == "":
        stft_inputs.pop()
    nodes = [helper.make_node("Unsqueeze", ["wave", "axis"], ["signal"]) if signal_width == 1
             else helper.make_node("Identity", ["wave"], ["signal"]),
             helper.make_node("STFT", stft_inputs, ["spectrum"], name="stft", onesided=onesided),
             helper.make_node("Mul", ["spectrum", "spectrum"], ["power"])]
    shape = [2, LENGTH] if signal_width == 1 else [2, LENGTH, signal_width]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("wave", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("power", TensorProto.FLOAT, ["b", "f", "k", "c"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, wave: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"wave": wave})[0]


@pytest.mark.parametrize(("window", "frame_length", "onesided"), [
    (np.hanning(256), None, 1),  # torch.stft(n_fft=256, window=hann_window, center=False), as the corpus exports it
    (np.hanning(200), 200, 1),  # an odd-sized basis: 101 bins
    (None, 128, 1),  # no window: rectangular
    (np.hamming(128), 128, 0),  # two-sided: every bin
], ids=["hann-256", "hann-200-with-length", "rectangular", "two-sided"])
def test_stft_becomes_one_conv_with_the_same_spectrum(window, frame_length, onesided) -> None:
    model = _stft_model(window, frame_length, onesided)
    wave = np.random.default_rng(0).standard_normal((2, LENGTH)).astype(np.float32)
    before = _run(model, wave)
    assert stft_to_conv(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "STFT" not in ops and ops.count("Conv") == 1
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)  # the rewrite's shapes are consistent
    assert any(v.name == "spectrum" for v in inferred.graph.value_info)
    after = _run(model, wave)
    assert after.shape == before.shape  # [batch, frames, bins, 2], squared
    np.testing.assert_allclose(after, before, rtol=1e-3, atol=1e-3 * float(np.abs(before).max()))


def test_a_complex_signal_or_a_computed_step_is_left_alone() -> None:
    complex_signal = _stft_model(np.hanning(128), None, signal_width=2)
    before = complex_signal.SerializeToString()
    assert stft_to_conv(complex_signal) == 0 and complex_signal.SerializeToString() == before
    computed = _stft_model(np.hanning(128), None)
    computed.graph.node.insert(0, helper.make_node("Identity", ["step_in"], ["step_runtime"]))
    computed.graph.initializer[0].name = "step_in"
    stft = next(n for n in computed.graph.node if n.op_type == "STFT")
    stft.input[1] = "step_runtime"
    assert stft_to_conv(computed) == 0
