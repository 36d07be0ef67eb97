"""Heavy frameworks are imported inside the functions that need them: the CLI starts fast with any subset installed.
And a target family's private modules (edgeconv/targets/<family>/_name.py) are imported only inside that family."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


# --- family privacy: nothing outside edgeconv/targets/<family>/ imports that family's private (_name) modules ---------
PACKAGE = Path(__file__).resolve().parents[1] / "edgeconv"
FAMILIES = frozenset(p.name for p in (PACKAGE / "targets").iterdir() if (p / "__init__.py").is_file())


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, dotted name) of everything the module imports, anywhere in it (inside functions too): `import a.b`,
    `from a.b import c` (as a.b.c, c may be a module), relative imports resolved, importlib.import_module("a.b")."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) if node.level \
                else node.module or ""
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def private_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports of `edgeconv.targets.<family>._private` by `module` from outside that family."""
    bad = []
    for line, name in _imported(ast.parse(source), module, is_package):
        parts = name.split(".")
        if len(parts) < 4 or parts[:2] != ["edgeconv", "targets"] or parts[2] not in FAMILIES:
            continue
        private = parts[3].startswith("_") and not parts[3].startswith("__")
        inside = module == f"edgeconv.targets.{parts[2]}" or module.startswith(f"edgeconv.targets.{parts[2]}.")
        found = f"{module}:{line} imports {'.'.join(parts[:4])}"
        if private and not inside and found not in bad:
            bad.append(found)
    return bad


def test_the_privacy_check_finds_every_kind_of_import() -> None:
    source = """
import edgeconv.targets.qnn._ep
from edgeconv.targets.tflite._ops import list_ops
from edgeconv.targets.tensorrt import _tools as trt_tools, runtime

def lazy():
    from edgeconv.targets.coreml._convert import coremltools
    importlib.import_module("edgeconv.targets.qnn._legalise")

from edgeconv.targets.qnn.htp import htp_options
from edgeconv.targets.schema import _profile_to_dict
"""
    found = private_imports(source, "edgeconv.quantizers.example")
    assert [f.split(" imports ")[1] for f in found] == [
        "edgeconv.targets.qnn._ep", "edgeconv.targets.tflite._ops", "edgeconv.targets.tensorrt._tools",
        "edgeconv.targets.coreml._convert", "edgeconv.targets.qnn._legalise"], found
    assert private_imports(source.replace("qnn", "coreml").replace("tflite", "coreml").replace("tensorrt", "coreml"),
                           "edgeconv.targets.coreml.runtime") == []  # a family's own private modules are its own
    assert private_imports("from ._ep import htp_options\nfrom .. import schema", "edgeconv.targets.qnn.htp") == []
    assert private_imports("from .qnn import _ep", "edgeconv.targets", is_package=True) == [
        "edgeconv.targets:1 imports edgeconv.targets.qnn._ep"]


def test_nothing_outside_a_family_imports_its_private_modules() -> None:
    assert {"tflite", "qnn", "tensorrt", "coreml"} <= FAMILIES
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        bad += private_imports(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")
    assert bad == [], "a family's private modules are its own; give it a public module for what others need:\n" \
                      + "\n".join(bad)
