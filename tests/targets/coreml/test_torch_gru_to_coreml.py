"""torch.export programs with an `nn.GRU` (and the torch.stft front end of the same audio models) → Core ML: coremltools
refused the fx node ("Unsupported fx node gru, kind gru.input"); targets/coreml/_torch_ops.py unrolls it. Every case
runs the converted ML program with the NumPy MIL reference executor (Linux has no Core ML runtime) and compares it with
PyTorch, numbers asserted: unidirectional and bidirectional, batch_first or not, 1 and 2 layers, biases, an h0 given,
both outputs (output, h_n) returned.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import convert, target_record

torch = pytest.importorskip("torch")
pytest.importorskip("coremltools")
nn = torch.nn
ON_MACOS = sys.platform == "darwin"
BATCH, STEPS, FEATURES, HIDDEN = 2, 7, 6, 5


class Gru(nn.Module):
    def __init__(self, batch_first: bool, bidirectional: bool, layers: int, bias: bool = True) -> None:
        super().__init__()
        self.gru = nn.GRU(FEATURES, HIDDEN, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional,
                          bias=bias)
        with torch.no_grad():  # weights and biases well away from 0: b_hn must matter (the reset gate scales it)
            for p in self.gru.parameters():
                p.uniform_(-0.8, 0.8)

    def forward(self, x: Any, h0: Any) -> tuple[Any, Any]:
        return self.gru(x, h0)


def convert_and_run(module: Any, args: tuple[Any, ...], precision: str = "FLOAT32") -> tuple[list[np.ndarray], set[str]]:
    """The exported module converted by coremltools (with edgeconv's fixes) and run by the MIL reference executor."""
    from edgeconv.targets.coreml._loader import coremltools, quiet
    from edgeconv.targets.coreml._mil_reference import program_of, run_program

    ct = coremltools()
    program = torch.export.export(module.eval(), args).run_decompositions({})
    with quiet():
        mlmodel = ct.convert(program, convert_to="mlprogram", skip_model_load=True,
                             minimum_deployment_target=ct.target.iOS17,
                             compute_precision=getattr(ct.precision, precision))
    mil = program_of(mlmodel)
    function = mil.functions["main"]
    outputs = run_program(mil, dict(zip(function.inputs, [a.numpy() for a in args])))
    return outputs, {op.op_type for op in function.operations}


def snr_db(actual: np.ndarray, expected: np.ndarray) -> float:
    noise = np.sum((actual.astype(np.float64) - expected) ** 2)
    return float(10 * np.log10(np.sum(expected.astype(np.float64) ** 2) / max(noise, 1e-30)))


# each layout, direction count and depth at least once (two of the 2 x 2 x 2 product: CI time)
CASES = [pytest.param(bf, bi, layers, id=f"{'batch_first' if bf else 'seq_first'}-{'bi' if bi else 'uni'}-{layers}l",
                      marks=() if (bf, bi, layers) == (True, True, 2) else pytest.mark.slow)
         for bf, bi, layers in ((True, True, 2), (False, False, 1))]


@pytest.mark.parametrize("batch_first, bidirectional, layers", CASES)
def test_exported_gru_matches_pytorch(batch_first: bool, bidirectional: bool, layers: int) -> None:  # ~2-4 s each
    """output and h_n of the converted program are PyTorch's to float32 rounding (max abs error < 1e-5, measured
    ~2e-7), and the program holds Neural Engine ops only: no gru / while_loop / gather / scatter."""
    from edgeconv.targets.coreml._spec import ANE_OPS

    torch.manual_seed(0)
    module = Gru(batch_first, bidirectional, layers)
    x = torch.randn(BATCH, STEPS, FEATURES) if batch_first else torch.randn(STEPS, BATCH, FEATURES)
    h0 = torch.randn(layers * (2 if bidirectional else 1), BATCH, HIDDEN)
    (output, h_n), ops = convert_and_run(module, (x, h0))
    with torch.no_grad():
        want_output, want_h_n = (t.numpy() for t in module(x, h0))
    assert output.shape == want_output.shape and h_n.shape == want_h_n.shape
    assert np.abs(output - want_output).max() < 1e-5
    assert np.abs(h_n - want_h_n).max() < 1e-5
    assert snr_db(output, want_output) > 100
    assert ops <= ANE_OPS and {"linear", "sigmoid", "tanh"} <= ops


@pytest.mark.slow
def test_exported_gru_without_bias_or_h0_and_in_float16() -> None:
    """bias=False; h0 left out (torch.export writes zeros); a float16 program (what ane-fp16 builds): each op rounded
    to float16 by the executor, still > 50 dB against PyTorch's float32."""

    class LastStep(nn.Module):  # the keyword-spotting head: the last step of a batch-first GRU
        def __init__(self, bias: bool) -> None:
            super().__init__()
            self.gru = Gru(True, True, 2, bias=bias).gru

        def forward(self, x: Any) -> Any:
            return self.gru(x)[0][:, -1]

    torch.manual_seed(1)
    x = torch.randn(BATCH, STEPS, FEATURES)
    for bias, precision, floor in ((False, "FLOAT32", 100.0), (True, "FLOAT16", 50.0)):
        module = LastStep(bias).eval()
        (output,), _ = convert_and_run(module, (x,), precision)
        with torch.no_grad():
            want = module(x).numpy()
        assert output.shape == want.shape == (BATCH, 2 * HIDDEN)
        assert snr_db(output, want) > floor, (bias, precision)
        if precision == "FLOAT32":
            assert np.abs(output - want).max() < 1e-5


def test_stft_with_real_output_matches_pytorch() -> None:  # ~2 s
    """torch.stft(return_complex=False) (the audio_torchstft front end): coremltools returned the complex tensor and the
    select of the real plane after it failed ("list assignment index out of range"). Power spectrum > 100 dB."""

    class Power(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("window", torch.hann_window(64))

        def forward(self, wave: Any) -> Any:
            spec = torch.stft(wave, 64, 32, window=self.window, center=False, return_complex=False)
            return spec[..., 0] ** 2 + spec[..., 1] ** 2

    torch.manual_seed(2)
    wave = torch.randn(1, 512)
    module = Power()
    (output,), _ = convert_and_run(module, (wave,))
    with torch.no_grad():
        want = module(wave).numpy()
    assert output.shape == want.shape == (1, 33, 15)
    assert snr_db(output, want) > 100


@pytest.mark.slow
@pytest.mark.skipif(ON_MACOS, reason="asserts the Linux reference execution")
def test_gru_keyword_spotter_through_edgeconv(tmp_path: Path) -> None:
    """A small CNN + GRU keyword spotter saved as .pt2, through `edgeconv convert` for coreml-fp32 and ane-fp16: the
    structural check's MIL reference execution ran and matches the source (> 100 dB fp32, > 45 dB fp16); the GRU
    keeps the ane-fp16 program on the Neural Engine (no op elsewhere)."""

    class Spotter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(8, 16, 3, padding=1)
            self.gru = nn.GRU(16, 12, batch_first=True)
            self.fc = nn.Linear(12, 4)

        def forward(self, features: Any) -> Any:
            seq = torch.relu(self.conv(features)).transpose(1, 2)
            return self.fc(self.gru(seq)[0][:, -1])

    torch.manual_seed(3)
    path = tmp_path / "spotter.pt2"
    torch.export.save(torch.export.export(Spotter().eval(), (torch.randn(1, 8, 20),)), str(path))
    manifest = convert(path, ["coreml-fp32", "ane-fp16"], tmp_path / "out", calib="random")
    for name, floor in (("coreml-fp32", 100.0), ("ane-fp16", 45.0)):
        validation = target_record(manifest, name)["validation"]
        assert validation["passed"] and validation["kind"] == "structural"
        checks = validation["checks"]
        assert checks["mil_reference"]["ran"] and checks["mil_reference"]["passed"]
        assert checks["mil_reference"]["metrics"]["snr_db"] > floor, name
        assert checks["ane_placement"]["elsewhere"] == {}
        assert checks["ops"]["tanh"] == 20 and "gru" not in checks["ops"]  # one step each: unrolled
