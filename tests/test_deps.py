"""The backend table: the core backends, then each target family's own (declared in targets/<family>/__init__.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from edgeconv.deps import CORE_BACKENDS, backend_table

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_every_backend_names_an_extra_that_exists() -> None:
    extras = set(tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]) | {"core"}
    table = backend_table()
    assert {d: e for d, (_, e) in table.items() if e not in extras} == {}
    assert list(table)[: len(CORE_BACKENDS)] == list(CORE_BACKENDS) and list(table)[-2:] == ["numpy", "protobuf"]


def test_family_backends_come_from_their_folders() -> None:
    table = backend_table()
    assert table["openvino"] == ("openvino", "openvino") and table["nncf"] == ("nncf", "openvino")
    assert table["onnxruntime-qnn"] == ("onnxruntime_qnn", "qnn") and table["torchao"] == ("torchao", "executorch")
    assert table["ai-edge-litert"] == ("ai_edge_litert", "tflite") and table["coremltools"] == ("coremltools", "coreml")
