"""PyTorch / ONNX → TFLite through onnx2tf (NCHW → NHWC), validated on LiteRT; offline by construction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeconv.targets.tflite.ops import float_ops
from edgeconv.errors import UnsupportedError
from model_zoo import accuracy
from tests.targets.tflite.tflite_helpers import litert_logits, tflite_input_details
from tests.helpers import convert, model_path, target_record


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HTTP(S) attempt through requests / urllib fails and is recorded; proxies point nowhere."""
    import urllib.request

    import requests

    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[:3]))
        raise requests.exceptions.ConnectionError("network disabled in tests")

    monkeypatch.setattr(requests.Session, "request", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    return attempts


@pytest.mark.slow
def test_torch_digits_to_tflite(digits, tmp_path: Path, no_network: list[str]) -> None:
    out = tmp_path / "out"
    targets = ["tflite-fp32", "tflite-int8"]
    manifest = convert(digits.pt2, targets, out, calib=str(digits.calib), eval=str(digits.eval))
    for v in targets:
        record = target_record(manifest, v)
        assert [s["name"] for s in record["steps"]] == ["torch_to_onnx", "normalise + fuse gelu + decompose maxpool_ceil, neg, stft",
                                                        "onnx_to_tflite"]
        io = record["notes"]["tflite_io"]
        assert io["layout"] == "nhwc" and io["inputs"][0]["perm"] == [0, 2, 3, 1]  # NCHW source → NHWC .tflite
    assert target_record(manifest, "tflite-fp32")["validation"]["metrics"]["snr_db"] > 100
    assert target_record(manifest, "tflite-int8")["validation"]["metrics"]["snr_db"] > 30
    (detail,) = tflite_input_details(model_path(manifest, out, "tflite-int8")).values()
    assert list(detail["shape"]) == [1, 8, 8, 1] and detail["dtype"] == np.int8
    x, y = digits.split.x_test, digits.split.y_test  # NCHW, as the PyTorch model takes it
    acc = {v: accuracy(litert_logits(model_path(manifest, out, v), target_record(manifest, v), x), y) for v in targets}
    assert acc["tflite-fp32"] > 0.9
    assert abs(acc["tflite-int8"] - acc["tflite-fp32"]) <= 0.01, acc
    assert no_network == []


@pytest.mark.slow
def test_messy_onnx_every_variant_offline(messy_onnx: Path, tmp_path: Path, no_network: list[str]) -> None:
    """Opset 11, Constant weights, unfused BN, shape subgraph, dynamic batch, 3-channel input: the case where onnx2tf
    would fetch sample images from GitHub."""
    out = tmp_path / "out"
    calib = str(messy_onnx.parent / "calib")
    variants = {"tflite-fp32": 100, "tflite-fp16": 60, "tflite-dynamic": 30, "tflite-int8": 30, "tflite-int16x8": 35}
    manifest = convert(messy_onnx, list(variants), out, calib=calib)
    for v, min_snr in variants.items():
        record = target_record(manifest, v)
        assert record["validation"]["metrics"]["snr_db"] > min_snr, v
        assert "SHAPE" not in record["notes"]["tflite_ops"]  # dynamic batch fixed to 1: no shape ops left
    (detail,) = tflite_input_details(model_path(manifest, out, "tflite-int8")).values()
    assert list(detail["shape"]) == [1, 16, 16, 3]
    assert float_ops(model_path(manifest, out, "tflite-int8").read_bytes()) == []
    assert no_network == []


def _two_output_model(path: Path) -> Path:
    """A CNN returning its logits and its [1, 8, 16, 16] feature map (a rank-4 output)."""
    import torch

    class TwoOut(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            feat = torch.relu(self.conv(x))
            return self.fc(feat.mean((2, 3))), feat

    torch.manual_seed(0)
    torch.onnx.export(TwoOut().eval(), (torch.randn(1, 3, 16, 16),), str(path), input_names=["input"],
                      output_names=["logits", "feat"], opset_version=17, dynamo=False)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["nhwc", "source"])
def test_feature_map_output_layout(messy_onnx: Path, tmp_path: Path, no_network: list[str], layout: str) -> None:
    """Default: the feature map comes out NHWC and the I/O map says how to turn it back; layout=source: the model
    itself takes NCHW and returns NCHW."""
    from edgeconv.targets.tflite.runtime import load_interpreter

    source = _two_output_model(tmp_path / "two.onnx")
    out = tmp_path / "out"
    manifest = convert(source, ["tflite-fp32"], out, calib=str(messy_onnx.parent / "calib"), overrides=(f"layout={layout}",))
    record = target_record(manifest, "tflite-fp32")
    assert record["validation"]["metrics"]["snr_db"] > 100
    io = record["notes"]["tflite_io"]
    assert [m["source"] for m in io["outputs"]] == ["logits", "feat"]
    _, runner, _ = load_interpreter(str(model_path(manifest, out, "tflite-fp32")))
    shapes = {k: list(d["shape"]) for k, d in runner.get_output_details().items()}
    feat_key = io["outputs"][1]["key"]
    if layout == "nhwc":
        assert io["outputs"][1]["perm"] == [0, 3, 1, 2] and shapes[feat_key] == [1, 16, 16, 8]
    else:
        assert io["outputs"][1]["perm"] is None and shapes[feat_key] == [1, 8, 16, 16]
        (detail,) = runner.get_input_details().values()
        assert list(detail["shape"]) == [1, 3, 16, 16]
    assert no_network == []


def _sin_model(path: Path) -> Path:
    import torch

    class SinNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.sin(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    torch.onnx.export(SinNet().eval(), (torch.randn(1, 1, 8, 8),), str(path), input_names=["image"],
                      output_names=["logits"], opset_version=17, dynamo=False)
    return path


@pytest.mark.slow
def test_full_int8_refuses_float_ops(digits, tmp_path: Path) -> None:
    """TFLiteConverter leaves SIN in float without complaint; the op check lists it (exit 4), and
    --allow-cpu-fallback accepts it with a warning."""
    source = _sin_model(tmp_path / "sin.onnx")
    with pytest.raises(UnsupportedError) as info:
        convert(source, ["tflite-int8"], tmp_path / "out", calib=str(digits.calib))
    assert info.value.exit_code == 4 and "SIN" in info.value.message
    assert [op["op"] for op in info.value.details["float_ops"]] == ["SIN"]
    assert not (tmp_path / "out").exists()
    manifest = convert(source, ["tflite-int8"], tmp_path / "out2", calib=str(digits.calib), allow_cpu_fallback=True)
    record = target_record(manifest, "tflite-int8")
    assert any("SIN" in w for w in record["warnings"])


@pytest.mark.slow
def test_transformer_sequence_input(transformer: Path, tmp_path: Path, no_network: list[str]) -> None:
    """A 3-D [1, 16, 32] token input: onnx2tf treats it as NCW and makes it [1, 32, 16]; the I/O map records it."""
    out = tmp_path / "out"
    manifest = convert(transformer / "transformer.pt2", ["tflite-fp32", "tflite-int8"], out,
                       calib=str(transformer / "calib"), eval=str(transformer / "eval"))
    for v, min_snr in (("tflite-fp32", 100), ("tflite-int8", 25)):
        record = target_record(manifest, v)
        assert record["validation"]["metrics"]["snr_db"] > min_snr, v
        assert record["notes"]["tflite_io"]["inputs"][0]["perm"] == [0, 2, 1]
        assert record["notes"]["tflite_ops"]["BATCH_MATMUL"] == 2 and "SOFTMAX" in record["notes"]["tflite_ops"]
    assert float_ops(model_path(manifest, out, "tflite-int8").read_bytes()) == []
    assert no_network == []


def test_a_kernel_that_aborts_the_process_is_a_clean_exit_4(cli: Any, transformer: Path, tmp_path: Path) -> None:
    """LiteRT 2.3 abort()s (SIGABRT, no message) preparing the int16x8 transformer block. The prepare check runs in a
    child process, so the run ends with exit 4, a one-line reason and nothing written, not with a dead process. (If a
    later LiteRT prepares it, the conversion must then pass its gate.)"""
    out = tmp_path / "out"
    result = cli("convert", transformer / "transformer.pt2", "-t", "tflite-int16x8", "--calib", transformer / "calib",
                 "--eval", transformer / "eval", "-o", out)
    assert result.code in (0, 4), f"exit {result.code}: {result.stderr[-800:]}"
    if result.code == 4:
        assert "tflite-int16x8: LiteRT crashed (SIGABRT) preparing its kernels" in result.stderr
        assert "hint: " in result.stderr
        assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_prepare_check_reports_a_crash_by_signal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edgeconv.targets.tflite import _convert as _tflite

    monkeypatch.setattr(_tflite, "_PREPARE", "import os; os.abort()")
    ctx = SimpleNamespace(work_dir=tmp_path, profile=SimpleNamespace(name="tflite-x"))
    with pytest.raises(UnsupportedError, match=r"tflite-x: LiteRT crashed \(SIGABRT\)"):
        _tflite.check_prepares(b"not a model", ctx)  # type: ignore[arg-type]
    monkeypatch.setattr(_tflite, "_PREPARE", "import sys; print('Node 3 (RSQRT) failed to prepare', file=sys.stderr); "
                                             "sys.exit(3)")
    with pytest.raises(UnsupportedError, match="refused by the LiteRT kernels: Node 3 \\(RSQRT\\) failed to prepare"):
        _tflite.check_prepares(b"not a model", ctx)  # type: ignore[arg-type]


def test_erf_gelu_from_an_opset_17_export_becomes_tflite_gelu(gelu_transformer: Path, tmp_path: Path) -> None:
    """onnx2tf maps ONNX Erf to TensorFlow's Erf, which has no TFLite builtin (this used to exit 4). The tflite profiles
    fuse the Erf decomposition into one Gelu first (ONNX Runtime's fusion, opset 21).
    Full int8 of this random-init block changes 8 of its 256 token decisions (top-1 agreement 0.969), below the int8
    gate of 0.98 (exit 5; TFLiteConverter has no fallback search): this test is about the GELU op, so it sets its own
    agreement bound, the one it asserts."""
    out = tmp_path / "out"
    manifest = convert(gelu_transformer / "gelu_block_opset17.onnx", ["tflite-fp32", "tflite-int8"], out,
                       calib=str(gelu_transformer / "calib"), eval=str(gelu_transformer / "eval"),
                       overrides=("validate.gate.min_top1_agreement=0.95",))
    for target, min_snr in (("tflite-fp32", 100.0), ("tflite-int8", 25.0)):
        record = target_record(manifest, target)
        assert record["notes"]["normalise"]["fused"] == {"gelu": 1}
        assert "GELU" in record["notes"]["tflite_ops"] and not any("ERF" in op for op in record["notes"]["tflite_ops"])
        assert record["validation"]["metrics"]["snr_db"] > min_snr
    assert target_record(manifest, "tflite-int8")["validation"]["metrics"]["top1_agreement"] >= 0.95


@pytest.mark.slow
def test_detector_with_topk_post_process(tmp_path: Path) -> None:
    """onnx2tf's TopK read K with int() on a 1-element array, which NumPy 2 refuses ("only 0-dimensional arrays can be
    converted to Python scalars"): every detector with a top-k post-process failed tflite-* with exit 4."""
    from tests.cli.test_output_metrics import _build
    from tests.conftest import cached

    detector = cached("tiny-detector", _build)
    manifest = convert(detector / "detector.pt2", ["tflite-fp32"], tmp_path / "out", eval=str(detector / "eval"))
    outputs = target_record(manifest, "tflite-fp32")["validation"]["metrics"]["outputs"]
    assert [o["kind"] for o in outputs] == ["float", "float", "integer"]
    assert outputs[0]["snr_db"] > 100 and outputs[2]["exact_match"] == 1.0


@pytest.mark.slow
def test_mtcnn_ceil_mode_maxpool_full_int8(tmp_path: Path) -> None:
    """MTCNN R-Net (conv → PReLU → MaxPool(3, 2, ceil_mode=True)): onnx2tf pads the pool with -inf, full-int8
    calibration lost the tensor's scale, and XNNPACK refused the model at prepare (exit 4; a smaller conv → ceil pool
    block gave SNR 0 dB). The profile's `decompose = ["maxpool_ceil"]` pads by edge instead."""
    from tests.corpus import registry
    from tests.corpus.test_route_matrix import ROOT

    assert not registry.ensure(ROOT, ["mtcnn_rnet"])
    folder = ROOT / "mtcnn_rnet"
    manifest = convert(folder / "mtcnn_rnet.pt2", ["tflite-int8"], tmp_path / "out", calib=str(folder / "calib"),
                       eval=str(folder / "eval"))
    record = target_record(manifest, "tflite-int8")
    assert any(n.startswith("maxpool_ceil decomposed") for n in record["notes"]["normalise"]["notes"])
    metrics = record["validation"]["metrics"]
    assert metrics["snr_db"] > 30 and metrics["top1_agreement"] == 1.0


@pytest.mark.slow
def test_a_converter_crash_is_one_targets_exit_4_and_the_unrolled_lstm_calibrates(cli, tmp_path: Path) -> None:
    """TFLiteConverter's calibrator dies with SIGSEGV on the WHILE loop onnx2tf writes for the CRNN's bidirectional LSTM
    (TensorFlow 2.21). It ran in the edgeconv process, so the whole run ended with exit 139 and no JSON; it now runs in
    a child process: that target fails with exit 4 and the reason, the others of the run are written (--keep-going).
    The int8 profiles unroll the LSTM (`rnn_unroll`; the crashing target is tflite-int8 with it off), and the unrolled
    one calibrates: every op integer, or all but one SPLIT (the backward direction's first step, which TFLiteConverter
    left float on one build of the corpus model: exit 4 naming it, so --allow-cpu-fallback here)."""
    from tests.corpus import registry
    from tests.corpus.test_route_matrix import ROOT

    assert not registry.ensure(ROOT, ["crnn"])
    folder = ROOT / "crnn"
    looped = tmp_path / "tflite-int8-loop.toml"
    looped.write_text('name = "tflite-int8-loop"\nextends = "tflite-int8"\n[compiler]\nrnn_unroll = false\n')
    result = cli("convert", folder / "crnn.pt2", "-t", "tflite-fp32", "-t", "tflite-int8", "-t", looped, "--calib",
                 folder / "calib", "--eval", folder / "eval", "-o", tmp_path / "out", "-k", "--json",
                 "--allow-cpu-fallback")
    error = json.loads(result.stdout)["error"]
    assert result.code == 4 and error["kind"] == "targets-failed", result.stderr[-2000:]
    targets = {t["target"]: t for t in error["details"]["manifest"]["targets"]}
    assert "crashed (SIGSEGV) calibrating the model" in targets["tflite-int8-loop"]["error"]["message"]
    assert targets["tflite-fp32"]["validation"]["metrics"]["snr_db"] > 100
    unrolled = targets["tflite-int8"]
    floats = [w for w in unrolled["warnings"] if "stayed float" in w]
    assert all("stayed float in the full-integer model: SPLIT (" in w for w in floats), floats
    assert "WHILE" not in unrolled["notes"]["tflite_ops"] and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in unrolled["notes"]["tflite_ops"]
    assert unrolled["validation"]["metrics"]["snr_db"] > 35.0  # 42.9 dB measured
