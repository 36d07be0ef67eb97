"""routes.py: the one route search. `edgeconv targets` (availability) and `--dry-run` / convert (pipeline.find_route)
agree, both honouring an edge's refuses()."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeconv.availability import availability
from edgeconv.errors import UnsupportedError
from edgeconv.formats import Artifact, Format
from edgeconv.pipeline import find_route
from edgeconv.routes import installed_route, search_route
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
