"""Models that run code, touch files or inflate when a framework opens them are refused before it does (exit 7).

Every hostile file is real: built with the framework that would load it (tf_keras / Keras 3 Lambda layers, a
torch.export.save archive edited to carry a pickle, a SavedModel whose serving function calls tf.io.write_file, ...),
its payload writing a sentinel file outside the test's workspace. Each refusal is checked with `expect_failure` (exit
code, one error line and a hint, the --json error, the workspace unchanged) for `convert -t onnx` and `inspect`, and
the sentinel must not exist afterwards. The positive controls prove the files are really hostile (with --trust-code the
payload runs) and that the same models without the payload still convert.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.reliability import hostile_models as H
from tests.reliability.conftest import expect_failure, tree


@dataclass(frozen=True)
class Files:
    root: Path  # the hostile and plain models (never written by the CLI)
    sentinels: Path  # where payloads write; outside every workspace

    def sentinel(self, name: str) -> Path:
        return self.sentinels / name


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("hostile")
    sentinels = tmp_path_factory.mktemp("sentinels")
    made = Files(root, sentinels)
    H.h5_with_lambda(root / "lambda.h5", made.sentinel("h5-lambda"))
    H.keras_with_lambda(root / "lambda.keras", made.sentinel("keras-lambda"))
    H.plain_keras(root)
    plain_pt2 = H.plain_pt2(root / "plain.pt2")
    H.pt2_with_pickled_weight(plain_pt2, root / "pickled_weight.pt2", made.sentinel("pt2-use-pickle"))
    H.pt2_with_pickled_sample_inputs(plain_pt2, root / "pickled_inputs.pt2", made.sentinel("pt2-sample-inputs"))
    H.savedmodel_writing_file(root / "writes_file", made.sentinel("savedmodel-write-file"))
    H.plain_savedmodel(root / "plain_savedmodel")
    (root / "elsewhere").mkdir()
    H.savedmodel_with_linked_variables(root / "plain_savedmodel", root / "linked_variables", root / "elsewhere" / "vars")
    H.keras_zip_bomb(root / "bomb.keras")
    H.h5_with_external_weights(root / "plain.h5", root / "external_weights.h5", root / "elsewhere" / "secret.bin")
    for sentinel in sentinels.iterdir():  # building a Lambda model calls it once
        sentinel.unlink()
    return made


# case → (file under Files.root, sentinel name or None, what the message names)
HOSTILE = {
    "h5-lambda": ("lambda.h5", "h5-lambda", ("payload (Lambda)", "--trust-code")),
    "keras-lambda": ("lambda.keras", "keras-lambda", ("payload (Lambda)", "--trust-code")),
    "pt2-use-pickle": ("pickled_weight.pt2", "pt2-use-pickle", ("fc.bias", "use_pickle", "builtins.exec", "--trust-code")),
    "pt2-sample-inputs": ("pickled_inputs.pt2", "pt2-sample-inputs", ("sample_inputs", "builtins.exec", "--trust-code")),
    "savedmodel-write-file": ("writes_file", "savedmodel-write-file", ("WriteFile in __inference_serve", "--trust-code")),
    "savedmodel-linked-variables": ("linked_variables", None, ("variables is a link", "outside the model's folder")),
    "keras-zip-bomb": ("bomb.keras", None, ("zip bomb", "model.weights.h5")),
    "h5-external-weights": ("external_weights.h5", None, ("kernel:0 (stored in external file", "secret.bin")),
}
# refused even with --trust-code: they are not code, but paths out of the model (like ONNX external data)
NOT_LIFTED = ("savedmodel-linked-variables", "keras-zip-bomb", "h5-external-weights")


def _args(command: str, model: Path, ws: Path, *extra: str) -> list[object]:
    if command == "convert":
        return ["convert", model, "-t", "onnx", "-o", ws / "out", *extra]
    return ["inspect", model, "--no-targets", *extra]


@pytest.mark.parametrize("command", ["convert", "inspect"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_model_refused(files: Files, ws: Path, case: str, command: str) -> None:
    name, sentinel_name, needles = HOSTILE[case]
    model = files.root / name
    sentinel = files.sentinel(sentinel_name or case)
    sentinel.unlink(missing_ok=True)
    inputs_before = tree(files.root)
    failure = expect_failure(_args(command, model, ws), 7, *needles, workspace=ws)
    assert failure.error["kind"] == "safety"
    assert not sentinel.exists(), f"the payload of {case} ran"
    assert not list(files.sentinels.iterdir())
    assert tree(files.root) == inputs_before, "the models' own folder changed"
    assert not (ws / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(c for c, (_, s, _) in HOSTILE.items() if s))
def test_trust_code_really_runs_the_payload(files: Files, tmp_path: Path, case: str) -> None:
    """The positive control: with --trust-code the framework opens the same file and its payload runs (so the
    refusal above is what keeps it from running, and the file is really hostile)."""
    name, sentinel_name, _ = HOSTILE[case]
    sentinel = files.sentinel(sentinel_name)
    sentinel.unlink(missing_ok=True)
    try:
        result = run_cli(*_args("convert", files.root / name, tmp_path, "--trust-code"))
        assert sentinel.exists(), f"--trust-code: the payload of {case} did not run (exit {result.code}):\n{result.stderr[-2000:]}"
    finally:
        sentinel.unlink(missing_ok=True)


@pytest.mark.slow
def test_trust_pickle_is_an_alias_and_inspect_takes_it(files: Files) -> None:
    sentinel = files.sentinel("h5-lambda")
    sentinel.unlink(missing_ok=True)
    try:
        result = run_cli("inspect", files.root / "lambda.h5", "--no-targets", "--trust-pickle")
        assert result.code == 0, result.stderr[-2000:]
        assert sentinel.exists(), "inspect --trust-pickle did not load the Lambda model"
    finally:
        sentinel.unlink(missing_ok=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain.h5", "plain.keras", "plain.pt2", "plain_savedmodel"])
def test_the_same_models_without_payload_convert(files: Files, tmp_path: Path, name: str) -> None:
    """Negative control: the checks do not refuse ordinary models (a Keras `model.export()` SavedModel uses
    SaveV2 / RestoreV2 in its saver functions; a plain .pt2 has pickled sample inputs torch loads weights-only)."""
    result = run_cli("convert", files.root / name, "-t", "onnx", "-o", tmp_path / "out")
    assert result.code == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_linked_variables_would_load_silently(files: Files) -> None:
    """The symlinked SavedModel is really loadable by TensorFlow (it reads the variables from outside its folder)."""
    import tensorflow as tf

    path = files.root / "linked_variables"
    assert (path / "variables").is_symlink()
    loaded = tf.saved_model.load(str(path))
    assert "serving_default" in loaded.signatures


@pytest.mark.parametrize("case", NOT_LIFTED)
def test_trust_code_does_not_lift_path_checks(files: Files, ws: Path, case: str) -> None:
    name, _, needles = HOSTILE[case]
    expect_failure(_args("inspect", files.root / name, ws, "--trust-code"), 7, *needles, workspace=ws, json_too=False)


def test_external_weights_would_be_read(files: Files) -> None:
    """The .h5 is really hostile: tf_keras loads it, its kernel the bytes of a file outside the model's folder."""
    import numpy as np
    import tf_keras

    model = tf_keras.models.load_model(files.root / "external_weights.h5", compile=False)
    kernel = model.get_weights()[0]
    assert np.array_equal(kernel.ravel(), np.arange(kernel.size, dtype=kernel.dtype))


