"""Unit tests of the checks run before a framework opens a model: archives, Keras configs, .pt2 pickles, SavedModel
graphs, factories and ONNX input dtypes. The end-to-end refusals (real hostile files, the CLI) are in
tests/reliability/test_code_execution.py."""

from __future__ import annotations

import json
import os
import pickle
import sys
import zipfile
from pathlib import Path

import pytest

from edgeconv.errors import InvalidInputError, SafetyError, UnsupportedError, UsageError
from edgeconv.sources import archive_safety, keras_safety, pt2_safety, savedmodel_safety

# --- archives and folders ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, escapes", [
    ("a/b.json", False), ("archive/data/weights/weight_0", False), ("x..y", False),
    ("../x", True), ("a/../../x", True), ("/etc/passwd", True), ("\\windows\\x", True), ("C:/x", True), ("a\\..\\x", True),
])
def test_member_escapes(name: str, escapes: bool) -> None:
    assert archive_safety.member_escapes(name) is escapes


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_plain_zip_passes(tmp_path: Path) -> None:
    infos = archive_safety.check_zip(_zip(tmp_path / "a.zip", {"config.json": b"{}", "w.bin": os.urandom(1000)}))
    assert [i.filename for i in infos] == ["config.json", "w.bin"]


def test_escaping_member_refused(tmp_path: Path) -> None:
    with pytest.raises(SafetyError, match="escaping the archive"):
        archive_safety.check_zip(_zip(tmp_path / "a.zip", {"../../evil.json": b"{}"}))


def test_symlink_member_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(SafetyError, match="symbolic link"):
        archive_safety.check_zip(path)


def test_zip_bomb_refused_by_member_ratio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_safety, "RATIO_FLOOR_BYTES", 1 << 16)
    path = _zip(tmp_path / "bomb.zip", {"config.json": b"{}", "zeros": bytes(4 << 20)}, zipfile.ZIP_DEFLATED)
    with pytest.raises(SafetyError, match="zip bomb: entry 'zeros'"):
        archive_safety.check_zip(path)


def test_total_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_safety, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(SafetyError, match="would inflate"):
        archive_safety.check_zip(_zip(tmp_path / "a.zip", {"w.bin": os.urandom(2000)}))


def test_compressible_but_small_members_pass(tmp_path: Path) -> None:
    """A JSON config compresses 100x and more; under the 16 MiB floor ratios are not judged."""
    archive_safety.check_zip(_zip(tmp_path / "a.zip", {"config.json": b" " * (1 << 20)}, zipfile.ZIP_DEFLATED))


def test_read_member_caps_size(tmp_path: Path) -> None:
    path = _zip(tmp_path / "a.zip", {"config.json": b"x" * 100})
    with zipfile.ZipFile(path) as zf:
        assert archive_safety.read_member(zf, "config.json", 100) == b"x" * 100
        with pytest.raises(SafetyError, match="more than the 99 read"):
            archive_safety.read_member(zf, "config.json", 99)


def test_damaged_zip_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(b"PK\x03\x04" + os.urandom(100))
    with pytest.raises(InvalidInputError):
        archive_safety.check_zip(path)


def test_check_tree(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "variables" / "data").write_bytes(b"1")
    (model / "assets").symlink_to(model / "variables")  # inside: fine
    archive_safety.check_tree(model)
    (tmp_path / "outside").write_text("secret")
    (model / "variables" / "index").symlink_to(tmp_path / "outside")
    with pytest.raises(SafetyError, match="variables/index is a link to .*outside the model's folder"):
        archive_safety.check_tree(model)


def test_check_tree_symlink_loop(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "a").symlink_to(model / "b")
    (model / "b").symlink_to(model / "a")
    with pytest.raises(SafetyError):
        archive_safety.check_tree(model)


def test_check_tree_through_a_linked_parent(tmp_path: Path) -> None:
    """A model reached through a symlinked folder is judged by where it really is."""
    real = tmp_path / "real" / "model"
    (real / "variables").mkdir(parents=True)
    (real / "assets").symlink_to(real / "variables")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    archive_safety.check_tree(tmp_path / "alias" / "model")


