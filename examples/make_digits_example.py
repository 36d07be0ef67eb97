"""Rebuild the example shipped in examples/: a small CNN trained on scikit-learn's digits (offline data), saved with
torch.export (digits_cnn.pt2), plus 64 calibration samples and 64 held-out evaluation samples as .npy files.

    .venv/bin/python examples/make_digits_example.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))

import model_zoo  # noqa: E402


def main() -> None:
    import torch

    split = model_zoo.digits_split()
    model = model_zoo.digits_cnn(split)
    x = torch.from_numpy(split.x_test[:1])
    torch.export.save(torch.export.export(model, (x,)), str(HERE / "digits_cnn.pt2"))
    for name, arrays in (("digits_calib", split.x_train[:64]), ("digits_eval", split.x_test[:64])):
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        for i, a in enumerate(arrays):
            np.save(folder / f"{i:03d}.npy", a[None].astype(np.float32))
    logits = model(torch.from_numpy(split.x_test)).detach().numpy()
    print(f"held-out accuracy: {model_zoo.accuracy(logits, split.y_test):.3f}")


if __name__ == "__main__":
    main()
