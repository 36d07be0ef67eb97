"""The onnx and cpu profiles take no `[compiler]` keys (ONNX Runtime's CPU session needs none): a key there is exit 2
when the profile loads."""

from __future__ import annotations

from dataclasses import dataclass

FAMILY = ("onnx", "cpu")


@dataclass(frozen=True)
class OnnxOptions:
    """No fields."""


OPTIONS = OnnxOptions