def test_hdf5_external_references(tmp_path: Path) -> None:
    import h5py

    (tmp_path / "raw.bin").write_bytes(bytes(16))
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("plain/w", data=[1.0, 2.0])
        f["plain/alias"] = h5py.SoftLink("/plain/w")
        f.create_dataset("ext/w", shape=(4,), dtype="f4", external=[(str(tmp_path / "raw.bin"), 0, 16)])
        f["other"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/")
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "d", shape=(4,))
        f.create_virtual_dataset("virt", layout)
    with h5py.File(path, "r") as f:
        found = archive_safety.hdf5_external_references(f)
        assert any(x.startswith("/ext/w (stored in external file") for x in found), found
        assert any(x.startswith("/other (external link") for x in found), found
        assert any(x.startswith("/virt (virtual dataset mapping") for x in found), found
        assert not any("plain" in x for x in found)
        with pytest.raises(SafetyError, match="reads data from outside the file"):
            archive_safety.check_hdf5(f, path)


def test_keras_v3_weights_member_checked_even_when_trusted(tmp_path: Path) -> None:
    import h5py

    from edgeconv.formats import KERAS_V3

    weights = tmp_path / "w.h5"
    (tmp_path / "raw.bin").write_bytes(bytes(16))
    with h5py.File(weights, "w") as f:
        f.create_dataset("layers/dense/vars/0", shape=(4,), dtype="f4", external=[(str(tmp_path / "raw.bin"), 0, 16)])
    path = _zip(tmp_path / "m.keras", {"config.json": b"{}", "metadata.json": b"{}", "model.weights.h5": weights.read_bytes()})
    with pytest.raises(SafetyError, match="vars/0 \\(stored in external file"):
        keras_safety.check_keras_file(path, KERAS_V3, trust_code=True)


# --- Keras configs ----------------------------------------------------------------------------------------------------


def _layer(class_name: str, name: str, **config: object) -> dict[str, object]:
    return {"class_name": class_name, "config": {"name": name, **config}}


def test_lambda_found_in_nested_models() -> None:
    inner = {"class_name": "Functional", "config": {"name": "inner", "layers": [
        _layer("Dense", "d"), _layer("Lambda", "hidden_payload", function=["4wEAAA==", None, None], function_type="lambda")]}}
    outer = {"class_name": "Sequential", "config": {"name": "outer", "layers": [_layer("InputLayer", "x"), inner]}}
    assert keras_safety.code_carrying_layers(outer) == ["hidden_payload (Lambda)"]


def test_keras3_lambda_objects_anywhere() -> None:
    config = {"class_name": "Sequential", "config": {"layers": [
        _layer("Dense", "d", activation={"class_name": "__lambda__", "config": {"code": "..."}})]}}
    assert keras_safety.code_carrying_layers(config) == ["a Python lambda (__lambda__)"]


@pytest.mark.parametrize("class_name", ["TorchModuleWrapper", "JaxLayer", "FlaxLayer", "TFSMLayer"])
def test_other_code_layers(class_name: str) -> None:
    assert keras_safety.code_carrying_layers({"layers": [_layer(class_name, "w")]}) == [f"w ({class_name})"]


@pytest.mark.parametrize("symbol, risky", [
    ("math.add", False), ("__operators__.add", False), ("nn.relu", False), ("compat.v1.transpose", False),
    ("io.write_file", True), ("io.read_file", True), ("compat.v1.io.write_file", True), ("py_function", True),
    ("numpy_function", True), ("print", True), ("raw_ops.WriteFile", True), ("io.gfile.remove", True),
])
def test_tf_op_lambda(symbol: str, risky: bool) -> None:
    found = keras_safety.code_carrying_layers({"layers": [_layer("TFOpLambda", "op", function=symbol)]})
    assert bool(found) is risky, found


def test_plain_config_has_no_code() -> None:
    config = {"class_name": "Sequential", "config": {"layers": [_layer("InputLayer", "x"), _layer("Dense", "d",
              activation="relu", kernel_initializer={"class_name": "GlorotUniform", "config": {}})]}}
    assert keras_safety.code_carrying_layers(config) == []


def test_check_keras_file_v3(tmp_path: Path) -> None:
    from edgeconv.formats import KERAS_V3

    config = {"class_name": "Sequential", "config": {"layers": [_layer("Lambda", "payload")]}}
    path = _zip(tmp_path / "m.keras", {"config.json": json.dumps(config).encode(), "metadata.json": b"{}"})
    with pytest.raises(SafetyError, match="payload \\(Lambda\\)") as info:
        keras_safety.check_keras_file(path, KERAS_V3, trust_code=False)
    assert "--trust-code" in info.value.hint and info.value.details == {"code_layers": ["payload (Lambda)"]}
    keras_safety.check_keras_file(path, KERAS_V3, trust_code=True)  # trusted: not even read


