"""Writes the list of names a TensorRT Python bindings wheel defines (tests/targets/tensorrt/tensorrt_api/<version>.txt), so
that CI, which has no GPU and cannot install TensorRT, can still check that every TensorRT API name edgeconv calls
exists in real TensorRT releases (tests/targets/tensorrt/test_tensorrt_api.py).

The names come from the wheel's compiled module (pybind11 keeps every class, method, property and enum member name as a
NUL-terminated string) and from its Python `__init__.py` (nptype, volume, __version__). Nothing is imported or executed,
so this runs without libnvinfer or a GPU. Regenerate for a new release:

    pip download --no-deps --only-binary=:all: tensorrt-cu12-bindings==11.4.0.106 -d /tmp/trt
    python tests/targets/tensorrt/tensorrt_api_snapshot.py /tmp/trt/tensorrt_cu12_bindings-11.4.0.106-*.whl
"""

from __future__ import annotations

import ast
import re
import sys
import zipfile
from pathlib import Path

SNAPSHOTS = Path(__file__).parent / "tensorrt_api"
_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{0,63}")


def names_in_wheel(wheel: Path) -> tuple[str, set[str]]:
    """(version, names) of a tensorrt(-cuXX)-bindings wheel."""
    names: set[str] = set()
    version = ""
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if info.filename.endswith(".so") and "/tensorrt" in info.filename:
                for chunk in z.read(info).split(b"\0"):
                    if _IDENTIFIER.fullmatch(chunk) and not chunk.startswith(b"_Z"):
                        names.add(chunk.decode())
            elif info.filename.endswith("/__init__.py") and info.filename.count("/") == 1:
                tree = ast.parse(z.read(info).decode())
                for node in ast.walk(tree):
                    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                        names.add(node.name)
                    elif isinstance(node, ast.Assign):
                        for target in node.targets:
                            if isinstance(target, ast.Name):
                                names.add(target.id)
                                if target.id == "__version__" and isinstance(node.value, ast.Constant):
                                    version = str(node.value.value)
                            elif isinstance(target, ast.Attribute):
                                names.add(target.attr)
    if not version:
        raise SystemExit(f"{wheel}: no __version__ in the bindings' __init__.py")
    return version, names


def main(wheels: list[str]) -> None:
    SNAPSHOTS.mkdir(exist_ok=True)
    for wheel in wheels:
        version, names = names_in_wheel(Path(wheel))
        out = SNAPSHOTS / f"{version}.txt"
        out.write_text(f"# names defined by TensorRT {version}'s Python bindings ({Path(wheel).name})\n"
                       + "\n".join(sorted(names)) + "\n")
        print(f"{out}: {len(names)} names")


if __name__ == "__main__":
    main(sys.argv[1:])
