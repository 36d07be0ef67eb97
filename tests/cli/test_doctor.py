"""`edgeconv doctor`: backends, usable targets, and dependency clashes (a fake distribution makes one)."""

from __future__ import annotations

import json
from pathlib import Path


def test_doctor_json(cli) -> None:
    result = cli("doctor", "--json")
    assert result.code == 0, result.stdout
    report = json.loads(result.stdout)
    backends = {b["name"]: b for b in report["backends"]}
    assert backends["onnx"]["version"] and backends["onnxruntime"]["version"] and backends["numpy"]["version"]
    assert backends["protobuf"]["extra"] == "core" and backends["torch"]["extra"] == "torch"
    targets = {t["name"]: t for t in report["targets"]}
    assert targets["onnx"]["usable"] is True and targets["onnx"]["validation"] == "numerical"
    assert report["clashes"] == [] and report["healthy"] is True


def test_doctor_finds_a_protobuf_clash(cli, tmp_path: Path) -> None:
    """A backend whose metadata pins protobuf below the installed version: exit 4, named in the report."""
    info = tmp_path / "onnxslim-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxslim\nVersion: 0.0.1\nRequires-Dist: protobuf<3\n"
                                   "Requires-Dist: numpy; extra == 'never'\n")
    result = cli("doctor", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert result.code == 4
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    (clash,) = report["clashes"]
    assert clash["package"] == "protobuf" and clash["required_by"] == "onnxslim 0.0.1" and clash["requirement"] == "protobuf<3"
    human = cli("doctor", env={"PYTHONPATH": str(tmp_path)})
    assert human.code == 4 and "onnxslim 0.0.1 requires protobuf<3" in human.stdout


def test_doctor_import_check_finds_a_broken_backend(cli, tmp_path: Path) -> None:
    """--imports imports each backend in a fresh interpreter: a module that fails to import is reported, exit 4."""
    (tmp_path / "onnxslim").mkdir()
    (tmp_path / "onnxslim" / "__init__.py").write_text("raise ImportError('built against another numpy ABI')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    result = cli("doctor", "--imports", "--backend", "numpy", "--backend", "onnxslim", "--json", env=env)
    assert result.code == 4
    checks = {c["module"]: c for c in json.loads(result.stdout)["imports"]}
    assert set(checks) == {"numpy", "onnxslim"}
    assert checks["numpy"]["ok"] is True
    assert checks["onnxslim"]["ok"] is False and "another numpy ABI" in checks["onnxslim"]["error"]
    assert cli("doctor", "--imports", "--backend", "numpy", "--backend", "onnx").code == 0