def test_check_keras_file_h5(tmp_path: Path) -> None:
    import h5py

    from edgeconv.formats import KERAS_H5

    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": [_layer("Lambda", "lam")]}})
    with pytest.raises(SafetyError, match="lam \\(Lambda\\)"):
        keras_safety.check_keras_file(path, KERAS_H5, trust_code=False)
    with h5py.File(tmp_path / "weights.h5", "w") as f:  # weights only: nothing to check (loading fails later: exit 3)
        f["w"] = [1.0]
    keras_safety.check_keras_file(tmp_path / "weights.h5", KERAS_H5, trust_code=False)


def test_keras_config_not_json_is_invalid(tmp_path: Path) -> None:
    from edgeconv.formats import KERAS_V3

    path = _zip(tmp_path / "m.keras", {"config.json": b"{not json", "metadata.json": b"{}"})
    with pytest.raises(InvalidInputError, match="not JSON"):
        keras_safety.check_keras_file(path, KERAS_V3, trust_code=False)


# --- .pt2 archives ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.reliability.hostile_models import plain_pt2

    return plain_pt2(tmp_path_factory.mktemp("pt2") / "plain.pt2")


def _edit(plain: Path, dest: Path, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> Path:
    from tests.reliability.hostile_models import rewrite_zip

    rewrite_zip(plain, dest, replace)
    root = zipfile.ZipFile(plain).namelist()[0].split("/")[0]
    with zipfile.ZipFile(dest, "a") as zf:
        for name, data in (add or {}).items():
            zf.writestr(f"{root}/{name}", data)
    return dest


def test_plain_pt2_has_no_findings(plain_pt2: Path) -> None:
    assert pt2_safety.pickle_findings(plain_pt2) == []


def test_opaque_and_custom_constants_refused(plain_pt2: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(plain_pt2) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data/constants/model_constants_config.json"))
        config = json.loads(zf.read(name))
    config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
    config["config"]["bound"] = {"path_name": "custom_obj_0", "is_param": False, "use_pickle": False, "tensor_meta": None}
    path = _edit(plain_pt2, tmp_path / "c.pt2", {"data/constants/model_constants_config.json": json.dumps(config).encode()},
                 {"data/constants/opaque_obj_0": pickle.dumps(1), "data/constants/custom_obj_0": b"x"})
    found = pt2_safety.pickle_findings(path)
    assert any("'evil'" in f and "pickled Python object" in f for f in found), found
    assert any("'bound'" in f and "torchbind" in f for f in found), found
    with pytest.raises(SafetyError, match="evil"):
        pt2_safety.check_exported_program(path, trust_code=False)
    pt2_safety.check_exported_program(path, trust_code=True)


def test_use_pickle_plain_tensor_accepted(plain_pt2: Path, tmp_path: Path) -> None:
    """A use_pickle payload torch loads weights-only (a plain tensor) runs nothing: accepted."""
    import io

    import torch

    with zipfile.ZipFile(plain_pt2) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data/weights/model_weights_config.json"))
        config = json.loads(zf.read(name))
    config["config"]["fc.bias"]["use_pickle"] = True
    buffer = io.BytesIO()
    torch.save(torch.zeros(2), buffer)
    path = _edit(plain_pt2, tmp_path / "t.pt2", {"data/weights/model_weights_config.json": json.dumps(config).encode(),
                                                  f"data/weights/{config['config']['fc.bias']['path_name']}": buffer.getvalue()})
    assert pt2_safety.pickle_findings(path) == []


@pytest.mark.parametrize("member", ["data/aotinductor/model/model.so", "data/weights/model.pt"])
def test_aotinductor_and_legacy_pickles_refused(plain_pt2: Path, tmp_path: Path, member: str) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("ran",))

    path = _edit(plain_pt2, tmp_path / "x.pt2", {}, {member: pickle.dumps(Evil())})
    found = pt2_safety.pickle_findings(path)
    assert found and ("aotinductor" in found[0] or "builtins.print" in found[0]), found


def test_torch_2_7_format_pickles_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("ran",))

    path = _zip(tmp_path / "old.pt2", {"version": b"8.0", "serialized_exported_program.json": b"{}",
                                       "serialized_state_dict.json": pickle.dumps(Evil())})
    assert any("serialized_state_dict.json" in f for f in pt2_safety.pickle_findings(path))


