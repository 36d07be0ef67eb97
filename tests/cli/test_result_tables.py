"""Honest, consistent result tables (issue 15): `validate` on a bare artifact applies the gate of the precision the file
has and prints what it measured even when that gate fails; TensorRT without a GPU says where it really validated; one
size (the model plus the files it loads) in convert's and batch's tables, the manifest, validate and the route matrix;
tables that fit narrow terminals without cutting target names. Real conversions of the digits CNN."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeconv.cli.tables import human_bytes
from edgeconv.deps import is_installed
from edgeconv.targets import builtin_profiles, resolve
from tests.conftest import run_cli


def _convert(digits, out: Path, *targets: str, env: dict[str, str] | None = None, json_out: bool = True):
    flags = [f for t in targets for f in ("-t", t)]
    result = run_cli("convert", digits.onnx, *flags, "--calib", digits.calib, "--eval", digits.eval, "-o", out,
                     *(["--json"] if json_out else []), env=env)
    assert result.code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def onnx_out(digits, tmp_path_factory) -> Path:
    """digits.onnx → tensorrt-fp16 (its TensorRT-ready fp16 ONNX), onnx-int8-qdq, onnx-int16-qdq (one convert)."""
    out = tmp_path_factory.mktemp("tables") / "out"
    _convert(digits, out, "tensorrt-fp16", "onnx-int8-qdq", "onnx-int16-qdq")
    return out


def _bare(src: Path, folder: Path, *companions: Path) -> Path:
    """A copy of an artifact (and the files it loads) in a folder without a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (src, *companions):
        shutil.copy(path, folder / path.name)
    return folder / src.name


def _validate_json(digits, artifact: Path, *extra: str) -> tuple[int, dict]:
    result = run_cli("validate", digits.onnx, artifact, "--eval", digits.eval, *extra, "--json")
    return result.code, json.loads(result.stdout)


# ------------------------------------------------------------------------------------------ validate on bare artifacts
@pytest.mark.parametrize("target, precision, profile, why", [
    ("onnx-int8-qdq", "int8", "onnx-int8-qdq", "QuantizeLinear/DequantizeLinear nodes with int8/uint8 zero points"),
    ("onnx-int16-qdq", "int16", "onnx-int16-qdq", "QuantizeLinear/DequantizeLinear nodes with int8/uint16 zero points"),
    ("tensorrt-fp16", "fp16", "onnx-fp16", "float16 initializers, no quantization nodes"),
])
def test_validate_bare_onnx_applies_the_gate_of_its_precision(digits, onnx_out: Path, tmp_path: Path, target: str,
                                                              precision: str, profile: str, why: str) -> None:
    bare = _bare(onnx_out / target / "digits_cnn.onnx", tmp_path / "bare")
    code, report = _validate_json(digits, bare)
    assert code == 0, report
    assert report["manifest"] is None and report["target"] == profile
    assert report["inferred"]["precision"] == precision and report["inferred"]["profile"] == profile
    assert why in report["inferred"]["reason"]
    gate = resolve(profile).validate.gate
    assert report["validation"]["gate"]["min_snr_db"] == gate.min_snr_db
    assert report["validation"]["gate"]["min_cosine"] == gate.min_cosine
    assert report["validation"]["passed"] is True and report["warnings"] == []
    assert report["shipped_bytes"] == bare.stat().st_size
    human = run_cli("validate", digits.onnx, bare, "--eval", digits.eval)
    assert human.code == 0, human.stderr
    first = human.stdout.splitlines()[0]
    assert first.startswith(f"precision {precision} inferred from digits_cnn.onnx (no manifest beside it): ")
    assert first.endswith(f"; gate of {profile}") and why in first
    assert sum("inferred" in line for line in human.stdout.splitlines()) == 1


