"""The tflite profiles' `[compiler]` keys: how onnx2tf writes the model TFLiteConverter then converts (its other settings
follow from [quantize]). An unknown key is exit 2 when the profile loads."""

from __future__ import annotations

from dataclasses import dataclass

FAMILY = "tflite"


@dataclass(frozen=True)
class TfliteOptions:
    # onnx2tf's enable_rnn_unroll: a GRU / LSTM / RNN as one chain of ops per time step instead of a WHILE loop.
    # TFLiteConverter's full-integer calibration crashes (SIGSEGV) on the loop (TensorFlow issue 87468; the corpus
    # CRNN and keyword spotters), so the integer profiles unroll; the float ones keep the smaller loop.
    rnn_unroll: bool = False


OPTIONS = TfliteOptions
