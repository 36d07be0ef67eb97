"""Keras / TensorFlow model definitions for the corpus: keras.applications architectures with weights=None (nothing is
downloaded), a Keras-2-era model built with tf_keras (saved as .h5), a functional model exported as a SavedModel with a
serving signature, and a subclassed model. Every function imports TensorFlow lazily."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keras_app(name: str, size: int, seed: int = 0, **kwargs):
    """keras.applications.<name> with random weights (weights=None), 10 classes, logits out (no softmax)."""
    import keras

    keras.utils.set_random_seed(seed)
    factory = getattr(keras.applications, name)
    return factory(input_shape=(size, size, 3), weights=None, classes=10, classifier_activation=None, **kwargs)


def train_app(model, x, y, epochs: int = 8, seed: int = 0):
    """Train a keras.applications model briefly (Adam 2e-3, batch 32), then set every BatchNorm's moving statistics to
    those of the training set (one training-mode pass with momentum 0): after a short run they lag the weights (the
    corpus MobileNetV2 scored 10% with them, 89% after). Random weights made int8 meaningless: settled on photos, the
    deep stacks' logits had no margin, and every int8 backend lost top-1 (3.5–10.6 dB)."""
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0
    model(x[:256], training=True)
    for layer in bns:
        layer.momentum = 0.99
    return model


def tf_keras_digits_cnn(x, y, epochs: int = 6, seed: int = 0):
    """A Keras-2-era Sequential CNN (tf_keras): Conv-BN-ReLU, MaxPool, Dropout, Flatten, Dense softmax; NHWC 16x16x1."""
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    L = tf_keras.layers
    model = tf_keras.Sequential([
        L.InputLayer(input_shape=x.shape[1:], name="image"),
        L.Conv2D(16, 3, padding="same"), L.BatchNormalization(), L.Activation("relu"),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(),
        L.Dropout(0.25), L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax"),
    ], name="digits_tf_keras")
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def functional_residual(x, y, epochs: int = 10, seed: int = 0):
    """Keras 3 functional CNN with separable convs, residual adds, GAP; trained briefly on digits (NHWC 32x32x3)."""
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input(x.shape[1:], name="image")
    h = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
    for _ in range(2):
        r = L.SeparableConv2D(16, 3, padding="same")(h)
        r = L.BatchNormalization(momentum=0.9)(r)  # settles within a short training
        h = L.Add()([h, L.Activation("relu")(r)])
    h = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(h)
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(10, name="logits")(h)
    model = keras.Model(inp, out, name="residual_sm")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def subclassed(x, y, epochs: int = 12, seed: int = 0):
    """A subclassed keras.Model (custom call with a residual and a custom layer-normalised head), trained briefly."""
    import keras

    keras.utils.set_random_seed(seed)

    from tests.corpus.keras_custom import Subclassed

    model = Subclassed()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model
