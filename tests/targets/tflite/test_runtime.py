"""LiteRT runtime: integer I/O (de)quantization and I/O matching for .tflite files without edgeconv's I/O map."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np

from edgeconv.targets.tflite._convert import apply_perm, channels_first_perm, channels_last_perm
from edgeconv.formats import IoMap, TensorLink, TensorSpec
from edgeconv.targets.tflite.runtime import LiteRtSession, dequantize_output, guess_io_map, quantize_input


def test_int8_round_trip_within_half_a_step() -> None:
    detail = {"dtype": np.int8, "quantization": (0.02, -5)}
    x = np.linspace(-2.4, 2.6, 101, dtype=np.float32)
    q = quantize_input(x, detail)
    assert q.dtype == np.int8 and q.min() == -125 and q.max() == 125
    assert np.abs(dequantize_output(q, detail) - x).max() <= 0.01 + 1e-6
    saturated = quantize_input(np.array([100.0, -100.0], np.float32), detail)
    assert saturated.tolist() == [127, -128]
    detail16 = {"dtype": np.int16, "quantization": (1e-4, 0)}
    assert np.abs(dequantize_output(quantize_input(x / 2, detail16), detail16) - x / 2).max() <= 5e-5 + 1e-7
    # float tensors pass through untouched
    assert quantize_input(x, {"dtype": np.float32, "quantization": (0.0, 0)}) is x


def test_layout_perms_are_inverse() -> None:
    a = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert apply_perm(a, channels_last_perm(4)).shape == (2, 4, 5, 3)
    assert np.array_equal(apply_perm(apply_perm(a, channels_last_perm(4)), channels_first_perm(4)), a)
    assert channels_last_perm(3) == (0, 2, 1) and channels_last_perm(5) == (0, 2, 3, 4, 1)


class FakeRunner:
    """A signature runner with one int8 NHWC input and two int8 outputs."""

    def __init__(self) -> None:
        self.seen: dict[str, np.ndarray] = {}

    def get_input_details(self) -> dict[str, Any]:
        return {"input_1": {"shape": np.array([1, 16, 16, 3]), "dtype": np.int8, "quantization": (0.5, 0)}}

    def get_output_details(self) -> dict[str, Any]:
        return {"output_1": {"dtype": np.int8, "quantization": (0.25, 1)},
                "output_0": {"dtype": np.int8, "quantization": (0.5, 0)}}

    def __call__(self, **kwargs: np.ndarray) -> dict[str, np.ndarray]:
        self.seen = kwargs
        return {"output_0": np.array([[4, 2]], np.int8), "output_1": np.array([[1, 5]], np.int8)}


def test_guessed_io_map_transposes_and_dequantizes() -> None:
    runner = FakeRunner()
    inputs = (TensorSpec("input.1", (1, 3, 16, 16)),)
    io = guess_io_map(runner, "serving_default", inputs, ("logits", "aux"))
    assert io.inputs == (TensorLink("input.1", "input_1", (0, 2, 3, 1)),) and io.layout == "guessed"
    assert [m.key for m in io.outputs] == ["output_0", "output_1"]
    session = LiteRtSession(None, runner, io, inputs)
    x = np.random.default_rng(0).uniform(-3, 3, (1, 3, 16, 16)).astype(np.float32)
    logits, aux = session.run({"input.1": x})
    fed = runner.seen["input_1"]
    assert fed.dtype == np.int8 and fed.shape == (1, 16, 16, 3)
    assert np.array_equal(fed, np.round(x.transpose(0, 2, 3, 1) / 0.5).astype(np.int8))
    assert logits.tolist() == [[2.0, 1.0]] and aux.tolist() == [[0.0, 1.0]]


def test_io_map_json_round_trip() -> None:
    io = IoMap("serving_default", (TensorLink("x", "x", (0, 2, 3, 1)),), (TensorLink("y", "output_0"),), "nhwc")
    data = io.to_json()  # what the manifest records as notes.tflite_io: keys in this order, perms as lists
    assert data == {"signature": "serving_default", "inputs": [{"source": "x", "key": "x", "perm": [0, 2, 3, 1]}],
                    "outputs": [{"source": "y", "key": "output_0", "perm": None}], "layout": "nhwc"}
    assert list(data) == ["signature", "inputs", "outputs", "layout"] and list(data["inputs"][0]) == ["source", "key", "perm"]
    assert IoMap.from_json(json.loads(json.dumps(data))) == io


def test_the_runtime_feeds_the_artifacts_io_map_and_guesses_without_one(monkeypatch: Any, tmp_path: Any) -> None:
    """LiteRT takes the converter's map from Artifact.io (a stage cache hit restores it there too), not from notes."""
    from types import SimpleNamespace

    from edgeconv.formats import Artifact, Format
    from edgeconv.targets.tflite import runtime

    runner = FakeRunner()
    monkeypatch.setattr(runtime, "load_interpreter", lambda path: (None, runner, "serving_default"))
    inputs = (TensorSpec("image", (1, 3, 16, 16)),)
    ctx = SimpleNamespace(source=SimpleNamespace(inputs=inputs, output_names=("logits", "aux")), notes={})
    io = IoMap("serving_default", (TensorLink("image", "input_1", (0, 2, 3, 1)),),
               (TensorLink("aux", "output_1"), TensorLink("logits", "output_0")), "nhwc")
    session = runtime.LiteRtRuntime().load(Artifact(tmp_path / "m.tflite", Format.TFLITE, io=io), ctx)
    assert session.io is io and session.output_names == ("aux", "logits")
    guessed = runtime.LiteRtRuntime().load(Artifact(tmp_path / "m.tflite", Format.TFLITE), ctx)
    assert guessed.io.layout == "guessed" and guessed.output_names == ("logits", "aux")
    other = replace(io, signature="other")  # a map for another signature than the file's: not used
    assert runtime.LiteRtRuntime().load(Artifact(tmp_path / "m.tflite", Format.TFLITE, io=other), ctx).io.layout == "guessed"
