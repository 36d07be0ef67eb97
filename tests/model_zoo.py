"""Test models, built here (no downloads): trained on real data that ships offline where accuracy must mean something.

- digits CNN (PyTorch), trained a few epochs on scikit-learn's 8x8 digits: held-out accuracy ~97%
- transformer encoder block (PyTorch)
- Keras functional CNN trained on digits; a Keras model with depthwise conv + residuals
- a "messy" ONNX graph with the features real third-party exports have: Constant-node weights, opset 11, unfused
  BatchNormalization, a Shape→Gather→Concat→Reshape subgraph, a dynamic batch dim
Used by tests (through conftest fixtures), bench/ and examples/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DigitsSplit:
    x_train: np.ndarray  # N x 1 x 8 x 8 float32 in [0, 1]
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_split(seed: int = 0) -> DigitsSplit:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return DigitsSplit(x_tr, y_tr, x_te, y_te)


def digits_architecture():
    """The digits CNN, untrained: conv-bn-relu x2, max-pool, linear. Also a `--model` factory in tests."""
    from torch import nn

    return DigitsNet(nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    ))


def digits_cnn(split: DigitsSplit, epochs: int = 12, seed: int = 0):
    """digits_architecture() trained on the digits split. Returns the eval-mode nn.Module."""
    import torch

    torch.manual_seed(seed)
    return train_classifier(digits_architecture(), split.x_train, split.y_train, epochs, seed)


def train_classifier(model, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0):
    """Adam (lr 3e-3), cross-entropy, shuffled batches of 64 from a seeded generator; returns the eval-mode model."""
    import torch
    from torch import nn

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def _digits_net_class():
    import torch

    class DigitsNet(torch.nn.Module):
        """Wrapper so the forward argument is named `image` (edgeconv keeps it as the ONNX input name)."""

        def __init__(self, body: torch.nn.Module):
            super().__init__()
            self.body = body

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.body(image)

    return DigitsNet


def DigitsNet(body):  # noqa: N802 - a factory that looks like the class
    return _digits_net_class()(body)


def transformer_block(seed: int = 0, d_model: int = 32, heads: int = 4, seq: int = 16, activation: str = "relu"):
    """One transformer encoder layer (self-attention + MLP with `activation` + LayerNorm), eval mode; input `tokens`
    [1, seq, d_model]."""
    import torch

    torch.manual_seed(seed)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, batch_first=True,
                                                          activation=activation)
            self.head = torch.nn.Linear(d_model, 8)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.head(self.layer(tokens))

    return Block().eval()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.argmax(logits, axis=-1) == labels).mean())


def keras_digits_cnn(split: DigitsSplit, epochs: int = 8, seed: int = 0):
    """Keras functional CNN on digits (NHWC input `image` [N, 8, 8, 1]), trained briefly."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inp, out, name="digits_keras")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(split.x_train.transpose(0, 2, 3, 1), split.y_train, epochs=epochs, batch_size=64, verbose=0)
    return model


def keras_depthwise_residual(seed: int = 0):
    """Keras model with depthwise-separable convs and residual adds (MobileNet-style), input `image` [N, 16, 16, 3]."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    for _ in range(2):
        y = keras.layers.DepthwiseConv2D(3, padding="same")(x)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.ReLU(6.0)(y)
        y = keras.layers.Conv2D(16, 1)(y)
        x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, name="scores")(x)
    return keras.Model(inp, out, name="dw_residual")


def messy_onnx(path: Path, seed: int = 0) -> Path:
    """An opset-11 CNN with Constant-node weights, an unfused BatchNormalization, a Shape→Gather→Unsqueeze→Concat→
    Reshape subgraph (the flatten a tracer writes) and a dynamic batch dim `N`. Input `input` [N, 3, 16, 16]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def const(name: str, array: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array.astype(np.float32), name))

    w1 = rng.normal(0, 0.2, (16, 3, 3, 3))
    b1 = rng.normal(0, 0.1, (16,))
    scale, bias = rng.uniform(0.5, 1.5, 16), rng.normal(0, 0.1, 16)
    mean, var = rng.normal(0, 0.1, 16), rng.uniform(0.5, 1.5, 16)
    w2 = rng.normal(0, 0.1, (16, 16, 3, 3))
    fc_w, fc_b = rng.normal(0, 0.05, (10, 16 * 8 * 8)), rng.normal(0, 0.1, (10,))
    nodes = [
        const("w1", w1), const("b1", b1), const("bn_scale", scale), const("bn_bias", bias),
        const("bn_mean", mean), const("bn_var", var), const("w2", w2), const("fc_w", fc_w), const("fc_b", fc_b),
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn1"], epsilon=1e-5),
        helper.make_node("Relu", ["bn1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        # flatten as a tracer writes it: Reshape(p1, Concat(Unsqueeze(Gather(Shape(p1), 0)), [-1]))
        helper.make_node("Shape", ["p1"], ["p1_shape"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, dtype=np.int64), "zero")),
        helper.make_node("Gather", ["p1_shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch"], ["batch_1d"], axes=[0]),
        helper.make_node("Constant", [], ["minus_one"], value=numpy_helper.from_array(np.array([-1], dtype=np.int64), "m1")),
        helper.make_node("Concat", ["batch_1d", "minus_one"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["p1", "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "messy",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="messy-exporter")
    model.ir_version = 6
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path