# --- SavedModel graphs (the proto is built with TensorFlow's classes, decoded by the checker without them) -------------


@pytest.fixture(scope="module")
def pb2():  # type: ignore[no-untyped-def]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tensorflow.core.protobuf import saved_model_pb2

    return saved_model_pb2


def _saved_model(pb2, folder: Path, *, serve_calls_save: bool = False, extra_op: tuple[str, dict] | None = None) -> Path:  # type: ignore[no-untyped-def]
    proto = pb2.SavedModel()
    mg = proto.meta_graphs.add()
    mg.saver_def.filename_tensor_name = "saver_filename:0"
    mg.saver_def.save_tensor_name = "Save:0"
    mg.saver_def.restore_op_name = "Restore"
    lib = mg.graph_def.library

    def fn(name: str, ops: list[tuple[str, str, dict]]) -> None:
        f = lib.function.add()
        f.signature.name = name
        for node_name, op, attrs in ops:
            node = f.node_def.add(name=node_name, op=op)
            for key, value in attrs.items():
                if key == "f":
                    node.attr["f"].func.name = value
                else:
                    node.attr[key].s = value.encode()

    fn("__inference__traced_save_1", [("SaveV2", "SaveV2", {}), ("MergeV2Checkpoints", "MergeV2Checkpoints", {})])
    fn("__inference__traced_restore_2", [("RestoreV2", "RestoreV2", {})])
    serve_ops = [("MatMul", "MatMul", {})]
    if serve_calls_save:
        serve_ops.append(("call", "StatefulPartitionedCall", {"f": "__inference__traced_save_1"}))
    if extra_op:
        serve_ops.append(("extra", extra_op[0], extra_op[1]))
    fn("__inference_serve_3", serve_ops)
    for name, op, f in (("Save", "StatefulPartitionedCall", "__inference__traced_save_1"),
                        ("Restore", "StatefulPartitionedCall", "__inference__traced_restore_2"),
                        ("Serve", "StatefulPartitionedCall", "__inference_serve_3")):
        node = mg.graph_def.node.add(name=name, op=op)
        node.attr["f"].func.name = f
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(proto.SerializeToString())
    return folder


def test_saver_functions_may_save_and_restore(pb2, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    savedmodel_safety.check_savedmodel(_saved_model(pb2, tmp_path / "m"), trust_code=False)


def test_serving_function_calling_the_saver_refused(pb2, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SaveV2 writes a checkpoint wherever its prefix says: allowed in the saver, not when serving reaches it."""
    with pytest.raises(SafetyError, match="MergeV2Checkpoints in __inference__traced_save_1; SaveV2 in __inference__traced_save_1"):
        savedmodel_safety.check_savedmodel(_saved_model(pb2, tmp_path / "m", serve_calls_save=True), trust_code=False)


@pytest.mark.parametrize("op, attrs, refused", [
    ("WriteFile", {}, True), ("ReadFile", {}, True), ("MatchingFiles", {}, True), ("EagerPyFunc", {}, True),
    ("ImmutableConst", {}, True), ("RestoreV2", {}, True), ("PrintV2", {"output_stream": "file:///tmp/x"}, True),
    ("PrintV2", {"output_stream": "stderr"}, False), ("Relu", {}, False),
])
def test_ops_outside_the_saver(pb2, tmp_path: Path, op: str, attrs: dict, refused: bool) -> None:  # type: ignore[no-untyped-def]
    path = _saved_model(pb2, tmp_path / "m", extra_op=(op, attrs))
    if refused:
        with pytest.raises(SafetyError, match=f"{op} in __inference_serve_3") as info:
            savedmodel_safety.check_savedmodel(path, trust_code=False)
        assert {"op": op, "node": "extra", "function": "__inference_serve_3"} in info.value.details["ops"]
    else:
        savedmodel_safety.check_savedmodel(path, trust_code=False)


def test_tf1_saver_scope(pb2, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """TF1 SavedModels keep the saver's ops in the graph, under the scope of its filename tensor."""
    proto = pb2.SavedModel()
    mg = proto.meta_graphs.add()
    mg.saver_def.filename_tensor_name = "save/Const:0"
    mg.saver_def.save_tensor_name = "save/control_dependency:0"
    mg.saver_def.restore_op_name = "save/restore_all"
    for name, op in (("save/Const", "Const"), ("save/SaveV2", "SaveV2"), ("save/RestoreV2", "RestoreV2"), ("dense/MatMul", "MatMul")):
        mg.graph_def.node.add(name=name, op=op)
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "saved_model.pb").write_bytes(proto.SerializeToString())
    savedmodel_safety.check_savedmodel(tmp_path / "ok", trust_code=False)
    mg.graph_def.node.add(name="serving/SaveV2", op="SaveV2")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "saved_model.pb").write_bytes(proto.SerializeToString())
    with pytest.raises(SafetyError, match="SaveV2 in graph"):
        savedmodel_safety.check_savedmodel(tmp_path / "bad", trust_code=False)


