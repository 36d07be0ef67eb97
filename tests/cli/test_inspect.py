"""`edgeconv inspect MODEL`: I/O, op histogram, weights, dynamic dims and the target check, on real models."""

from __future__ import annotations

import json
from pathlib import Path


def test_inspect_digits_onnx_json(cli, digits) -> None:
    result = cli("inspect", digits.onnx, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "onnx" and report["bytes"] == digits.onnx.stat().st_size
    assert report["inputs"] == [{"name": "image", "shape": [1, 1, 8, 8], "dtype": "float32", "dynamic_dims": []}]
    assert report["outputs"][0]["name"] == "logits" and report["outputs"][0]["shape"] == [1, 10]
    # conv(1→16, 3x3) + conv(16→32, 3x3) + linear(512→10), BatchNorm folded into the convs by the exporter
    assert report["ops"]["Conv"] == 2 and report["ops"]["Gemm"] == 1 and report["ops"]["Relu"] == 2
    assert report["params"] == (16 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 10 + 10) == 9930
    assert report["bytes_by_dtype"] == {"float32": 9930 * 4}
    assert report["dynamic_dims"] == {} and report["quantized"] is False
    fits = {f["target"]: f for f in report["profiles"]}
    assert fits["onnx"]["status"] == "yes" and fits["onnx"]["route"] == ["normalise"]
    assert fits["onnx-fp16"]["route"] == ["normalise", "quantize fp16"]


def test_inspect_messy_graph_reports_dynamic_dims_and_constants(cli, messy_onnx) -> None:
    report = json.loads(cli("inspect", messy_onnx, "--json").stdout)
    assert report["dynamic_dims"] == {"input": [{"axis": 0, "name": "N"}], "logits": [{"axis": 0, "name": "N"}]}
    assert report["inputs"][0]["shape"] == ["N", 3, 16, 16] and report["outputs"][0]["shape"] == ["N", 10]
    assert report["opsets"] == {"ai.onnx": 11}
    assert report["ops"]["Constant"] >= 1 and report["ops"]["BatchNormalization"] == 1 and report["ops"]["Shape"] == 1
    assert any("Constant nodes" in n for n in report["notes"])
    assert report["params"] > 0 and report["bytes_by_dtype"]["float32"] > 0


def test_inspect_says_why_a_static_shape_target_cannot_take_it(cli, messy_onnx, tmp_path: Path) -> None:
    npu = tmp_path / "npu.toml"
    npu.write_text('name = "my-npu"\nextends = "onnx"\n[shapes]\nstatic = true\n')
    report = json.loads(cli("inspect", messy_onnx, "--target", npu, "--target", "onnx", "--json").stdout)
    fits = {f["target"]: f for f in report["profiles"]}
    assert fits["onnx"]["status"] == "yes"
    assert fits["my-npu"]["status"] == "needs-input-shape"
    assert "--input-shape input=1x3x16x16" in fits["my-npu"]["reasons"][0]
    fixed = json.loads(cli("inspect", messy_onnx, "--target", npu, "--input-shape", "input=2x3x16x16", "--json").stdout)
    assert fixed["profiles"][0]["status"] == "yes"


def test_inspect_human_output(cli, digits) -> None:
    result = cli("inspect", digits.onnx)
    assert result.code == 0, result.stderr
    for text in ("image", "1x1x8x8", "Conv", "params: 9,930", "onnx-fp16"):
        assert text in result.stdout


def test_inspect_not_a_model_is_invalid_input(cli, tmp_path: Path) -> None:
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"definitely not a model" * 10)
    result = cli("inspect", junk, "--json")
    assert result.code == 3
    assert json.loads(result.stdout)["error"]["kind"] == "invalid-input"
    assert cli("inspect", tmp_path / "missing.onnx").code == 3


