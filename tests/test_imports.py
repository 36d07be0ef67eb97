"""Heavy frameworks are imported inside the functions that need them: the CLI starts fast with any subset installed."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "tensorflow", "onnxruntime", "keras", "coremltools", "tensorrt", "onnxruntime_qnn", "onnx2tf",
         "tf2onnx", "ai_edge_litert", "onnxscript", "onnxslim")


def _loaded_after(code: str) -> list[str]:
    probe = f"""
import sys
{code}
heavy = {HEAVY!r}
print("HEAVY:" + ",".join(sorted(m for m in heavy if m in sys.modules)))
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("HEAVY:")][-1]  # --json moves fd 1
    return [m for m in line[len("HEAVY:"):].split(",") if m]


def test_importing_the_cli_imports_no_framework() -> None:
    assert _loaded_after("import edgeconv.cli.app") == []


def test_help_and_targets_import_no_framework() -> None:
    run = """
from edgeconv.cli.app import main
for argv in (["--help"], ["targets", "--json"], ["targets", "show", "onnx"]):
    try:
        main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
"""
    assert _loaded_after(run) == []


def test_every_edgeconv_module_imports_without_a_framework() -> None:
    """Importing any module of the package (registries walk them all) pulls in no framework."""
    run = """
import importlib, pkgutil, edgeconv
for info in pkgutil.walk_packages(edgeconv.__path__, "edgeconv."):
    importlib.import_module(info.name)
"""
    assert _loaded_after(run) == []
