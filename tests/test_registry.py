"""Walk every registered converter, quantizer, runtime and profile: each is complete and plugs into the rest."""

from __future__ import annotations

import pytest

from edgeconv.availability import availability
from edgeconv.converters import all_converters
from edgeconv.formats import Format
from edgeconv.pipeline import find_route
from edgeconv.quantizers import all_quantizers
from edgeconv.runtimes import all_runtimes
from edgeconv.targets import builtin_profiles
from edgeconv.formats import Artifact
from edgeconv.errors import UnsupportedError
from pathlib import Path


def _pip_extras() -> set[str]:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def test_converters_are_complete() -> None:
    converters = all_converters()
    assert {"torch_to_onnx", "keras_to_onnx", "savedmodel_to_onnx"} <= {c.name for c in converters}
    for conv in converters:
        assert isinstance(conv.source, Format) and isinstance(conv.target, Format) and conv.source != conv.target
        assert conv.stage in ("export", "compile") and conv.cost > 0
        assert conv.__module__.endswith(conv.name), f"{conv.name} must live in converters/{conv.name}.py"
        assert conv.extra in _pip_extras(), f"{conv.name}: extra {conv.extra!r} is not an extra in pyproject.toml"
        assert conv.requires, f"{conv.name} must declare the modules it imports (requires)"


def test_runtimes_and_quantizers_are_complete() -> None:
    runtimes = {r.name: r for r in all_runtimes()}
    assert {"onnxruntime", "torch", "tensorflow"} <= set(runtimes)
    for fmt in (Format.TORCH, Format.KERAS, Format.SAVEDMODEL, Format.ONNX):
        assert any(fmt in r.formats and r.runs_sources for r in runtimes.values()), fmt
    precisions = {p for q in all_quantizers() for p in q.precisions}
    assert {"fp16", "int8"} <= precisions


@pytest.mark.parametrize("profile", builtin_profiles(), ids=lambda p: p.name)
def test_every_profile_is_reachable(profile) -> None:
    runtimes = {r.name for r in all_runtimes()}
    assert profile.validate.runtime in runtimes
    for fmt in profile.produces:  # reachable from at least one source format
        routes = []
        for src in (Format.ONNX, Format.TORCH, Format.KERAS):
            try:
                routes.append(find_route(src, fmt, Artifact(Path("model"), src), profile))
            except UnsupportedError:
                pass
        assert routes, f"{profile.name}: nothing converts to {fmt}"
    if profile.quantize.stage == "onnx" and profile.quantize.precision != "fp32":
        assert any(profile.quantize.precision in q.precisions for q in all_quantizers())
    usable = availability(profile)
    if not usable.usable:  # it names what to install
        assert "pip install" in usable.reason or "edgeconv[" in usable.reason, usable
    else:  # a reason exactly when the validation here is less than the real runtime (Core ML off macOS, no GPU)
        assert bool(usable.reason) == (usable.validation != "numerical"), usable


def test_runtimes_name_a_real_extra() -> None:
    """A runtime's extra is a pyproject extra, or it needs only core dependencies (ONNX Runtime)."""
    import re
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].replace("-", "_") for d in project["dependencies"]}
    for runtime in all_runtimes():
        assert runtime.requires, f"{runtime.name} must declare the modules it imports (requires)"
        if runtime.extra:
            assert runtime.extra in _pip_extras(), f"{runtime.name}: extra {runtime.extra!r} is not in pyproject.toml"
        else:
            assert set(runtime.requires) <= core, f"{runtime.name} names no extra but needs {runtime.requires}"


def test_an_unusable_target_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """The branch test_every_profile_is_reachable cannot reach where everything is installed: a missing converter or
    validation runtime makes the target unusable with the pip extra that installs it."""
    from edgeconv.availability import Availability
    from edgeconv.runtimes import runtime_named
    from edgeconv.targets import resolve

    profile = resolve("tflite-int8")
    assert availability(profile) == Availability(True)
    monkeypatch.setattr(runtime_named("litert"), "available", classmethod(lambda cls: False))
    assert availability(profile) == Availability(False, "validation needs pip install 'edgeconv[tflite]'", "none")
    for conv in all_converters():
        if conv.target == Format.TFLITE:
            monkeypatch.setattr(conv, "available", classmethod(lambda cls: False))
    assert availability(profile) == Availability(False, "pip install 'edgeconv[tflite]'")


def test_plugin_modules_import_no_heavy_framework() -> None:
    import subprocess
    import sys

    code = ("import sys, edgeconv.cli.app, edgeconv.pipeline, edgeconv.converters as c, edgeconv.runtimes as r, "
            "edgeconv.quantizers as q; c.all_converters(); r.all_runtimes(); q.all_quantizers(); "
            "heavy = [m for m in ('torch', 'tensorflow', 'coremltools', 'tensorrt', 'onnxruntime', 'keras', 'onnx2tf') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
