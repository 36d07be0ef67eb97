"""Bad targets, profiles, calibration data and sources; gate failures; missing backends (cases 13-17 of
docs/exit-codes.md). Same contract as everywhere: exit code, one-line error + hint, --json error, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import REPO, CliResult
from tests.reliability.conftest import expect_failure, save_samples


# ---------------------------------------------------------------- 13. unknown target, bad profile files
def test_unknown_target_suggests(digits, ws: Path) -> None:
    failure = expect_failure(["convert", digits.onnx, "-t", "tflte", "-o", ws / "out"], 2,
                             "unknown target 'tflte'", "did you mean tflite-", "known targets:", "onnx-fp16", workspace=ws)
    assert "tflite-int8" in failure.error["hint"]


BAD_PROFILES = {
    # name: (file text, needles) — every message names the file, and the line where one exists
    "unknown-key": ('name = "t"\nextends = "onnx"\n\n[quantize]\nprecison = "int8"\n',
                    (":5:", "unknown key 'precison'", "did you mean 'precision'")),
    "toml-syntax": ('name = "t"\nextends = "onnx"\n[quantize\nprecision = "int8"\n', ("invalid TOML", "line 3")),
    "bad-choice": ('name = "t"\nextends = "onnx"\n[quantize]\nstage = "onnx"\nprecision = "int3"\n',
                   (":5:", "precision = 'int3' is not one of")),
    "wrong-type": ('name = "t"\nextends = "onnx"\n\n[validate]\nsamples = "many"\n', (":5:", "samples", "integer")),
    "wrong-type-inline": ('name = "t"\nextends = "onnx"\n[validate]\ngate = { min_snr_db = "high" }\n',
                          (":4:", "min_snr_db", "number")),
    "unknown-parent": ('name = "t"\n\nextends = "onxx"\n', (":3:", "unknown profile 'onxx'", "did you mean onnx")),
    "bad-format": ('name = "t"\nproduces = ["onnx", "tflight"]\n', (":2:", "tflight")),
}


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profile_file_names_key_and_line(digits, ws: Path, inputs: Path, case: str) -> None:
    text, needles = BAD_PROFILES[case]
    path = inputs / "my-target.toml"
    path.write_text(text)
    expect_failure(["convert", digits.onnx, "-t", path, "-o", ws / "out"], 2, "my-target.toml", *needles,
                   workspace=ws, json_too=case == "unknown-key")


def test_bad_override_names_key(digits, ws: Path) -> None:
    expect_failure(["convert", digits.onnx, "-t", "onnx", "--set", "validate.samples=lots", "-o", ws / "out"], 2,
                   "samples", "integer", workspace=ws, json_too=False)


# ---------------------------------------------------------------- 14. calibration data
def _calib(folder: Path, n: int = 6, bad: dict[int, np.ndarray] | None = None) -> Path:
    """n good digits-shaped samples; `bad` replaces some (never the first: the streamed check must catch it)."""
    rng = np.random.default_rng(5)
    arrays = [rng.uniform(0, 1, (1, 1, 8, 8)).astype(np.float32) for _ in range(n)]
    for i, a in (bad or {}).items():
        arrays[i] = a
    return save_samples(folder, arrays)


def _nan() -> np.ndarray:
    a = np.ones((1, 1, 8, 8), np.float32)
    a[0, 0, 3, 3] = np.nan
    return a


CALIB_CASES = {
    # name: (builder(folder) -> --calib value or None, needles)
    "none-given": (lambda f: None, ("none was given", "--calib random")),
    "missing-dir": (lambda f: str(f / "nope"), ("does not exist",)),
    "empty-dir": (lambda f: (f / "empty").mkdir() or str(f / "empty"), ("has no .npy/.npz samples",)),
    "wrong-shape": (lambda f: str(_calib(f / "c", bad={3: np.zeros((1, 1, 4, 4), np.float32)})),
                    ("0003.npy", "(1, 1, 4, 4)", "expected 1x1x8x8")),
    "wrong-dtype": (lambda f: str(_calib(f / "c", bad={2: np.zeros((1, 1, 8, 8), np.int32)})),
                    ("0002.npy", "int32", "expected float32")),
    "nan": (lambda f: str(_calib(f / "c", bad={4: _nan()})), ("0004.npy", "NaN")),
    "inf": (lambda f: str(_calib(f / "c", bad={1: np.full((1, 1, 8, 8), np.inf, np.float32)})), ("0001.npy", "Inf")),
    "corrupt-npy": (lambda f: (_calib(f / "c"), (f / "c" / "0002.npy").write_bytes(b"\x93NUMPY garbage")) and str(f / "c"),
                    ("0002.npy", "cannot read sample")),
    "constant": (lambda f: str(save_samples(f / "c", [np.zeros((1, 1, 8, 8), np.float32)] * 6)),
                 ("constant", "image", "zero")),
}


@pytest.mark.parametrize("case", sorted(CALIB_CASES))
def test_bad_calibration_data(digits, ws: Path, inputs: Path, profiles: Path, case: str) -> None:
    build, needles = CALIB_CASES[case]
    calib = build(inputs)
    args: list[Any] = ["convert", digits.onnx, "-t", profiles / "int8-test.toml", "-o", ws / "out"]
    if calib is not None:
        args += ["--calib", calib]
    expect_failure(args, 3, *needles, workspace=ws, json_too=case in ("none-given", "nan"))


def test_corrupt_image_in_calibration_folder(digits, ws: Path, inputs: Path, profiles: Path) -> None:
    Image = pytest.importorskip("PIL.Image")

    folder = inputs / "images"
    folder.mkdir()
    rng = np.random.default_rng(6)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    (folder / "02.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
    expect_failure(["convert", digits.onnx, "-t", profiles / "int8-test.toml", "--calib", folder, "-o", ws / "out"], 3,
                   "02.png", workspace=ws, json_too=False)


# ---------------------------------------------------------------- 15. a source that computes NaN
def test_source_producing_nan_fails_before_quantizing(digits, ws: Path, inputs: Path, profiles: Path) -> None:
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])
    shift = helper.make_tensor("shift", TensorProto.FLOAT, [1], [0.5])
    nodes = [helper.make_node("Sub", ["image", "shift"], ["centred"], name="centre"),
             helper.make_node("Sqrt", ["centred"], ["y"], name="sqrt")]  # NaN for every pixel below 0.5
    model = helper.make_model(helper.make_graph(nodes, "nan", [x], [y], [shift]), opset_imports=[helper.make_opsetid("", 17)],
                              ir_version=8)
    path = inputs / "nan.onnx"
    onnx.save_model(model, str(path))
    failure = expect_failure(["-v", "convert", path, "-t", profiles / "int8-test.toml", "--calib", digits.calib,
                              "-o", ws / "out"], 3, "NaN", "sample 0", workspace=ws)
    assert "quantize" not in [line.split()[0] for line in failure.text.stderr.splitlines() if line.strip()], \
        "the source's NaN must be found before quantizing"


# ---------------------------------------------------------------- 16. accuracy gate
def test_accuracy_gate_failure_reports_metrics_and_worst_layers(digits, ws: Path, inputs: Path) -> None:
    profile = inputs / "strict.toml"
    profile.write_text(textwrap.dedent("""\
        name = "int8-strict"
        extends = "onnx"
        [quantize]
        precision = "int8"
        stage = "onnx"
        calibration_samples = 16
        max_fallback = 0
        [validate]
        samples = 16
        gate = { min_snr_db = 80.0 }
    """))
    failure = expect_failure(["convert", digits.onnx, "-t", profile, "--calib", digits.calib, "--eval", digits.eval,
                              "-o", ws / "out"], 5, "accuracy gate", "SNR", "80.0 dB", workspace=ws)
    details = failure.error["details"]
    metrics = details["validation"]["metrics"]
    assert 10 < metrics["snr_db"] < 80 and metrics["cosine"] > 0.99 and metrics["samples"] == 16
    worst = details.get("worst_layers")
    assert worst, f"the error names no layers: {sorted(details)}"
    assert worst[0]["node"] and worst[0]["snr_db"] is not None


# ---------------------------------------------------------------- 17. optional backend not installed
HIDING_RUNNER = textwrap.dedent("""
    # Run edgeconv as if some packages were not installed: importing them fails, find_spec finds nothing.
    import os, sys
    for name in os.environ["EDGECONV_TEST_HIDE"].split(","):
        sys.modules[name] = None
    from edgeconv.cli.app import main
    main(sys.argv[1:])