def test_zip_bomb_is_one(files: Files) -> None:
    path = files.root / "bomb.keras"
    with zipfile.ZipFile(path) as zf:
        inflated = sum(i.file_size for i in zf.infolist())
    assert path.stat().st_size < 1 << 20 and inflated >= 256 << 20


# --- --model factories: the user's Python, failing in every way it can ------------------------------------------------

FACTORIES = {
    "exits_at_import.py": "import sys\nsys.exit(0)\n",
    "exits_in_call.py": "import sys\n\n\ndef build():\n    sys.exit(0)\n",
    "syntax_error.py": "def build(:\n    pass\n",
    "raises_at_import.py": "x = 1\nraise RuntimeError('boom at import')\n",
}


@pytest.fixture
def factory_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "factories"
    folder.mkdir()
    for name, text in FACTORIES.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("spec, needles", [
    ("builtins:exit", ("called exit",)),
    ("exits_at_import:build", ("exits_at_import", "called exit", "exits_at_import.py:2")),
    ("exits_in_call:build", ("exits_in_call:build", "called exit", "exits_in_call.py:5")),
    ("syntax_error:build", ("syntax_error", "SyntaxError", "syntax_error.py:1")),
    ("raises_at_import:build", ("raises_at_import", "RuntimeError", "boom at import", "raises_at_import.py:2")),
    ("no_such_module:build", ("cannot import no_such_module",)),
])
def test_factory_failures_are_invalid_input(ws: Path, factory_dir: Path, spec: str, needles: tuple[str, ...]) -> None:
    """A factory calling exit() used to end edgeconv with exit 0 and no OUTDIR; now exit 3 says so."""
    expect_failure(["convert", "--model", spec, "-t", "onnx", "-o", ws / "out"], 3, *needles, workspace=ws,
                   cwd=factory_dir)
    assert not (ws / "out").exists()


@pytest.mark.parametrize("spec", [".x:f", ":f", "x:", "x", "a..b:f", "x:f.g", "x:1f"])
def test_malformed_factory_spec_is_usage(ws: Path, spec: str) -> None:
    expect_failure(["convert", "--model", spec, "-t", "onnx", "-o", ws / "out"], 2, "bad --model", "package.module:function",
                   workspace=ws)



# --- ONNX inputs edgeconv cannot feed (exit 1 before: numpy did not know 'onnx-type-4') ------------------------------


def _identity_onnx(path: Path, elem: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    out_type = TensorProto.FLOAT if elem != TensorProto.STRING else elem
    node = helper.make_node("Cast", ["x"], ["y"], to=out_type) if out_type != elem else helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, [1, 4])],
                              [helper.make_tensor_value_info("y", out_type, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_string_input_is_unsupported(ws: Path, inputs: Path) -> None:
    from onnx import TensorProto

    path = _identity_onnx(inputs / "text.onnx", TensorProto.STRING)
    failure = expect_failure(["convert", path, "-t", "onnx", "-o", ws / "out"], 4, "unsupported input dtype", "x (string)",
                             workspace=ws)
    assert failure.error["details"]["inputs"] == ["x (string)"]


@pytest.mark.parametrize("elem", ["UINT16", "UINT32"])
def test_unsigned_inputs_convert(tmp_path: Path, elem: str) -> None:
    from onnx import TensorProto

    path = _identity_onnx(tmp_path / "u.onnx", getattr(TensorProto, elem))
    result = run_cli("convert", path, "-t", "onnx", "-o", tmp_path / "out")
    assert result.code == 0, result.stderr[-3000:]