def test_validate_bare_gate_failure_prints_the_metrics_then_exits_5(digits, onnx_out: Path, tmp_path: Path) -> None:
    bare = _bare(onnx_out / "onnx-int8-qdq" / "digits_cnn.onnx", tmp_path / "bare")
    code, passing = _validate_json(digits, bare)
    assert code == 0
    snr = passing["validation"]["metrics"]["snr_db"]
    assert 20 < snr < 60  # an int8 model: the fp32 gate (60 dB) would have failed it
    bound = f"validate.gate.min_snr_db={snr + 5:.1f}"
    code, failed = _validate_json(digits, bare, "--set", bound)
    assert code == 5
    details = failed["error"]["details"]
    assert details["validation"]["metrics"]["snr_db"] == snr  # the metrics it measured, in the JSON object
    assert details["validation"]["passed"] is False and details["inferred"]["precision"] == "int8"
    assert details["target"] == "onnx-int8-qdq" and details["validation"]["gate"]["min_snr_db"] == round(snr + 5, 1)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run([sys.executable, "-m", "edgeconv", "validate", str(digits.onnx), str(bare), "--eval",
                           str(digits.eval), "--set", bound], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)
    assert proc.returncode == 5
    text = proc.stdout
    table_at, error_at = text.index(f"{snr:.1f}"), text.index("error: onnx-int8-qdq failed its accuracy gate")
    assert text.index("precision int8 inferred") < table_at < text.index("failed\n") < error_at


