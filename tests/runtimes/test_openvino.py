"""The OpenVINO runtime: an IR made from the digits ONNX runs like ONNX Runtime runs the ONNX; .xml detection;
`edgeconv bench` on an IR with and without the manifest beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import InvalidInputError
from edgeconv.formats import Format, detect
from edgeconv.targets.openvino._offline import no_telemetry

no_telemetry()  # before openvino is imported: importing it writes ~/intel/ and counts usage otherwise
ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def digits_ir(digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ir")
    ov.save_model(ov.convert_model(str(digits.onnx)), str(folder / "digits.xml"), compress_to_fp16=False)
    return folder / "digits.xml"


def test_detect_ir(digits_ir: Path, tmp_path: Path) -> None:
    artifact = detect(digits_ir)
    assert artifact.format == Format.OPENVINO and artifact.companions == (digits_ir.with_suffix(".bin"),)
    lonely = tmp_path / "lonely.xml"
    shutil.copyfile(digits_ir, lonely)
    with pytest.raises(InvalidInputError, match="lonely.bin"):
        detect(lonely)


def test_runs_like_onnxruntime(digits, digits_ir: Path, tmp_path: Path) -> None:
    from edgeconv.benchmark import artifact_context, step_context
    from edgeconv.runtimes.ort import cpu_session
    from edgeconv.targets.openvino.runtime import OpenVinoRuntime

    actx = artifact_context(digits_ir)
    assert [s.name for s in actx.inputs] == ["image"] and actx.inputs[0].shape == (1, 1, 8, 8)
    session = OpenVinoRuntime().load(detect(digits_ir), step_context(actx, "openvino", tmp_path))
    ort = cpu_session(str(digits.onnx))
    x = digits.split.x_test[:32]
    got = np.concatenate([session.run({"image": x[i:i + 1]})[0] for i in range(len(x))])
    want = np.concatenate([ort.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.abs(got - want).max() < 1e-4  # f32 inference precision (the CPU plugin's default may be bf16)


def test_bench_bare_ir(digits_ir: Path) -> None:
    from edgeconv.benchmark import benchmark

    result = benchmark(digits_ir, runs=5, warmup=1)
    assert result.runtime == "openvino" and result.format == "openvino" and result.inputs == {"image": [1, 1, 8, 8]}
    assert result.latency_ms["p50"] > 0


def test_doctor_and_targets_rows() -> None:
    from edgeconv.availability import availability
    from edgeconv.doctor import diagnose
    from edgeconv.targets import resolve

    report = diagnose()
    backends = {b["name"]: b for b in report.backends}
    assert backends["openvino"]["extra"] == "openvino" and backends["openvino"]["version"]
    assert backends["nncf"]["extra"] == "openvino"
    rows = {t["name"]: t for t in report.targets}
    for name in ("openvino-fp32", "openvino-fp16", "openvino-w8", "openvino-int8"):
        assert rows[name]["usable"] and rows[name]["validation"] == "numerical", rows[name]
        assert availability(resolve(name)).usable
