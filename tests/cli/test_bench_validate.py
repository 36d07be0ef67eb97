"""`edgeconv bench ARTIFACT` and `edgeconv validate SOURCE ARTIFACT` on a real converted model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def converted(digits, tmp_path_factory) -> Path:
    """digits.onnx converted for onnx and onnx-fp16 (one `edgeconv convert`), with its manifest."""
    out = tmp_path_factory.mktemp("bench") / "out"
    result = run_cli("convert", digits.onnx, "-t", "onnx", "-t", "onnx-fp16", "--eval", digits.eval, "-o", out, "--json")
    assert result.code == 0, result.stderr
    return out


def test_bench_json(cli, converted: Path) -> None:
    artifact = converted / "onnx-fp16" / "digits_cnn.onnx"
    result = cli("bench", artifact, "--runs", "12", "--warmup", "2", "--json")
    assert result.code == 0, result.stderr
    bench = json.loads(result.stdout)
    assert bench["runtime"] == "onnxruntime" and bench["format"] == "onnx"
    assert bench["target"] == "onnx-fp16"  # read from the manifest beside the artifact
    assert bench["runs"] == 12 and bench["warmup"] == 2 and bench["inputs"] == {"image": [1, 1, 8, 8]}
    lat = bench["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert bench["throughput_per_s"] > 0 and bench["load_s"] > 0


def test_bench_dynamic_input_shape(cli, messy_onnx) -> None:
    bench = json.loads(cli("bench", messy_onnx, "--runs", "3", "--input-shape", "input=4x3x16x16", "--json").stdout)
    assert bench["inputs"] == {"input": [4, 3, 16, 16]} and bench["batch"] == 4 and bench["runs"] == 3


def test_bench_human_and_errors(cli, digits) -> None:
    result = cli("bench", digits.onnx, "--runs", "3")
    assert result.code == 0 and "p50 ms" in result.stdout and "onnxruntime" in result.stdout
    assert cli("bench", digits.onnx, "--runs", "0").code == 2
    unsupported = cli("bench", digits.pt2, "--json")  # a source model, not an artifact with a runtime of its own
    assert unsupported.code == 4 and json.loads(unsupported.stdout)["error"]["kind"] == "unsupported"


def test_validate_passes_with_metrics(cli, digits, converted: Path) -> None:
    artifact = converted / "onnx-fp16" / "digits_cnn.onnx"
    result = cli("validate", digits.onnx, artifact, "--eval", digits.eval, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["target"] == "onnx-fp16"  # from the manifest
    v = report["validation"]
    assert v["passed"] is True and v["kind"] == "numerical" and v["runtime"] == "onnxruntime"
    assert v["metrics"]["snr_db"] > 50 and v["metrics"]["top1_agreement"] == 1.0
    assert v["samples"]["kind"] == "files" and v["samples"]["count"] == 16
    human = cli("validate", digits.onnx, artifact, "--eval", digits.eval, "--samples", "4")
    assert human.code == 0 and "passed" in human.stdout and "4 samples" in human.stdout


def test_validate_gate_failure_exits_5(cli, digits, converted: Path) -> None:
    artifact = converted / "onnx-fp16" / "digits_cnn.onnx"
    result = cli("validate", digits.onnx, artifact, "--set", "validate.gate.min_snr_db=200", "--json")
    assert result.code == 5
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "accuracy-gate" and "200" in error["message"]
    assert error["details"]["validation"]["metrics"]["snr_db"] < 200


def test_validate_wrong_source_is_invalid_input(cli, messy_onnx, converted: Path) -> None:
    result = cli("validate", messy_onnx, converted / "onnx" / "digits_cnn.onnx", "--json")
    assert result.code in (3, 5), result.stdout  # other input names: the artifact cannot be fed
    assert "error" in json.loads(result.stdout)


def test_validate_bare_artifact_uses_the_profile_of_its_precision_and_says_so(cli, digits, converted: Path,
                                                                             tmp_path: Path) -> None:
    bare = tmp_path / "model.onnx"  # no manifest beside it
    bare.write_bytes((converted / "onnx-fp16" / "digits_cnn.onnx").read_bytes())
    report = json.loads(cli("validate", digits.onnx, bare, "--eval", digits.eval, "--json").stdout)
    assert report["target"] == "onnx-fp16" and report["manifest"] is None  # its float16 initializers say fp16
    assert report["inferred"]["precision"] == "fp16" and "float16 initializers" in report["inferred"]["reason"]
    assert report["validation"]["gate"]["min_snr_db"] == 30.0 and report["validation"]["passed"] is True
    assert report["warnings"] == []
    fp32 = json.loads(cli("validate", digits.onnx, converted / "onnx" / "digits_cnn.onnx", "--eval", digits.eval,
                          "--json").stdout)  # beside its manifest: nothing inferred
    assert fp32["target"] == "onnx" and "inferred" not in fp32
    explicit = json.loads(cli("validate", digits.onnx, bare, "-t", "onnx-fp16", "--eval", digits.eval, "--json").stdout)
    assert explicit["target"] == "onnx-fp16" and explicit["warnings"] == []


def test_bench_jobs_on_onnxruntime(converted: Path) -> None:
    """-j on ONNX Runtime: N threads calling run() on one session; --streams / --mode are OpenVINO's (exit 2)."""
    from edgeconv.benchmark import benchmark
    from edgeconv.errors import UsageError

    artifact = converted / "onnx" / "digits_cnn.onnx"
    result = benchmark(artifact, runs=30, warmup=2, jobs=3)
    assert result.jobs == 3 and result.runs == 30 and result.requested == {"jobs": 3}
    assert "3 threads calling run()" in result.driver and result.mode is None and result.streams is None
    assert result.throughput_per_s > 0 and 0 < result.latency_ms["p50"] <= result.latency_ms["max"]
    with pytest.raises(UsageError, match="NUM_STREAMS"):
        benchmark(artifact, runs=2, streams="2")
    with pytest.raises(UsageError, match="PERFORMANCE_HINT"):
        benchmark(artifact, runs=2, mode="throughput")