@pytest.mark.skipif(not is_installed("openvino"), reason="needs the openvino extra")
def test_validate_bare_openvino_int8_infers_int8(digits, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _convert(digits, out, "openvino-int8", "openvino-w8")
    for target, precision, why in (("openvino-int8", "int8", "FakeQuantize layer"),
                                   ("openvino-w8", "w8", "integer weight constants (weight compression)")):
        xml = out / target / "digits_cnn.xml"
        bare = _bare(xml, tmp_path / f"bare-{target}", xml.with_suffix(".bin"))
        code, report = _validate_json(digits, bare)
        assert code == 0, report
        assert report["inferred"]["precision"] == precision and report["target"] == target
        assert why in report["inferred"]["reason"]
        assert report["validation"]["gate"]["min_snr_db"] == resolve(target).validate.gate.min_snr_db
        assert report["shipped_bytes"] == bare.stat().st_size + bare.with_suffix(".bin").stat().st_size


@pytest.mark.skipif(not is_installed("ai_edge_litert"), reason="needs the tflite extra")
def test_validate_bare_tflite_int8_infers_int8(digits, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _convert(digits, out, "tflite-int8")
    bare = _bare(out / "tflite-int8" / "digits_cnn.tflite", tmp_path / "bare")
    code, report = _validate_json(digits, bare)
    assert code == 0, report
    assert report["inferred"]["precision"] == "int8" and report["target"] == "tflite-int8"
    assert "operators compute on int8 activations" in report["inferred"]["reason"]
    assert report["validation"]["gate"]["min_snr_db"] == resolve("tflite-int8").validate.gate.min_snr_db


# -------------------------------------------------------------------------------------- TensorRT without a GPU here
def _no_engine_here() -> bool:
    from edgeconv.targets.tensorrt._tools import why_no_engine

    return why_no_engine() is not None


@pytest.mark.skipif(not _no_engine_here(), reason="a TensorRT engine can be built here: it is validated on tensorrt")
def test_tensorrt_without_gpu_says_validated_on_onnxruntime(digits, onnx_out: Path, tmp_path: Path) -> None:
    record = json.loads((onnx_out / "manifest.json").read_text())["targets"][0]
    assert record["target"] == "tensorrt-fp16"
    assert record["validation"]["runtime"] == "onnxruntime" and record["validation"]["stand_in"] == "engine not built"
    result = run_cli("-v", "convert", digits.onnx, "-t", "tensorrt-fp16", "--eval", digits.eval, "-o", tmp_path / "out")
    assert result.code == 0, result.stderr
    assert "validate  tensorrt-fp16 on onnxruntime (engine not built)" in result.stderr
    assert "on tensorrt" not in result.stderr
    row = next(line for line in result.stdout.splitlines() if "tensorrt-fp16/digits_cnn.onnx" in line)
    assert "onnxruntime (engine not built)" in row and row.split("│")[-2].strip() == "ok"
    plan = run_cli("convert", digits.onnx, "-t", "tensorrt-fp16", "-o", tmp_path / "plan", "--dry-run", "--json")
    steps = json.loads(plan.stdout)["plan"]["targets"][0]["steps"]
    assert "validate  validate on onnxruntime (engine not built)" in steps
    again = run_cli("validate", digits.onnx, tmp_path / "out" / "tensorrt-fp16" / "digits_cnn.onnx", "--eval", digits.eval)
    assert again.code == 0, again.stderr
    assert "tensorrt-fp16 on onnxruntime (engine not built)" in again.stdout


# ------------------------------------------------------------------------------------------------ one size definition
@pytest.mark.skipif(not is_installed("onnxruntime_qnn") or not is_installed("openvino"), reason="needs qnn and openvino")
def test_one_size_in_convert_batch_manifest_validate_and_matrix(digits, tmp_path: Path) -> None:
    from bench.matrix import _summarise

    out = tmp_path / "out"
    human = _convert(digits, out, "hexagon-int8", "openvino-int8", json_out=False)
    manifest = json.loads((out / "manifest.json").read_text())
    hexagon, openvino = manifest["targets"]
    arts = {Path(a["path"]).name: a for a in hexagon["artifacts"]}
    folder = out / "hexagon-int8"
    shipped = (folder / "digits_cnn_ctx.onnx").stat().st_size + (folder / "digits_cnn_ctx_qnn.bin").stat().st_size
    assert arts["digits_cnn_ctx.onnx"]["shipped_bytes"] == shipped  # the EPContext model + the context binary it names
    assert arts["digits_cnn.int8.onnx"]["format"] == "onnx" and arts["digits_cnn.int8.onnx"]["role"] == "companion"
    assert arts["digits_cnn_ctx_qnn.bin"]["format"] == "qnn-context"
    assert arts["digits_cnn.dlc"]["shipped_bytes"] == (folder / "digits_cnn.dlc").stat().st_size
    ir = out / "openvino-int8" / "digits_cnn"
    ov_shipped = ir.with_suffix(".xml").stat().st_size + ir.with_suffix(".bin").stat().st_size
    assert openvino["artifacts"][0]["shipped_bytes"] == ov_shipped
    row = next(line for line in human.stdout.splitlines() if "hexagon-int8/digits_cnn_ctx.onnx" in line)
    assert human_bytes(shipped) in row
    assert human_bytes(ov_shipped) in next(line for line in human.stdout.splitlines() if "digits_cnn.xml" in line)

    summary = _summarise(manifest, "hexagon-int8")
    assert summary["artifact_bytes"] == shipped
    assert summary["size_ratio"] == round(shipped / manifest["source"]["bytes"], 3) and summary["size_ratio"] > 0.5

    code, report = _validate_json(digits, folder / "digits_cnn_ctx.onnx")
    assert code == 0, report
    assert report["shipped_bytes"] == shipped and "inferred" not in report  # the manifest names its target

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(digits.onnx, project / "digits_cnn.onnx")
    shutil.copytree(digits.calib, project / "calib")
    shutil.copytree(digits.eval, project / "eval")
    (project / "pyproject.toml").write_text('[tool.edgeconv]\noutput = "build"\ntargets = ["hexagon-int8"]\n'
                                            '[tool.edgeconv.defaults]\ncalib = "calib"\neval = "eval"\n'
                                            '[tool.edgeconv.models.digits]\nsource = "digits_cnn.onnx"\n')
    batch = run_cli("batch", cwd=project)
    assert batch.code == 0, batch.stdout + batch.stderr
    batch_row = next(line for line in batch.stdout.splitlines() if "hexagon-int8" in line)
    batch_manifest = json.loads((project / "build" / "digits" / "hexagon-int8" / "manifest.json").read_text())
    batch_shipped = batch_manifest["targets"][0]["artifacts"][0]["shipped_bytes"]
    assert human_bytes(batch_shipped) in batch_row and abs(batch_shipped - shipped) < 1024  # same files, same figure


# ------------------------------------------------------------------------------------------------- narrow terminals
def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]


@pytest.mark.parametrize("columns", [60, 80])
def test_convert_table_fits_narrow_terminals(digits, tmp_path: Path, columns: int) -> None:
    targets = ("tensorrt-fp16", "onnx-int16-qdq")
    result = _convert(digits, tmp_path / "out", *targets, env={"COLUMNS": str(columns)}, json_out=False)
    lines = _table_lines(result.stdout)
    assert lines and max(len(line) for line in lines) <= columns
    assert "…" not in result.stdout
    for target in targets:  # whole names, each at the start of its row
        assert any(line.startswith(f"│ {target} ") for line in lines), result.stdout
    assert "tensorrt-fp16/digits_cnn.onnx" in result.stdout  # the artifact path is kept whole too
    assert "narrow terminal:" in " ".join(result.stdout.split())
    wide = _convert(digits, tmp_path / "wide", *targets, env={"COLUMNS": "200"}, json_out=False)
    assert "narrow terminal" not in wide.stdout and "cosine" in wide.stdout and "validated on" in wide.stdout


@pytest.mark.parametrize("columns", [60, 80])
def test_targets_table_never_cuts_target_names(columns: int) -> None:
    result = run_cli("targets", env={"COLUMNS": str(columns)})
    assert result.code == 0, result.stderr
    lines = _table_lines(result.stdout)
    assert max(len(line) for line in lines) <= columns and "…" not in result.stdout
    names = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert [n for n in names if n] == [p.name for p in builtin_profiles()]
    assert "narrow terminal:" in " ".join(result.stdout.split())
    wide = run_cli("targets", env={"COLUMNS": "240"})
    assert "narrow terminal" not in wide.stdout and "produces" in wide.stdout


@pytest.mark.skipif(not (is_installed("executorch") and is_installed("onnxruntime_qnn")),
                    reason="needs the executorch and qnn extras")
def test_table_shows_how_much_the_accelerator_took(digits, tmp_path: Path) -> None:
    """ExecuTorch's delegate coverage and the HTP placement share are in the result table, not only in the manifest."""
    result = run_cli("convert", digits.pt2, "--input-shape", "image=1x1x8x8", "-t", "executorch-fp32", "-t",
                     "hexagon-int8", "--calib", digits.calib, "--eval", digits.eval, "-o", tmp_path / "out",
                     env={"COLUMNS": "200"})
    assert result.code == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert "(XNNPACK 100%)" in rows["executorch-fp32"] and "(HTP 100%)" in rows["hexagon-int8"], result.stdout


def test_near_ties_are_named_in_the_caption(tmp_path: Path) -> None:
    """A top-1 that counted near ties as agreeing says so under the table (validation.top1_ties)."""
    from edgeconv.cli.tables import manifest_table

    def manifest(ties: float) -> dict:
        top1 = 1.0 - ties  # the plain share; the gate counted the ties
        out = {"name": "logits", "kind": "float", "snr_db": 27.8, "cosine": 0.9992, "top1_agreement": top1, "top1_ties": ties}
        metrics = {"snr_db": 27.8, "cosine": 0.9992, "top1_agreement": top1, "outputs": [out]}
        return {"targets": [{"target": "tflite-int16x8", "notes": {},
                             "artifacts": [{"path": "m.tflite", "role": "model", "format": "tflite", "bytes": 10}],
                             "validation": {"passed": True, "runtime": "litert", "metrics": metrics}}]}

    assert "near tie" in str(manifest_table(manifest(0.0625), tmp_path).caption)
    assert "near tie" not in str(manifest_table(manifest(0.0), tmp_path).caption)
