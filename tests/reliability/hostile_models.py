"""Builders of hostile model files for test_code_execution.py: each carries a payload that writes a sentinel file
(outside the test's workspace) when a framework loads or runs it, or points outside its folder, or inflates hugely."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class WritesSentinel:
    """Unpickling it runs `exec`, which writes the sentinel file."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return exec, (f"open({self.sentinel!r}, 'w').write('ran')",)


def _drop(sentinel: Path) -> None:
    """Building a model calls its Lambda: the payload ran here, once; remove its trace."""
    sentinel.unlink(missing_ok=True)


def _writing_lambda(sentinel: Path):  # type: ignore[no-untyped-def]
    """A lambda (saved as bytecode) that writes the sentinel, the path a constant in its code."""
    return eval(f"lambda x: (open({str(sentinel)!r}, 'w').write('ran'), x)[1]")  # noqa: S307


def h5_with_lambda(path: Path, sentinel: Path) -> Path:
    import tf_keras

    fn = _writing_lambda(sentinel)
    model = tf_keras.Sequential([tf_keras.Input((4,), name="x"), tf_keras.layers.Dense(2, name="dense"),
                                 tf_keras.layers.Lambda(fn, name="payload")])
    model.save(path, save_format="h5")
    _drop(sentinel)
    return path


def keras_with_lambda(path: Path, sentinel: Path) -> Path:
    import keras

    fn = _writing_lambda(sentinel)
    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Lambda(fn, name="payload", output_shape=(2,))(keras.layers.Dense(2, name="dense")(inputs))
    keras.Model(inputs, outputs).save(path)
    _drop(sentinel)
    return path


def plain_keras(folder: Path) -> tuple[Path, Path]:
    """The same small model without any Lambda, as .keras and .h5 (tf_keras)."""
    import keras
    import tf_keras

    keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(2, name="dense")]).save(folder / "plain.keras")
    tf_keras.Sequential([tf_keras.Input((4,), name="x"), tf_keras.layers.Dense(2, name="dense")]).save(
        folder / "plain.h5", save_format="h5")
    return folder / "plain.keras", folder / "plain.h5"


def plain_pt2(path: Path) -> Path:
    import torch

    class Small(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(x))

    torch.manual_seed(0)
    torch.export.save(torch.export.export(Small().eval(), (torch.randn(1, 4),)), str(path))
    return path


def rewrite_zip(source: Path, dest: Path, replace: dict[str, bytes]) -> Path:
    """Copy a zip member by member (same order, stored), with some members' bytes replaced (suffix match)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info.filename, data)
    return dest


def pt2_with_pickled_weight(plain: Path, dest: Path, sentinel: Path) -> Path:
    """A real torch.export.save archive whose `fc.bias` is marked `use_pickle: true`, its payload a pickle that writes
    the sentinel: torch.export.load reads it with torch.load(weights_only=False)."""
    with zipfile.ZipFile(plain) as zf:
        config_name = next(n for n in zf.namelist() if n.endswith("data/weights/model_weights_config.json"))
        config = json.loads(zf.read(config_name))
    entry = config["config"]["fc.bias"]
    entry["use_pickle"] = True
    return rewrite_zip(plain, dest, {"data/weights/model_weights_config.json": json.dumps(config).encode(),
                                     f"data/weights/{entry['path_name']}": pickle.dumps(WritesSentinel(sentinel))})


def pt2_with_pickled_sample_inputs(plain: Path, dest: Path, sentinel: Path) -> Path:
    """The sample inputs (always unpickled; weights_only=False after a weights_only=True failure) replaced."""
    return rewrite_zip(plain, dest, {"data/sample_inputs/model.pt": pickle.dumps(WritesSentinel(sentinel))})


def savedmodel_writing_file(path: Path, sentinel: Path) -> Path:
    """A SavedModel whose serving function writes the sentinel with tf.io.write_file every time it runs."""
    import tensorflow as tf

    class Writer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.ones([4, 2]))

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            tf.io.write_file(str(sentinel), "ran")
            return {"y": tf.matmul(x, self.w)}

    module = Writer()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def plain_savedmodel(path: Path) -> Path:
    """A Keras `model.export()` SavedModel (the saver functions use SaveV2 / RestoreV2 legitimately)."""
    import keras

    keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(2, name="dense")]).export(str(path), verbose=False)
    return path


def savedmodel_with_linked_variables(plain: Path, dest: Path, elsewhere: Path) -> Path:
    """A copy of a SavedModel whose variables/ folder is a symlink to a folder outside it."""
    shutil.copytree(plain, dest)
    shutil.move(str(dest / "variables"), str(elsewhere))
    (dest / "variables").symlink_to(elsewhere, target_is_directory=True)
    return dest


def keras_zip_bomb(path: Path, inflated: int = 256 << 20) -> Path:
    """A .keras archive of ~0.3 MB whose weights member inflates to `inflated` bytes of zeros."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
        with zf.open("model.weights.h5", "w", force_zip64=True) as f:
            for _ in range(inflated // len(chunk)):
                f.write(chunk)
    return path


def h5_with_external_weights(plain_h5: Path, dest: Path, secret: Path) -> Path:
    """A copy of a Keras .h5 whose dense kernel is an HDF5 dataset stored in an external raw file (`secret`, outside
    the model's folder): loading the model reads that file's bytes as weights."""
    import h5py
    import numpy as np

    shutil.copy(plain_h5, dest)
    with h5py.File(dest, "r+") as f:
        name = next(n for n in _datasets(f["model_weights"]) if n.endswith("kernel:0"))
        full = f"model_weights/{name}"
        shape, dtype = f[full].shape, f[full].dtype
        secret.write_bytes(np.arange(int(np.prod(shape)), dtype=dtype).tobytes())
        del f[full]
        f.create_dataset(full, shape=shape, dtype=dtype, external=[(str(secret), 0, secret.stat().st_size)])
    return dest


def _datasets(group) -> list[str]:  # type: ignore[no-untyped-def]
    names: list[str] = []
    group.visititems(lambda name, obj: names.append(name) if hasattr(obj, "shape") else None)
    return names
