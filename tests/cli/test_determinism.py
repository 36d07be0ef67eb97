"""Same inputs and versions → byte-identical artifacts, and the manifest's sha256 says so (CI compares them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _hashes(cli, source: Path, out: Path, *targets: str, calib: Path | None = None) -> dict[str, str]:
    args = [a for t in targets for a in ("-t", t)] + (["--calib", str(calib)] if calib else [])
    result = cli("convert", source, *args, "--set", "validate.samples=4", "-o", out, "--json")
    assert result.code == 0, result.stdout + result.stderr
    manifest = json.loads(result.stdout)
    return {f"{t['target']}:{a['path']}": a["sha256"] for t in manifest["targets"] for a in t["artifacts"]}


def test_onnx_convert_twice_gives_identical_sha256(cli, digits, tmp_path: Path) -> None:
    """fp32, fp16 and calibrated int8 (QDQ): calibration reads the samples in sorted order, seeds are fixed."""
    targets = ("onnx", "onnx-fp16", "onnx-int8-qdq")
    first = _hashes(cli, digits.onnx, tmp_path / "a", *targets, calib=digits.calib)
    second = _hashes(cli, digits.onnx, tmp_path / "b", *targets, calib=digits.calib)
    assert len(first) == 3 and first == second


def _all_targets_hashes(cli, source: Path, out: Path, targets: list[str], seed: int, *extra: str) -> dict[str, str]:
    args = [a for t in targets for a in ("-t", t)]
    result = cli("convert", source, *args, *extra, "--set", "validate.samples=4", "-o", out, "--json",
                 env={"PYTHONHASHSEED": str(seed)})
    assert result.code == 0, result.stdout[-2000:] + result.stderr[-2000:]
    manifest = json.loads(result.stdout)
    return {a["path"]: a["sha256"] for t in manifest["targets"] for a in t["artifacts"] if a["sha256"]}


@pytest.mark.slow
@pytest.mark.parametrize("source", ["keras", "pt2"])
def test_every_target_writes_the_same_bytes_whatever_ran_before_it(cli, digits, keras_models, source: str,
                                                                   tmp_path: Path) -> None:
    """Every built-in target, twice: in profile order with one Python hash seed, then in reverse order with another.
    A target's bytes must not depend on the other targets of the run (process-wide name counters in tf_keras /
    onnx2tf and tf2onnx), on string hashing (tf2onnx's generated names), or on random ids (Core ML's package
    manifest). From PyTorch (torch.export → ONNX, no timestamps or unordered sets): every target. From Keras: the
    targets whose first step is Keras's own (tf2onnx; TFLiteConverter; Core ML), and two that go on through ONNX; the
    rest of their routes is the ONNX code the PyTorch run checks."""
    from edgeconv.targets import profile_names

    if source == "keras":
        model, shape = keras_models / "digits_keras.keras", "image=1x8x8x1"
        data = ("--calib", keras_models / "calib", "--eval", keras_models / "eval")
    else:
        model, shape = digits.pt2, "image=1x1x8x8"
        data = ("--calib", digits.calib, "--eval", digits.eval)
    targets = profile_names()
    if source == "keras":  # the ExecuTorch profiles take PyTorch sources only (torch.export): no route from Keras
        targets = [t for t in targets if t.startswith(("tflite", "coreml", "ane")) or t in ("onnx", "cpu-int8")]
    forward = _all_targets_hashes(cli, model, tmp_path / "forward", targets, 1, "--input-shape", shape, *data)
    backward = _all_targets_hashes(cli, model, tmp_path / "backward", targets[::-1], 2, "--input-shape", shape, *data)
    assert len(forward) >= (30 if source == "pt2" else 13)  # every target wrote its model (and companions); TensorRT
    # engines are "not built" here
    assert forward == backward, sorted(k for k in forward if forward[k] != backward.get(k))
