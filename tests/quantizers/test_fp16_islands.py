"""An audio model with its log-mel front end in the graph (framed DFT as a strided Conv1d, |.|², mel matmul,
log(x + 1e-10)): what it showed, each fixed where it belongs.

- torch.onnx's optimiser deleted the `+ 1e-10` (its pattern matcher takes |c| < 1e-8 for 0): the float32 ONNX gave
  NaN on silence. Exported without it (converters/torch_to_onnx.py).
- onnxslim fused the MatMul + scalar Add into a Gemm with a 0-d bias, on which ONNX Runtime's QDQ quantizer raised
  IndexError (passes/gemm_bias.py).
- float16 lost the task (13.5 dB): the mel energies pass 8192 and the epsilon is below float16's range. The measured
  overflow-prone nodes stay float32 (quantizers/fp16_islands.py), without float16 round trips between them.
- NaN in a converted output used to score the SNR cap (validation.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cached
from tests.helpers import convert, target_record


def _build(folder: Path) -> None:
    import torch
    from torch import nn

    class LogMelNet(nn.Module):
        def __init__(self, n_fft: int = 400, hop: int = 160, mels: int = 32) -> None:
            super().__init__()
            t, f = np.arange(n_fft), np.arange(n_fft // 2 + 1)[:, None]
            window = np.hanning(n_fft)
            basis = np.concatenate([np.cos(2 * np.pi * f * t / n_fft) * window, -np.sin(2 * np.pi * f * t / n_fft) * window])
            self.register_buffer("basis", torch.tensor(basis[:, None, :], dtype=torch.float32))
            self.register_buffer("mel", torch.rand(n_fft // 2 + 1, mels, generator=torch.Generator().manual_seed(0)))
            self.hop, self.bins = hop, n_fft // 2 + 1
            self.net = nn.Sequential(nn.Conv1d(mels, 16, 3, padding=1), nn.ReLU(), nn.Conv1d(16, 16, 3, padding=1), nn.ReLU())
            self.fc = nn.Linear(16, 5)

        def forward(self, wave):
            spec = nn.functional.conv1d(wave.unsqueeze(1), self.basis, stride=self.hop)
            power = spec[:, : self.bins] ** 2 + spec[:, self.bins:] ** 2
            logmel = torch.log(torch.matmul(power.transpose(1, 2), self.mel) + 1e-10).transpose(1, 2)
            return self.fc(self.net(logmel).mean(dim=2))

    torch.manual_seed(0)
    torch.export.save(torch.export.export(LogMelNet().eval(), (torch.randn(1, 8000),)), str(folder / "logmel.pt2"))
    rng = np.random.default_rng(0)
    (folder / "eval").mkdir()
    for i in range(8):  # tones in noise after a stretch of digital silence
        t = np.arange(8000) / 16000
        wave = 0.8 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(8000)
        wave[: rng.integers(1000, 4000)] = 0.0
        np.save(folder / "eval" / f"{i}.npy", wave[None].astype(np.float32))


@pytest.fixture(scope="module")
def logmel() -> Path:
    return cached("logmel-audio", _build)


def _snr(manifest: dict, name: str) -> float:
    return target_record(manifest, name)["validation"]["metrics"]["snr_db"]


@pytest.mark.slow
def test_log_mel_front_end_at_fp32_fp16_and_int8(logmel: Path, tmp_path: Path) -> None:
    data = str(logmel / "eval")
    manifest = convert(logmel / "logmel.pt2", ["onnx", "onnx-fp16", "cpu-int8"], tmp_path / "out", eval=data, calib=data)
    assert _snr(manifest, "onnx") > 100
    assert _snr(manifest, "onnx-fp16") > 50 and _snr(manifest, "cpu-int8") > 25
    islands = target_record(manifest, "onnx-fp16")["notes"]["quantize"]["fp32_islands"]
    assert {i["op_type"] for i in islands} >= {"Log"} and len(islands) <= 5  # a few nodes, not the network
    assert any("overflow-prone" in w for w in target_record(manifest, "onnx-fp16")["warnings"])


@pytest.mark.slow
def test_without_islands_fp16_loses_the_model(logmel: Path, tmp_path: Path) -> None:
    """The control: the same conversion with the islands off fails its gate (so the test above can fail)."""
    from edgeconv.errors import AccuracyGateError

    data = str(logmel / "eval")
    with pytest.raises(AccuracyGateError) as info:
        convert(logmel / "logmel.pt2", ["onnx-fp16"], tmp_path / "out", eval=data,
                overrides=("quantize.options.fp16_islands=false",))
    assert info.value.details["validation"]["metrics"]["snr_db"] < 30
