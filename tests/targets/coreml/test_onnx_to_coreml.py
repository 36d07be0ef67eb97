"""ONNX → Core ML through onnx2torch (targets/coreml/onnx_to_coreml.py): the plan shows the edge, the Core ML program is
validated against the ONNX model handed over (MIL reference on Linux), and the graph preparation onnx2torch needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgeconv.deps import is_installed
from tests.corpus import registry
from tests.helpers import convert, target_record

pytestmark = pytest.mark.skipif(not (is_installed("onnx2torch") and is_installed("coremltools")),
                                reason="needs edgeconv[coreml-onnx]")

REPO = Path(__file__).resolve().parents[3]
CORPUS = Path(os.environ.get("EDGECONV_CORPUS_ROOT") or Path(tempfile.gettempdir()) / "edgeconv-corpus")


def _mil_snr(record: dict) -> float:
    validation = record["validation"]
    metrics = validation["metrics"] or validation["checks"]["mil_reference"]["metrics"]
    return metrics["snr_db"]


def test_prepare_clears_allowzero_and_steps_the_opset_down() -> None:
    import onnx
    from onnx import helper, numpy_helper

    from edgeconv.targets.coreml.onnx_to_coreml import prepare

    shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape")
    zero = numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "zero")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=1),
             helper.make_node("Reshape", ["x", "zero"], ["z"], allowzero=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 3])],
                              [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in "yz"],
                              [shape, zero])
    model = prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert model.opset_import[0].version == 17
    allowzero = [a.i for n in model.graph.node for a in n.attribute if a.name == "allowzero"]
    assert allowzero == [0, 1]  # a 0 in the shape keeps allowzero=1 (its meaning differs there)


def test_onnx_digits_to_coreml(digits, tmp_path: Path) -> None:
    manifest = convert(digits.onnx, ["coreml-fp32"], tmp_path / "out", eval=str(digits.eval))
    record = target_record(manifest, "coreml-fp32")
    assert [s["name"] for s in record["steps"]][-1] == "onnx_to_coreml"
    assert record["notes"]["coreml_route"].startswith("ONNX → onnx2torch")
    assert record["validation"]["passed"] and _mil_snr(record) > 60


@pytest.mark.slow
def test_corpus_mobilenetv2_onnx_to_coreml(tmp_path: Path) -> None:
    """A real architecture: the corpus MobileNetV2 exported by edgeconv (opset 18, Reshape allowzero=1), then that
    ONNX to coreml-fp32; the plan (--dry-run) names the edge and the program matches the ONNX model."""
    assert not registry.ensure(CORPUS, ["mobilenetv2"])
    folder = CORPUS / "mobilenetv2"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def edgeconv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgeconv", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=900)

    hub = edgeconv("convert", *registry.cli_args(CORPUS, "mobilenetv2"), "-t", "onnx", "-o", str(tmp_path / "hub"),
                   "--force", "--json")
    assert hub.returncode == 0, hub.stdout[-2000:] + hub.stderr[-2000:]
    onnx_path = next((tmp_path / "hub").rglob("*.onnx"))
    plan = edgeconv("convert", str(onnx_path), "-t", "coreml-fp32", "--dry-run")
    assert plan.returncode == 0 and "onnx_to_coreml (onnx → coreml)" in plan.stdout, plan.stdout + plan.stderr
    run = edgeconv("convert", str(onnx_path), "--eval", str(folder / "eval"), "-t", "coreml-fp32", "-o",
                   str(tmp_path / "out"), "--force", "--json")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    record = json.loads(run.stdout)["targets"][0]
    assert _mil_snr(record) > 100  # measured 125 dB (bench/README.md, converter choice)


def test_without_onnx2torch_the_plan_names_the_extra(digits, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeconv.context import ConvertOptions
    from edgeconv.targets.coreml.onnx_to_coreml import OnnxToCoreml
    from edgeconv.errors import MissingBackendError
    from edgeconv.formats import detect
    from edgeconv.pipeline import build_plan, check_backends
    from edgeconv.targets import resolve

    monkeypatch.setattr(OnnxToCoreml, "available", classmethod(lambda cls: False))
    plan = build_plan(detect(digits.onnx), [resolve("coreml-fp32")], ConvertOptions())
    step = next(s for s in plan.targets[0].steps if s.converter is OnnxToCoreml)
    assert "edgeconv[coreml-onnx]" in step.describe()
    with pytest.raises(MissingBackendError) as e:
        check_backends(plan)
    assert "coreml-onnx" in e.value.hint


def test_mil_reference_runs_the_activations_onnx2torch_programs_use() -> None:
    """onnx2torch's HardSigmoid / HardSwish lower to MIL sigmoid_hard and thresholded_relu (MobileNetV3 from ONNX)."""
    from edgeconv.targets.coreml._mil_reference import _OPS

    x = np.array([-4.0, -1.0, 0.0, 0.5, 1.0, 4.0], dtype=np.float32)
    hard = _OPS["sigmoid_hard"]({"x": x, "alpha": 1 / 6, "beta": 0.5})
    np.testing.assert_allclose(hard, np.clip(x / 6 + 0.5, 0, 1), rtol=1e-6)
    np.testing.assert_array_equal(_OPS["thresholded_relu"]({"x": x, "alpha": 1.0}), np.where(x >= 1.0, x, 0.0))


def test_prepare_rewrites_prelu_min_max_into_what_coremltools_takes() -> None:
    """PRelu (onnx2torch: boolean-mask indexing → non_zero in Core ML) and Min / Max (onnx2torch: torch.stack, which
    coremltools refuses) become Relu arithmetic that computes the same thing."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from edgeconv.targets.coreml.onnx_to_coreml import prepare

    slope = numpy_helper.from_array(np.array([0.25, 0.5, 2.0], dtype=np.float32).reshape(3, 1, 1), "slope")
    lo = numpy_helper.from_array(np.array(-0.5, dtype=np.float32), "lo")
    hi = numpy_helper.from_array(np.array(0.75, dtype=np.float32), "hi")
    nodes = [helper.make_node("PRelu", ["x", "slope"], ["p"]), helper.make_node("Max", ["p", "lo"], ["m"]),
             helper.make_node("Min", ["m", "hi", "x"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                              [slope, lo, hi])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32) * 2
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    prepared = prepare(model)
    assert not {"PRelu", "Min", "Max"} & {n.op_type for n in prepared.graph.node}
    onnx.checker.check_model(prepared)
    after = ort.InferenceSession(prepared.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
