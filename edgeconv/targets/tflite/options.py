"""The tflite profiles take no `[compiler]` keys (TFLiteConverter's settings follow from [quantize]): a key there is
exit 2 when the profile loads."""

from __future__ import annotations

from dataclasses import dataclass

FAMILY = "tflite"


@dataclass(frozen=True)
class TfliteOptions:
    """No fields."""


OPTIONS = TfliteOptions