def test_bench_jobs_refused_where_one_runs_at_a_time(cli, digits, tmp_path: Path) -> None:
    """LiteRT's interpreter runs one inference at a time: -j 2 is a usage error naming the runtimes that take it."""
    from tests.helpers import convert, model_path

    manifest = convert(digits.onnx, ["tflite-fp32"], tmp_path / "out", eval=str(digits.eval))
    tflite = model_path(manifest, tmp_path / "out", "tflite-fp32")
    result = cli("bench", tflite, "-n", "3", "-j", "2", "--json")
    assert result.code == 2, result.stdout
    assert "`-j` is for OpenVINO" in json.loads(result.stdout)["error"]["message"]
    single = json.loads(cli("bench", tflite, "-n", "3", "-j", "1", "--json").stdout)
    assert single["jobs"] == 1 and single["runtime"] == "litert" and single["driver"] == "one run() at a time"


def test_bench_a_tflite_converted_from_torchscript(cli, digits, tmp_path: Path) -> None:
    """A TorchScript module does not record its input shapes: the manifest records the dims the conversion ran with
    (--input-shape), so bench feeds the .tflite with them (it was exit 1: 'axes don't match array')."""
    import json

    out = tmp_path / "out"
    res = cli("convert", digits.torchscript, "--input-shape", "image=1x1x8x8", "-t", "tflite-fp32", "-o", out,
              "--eval", digits.eval, "--json")
    assert res.code == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["inputs"][0]["shape"] == [1, 1, 8, 8] and manifest["source"]["inputs"][0]["rank_known"]
    bench = cli("bench", out / "tflite-fp32" / "digits_cnn.ts.tflite", "-n", "3", "--json")
    assert bench.code == 0, bench.stderr
    assert json.loads(bench.stdout)["inputs"] == {"image": [1, 1, 8, 8]}
