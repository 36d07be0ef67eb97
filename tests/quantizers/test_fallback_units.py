"""quantizers/fallback: search units. A log-mel front end (power spectrum → mel MatMul → + eps → Log) loses its range
at every step in uint8, so keeping any one of those activations float buys nothing and the single-tensor search gave
up (audio_kws at cpu-int8: 1.1 dB, exit 5). A unit is a tensor and everything computed before it: kept float together,
that model reaches 47 dB (corpus cell audio_kws × cpu-int8 in tests/corpus/test_route_matrix.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.quantizers.fallback import ancestor_tensors
from tests.conftest import save_samples


def log_mel_classifier(folder: Path) -> Path:
    """x [1, 64] (a waveform frame) → MatMul (a 64 → 32 'DFT') → square → MatMul (32 → 8 mel) → + 1e-6 → Log → Gemm
    (8 → 4 classes), with samples whose energy spans ~6 orders of magnitude, as speech and silence do."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, (64, 32)).astype(np.float32), "dft"),
             numpy_helper.from_array(np.abs(rng.normal(0, 0.3, (32, 8))).astype(np.float32), "mel"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
             numpy_helper.from_array(rng.normal(0, 0.5, (4, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b")]
    nodes = [helper.make_node("MatMul", ["x", "dft"], ["spec"], name="stft"),
             helper.make_node("Mul", ["spec", "spec"], ["power"], name="power"),
             helper.make_node("MatMul", ["power", "mel"], ["mel_power"], name="mel_matmul"),
             helper.make_node("Add", ["mel_power", "eps"], ["mel_eps"], name="eps_add"),
             helper.make_node("Log", ["mel_eps"], ["log_mel"], name="log"),
             helper.make_node("Gemm", ["log_mel", "w", "b"], ["logits"], transB=1, name="head")]
    graph = helper.make_graph(nodes, "logmel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "logmel.onnx"))
    for name, seed in (("calib", 1), ("eval", 2)):
        r = np.random.default_rng(seed)
        frames = [10.0 ** r.uniform(-3, 0) * r.normal(0, 1, 64) for _ in range(32)]  # quiet to loud frames
        save_samples(folder / name, np.stack(frames))
    return folder


def test_ancestor_tensors_of_the_log_input(tmp_path: Path) -> None:
    model = onnx.load_model(str(log_mel_classifier(tmp_path) / "logmel.onnx"))
    assert ancestor_tensors(model, "mel_eps") == ["spec", "power", "mel_power"]
    assert ancestor_tensors(model, "spec") == []
    assert ancestor_tensors(model, "logits", limit=3) is None  # more than 3 nodes feed it


@pytest.mark.slow
def test_front_end_kept_float_as_one_unit(tmp_path: Path, cli) -> None:
    """The search's units, with the log-domain policy (quantizers/log_domain.py) switched off: it would keep the front
    end float before the search (asserted at the end)."""
    folder = log_mel_classifier(tmp_path / "model")
    out = tmp_path / "out"
    res = cli("convert", folder / "logmel.onnx", "-t", "cpu-int8", "--calib", folder / "calib", "--eval",
              folder / "eval", "-o", out, "--json", "--set", "quantize.options.log_domain_float=false")
    assert res.code == 0, res.stdout[-2000:] + res.stderr[-2000:]
    record = json.loads((out / "manifest.json").read_text())["targets"][0]
    fallback = record["notes"]["quantize"]["fallback"]
    assert fallback["before"]["snr_db"] < 18.0  # full uint8: the front end's range is lost
    kept = {t for node in fallback["nodes"] for t in node["float_tensors"]}
    # a unit, not one tensor at a time (normalisation fused the mel MatMul and the + eps into one Gemm → mel_eps)
    assert {"spec", "power", "mel_eps"} <= kept, fallback["nodes"]
    assert record["validation"]["metrics"]["snr_db"] >= 18.0 and record["validation"]["passed"]

    default = cli("convert", folder / "logmel.onnx", "-t", "cpu-int8", "--calib", folder / "calib", "--eval",
                  folder / "eval", "-o", tmp_path / "default", "--json")
    assert default.code == 0, default.stdout[-2000:] + default.stderr[-2000:]
    record = json.loads((tmp_path / "default" / "manifest.json").read_text())["targets"][0]
    notes = record["notes"]["quantize"]
    assert {"Log", "Gemm"} <= {n["op_type"] for n in notes["log_domain_float"]}, notes["log_domain_float"]
    assert not (notes.get("fallback") or {}).get("nodes")  # the first model passes: no search
    assert record["validation"]["metrics"]["snr_db"] >= 18.0 and record["validation"]["passed"]