def _io_rows(stdout: str) -> dict[str, list[str]]:
    """The inputs / outputs table: tensor name → its cells (kind, name, shape, dtype, dynamic dims)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 5 and cells[0] in ("in", "out"):
            rows[cells[1]] = cells
    return rows


def test_inspect_names_dynamic_dims_never_a_bare_axis(cli, messy_onnx, tmp_path: Path) -> None:
    """ONNX dim_param `N` and a dim with neither value nor name: shown as `N (axis 0)` / `? (axis 0)`, never `0`."""
    import onnx
    from onnx import TensorProto, helper

    rows = _io_rows(cli("inspect", messy_onnx, "--no-targets").stdout)
    assert rows["input"][2:] == ["Nx3x16x16", "float32", "N (axis 0)"]
    assert rows["logits"][2:] == ["Nx10", "float32", "N (axis 0)"]

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    x.type.tensor_type.shape.dim[0].Clear()  # no dim_value, no dim_param
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    report = json.loads(cli("inspect", tmp_path / "relu.onnx", "--no-targets", "--json").stdout)
    assert report["inputs"][0]["shape"] == [None, 4] and report["outputs"][0]["shape"] == ["batch", 4]
    assert report["dynamic_dims"] == {"x": [{"axis": 0, "name": None}], "y": [{"axis": 0, "name": "batch"}]}
    rows = _io_rows(cli("inspect", tmp_path / "relu.onnx", "--no-targets").stdout)
    assert rows["x"][2:] == ["?x4", "float32", "? (axis 0)"] and rows["y"][2:] == ["batchx4", "float32", "batch (axis 0)"]


def test_inspect_tflite_shape_signature(cli, keras_models, tmp_path: Path) -> None:
    """A LiteRT model converted with a free batch dim (shape_signature -1, shape 1): `?`, not 1 or -1 or 0."""
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(keras_models / "digits_keras.keras", compile=False)
    (tmp_path / "dyn.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    report = json.loads(cli("inspect", tmp_path / "dyn.tflite", "--json").stdout)
    assert [i["shape"] for i in report["inputs"]] == [[None, 8, 8, 1]]
    assert [o["shape"] for o in report["outputs"]] == [[None, 10]]
    assert report["dynamic_dims"] == {s["name"]: [{"axis": 0, "name": None}] for s in report["inputs"] + report["outputs"]}
    rows = _io_rows(cli("inspect", tmp_path / "dyn.tflite").stdout)
    assert sorted(r[2] + " " + r[4] for r in rows.values()) == ["?x10 ? (axis 0)", "?x8x8x1 ? (axis 0)"]


def test_inspect_openvino_ir(cli, messy_onnx, tmp_path: Path) -> None:
    """An IR with a dynamic batch (OpenVINO's own conversion of the messy graph): I/O, ops and weights from the .xml."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(messy_onnx)), str(tmp_path / "messy.xml"), compress_to_fp16=False)
    report = json.loads(cli("inspect", tmp_path / "messy.xml", "--json").stdout)
    assert report["format"] == "openvino"
    assert report["bytes"] == (tmp_path / "messy.xml").stat().st_size + (tmp_path / "messy.bin").stat().st_size
    assert report["inputs"] == [{"name": "input", "shape": [None, 3, 16, 16], "dtype": "float32",
                                 "dynamic_dims": [{"axis": 0, "name": None}]}]
    assert report["outputs"][0]["name"] == "logits" and report["outputs"][0]["shape"] == [None, 10]
    assert report["ops"]["Convolution"] == 2 and report["ops"]["MatMul"] == 1
    # the ONNX graph's weights (13,068 elements) less the BatchNorm OpenVINO folds into the conv (4 x 16)
    assert report["params"] == 13068 - 64 and report["bytes_by_dtype"]["float32"] > 50_000
    rows = _io_rows(cli("inspect", tmp_path / "messy.xml").stdout)
    assert rows["input"][2:] == ["?x3x16x16", "float32", "? (axis 0)"]


def test_inspect_pt2_outputs_and_symbolic_dims(cli, digits, tmp_path: Path) -> None:
    """A .pt2's outputs come from its graph signature and output meta (read after the zip safety check, no pickle
    runs); torch.export's symbolic sizes (`s0`) name the dynamic dims, with their range in a note."""
    import torch

    report = json.loads(cli("inspect", digits.pt2, "--no-targets", "--json").stdout)
    assert report["outputs"] == [{"name": "linear", "shape": [1, 10], "dtype": "float32", "dynamic_dims": []}]

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.fc(x), (x > 0).sum(dim=1)

    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(TwoHeads(), (torch.randn(2, 3),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(tmp_path / "heads.pt2"))
    report = json.loads(cli("inspect", tmp_path / "heads.pt2", "--no-targets", "--json").stdout)
    (x,) = report["inputs"]
    symbol = x["shape"][0]
    assert isinstance(symbol, str) and symbol.startswith("s") and x["shape"][1:] == [3]
    assert x["dynamic_dims"] == [{"axis": 0, "name": symbol}]
    assert [(o["shape"], o["dtype"]) for o in report["outputs"]] == [([symbol, 4], "float32"), ([symbol], "int64")]
    assert [o["name"] for o in report["outputs"]] == list(program.graph_signature.user_outputs)
    assert any(f"{symbol} in [1, 64]" in n for n in report["notes"])
    rows = _io_rows(cli("inspect", tmp_path / "heads.pt2", "--no-targets").stdout)
    assert rows["x"][2:] == [f"{symbol}x3", "float32", f"{symbol} (axis 0)"]
    assert [r[2] for r in rows.values() if r[0] == "out"] == [f"{symbol}x4", symbol]


def test_inspect_keras_output_shapes(cli, keras_models) -> None:
    report = json.loads(cli("inspect", keras_models / "digits_keras.keras", "--no-targets", "--json").stdout)
    assert report["inputs"] == [{"name": "image", "shape": [None, 8, 8, 1], "dtype": "float32",
                                 "dynamic_dims": [{"axis": 0, "name": None}]}]
    assert report["outputs"] == [{"name": "logits", "shape": [None, 10], "dtype": "float32",
                                  "dynamic_dims": [{"axis": 0, "name": None}]}]


def test_inspect_says_a_shared_reason_once(cli, digits) -> None:
    """The ExecuTorch profiles refuse an ONNX source for one reason (no route): one row, the reason said once; JSON
    keeps each profile and adds the groups. The six Core ML profiles take it (through onnx2torch) and share one note."""
    result = cli("inspect", digits.onnx)
    assert result.code == 0, result.stderr
    assert result.stdout.count("no route from onnx to executorch") == 1
    assert "executorch-* (2 profiles)" in result.stdout and "coreml-*, ane-fp16 (6 profiles)" in result.stdout
    report = json.loads(cli("inspect", digits.onnx, "--json").stdout)
    refused = sorted(f["target"] for f in report["profiles"] if "no route from onnx" in " ".join(f["reasons"]))
    assert refused == sorted(p for p in (f["target"] for f in report["profiles"]) if p.startswith("executorch"))
    (group,) = [g for g in report["profile_groups"] if refused[0] in g["targets"]]
    assert sorted(group["targets"]) == refused and group["status"] == "no"
    assert group["label"] == "executorch-* (2 profiles)"
    assert group["reasons"][0].startswith("no route from onnx to executorch")  # no one target's name
    (coreml,) = [g for g in report["profile_groups"] if "coreml-fp32" in g["targets"]]
    assert coreml["label"] == "coreml-*, ane-fp16 (6 profiles)" and coreml["status"] != "no"
    single = [g for g in report["profile_groups"] if g["targets"] == ["onnx"]]
    assert single and single[0]["label"] == "onnx" and single[0]["status"] == "yes"
