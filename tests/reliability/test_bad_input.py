"""Bad models (cases 1-7 of docs/exit-codes.md): every one fails with its exit code, one line naming what was found,
a hint, the --json error object, no traceback, and nothing written. The broken files are generated here."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.reliability.conftest import expect_failure
from tests.sources.external_models import relocate

RNG_BYTES = np.random.default_rng(1234).integers(0, 256, 4096, dtype=np.uint8).tobytes()
assert RNG_BYTES[:1] not in (b"\x80", b"P", b"\x89", b"\x08")  # the seeded "random" bytes look like nothing


# ---------------------------------------------------------------- 1. empty / truncated / random-bytes model files
def _truncated(kind: str, digits, folder: Path) -> bytes:
    if kind == "onnx":
        return digits.onnx.read_bytes()[:1000]
    if kind == "pt":
        return digits.torchscript.read_bytes()[:2000]
    if kind == "tflite":  # root table offset beyond the end of the (cut) file
        return (4096).to_bytes(4, "little") + b"TFL3" + b"\x00" * 56
    if kind == "h5":  # a real HDF5 file cut in half
        h5py = pytest.importorskip("h5py")  # installed with the tf / tflite extras

        with h5py.File(folder / "whole.h5", "w") as f:
            f["w"] = np.arange(2000, dtype=np.float32)
        data = (folder / "whole.h5").read_bytes()
        (folder / "whole.h5").unlink()
        return data[: len(data) // 2]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["onnx", "pt", "tflite", "h5"])
@pytest.mark.parametrize("damage, needle", [("empty", "empty (0 bytes)"), ("truncated", ""), ("random", "not a model")])
def test_damaged_model_file(cli, digits, ws: Path, inputs: Path, kind: str, damage: str, needle: str) -> None:
    path = inputs / f"model.{kind}"
    content = {"empty": lambda: b"", "random": lambda: RNG_BYTES, "truncated": lambda: _truncated(kind, digits, inputs)}
    path.write_bytes(content[damage]())
    needles = [str(path.name)]
    if needle:
        needles.append(needle)
    elif kind != "pt":
        needles.append("truncated")
    else:
        needles.append("damaged")
    expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 3, *needles, workspace=ws, json_too=kind == "onnx")


# ---------------------------------------------------------------- 2. extension not matching content
def test_onnx_named_pt_is_detected_as_onnx(cli, digits, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(digits.onnx.read_bytes())
    result = cli("convert", path, "-t", "onnx", "--eval", digits.eval, "-o", tmp_path / "out", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["source"]["format"] == "onnx"


@pytest.mark.slow
def test_torchscript_named_onnx_is_detected_as_torch(cli, digits, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(digits.torchscript.read_bytes())
    result = cli("convert", path, "-t", "onnx", "--input-shape", "image=1x1x8x8", "--eval", digits.eval,
                 "-o", tmp_path / "out", "--json")
    assert result.code == 0, result.stderr
    source = json.loads(result.stdout)["source"]
    assert (source["format"], source["variant"]) == ("torch", "torchscript")


def test_other_zip_named_onnx(cli, ws: Path, inputs: Path) -> None:
    path = inputs / "model.onnx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not a model")
    expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 3, "zip archive", "readme.txt", workspace=ws)


# ---------------------------------------------------------------- 3. pickles that run code
class _Evil:
    """Unpickling it creates the sentinel file (builtins.open(path, 'w')): proof that code from the file ran."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.mark.parametrize("container", ["torch-zip", "bare-pickle"])
def test_code_carrying_pickle_refused(cli, ws: Path, inputs: Path, container: str) -> None:
    sentinel = inputs / "PWNED"
    path = inputs / "model.pt"
    if container == "torch-zip":
        import torch

        torch.save({"model": _Evil(sentinel)}, path)
    else:
        path.write_bytes(pickle.dumps(_Evil(sentinel), protocol=4))
    expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 7, "pickle", "--trust-pickle", workspace=ws,
                   json_too=container == "torch-zip")
    assert not sentinel.exists(), "code from the pickle ran"


