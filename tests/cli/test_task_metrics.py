"""Task-level accuracy end to end: the digits CNN (trained on sklearn digits) converted with labelled --eval data, its
top-1 on the source and on every artifact, the max_task_drop gate, and a --metric plugin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

TARGETS = ("onnx", "cpu-int8", "tflite-int8")
RELAXED = ("--set", "validate.gate.min_snr_db=-300", "--set", "validate.gate.min_cosine=-1", "--set",
           "validate.gate.min_top1_agreement=0", "--set", "quantize.max_fallback=0")  # only the task gate is left


@pytest.fixture(scope="module")
def labelled(digits, tmp_path_factory) -> Path:
    """The digits eval set (128 held-out samples) as .npz with labels (npz/), as a folder per class of PNGs (images/),
    and one barely varying calibration sample (bad_calib/) that ruins int8 ranges."""
    from PIL import Image

    root = tmp_path_factory.mktemp("labelled")
    (root / "npz").mkdir()
    for i, (x, y) in enumerate(zip(digits.split.x_test[:128], digits.eval_labels)):
        np.savez(root / "npz" / f"{i:04d}.npz", image=x[None].astype(np.float32), label=np.int64(y))
        folder = root / "images" / f"digit{y}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(x[0] * 255).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
    (root / "bad_calib").mkdir()
    np.save(root / "bad_calib" / "0.npy", np.random.default_rng(0).uniform(0, 0.02, (1, 1, 8, 8)).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def converted(digits, labelled: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("task") / "out"
    targets = [a for t in TARGETS for a in ("-t", t)]
    result = run_cli("convert", digits.pt2, *targets, "--calib", digits.calib, "--eval", labelled / "npz", "-o", out)
    assert result.code == 0, result.stderr + result.stdout
    table = " ".join(result.stdout.split())
    assert "task (source" in table and "top-1 " in table and "% →" in table, result.stdout  # the task column
    return out, json.loads((out / "manifest.json").read_text())


def _tasks(manifest: dict) -> dict[str, dict]:
    return {t["target"]: t["validation"]["task"] for t in manifest["targets"]}


def test_top1_of_source_and_every_artifact_on_labelled_npz(converted) -> None:
    _, manifest = converted
    tasks = _tasks(manifest)
    assert set(tasks) == set(TARGETS)
    for name, task in tasks.items():
        assert task["metric"] == "top-1" and task["reference"] == "labels" and task["samples"] == 128, name
        assert task["source"] >= 0.9, task  # the trained CNN on held-out digits
        assert task["drop"] <= 2.0, (name, task)
        assert task["drop"] == pytest.approx(100 * (task["source"] - task["artifact"]))
        assert "top-5" in task["also"]
    assert len({t["source"] for t in tasks.values()}) == 1  # one source, one number
    gates = {t["target"]: t["validation"]["gate"]["max_task_drop"] for t in manifest["targets"]}
    assert gates == {"onnx": None, "cpu-int8": 1.0, "tflite-int8": 1.0}  # the profiles' defaults


def test_image_folder_per_class_gives_the_same_top1(digits, labelled: Path, converted) -> None:
    out, manifest = converted
    by_npz = _tasks(manifest)
    for target, artifact in (("onnx", "onnx/digits_cnn.onnx"), ("cpu-int8", "cpu-int8/digits_cnn.onnx"),
                             ("tflite-int8", "tflite-int8/digits_cnn.tflite")):
        result = run_cli("validate", digits.pt2, out / artifact, "--eval", labelled / "images", "--json")
        assert result.code == 0, result.stdout
        validation = json.loads(result.stdout)["validation"]
        assert validation["samples"]["kind"] == "images" and validation["samples"]["classes"] == 10
        task = validation["task"]
        assert task["samples"] == 128 and task["source"] >= 0.9 and task["drop"] <= 2.0, task
        # PNG rounding (k/16 stored as 8 bits) moves inputs by < 0.002: the same samples are right
        assert abs(task["source"] - by_npz[target]["source"]) <= 1 / 128, (target, task)
    human = run_cli("validate", digits.pt2, out / "cpu-int8" / "digits_cnn.onnx", "--eval", labelled / "images")
    assert human.code == 0 and "task: top-1" in human.stdout and "against labels" in human.stdout, human.stdout


def test_gate_fails_when_the_drop_exceeds_max_task_drop(cli, digits, labelled: Path, tmp_path: Path) -> None:
    args = ("convert", digits.onnx, "-t", "cpu-int8", "--calib", labelled / "bad_calib", "--eval", labelled / "npz",
            "--set", "quantize.calibration_samples=1", *RELAXED)
    failed = cli(*args, "--set", "validate.gate.max_task_drop=2", "-o", tmp_path / "a", "--json")
    assert failed.code == 5, failed.stdout
    error = json.loads(failed.stdout)["error"]
    validation = error["details"]["validation"]
    drop = validation["task"]["drop"]
    assert drop > 2.0 and validation["failures"] == [f for f in validation["failures"] if "max_task_drop 2" in f]
    assert len(validation["failures"]) == 1 and "top-1 " in error["message"] and "max_task_drop 2" in error["message"]
    assert not (tmp_path / "a").exists()
    # the same model passes when the bound is above the drop it measured: the task gate, nothing else, failed it
    passed = cli(*args, "--set", f"validate.gate.max_task_drop={drop + 1:.3f}", "-o", tmp_path / "b", "--json")
    assert passed.code == 0, passed.stdout
    assert json.loads(passed.stdout)["targets"][0]["validation"]["task"]["drop"] == pytest.approx(drop)


PLUGIN = '''
import numpy as np


def accuracy(outputs, labels):
    hits = [int(np.argmax(sample[0]) == label) for sample, label in zip(outputs, labels)]
    return sum(hits) / len(hits)


accuracy.percent = True


def error_rate(outputs, labels):
    return 1.0 - accuracy(outputs, labels)


error_rate.lower_is_better = True
error_rate.percent = True


def broken(outputs, labels):
    return outputs[0][7]
'''


def test_plugin_metric_in_table_manifest_and_gate(cli, digits, labelled: Path, tmp_path: Path) -> None:
    (tmp_path / "digit_metrics.py").write_text(PLUGIN)
    common = ("convert", digits.onnx, "-t", "cpu-int8", "--calib", digits.calib, "--eval", labelled / "npz")
    ok = cli(*common, "--metric", "digit_metrics:error_rate", "-o", tmp_path / "ok", cwd=tmp_path)
    assert ok.code == 0, ok.stderr + ok.stdout
    assert "digit_metrics:error_rate" in ok.stdout
    task = json.loads((tmp_path / "ok" / "manifest.json").read_text())["targets"][0]["validation"]["task"]
    assert task["metric"] == "digit_metrics:error_rate" and task["higher_is_better"] is False and task["percent"] is True
    assert task["source"] <= 0.1 and task["drop"] == pytest.approx(100 * (task["artifact"] - task["source"]))
    higher = cli(*common, "--metric", "digit_metrics:accuracy", "-o", tmp_path / "hi", "--json", cwd=tmp_path)
    assert higher.code == 0, higher.stdout
    acc = json.loads(higher.stdout)["targets"][0]["validation"]["task"]
    assert acc["source"] == pytest.approx(1 - task["source"]) and acc["drop"] == pytest.approx(task["drop"])
    # a ruined int8 model: its error rate goes up, which lower_is_better counts as a drop → exit 5
    bad = cli("convert", digits.onnx, "-t", "cpu-int8", "--calib", labelled / "bad_calib", "--eval", labelled / "npz",
              "--set", "quantize.calibration_samples=1", *RELAXED, "--set", "validate.gate.max_task_drop=2",
              "--metric", "digit_metrics:error_rate", "-o", tmp_path / "bad", "--json", cwd=tmp_path)
    assert bad.code == 5, bad.stdout
    failed = json.loads(bad.stdout)["error"]["details"]["validation"]["task"]
    assert failed["artifact"] > failed["source"] + 0.02 and "digit_metrics:error_rate" in bad.stdout


def test_plugin_errors_are_exit_codes(cli, digits, labelled: Path, tmp_path: Path) -> None:
    (tmp_path / "digit_metrics.py").write_text(PLUGIN)
    common = ("convert", digits.onnx, "-t", "onnx", "--eval", labelled / "npz", "--json")
    malformed = cli(*common, "--metric", "digit metrics:fn", "-o", tmp_path / "m", cwd=tmp_path)
    assert malformed.code == 2 and "--metric" in malformed.stdout
    missing = cli(*common, "--metric", "no_such_module:fn", "-o", tmp_path / "n", cwd=tmp_path)
    assert missing.code == 3 and "cannot import no_such_module" in missing.stdout
    broken = cli(*common, "--metric", "digit_metrics:broken", "-o", tmp_path / "b", cwd=tmp_path)
    assert broken.code == 3, broken.stdout
    message = json.loads(broken.stdout)["error"]["message"]
    assert "metric digit_metrics:broken raised IndexError" in message and "digit_metrics.py:" in message
    assert not (tmp_path / "b").exists()


def test_validating_on_the_calibration_samples_is_said(cli, digits, tmp_path: Path) -> None:
    result = cli("convert", digits.onnx, "-t", "onnx", "--calib", digits.calib, "-o", tmp_path / "out")
    assert result.code == 0, result.stderr
    assert "validated on the calibration samples" in result.stderr
    assert "validated on the calibration samples" in " ".join(result.stdout.split())  # the table's caption
    target = json.loads((tmp_path / "out" / "manifest.json").read_text())["targets"][0]
    assert target["validation"]["samples"]["reused_calibration"] is True
    assert target["validation"]["task"] is None  # .npy samples: no labels, no task metric


def test_batch_passes_metric_and_summarises_the_task(tmp_path: Path) -> None:
    from edgeconv.batch import _summarise_manifest
    from edgeconv.config import load_config

    (tmp_path / "edgeconv.toml").write_text('targets = ["cpu-int8"]\n[[models]]\nsource = "m.onnx"\neval = "eval"\n'
                                            'metric = "top5"\n')
    (model,) = load_config(tmp_path / "edgeconv.toml").models
    args = model.convert_args("cpu-int8", tmp_path / "o")
    assert args[args.index("--metric") + 1] == "top5"
    task = {"metric": "top-1", "source": 0.98, "artifact": 0.97, "drop": 1.0, "percent": True}
    _, validation = _summarise_manifest({"targets": [{"artifacts": [], "validation": {"passed": True, "task": task}}]},
                                        tmp_path)
    assert validation["task"] == task


def test_a_metric_that_needs_labels_fails_before_any_work(cli, digits, tmp_path: Path) -> None:
    result = cli("convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "--metric", "top1", "-o", tmp_path / "o",
                 "--json")
    assert result.code == 3 and "needs labelled evaluation data" in result.stdout, result.stdout
