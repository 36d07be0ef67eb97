"""The Core ML runtime: structural check (Linux) catches what it promises to; numerical validation on macOS only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import convert, model_path, target_record

ON_MACOS = sys.platform == "darwin"
pytest.importorskip("coremltools")


@pytest.fixture(scope="module")
def cumsum_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny conv → cumsum → linear program: cumsum is not on the Neural Engine allow-list."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3)
            self.fc = torch.nn.Linear(8 * 6 * 6, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.cumsum(torch.relu(self.conv(x)), dim=-1).flatten(1))

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cumsum") / "net.pt2"
    torch.export.save(torch.export.export(Net().eval(), (torch.randn(1, 1, 8, 8),)), str(path))
    return path


def _context(source: Path, profile: str, work: Path, **options):
    from edgeconv.context import ConvertOptions, StepContext
    from edgeconv.formats import detect
    from edgeconv.sources import open_source
    from edgeconv.targets import resolve

    opts = ConvertOptions(**options)
    return StepContext(work, resolve(profile), opts, open_source(detect(source), opts))


@pytest.mark.slow
def test_structural_check_catches_wrong_precision_and_io(cumsum_pt2: Path, tmp_path: Path) -> None:
    from edgeconv.formats import Artifact, Format
    from edgeconv.targets.coreml.runtime import CoremlRuntime

    manifest = convert(cumsum_pt2, ["coreml-fp32"], tmp_path / "out")
    package = Artifact(model_path(manifest, tmp_path / "out", "coreml-fp32"), Format.COREML)
    runtime = CoremlRuntime()
    ok = runtime.check_structure(package, _context(cumsum_pt2, "coreml-fp32", tmp_path))
    assert ok.passed and ok.checks["weights"] == {"FLOAT32": 2} and ok.checks["ane_unsupported_ops"] == {"cumsum": 1}
    # the NumPy reference executor does not know cumsum: it says so instead of guessing
    assert ok.checks["mil_reference"] == {"ran": False, "reason": "the reference executor has no 'cumsum' op"}
    # the same fp32 package judged against profiles it does not satisfy
    w8 = runtime.check_structure(package, _context(cumsum_pt2, "coreml-w8", tmp_path))
    assert not w8.passed
    assert any("left uncompressed" in p for p in w8.problems) and any("no linear weights" in p for p in w8.problems)
    fp16 = runtime.check_structure(package, _context(cumsum_pt2, "coreml-palettize4", tmp_path))
    assert any("compute precision: expected FLOAT16" in p for p in fp16.problems)
    broken = tmp_path / "broken.mlpackage"
    broken.mkdir()
    assert not runtime.check_structure(Artifact(broken, Format.COREML), _context(cumsum_pt2, "coreml-fp32", tmp_path)).passed


@pytest.mark.slow
@pytest.mark.skipif(ON_MACOS, reason="on macOS the Neural Engine placement comes from Core ML's compute plan")
def test_neural_engine_profile_reports_placement(cumsum_pt2: Path, tmp_path: Path) -> None:
    """Core ML runs the ops the Neural Engine lacks on the GPU / CPU: 4 of 5 compute ops on the ANE meets the profile's
    80% with a warning naming the op; a profile asking for more refuses (exit 4) unless --allow-cpu-fallback."""
    from edgeconv.errors import UnsupportedError

    manifest = convert(cumsum_pt2, ["ane-fp16"], tmp_path / "kept")
    record = target_record(manifest, "ane-fp16")
    placement = record["validation"]["checks"]["ane_placement"]
    assert placement == {"compute_ops": 5, "on_neural_engine": 4, "share": 0.8, "elsewhere": {"cumsum": 1}}
    assert record["validation"]["passed"] and any("on GPU/CPU: cumsum ×1" in w for w in record["warnings"])
    strict = ["compiler.min_neural_engine_share=0.95"]
    with pytest.raises(UnsupportedError) as info:
        convert(cumsum_pt2, ["ane-fp16"], tmp_path / "refused", overrides=tuple(strict))
    assert info.value.exit_code == 4 and "4 of 5 compute ops (80%) on the Neural Engine" in info.value.message
    assert "--allow-cpu-fallback" in info.value.hint and not (tmp_path / "refused").exists()
    manifest = convert(cumsum_pt2, ["ane-fp16"], tmp_path / "accepted", allow_cpu_fallback=True, overrides=tuple(strict))
    record = target_record(manifest, "ane-fp16")
    assert record["validation"]["passed"] and record["validation"]["checks"]["ane_unsupported_ops"] == {"cumsum": 1}
    assert any("accepted: --allow-cpu-fallback" in w for w in record["warnings"])


@pytest.mark.skipif(ON_MACOS, reason="checks the non-macOS behaviour")
def test_linux_says_why_it_checks_structurally() -> None:
    from edgeconv.targets.coreml.runtime import CoremlRuntime

    assert "macOS" in (CoremlRuntime.can_execute_here() or "")


@pytest.mark.slow
@pytest.mark.macos
@pytest.mark.skipif(not ON_MACOS, reason="needs the Core ML runtime, which exists only on macOS")
def test_numerical_validation_on_macos(digits, tmp_path: Path) -> None:
    profiles = ["coreml-fp32", "ane-fp16", "coreml-w8", "coreml-palettize6", "coreml-palettize4"]
    manifest = convert(digits.pt2, profiles, tmp_path / "out", eval=str(digits.eval))
    metrics = {}
    for name in profiles:
        validation = target_record(manifest, name)["validation"]
        assert validation["kind"] == "numerical" and validation["passed"]
        metrics[name] = validation["metrics"]
    assert metrics["coreml-fp32"]["snr_db"] > 60 and metrics["coreml-fp32"]["top1_agreement"] == 1.0
    assert metrics["ane-fp16"]["snr_db"] > 35
    assert metrics["coreml-w8"]["snr_db"] > 30
    assert metrics["coreml-palettize4"]["top1_agreement"] > 0.9
