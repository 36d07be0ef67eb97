"""targets/tflite/log_domain_check: a full-integer TFLite has no float island, so a model whose in-graph power spectrum
feeds a Log (the corpus keyword spotter's front end: STFT as Conv1d, |X|², mel MatMul, + eps, Log, then a GRU) is
refused with exit 4 before onnx2tf runs, naming the nodes and the routes that work, at tflite-int8 and tflite-int16x8
alike. It used to be converted for 45 s into a model computing noise (-3.5 dB, top-1 0.06; int16x8 -2.5 dB)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2tf")

from tests.conftest import run_cli  # noqa: E402
from tests.corpus import data  # noqa: E402
from tests.corpus.torch_models import AudioKWS  # noqa: E402


@pytest.fixture(scope="module")
def kws(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("kws")
    clips = data.audio(8, seed=3)
    path = folder / "kws.onnx"
    torch.onnx.export(AudioKWS().eval(), (torch.from_numpy(clips[:1]),), str(path), input_names=["waveform"],
                      dynamo=False, opset_version=17)
    calib = folder / "calib"
    calib.mkdir()
    for i, clip in enumerate(clips):
        np.save(calib / f"{i:03d}.npy", clip[None])
    return path, calib


@pytest.mark.parametrize("target, bits", [("tflite-int8", 8), ("tflite-int16x8", 16)])
def test_front_end_no_integer_holds_is_refused_before_conversion(kws, tmp_path: Path, target: str, bits: int) -> None:
    model, calib = kws
    out = tmp_path / "out"
    result = run_cli("convert", model, "-t", target, "--calib", calib, "-o", out, "--json")
    assert result.code == 4, result.stderr
    error = json.loads(result.stdout)["error"]
    assert f"{bits}-bit activations cannot resolve what Log reads" in error["message"]
    assert "tflite-fp16" in error["hint"] and "hexagon-int8" in error["hint"]
    float_nodes = error["details"]["float_nodes"]
    assert {n["op_type"] for n in float_nodes} >= {"Log", "Add", "MatMul", "Mul"}
    assert not any(n["op_type"] in ("GRU", "Gemm") for n in float_nodes)  # after the Log: an ordinary range
    assert not out.exists()
