"""Quantization test models: the pitfall CNN trained on digits (cached on disk like the shared models, keyed by the
source of pitfall_models.py), and its calibration / held-out data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CACHE, cached, save_samples
from tests.quantizers import pitfall_models

PITFALL_HASH = hashlib.sha256(Path(pitfall_models.__file__).read_bytes()).hexdigest()[:10]


@dataclass(frozen=True)
class TrainedPitfall:
    """pitfall_cnn (opset 11, Constant weights, unfused BN, shape subgraph, dynamic batch) with weights trained on
    3-channel 8x8 digits; input `input` [N, 3, 8, 8]."""

    root: Path
    onnx = property(lambda self: self.root / "pitfall.onnx")
    calib = property(lambda self: self.root / "calib")  # 64 training images
    eval = property(lambda self: self.root / "eval")  # 32 held-out images

    def test_split(self) -> tuple[np.ndarray, np.ndarray]:
        _, _, x, y = pitfall_models.digits_images(8)
        return x, y


def _build(folder: Path) -> None:
    weights = pitfall_models.train_pitfall_weights(width=32, hw=8, epochs=4)
    pitfall_models.pitfall_cnn(folder / "pitfall.onnx", width=32, hw=8, weights=weights)
    x_train, _, x_test, _ = pitfall_models.digits_images(8)
    save_samples(folder / "calib", x_train[:64])
    save_samples(folder / "eval", x_test[:32])


@pytest.fixture(scope="session")
def trained_pitfall() -> TrainedPitfall:
    assert CACHE  # shared cache folder of tests/conftest.py
    return TrainedPitfall(cached(f"pitfall-{PITFALL_HASH}", _build))
