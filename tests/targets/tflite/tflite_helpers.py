"""Run a converted .tflite on source-layout samples with edgeconv's LiteRT session (the I/O map from the manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.formats import IoMap, TensorSpec
from edgeconv.targets.tflite.runtime import LiteRtSession, load_interpreter


def litert_session(path: Path, record: dict[str, Any], inputs: tuple[TensorSpec, ...]) -> LiteRtSession:
    interpreter, runner, _ = load_interpreter(str(path))
    return LiteRtSession(interpreter, runner, IoMap.from_json(record["notes"]["tflite_io"]), inputs)


def litert_logits(path: Path, record: dict[str, Any], x: np.ndarray, input_name: str = "image") -> np.ndarray:
    session = litert_session(path, record, (TensorSpec(input_name, tuple(x.shape[1:])),))
    return np.concatenate([session.run({input_name: x[i : i + 1]})[0] for i in range(len(x))])


def tflite_input_details(path: Path) -> dict[str, Any]:
    _, runner, _ = load_interpreter(str(path))
    return runner.get_input_details()
