"""--custom-objects: a subclassed Keras model (a class registered with keras.saving.register_keras_serializable in the
user's own module) loads once that module is imported; without it the error names the option. The module is the
user's code: its failures are exit 3 naming the file and line, a malformed name is exit 2 before any work."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

MODULE = textwrap.dedent('''
    import keras


    @keras.saving.register_keras_serializable(package="userpkg")
    class Residual(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(8, 3, padding="same")
            self.gap = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(4)

        def call(self, image):
            h = self.conv(image)
            return self.head(self.gap(keras.ops.relu(h + image[..., :1])))
''')


@pytest.fixture(scope="module")
def subclassed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding userlayers.py (the class) and model.keras (a built, saved instance), as a user's project."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("keras_custom")
    (folder / "userlayers.py").write_text(MODULE)
    (folder / "calib").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        np.save(folder / "calib" / f"{i:02d}.npy", rng.normal(size=(1, 12, 12, 3)).astype(np.float32))
    script = ("import keras, numpy as np, userlayers; m = userlayers.Residual(); m(np.zeros((1, 12, 12, 3), 'float32'));"
              "m.save('model.keras')")
    subprocess.run([sys.executable, "-c", script], cwd=folder, check=True, capture_output=True,
                   env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return folder


@pytest.mark.slow
def test_subclassed_model_converts_with_its_module(cli, subclassed: Path, tmp_path: Path) -> None:
    res = cli("convert", "model.keras", "--custom-objects", "userlayers",
              "--calib", "calib", "-t", "onnx", "-o", tmp_path / "out", "--json", cwd=subclassed)
    doc = json.loads(res.stdout)
    assert res.code == 0, doc.get("error")
    metrics = doc["targets"][0]["validation"]["metrics"]
    assert metrics["snr_db"] > 100 and metrics["samples"] == 8
    assert (tmp_path / "out" / "onnx" / "model.onnx").stat().st_size > 1000


def test_without_the_module_the_error_names_the_option(cli, subclassed: Path, tmp_path: Path) -> None:
    res = cli("convert", "model.keras", "-t", "onnx", "-o", tmp_path / "out", "--json", cwd=subclassed)
    error = json.loads(res.stdout)["error"]
    assert res.code == 3 and "--custom-objects" in error["hint"], error
    assert not (tmp_path / "out").exists()


def test_bad_module_name_is_a_usage_error(cli, subclassed: Path, tmp_path: Path) -> None:
    res = cli("convert", "model.keras", "--custom-objects", "user-layers.py", "-t", "onnx", "-o", tmp_path / "out",
              "--json", cwd=subclassed)
    assert res.code == 2 and "--custom-objects" in json.loads(res.stdout)["error"]["message"]


def test_failing_module_names_its_line(cli, subclassed: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import keras\n\nraise RuntimeError('no GPU here')\n")
    (tmp_path / "model.keras").symlink_to(subclassed / "model.keras")
    res = cli("convert", "model.keras", "--custom-objects", "broken", "-t", "onnx", "-o", tmp_path / "out", "--json",
              cwd=tmp_path)
    error = json.loads(res.stdout)["error"]
    assert res.code == 3 and "broken.py:3" in error["message"] and "no GPU here" in error["message"], error
