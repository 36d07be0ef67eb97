"""TFLiteConverter's full-integer conversion in a child process.

Its calibrator runs the model in TensorFlow's own interpreter, which crashes the process on some real graphs (a CRNN's
bidirectional LSTM and a GRU audio model as onnx2tf writes them: SIGSEGV in `_feed_tensors`, TensorFlow 2.21). In
the edgeconv process that ended the whole run with exit 139 and no message, every other target lost. In a child, a
crash is one target's exit 4 with the reason. Only the calibrated precisions run here (the others never calibrate).

    python -m edgeconv.targets.tflite._isolated JOB.json      (written by `convert_in_child`)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

CONVERTER_ERROR_EXIT = 4


def convert_in_child(saved_model: Path, signature: str, settings: dict[str, Any], feeds: list[dict[str, np.ndarray]],
                     folder: Path) -> tuple[bytes | None, str]:
    """(model bytes, "") on success, (None, the converter's error text) when it refuses the model. A crash raises
    ChildProcessError with the signal's name."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i, feed in enumerate(feeds):
        path = folder / f"calibration_{i:04d}.npz"
        np.savez(path, allow_pickle=False, **feed)
        samples.append(str(path))
    job = folder / "job.json"
    out, error = folder / "model.tflite", folder / "error.txt"
    job.write_text(json.dumps({"saved_model": str(saved_model), "signature": signature, "settings": settings,
                               "samples": samples, "out": str(out), "error": str(error)}), encoding="utf-8")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", __name__, str(job)], capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        return out.read_bytes(), ""
    if proc.returncode == CONVERTER_ERROR_EXIT and error.exists():
        return None, error.read_text(encoding="utf-8")
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else proc.returncode
        raise ChildProcessError(f"TFLiteConverter crashed ({name}) calibrating the model")
    tail = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or [f"exit {proc.returncode}"]
    raise ChildProcessError(f"TFLiteConverter failed: {tail[0][:300]}")


def _main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    import tensorflow as tf

    from edgeconv.targets.tflite._convert import configure_converter

    def representative():
        for path in job["samples"]:
            with np.load(path) as data:
                yield {key: data[key] for key in data.files}

    converter = tf.lite.TFLiteConverter.from_saved_model(job["saved_model"], signature_keys=[job["signature"]])
    configure_converter(converter, representative=representative, **job["settings"])
    try:
        model = converter.convert()
    except Exception as e:  # noqa: BLE001 - the parent turns the text into its error
        Path(job["error"]).write_text(str(e), encoding="utf-8")
        return CONVERTER_ERROR_EXIT
    Path(job["out"]).write_bytes(model)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
