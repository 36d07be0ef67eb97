"""The corpus's subclassed Keras model, at module level so that importing this module registers it, as a user's own
package would (`edgeconv convert keras_subclassed.keras --custom-objects tests.corpus.keras_custom`)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402


@keras.saving.register_keras_serializable(package="edgeconv_corpus")
class Subclassed(keras.Model):
    """Custom call() with a residual (keras.ops.relu) and a layer-normalised head."""

    def __init__(self, classes: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.c1 = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")
        self.c2 = keras.layers.Conv2D(32, 3, padding="same")
        self.pool = keras.layers.MaxPooling2D()
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.norm = keras.layers.LayerNormalization()
        self.head = keras.layers.Dense(classes)

    def call(self, image):
        h = self.c1(image)
        h = keras.ops.relu(h + self.c2(h))
        h = self.gap(self.pool(h))
        return self.head(self.norm(h))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}
