"""Every TensorRT API name edgeconv calls exists in real TensorRT releases: 11.4 (what `pip install tensorrt` gives on a
desktop GPU) and 10.3 (what JetPack 6 ships on Jetson boards).

CI has no GPU and cannot install TensorRT, so the GPU path runs only against a stand-in there
(test_tensorrt_plumbing.py). This test closes the gap the stand-in leaves: a misspelt or removed API (a method renamed
between 10.x and 11.x, say) fails here, on any machine. The name lists are snapshots of the real bindings wheels,
written by tensorrt_api_snapshot.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.targets.tensorrt.tensorrt_api_snapshot import SNAPSHOTS

REPO = Path(__file__).resolve().parents[3]
CODE = [REPO / "edgeconv" / "targets" / "tensorrt" / name for name in ("_tools.py", "_engine.py")]  # build, run
# Names in these modules that hold TensorRT objects (the module itself, and what its calls return).
TRT_OBJECTS = {"trt", "builder", "network", "parser", "config", "profile", "cache", "tensor"}
TRT_SELF_ATTRS = {"trt", "engine", "context"}  # EngineRunner.<these>
EDGECONV_OWN = {"errors", "warnings"}  # the Collecting logger's lists (a subclass of trt.ILogger)


def _chain(node: ast.AST) -> tuple[str, list[str]] | None:
    """For `a.b.c(...).d`: ("a", ["b", "c", "d"]) read outwards from the root name."""
    attrs: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Name):
            return node.id, attrs[::-1]
        else:
            return None


def tensorrt_names_used() -> set[str]:
    used: set[str] = set()
    for node in (n for code in CODE for n in ast.walk(ast.parse(code.read_text()))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and isinstance(node.args[1], ast.Constant)):  # getattr(trt.X, "NAME", None): NAME is an API name too
            node = ast.Attribute(node.args[0], str(node.args[1].value), ast.Load())
        if not isinstance(node, ast.Attribute):
            continue
        chain = _chain(node)
        if chain is None:
            continue
        root, attrs = chain
        if root == "self" and attrs and attrs[0] in TRT_SELF_ATTRS:
            attrs = attrs[1:]
        elif root not in TRT_OBJECTS:
            continue
        used.update(a for a in attrs if a not in EDGECONV_OWN)
    return used


def snapshot(version: str) -> set[str]:
    return {line for line in (SNAPSHOTS / f"{version}.txt").read_text().splitlines() if not line.startswith("#")}


def defined(name: str, names: set[str]) -> bool:
    """The linker merges a string into the tail of a longer one ("Builder" lives inside "IExprBuilder\\0"), so a
    name is there when it is, or ends, a string of the module."""
    return name in names or any(s.endswith(name) for s in names)


def test_the_scan_finds_the_calls_edgeconv_makes() -> None:
    used = tensorrt_names_used()
    expected = {"Builder", "OnnxParser", "parse_from_file", "build_serialized_network", "create_timing_cache",
                "set_timing_cache", "deserialize_cuda_engine", "execute_async_v3", "set_tensor_address",
                "set_input_shape", "STRONGLY_TYPED", "nptype", "__version__", "set_shape", "get_input"}
    assert expected <= used, expected - used
    assert len(used) >= 40


def test_a_renamed_api_would_be_caught() -> None:
    names = snapshot("11.4.0.106")
    assert not defined("execute_async_v2", names)  # removed in TensorRT 10
    assert not defined("build_engine", names)  # removed in TensorRT 10: build_serialized_network replaced it
    assert not defined("EXPLICIT_BATCH", names)  # gone in 11 (every network is explicit-batch)
    assert defined("execute_async_v3", names)


@pytest.mark.parametrize("version", sorted(p.stem for p in SNAPSHOTS.glob("*.txt")))
def test_every_tensorrt_name_edgeconv_uses_exists_in_the_release(version: str) -> None:
    names = snapshot(version)
    assert len(names) > 1500  # a real snapshot, not an empty file
    missing = sorted(n for n in tensorrt_names_used() if not defined(n, names))
    assert not missing, f"not in TensorRT {version}'s Python API: {missing}"


def test_snapshots_cover_jetpack_and_desktop_releases() -> None:
    majors = {p.stem.split(".")[0] for p in SNAPSHOTS.glob("*.txt")}
    assert {"10", "11"} <= majors
