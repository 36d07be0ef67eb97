"""Case 8: a model over 2 GB (protobuf's limit) converts through external data, without loading its weights.

The 2.15 GB initializer is a sparse file (its first rows hold real values, the rest reads as zeros), so generating it
costs nothing; the run copies it twice (work dir, output) and hashes it once, so the test needs ~4.5 GB of free disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROWS = 134_300_000  # x 4 float32 = 2_148_800_000 bytes > 2**31
WIDTH = 4


def big_gather_model(folder: Path) -> Path:
    """emb = Gather(table[ROWS, 4], idx[1, 4]); out = ReduceSum(emb, axis 1). The table lives in big.onnx.data."""
    folder.mkdir(parents=True, exist_ok=True)
    nbytes = ROWS * WIDTH * 4
    data = folder / "big.onnx.data"
    with data.open("wb") as f:
        f.write(np.arange(64 * WIDTH, dtype=np.float32).tobytes())
        f.truncate(nbytes)  # sparse: no disk used for the zeros
    table = TensorProto(name="table", data_type=TensorProto.FLOAT, dims=[ROWS, WIDTH], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": data.name, "offset": "0", "length": str(nbytes)}.items():
        entry = table.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["emb"], axis=0, name="gather"),
         helper.make_node("ReduceSum", ["emb", "axes"], ["out"], keepdims=0, name="sum")],
        "big", [helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, WIDTH])],
        [table, numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = folder / "big.onnx"
    onnx.save_model(model, str(path))
    return path


@pytest.mark.slow
def test_model_over_2gb_through_external_data(cli, tmp_path: Path) -> None:
    if shutil.disk_usage(tmp_path).free < 6 * 2**30:
        pytest.skip("needs ~5 GB of free disk for two copies of a 2.15 GB initializer")
    source = big_gather_model(tmp_path / "src")
    out = tmp_path / "out"
    try:
        result = cli("convert", source, "-t", "onnx", "-o", out, "--json", timeout=300)
        assert result.code == 0, result.stderr[-3000:]
        manifest = json.loads(result.stdout)
        target = manifest["targets"][0]
        arts = {a["path"]: a for a in target["artifacts"]}
        assert set(arts) == {"onnx/big.onnx", "onnx/big.onnx.data"}
        assert arts["onnx/big.onnx.data"]["role"] == "companion" and arts["onnx/big.onnx.data"]["bytes"] > 2**31
        assert (out / "onnx" / "big.onnx").stat().st_size < 10_000  # the graph alone: weights stayed external
        assert target["validation"]["passed"] and target["validation"]["metrics"]["snr_db"] >= 60
        assert any("larger than 2 GB" in n for n in target["notes"]["normalise"]["notes"])

        import onnxruntime as ort

        session = ort.InferenceSession(str(out / "onnx" / "big.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {"idx": np.array([[0, 1, 2, 63]], np.int64)})[0]
        rows = np.arange(64 * WIDTH, dtype=np.float32).reshape(64, WIDTH)
        np.testing.assert_allclose(got, rows[[0, 1, 2, 63]].sum(axis=0, keepdims=True))
    finally:
        shutil.rmtree(out, ignore_errors=True)  # 2 GB: not left for pytest's tmp retention
        shutil.rmtree(tmp_path / "src", ignore_errors=True)