""")


@pytest.mark.parametrize("hidden, source, target, extra", [
    ("onnx2tf", "onnx", "tflite-fp32", "tflite"),
    ("coremltools", "pt2", "coreml-fp32", "coreml"),  # Core ML is built from the PyTorch / Keras source
    ("onnx2torch", "onnx", "coreml-fp32", "coreml-onnx"),  # ... or from ONNX through onnx2torch
])
def test_missing_backend_names_pip_extra(digits, ws: Path, tmp_path: Path, hidden: str, source: str, target: str,
                                         extra: str) -> None:
    runner_file = tmp_path / "hiding_edgeconv.py"
    runner_file.write_text(HIDING_RUNNER)

    def runner(*args: Any, **kwargs: Any) -> CliResult:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), "EDGECONV_TEST_HIDE": hidden,
               **kwargs.get("env", {})}
        proc = subprocess.run([sys.executable, str(runner_file), *map(str, args)], capture_output=True, text=True,
                              env=env, cwd=kwargs.get("cwd", REPO), timeout=300)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    failure = expect_failure(["convert", getattr(digits, source), "-t", target, "--eval", digits.eval, "-o", ws / "out"],
                             4, f"pip install 'edgeconv[{extra}]'", workspace=ws, runner=runner)
    assert failure.error["kind"] == "missing-backend" and failure.error["details"]["extras"] == [extra], failure.error
    assert "missing optional backend" in failure.text.stderr