def test_damaged_saved_model_pb_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "saved_model.pb").write_bytes(b"\x12\xff\xff\xff\xff\x0f" + os.urandom(20))
    with pytest.raises(InvalidInputError, match="cannot parse"):
        savedmodel_safety.check_savedmodel(tmp_path / "m", trust_code=False)


# --- factories ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [".x:f", ":f", "x:", "x", "a..b:f", "x:f.g", "x-y:f", "x:"])
def test_malformed_factory_specs(spec: str) -> None:
    from edgeconv.sources.user_code import parse_factory_spec

    with pytest.raises(UsageError):
        parse_factory_spec(spec)


def test_factory_import_failures_name_module_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeconv.sources.user_code import import_factory

    (tmp_path / "bad_syntax_mod.py").write_text("x = 1\ndef f(:\n")
    (tmp_path / "exit_mod.py").write_text("import sys\n\nsys.exit(3)\n")
    (tmp_path / "missing_dep_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    with pytest.raises(InvalidInputError, match=r"SyntaxError.*bad_syntax_mod\.py:2"):
        import_factory("bad_syntax_mod:f")
    with pytest.raises(InvalidInputError, match=r"called exit\(3\).*exit_mod\.py:3"):
        import_factory("exit_mod:f")
    with pytest.raises(InvalidInputError, match=r"ModuleNotFoundError.*no_such_dependency_xyz.*missing_dep_mod\.py:1"):
        import_factory("missing_dep_mod:f")


def test_weights_zip_bomb_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from edgeconv.context import ConvertOptions
    from edgeconv.formats import TORCH_FACTORY, Artifact, Format
    from edgeconv.sources.torch_source import TorchSourceLoader

    (tmp_path / "tiny_factory_mod.py").write_text("import torch\n\n\ndef build():\n    return torch.nn.Linear(2, 2)\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.setattr(archive_safety, "RATIO_FLOOR_BYTES", 1 << 16)
    weights = _zip(tmp_path / "state.pt", {"archive/data.pkl": bytes(4 << 20)}, zipfile.ZIP_DEFLATED)
    options = ConvertOptions(model_factory="tiny_factory_mod:build", weights=weights)
    with pytest.raises(SafetyError, match="zip bomb"):
        TorchSourceLoader()._build_factory(Artifact(weights, Format.TORCH, TORCH_FACTORY), options)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "ok.pt")  # a real state_dict zip passes the check
    ok = ConvertOptions(model_factory="tiny_factory_mod:build", weights=tmp_path / "ok.pt")
    TorchSourceLoader()._build_factory(Artifact(tmp_path / "ok.pt", Format.TORCH, TORCH_FACTORY), ok)


def test_keyboard_interrupt_in_a_factory_is_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeconv.sources.user_code import import_factory

    (tmp_path / "interrupt_mod.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    with pytest.raises(KeyboardInterrupt):
        import_factory("interrupt_mod:f")


# --- ONNX input dtypes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("elem, name, supported", [(4, "uint16", True), (12, "uint32", True), (13, "uint64", True),
                                                   (8, "string", False), (14, "complex64", False), (17, "float8e4m3fn", False)])
def test_onnx_input_dtypes(tmp_path: Path, elem: int, name: str, supported: bool) -> None:
    import onnx
    from onnx import TensorProto, helper

    from edgeconv.context import ConvertOptions
    from edgeconv.formats import Artifact, Format
    from edgeconv.sources.onnx_source import OnnxSourceLoader

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", elem, [1, 4])], [helper.make_tensor_value_info("y", elem, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert TensorProto.DataType.Name(elem)
    loader = OnnxSourceLoader()
    if supported:
        source = loader.open(Artifact(path, Format.ONNX), ConvertOptions())
        assert source.inputs[0].dtype == name
    else:
        with pytest.raises(UnsupportedError, match=f"unsupported input dtype: x \\({name}\\)"):
            loader.open(Artifact(path, Format.ONNX), ConvertOptions())