def test_code_carrying_weights_refused(cli, ws: Path, inputs: Path) -> None:
    """--model pkg:fn --weights FILE: the weights are loaded with weights_only=True, so code in them never runs."""
    import torch

    (inputs / "factory_mod.py").write_text("import torch\n\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    sentinel = inputs / "PWNED"
    torch.save({"weight": _Evil(sentinel)}, inputs / "weights.pt")
    expect_failure(["convert", "--model", "factory_mod:build", "--weights", inputs / "weights.pt", "-t", "onnx",
                    "-o", ws / "out"], 7, "weights_only", workspace=ws, json_too=False, cwd=inputs)
    assert not sentinel.exists(), "code from the weights file ran"


def test_trust_pickle_really_runs_it(cli, ws: Path, inputs: Path) -> None:
    """The sentinel works: with --trust-pickle the same file's code runs (what it builds is no module: exit 3)."""
    import torch

    sentinel = inputs / "PWNED"
    path = inputs / "model.pt"
    torch.save({"model": _Evil(sentinel)}, path)
    result = cli("convert", path, "-t", "onnx", "-o", ws / "out", "--trust-pickle")
    assert result.code == 3, result.stderr
    assert sentinel.exists()


# ---------------------------------------------------------------- 4. external data escaping the model's folder
def _with_external_data(digits, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load_model(str(digits.onnx))
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=0)
    return path


@pytest.mark.parametrize("attack", ["dotdot", "absolute", "symlink"])
def test_external_data_escaping_refused(cli, digits, ws: Path, inputs: Path, attack: str) -> None:
    path = _with_external_data(digits, inputs / "model")
    outside = inputs / "secret.bin"
    os.replace(inputs / "model" / "weights.bin", outside)  # the data sits outside the model's folder
    if attack == "dotdot":
        relocate(path, "../secret.bin")
    elif attack == "absolute":
        relocate(path, str(outside))
    else:
        (inputs / "model" / "weights.bin").symlink_to(outside)
    expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 7, "outside the model's folder", workspace=ws,
                   json_too=attack == "dotdot")


@pytest.mark.parametrize("damage, needle", [("missing", "missing"), ("short", "too short")])
def test_external_data_missing_or_short(cli, digits, ws: Path, inputs: Path, damage: str, needle: str) -> None:
    path = _with_external_data(digits, inputs / "model")
    data = inputs / "model" / "weights.bin"
    if damage == "missing":
        data.unlink()
    else:
        data.write_bytes(data.read_bytes()[:100])
    expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 3, "weights.bin", needle, workspace=ws,
                   json_too=damage == "missing")


# ---------------------------------------------------------------- 5. invalid graphs, versions too new
def _edit(digits, folder: Path, edit) -> Path:
    model = onnx.load_model(str(digits.onnx))
    edit(model)
    path = folder / "model.onnx"
    onnx.save_model(model, str(path))
    return path


def test_checker_failure_lists_the_nodes(cli, digits, ws: Path, inputs: Path) -> None:
    broken = []

    def drop_weights(model) -> None:  # every Conv loses its weight input: the checker's first error names only one
        for node in model.graph.node:
            if node.op_type == "Conv":
                del node.input[1:]
                broken.append(node.name)

    path = _edit(digits, inputs, drop_weights)
    assert len(broken) == 2
    failure = expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 3, "ONNX checker", *broken, workspace=ws)
    assert all(any(name in n for n in failure.error["details"]["nodes"]) for name in broken)


@pytest.mark.parametrize("field, needles", [
    ("ir", ("IR version 99", f"up to {onnx.IR_VERSION}")),
    ("opset", ("opset 99", f"newest this onnx knows is {onnx.defs.onnx_opset_version()}")),
])
def test_versions_too_new(cli, digits, ws: Path, inputs: Path, field: str, needles: tuple[str, ...]) -> None:
    def bump(model) -> None:
        if field == "ir":
            model.ir_version = 99
        else:
            model.opset_import[0].version = 99

    path = _edit(digits, inputs, bump)
    expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 4, *needles, workspace=ws, json_too=field == "ir")


# ---------------------------------------------------------------- 6. ops the target cannot take: all listed
def test_unsupported_ops_all_listed(cli, ws: Path, inputs: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok_relu"),
             helper.make_node("Frobnicate", ["a"], ["b"], name="frob1"),
             helper.make_node("Sparkle", ["b"], ["c"], domain="com.acme", name="sparkle1"),
             helper.make_node("Sparkle", ["c"], ["y"], domain="com.acme", name="sparkle2")]
    model = helper.make_model(helper.make_graph(nodes, "custom", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)])
    path = inputs / "custom.onnx"
    onnx.save_model(model, str(path))
    failure = expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 4,
                             "Frobnicate", "com.acme.Sparkle", "frob1", "sparkle1", "sparkle2", workspace=ws)
    assert failure.error["details"]["unsupported_ops"] == {"Frobnicate": ["frob1"], "com.acme.Sparkle": ["sparkle1", "sparkle2"]}


# ---------------------------------------------------------------- 7. dynamic inputs on a static-shape (NPU) target
def test_dynamic_input_on_npu_profile(cli, digits, ws: Path, inputs: Path, profiles: Path) -> None:
    def dynamic_batch(model) -> None:
        dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"

    path = _edit(digits, inputs, dynamic_batch)
    expect_failure(["convert", path, "-t", profiles / "npu-test.toml", "-o", ws / "out"], 3,
                   "static shapes", "image [batchx1x8x8]", "--input-shape image=1x1x8x8", workspace=ws)
