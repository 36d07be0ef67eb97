"""routes.py: the one route search. `edgeconv targets` (availability) and `--dry-run` / convert (pipeline.find_route)
agree, both honouring an edge's refuses()."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeconv.availability import availability
from edgeconv.errors import UnsupportedError
from edgeconv.formats import Artifact, Format
from edgeconv.pipeline import find_route
from edgeconv.routes import fallback_route, installed_route, search_route
from edgeconv.targets import builtin_profiles, resolve


def test_a_refused_profile_is_unusable_in_targets_and_in_the_plan(tmp_path: Path) -> None:
    """An openvino profile at a precision the OpenVINO edge refuses: `targets` said usable, --dry-run said no route."""
    path = tmp_path / "ov.toml"
    path.write_text('name = "ov-int16"\nextends = "openvino-int8"\n[quantize]\nprecision = "int16"\n')
    profile = resolve(str(path))
    state = availability(profile)
    assert not state.usable and "OpenVINO profiles take precision" in state.reason
    with pytest.raises(UnsupportedError, match="no route from onnx to openvino"):
        find_route(Format.ONNX, Format.OPENVINO, Artifact(Path("m.onnx"), Format.ONNX), profile)
    assert search_route(Format.ONNX, Format.OPENVINO, Artifact(Path("m.onnx"), Format.ONNX), profile) is None


def test_the_plan_and_targets_search_the_same_edges() -> None:
    """Where an installed route exists for a source format, the plan's route is that route, edge for edge."""
    for profile in builtin_profiles():
        for src in (Format.ONNX, Format.TORCH, Format.KERAS):
            installed = installed_route(src, profile.primary_format, profile)
            if installed is not None:
                assert find_route(src, profile.primary_format, Artifact(Path("model"), src), profile) == installed, \
                    (profile.name, src)


def test_a_direct_route_has_the_way_through_onnx_as_fallback() -> None:
    """Keras → TFLite takes TFLiteConverter directly; when it refuses the model (an op left float in full int8), the
    installed route that avoids that edge is Keras → ONNX → onnx2tf. A source with one way only has no fallback."""
    def names(route: list | None) -> list[str] | None:
        return None if route is None else [c.name for c in route]

    profile = resolve("tflite-int8")
    keras = Artifact(Path("m.keras"), Format.KERAS)
    first = find_route(Format.KERAS, Format.TFLITE, keras, profile)
    assert names(first) == ["keras_to_tflite"]
    assert names(fallback_route(Format.KERAS, Format.TFLITE, keras, profile, first)) == ["keras_to_onnx", "onnx_to_tflite"]
    onnx_model = Artifact(Path("m.onnx"), Format.ONNX)
    only = find_route(Format.ONNX, Format.TFLITE, onnx_model, profile)
    assert fallback_route(Format.ONNX, Format.TFLITE, onnx_model, profile, only) is None
    assert fallback_route(Format.ONNX, Format.ONNX, onnx_model, resolve("onnx"), []) is None
