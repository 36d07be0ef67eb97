"""PyTorch → ONNX (onnx, onnx-fp16) for real trained models, validated against PyTorch on held-out data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model_zoo import accuracy
from tests.helpers import convert, model_path, target_record


def _onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    return accuracy(logits, y)


@pytest.mark.slow
def test_digits_pt2_to_onnx_and_fp16(digits, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = convert(digits.pt2, ["onnx", "onnx-fp16"], out, calib=str(digits.calib), eval=str(digits.eval))
    fp32, fp16 = target_record(manifest, "onnx"), target_record(manifest, "onnx-fp16")
    m32, m16 = fp32["validation"]["metrics"], fp16["validation"]["metrics"]
    assert fp32["validation"]["passed"] and m32["samples"] == 16
    assert m32["snr_db"] > 90 and m32["cosine"] > 0.999999 and m32["top1_agreement"] == 1.0
    assert m16["snr_db"] > 40 and m16["top1_agreement"] == 1.0
    onnx_path, fp16_path = model_path(manifest, out, "onnx"), model_path(manifest, out, "onnx-fp16")
    model = onnx.load(str(onnx_path))
    assert [i.name for i in model.graph.input] == ["image"]  # forward() argument name kept
    assert not any(n.op_type in ("BatchNormalization", "Constant") for n in model.graph.node)
    # the held-out task accuracy is the PyTorch model's
    split = digits.split
    acc32 = _onnx_accuracy(onnx_path, split.x_test, split.y_test)
    acc16 = _onnx_accuracy(fp16_path, split.x_test, split.y_test)
    assert acc32 > 0.95 and abs(acc16 - acc32) <= 0.005
    sizes = {t["target"]: t["artifacts"][0]["bytes"] for t in manifest["targets"]}
    assert sizes["onnx-fp16"] < 0.6 * sizes["onnx"]
    assert manifest["source"]["format"] == "torch" and len(manifest["source"]["sha256"]) == 64


@pytest.mark.slow
def test_torchscript_and_factory_sources(digits, tmp_path: Path, monkeypatch) -> None:
    ts = convert(digits.torchscript, ["onnx"], tmp_path / "ts", input_shapes={"image": (1, 1, 8, 8)}, eval=str(digits.eval))
    assert target_record(ts, "onnx")["validation"]["metrics"]["snr_db"] > 90
    monkeypatch.chdir(Path(__file__).parents[1])  # `--model model_zoo:digits_architecture` imports from the cwd
    from edgeconv.context import ConvertOptions
    from edgeconv.formats import TORCH_FACTORY, Artifact, Format
    from edgeconv.pipeline import build_plan, run
    from edgeconv.targets import resolve

    options = ConvertOptions(model_factory="model_zoo:digits_architecture", weights=digits.state_dict,
                             input_shapes={"image": (1, 1, 8, 8)}, eval=str(digits.eval))
    plan = build_plan(Artifact(digits.state_dict, Format.TORCH, TORCH_FACTORY), [resolve("onnx")], options)
    manifest = run(plan, tmp_path / "factory").to_json()
    metrics = target_record(manifest, "onnx")["validation"]["metrics"]
    assert metrics["snr_db"] > 90 and metrics["top1_agreement"] == 1.0
    # the same trained network whichever way it came in (TorchScript exporter vs torch.export exporter)
    x = digits.split.x_test[:1]
    a = ort.InferenceSession(str(model_path(manifest, tmp_path / "factory", "onnx"))).run(None, {"image": x})[0]
    b = ort.InferenceSession(str(model_path(ts, tmp_path / "ts", "onnx"))).run(None, {"image": x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_transformer_block(transformer: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = convert(transformer / "transformer.pt2", ["onnx", "onnx-fp16"], out, eval=str(transformer / "eval"))
    m32 = target_record(manifest, "onnx")["validation"]["metrics"]
    m16 = target_record(manifest, "onnx-fp16")["validation"]["metrics"]
    assert m32["snr_db"] > 80 and m32["cosine"] > 0.99999
    assert m16["snr_db"] > 35 and m16["cosine"] > 0.999
    ops = {n.op_type for n in onnx.load(str(model_path(manifest, out, "onnx"))).graph.node}
    assert {"MatMul", "Softmax"} <= ops or "Attention" in ops


@pytest.mark.slow
def test_dynamic_batch_pt2_needs_no_input_shape(tmp_path: Path) -> None:
    """A .pt2 exported with Dim("batch"): its inputs have no fixed batch, and edgeconv said "the input shape of image is
    not known" (exit 3). The program records the example it was exported with; the ONNX keeps the batch dynamic."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    model(torch.rand(2, 3, 8, 8))
    program = torch.export.export(model.eval(), (torch.rand(2, 3, 8, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", max=64)},))
    source = tmp_path / "dynamic.pt2"
    torch.export.save(program, str(source))
    manifest = convert(source, ["onnx"], tmp_path / "out", calib="random")
    onnx_path = model_path(manifest, tmp_path / "out", "onnx")
    dims = onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 8, 8]
    batch = np.random.default_rng(0).uniform(0, 1, (3, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = model(torch.from_numpy(batch)).detach().numpy()
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: batch})[0], expected, atol=1e-5)
