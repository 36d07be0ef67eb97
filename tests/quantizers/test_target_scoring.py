"""quantizers/target_scoring: which runtime the mixed-precision search judges its trials on ([quantize.options]
score_on). The hexagon profiles score on the HTP simulator: MobileNetV2 at hexagon-int8 agreed 32/32 on ONNX
Runtime's CPU and 31/32 on the HTP, so a search judged on ORT never started (the corpus route cell
mobilenetv2 × hexagon-int8 in tests/corpus/test_route_matrix.py is the end-to-end check)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from edgeconv.context import ConvertOptions
from edgeconv.errors import UnsupportedError
from edgeconv.quantizers.target_scoring import session_factory
from edgeconv.targets import resolve


def _ctx(profile_name: str, **options) -> SimpleNamespace:
    profile = resolve(profile_name)
    if options:
        profile = replace(profile, quantize=replace(profile.quantize, options={**profile.quantize.options, **options}))
    return SimpleNamespace(profile=profile, options=ConvertOptions())


def test_hexagon_profiles_score_on_the_htp() -> None:
    for name in ("hexagon-int8", "hexagon-int16"):
        assert resolve(name).quantize.options.get("score_on") == "target"
        assert callable(session_factory(_ctx(name)))


def test_ort_targets_score_on_ort() -> None:
    assert session_factory(_ctx("cpu-int8")) is None
    assert session_factory(_ctx("cpu-int8", score_on="target")) is None  # its runtime is ORT CPU anyway
    assert session_factory(_ctx("hexagon-int8", score_on="ort")) is None


def test_unknown_choice_refused() -> None:
    with pytest.raises(UnsupportedError, match="score_on"):
        session_factory(_ctx("hexagon-int8", score_on="gpu"))


@pytest.mark.slow
def test_htp_session_runs_a_qdq_graph(tmp_path, digits) -> None:
    """The factory compiles a QDQ graph for the profile's part and runs it on the simulator, as the search needs."""
    pytest.importorskip("onnxruntime_qnn")
    import numpy as np

    from tests.helpers import convert

    out = tmp_path / "out"
    convert(digits.pt2, ["hexagon-int8"], out, calib=str(digits.calib), eval=str(digits.eval))
    qdq = out / "hexagon-int8" / "digits_cnn.int8.onnx"
    session = session_factory(_ctx("hexagon-int8"))(qdq)
    x = np.zeros([1, 1, 8, 8], np.float32)
    (logits,) = session.run(None, {session.get_inputs()[0].name: x})
    assert np.asarray(logits).shape == (1, 10) and np.all(np.isfinite(logits))
