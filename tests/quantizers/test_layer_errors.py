"""Per-layer comparison of quantized vs float activations: the ranking finds the layer that loses accuracy, and
`edgeconv inspect-accuracy` reports it as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeconv.formats import TensorSpec
from edgeconv.quantizers.calibration import open_samples
from edgeconv.quantizers.layer_errors import layer_errors
from edgeconv.quantizers.onnx_qdq import StaticSettings, quantize_file
from tests.quantizers.pitfall_models import outlier_cnn, save_uniform_samples


@pytest.fixture(scope="module")
def quantized_outlier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    root = tmp_path_factory.mktemp("layers")
    model = outlier_cnn(root / "outlier.onnx")
    calib = save_uniform_samples(root / "calib", 16, (1, 3, 16, 16), seed=4)
    samples = open_samples(str(calib), (TensorSpec("input", ("N", 3, 16, 16)),), 16)
    qdq, qop = root / "qdq.onnx", root / "qop.onnx"
    quantize_file(model, qdq, samples, StaticSettings(), cache_path=root / "cache.json")
    quantize_file(model, qop, samples, StaticSettings(format="qoperator"), cache_path=root / "cache.json")
    return model, calib, qdq, qop


def test_layer_errors_rank_the_crushed_layer(quantized_outlier) -> None:
    model, calib, qdq, _ = quantized_outlier
    feeds = list(open_samples(str(calib), (TensorSpec("input", ("N", 3, 16, 16)),), 8))
    rows = layer_errors(model, qdq, feeds)
    by_tensor = {r.tensor: r for r in rows}
    assert set(by_tensor) == {"conv_in_relu", "conv_a_relu", "conv_b_relu", "features"}
    assert by_tensor["conv_in_relu"].snr_db > 30  # the clean first layer
    # conv_a's output looks fine as a whole (the outlier channel dominates) but its small channels are gone
    assert by_tensor["conv_a_relu"].snr_db > 30 and by_tensor["conv_a_relu"].worst_channel_snr_db < 5
    assert by_tensor["conv_b_relu"].snr_db < 5 and all(r.quantized for r in rows)
    assert rows[0].worst_channel_snr_db <= rows[-1].worst_channel_snr_db  # worst first
    top2 = sorted(rows, key=lambda r: -r.cost_db)[:2]
    assert {r.tensor for r in top2} == {"conv_a_relu", "conv_b_relu"}


def test_inspect_accuracy_cli(cli, quantized_outlier) -> None:
    model, calib, qdq, qop = quantized_outlier
    result = cli("inspect-accuracy", model, qdq, "--calib", calib, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outputs"]["snr_db"] < 5 and report["samples"]["count"] == 8
    assert report["layers"][0]["snr_db"] < 5 and {"node", "op_type", "tensor", "snr_db", "worst_channel_snr_db",
                                                  "cost_db"} <= set(report["layers"][0])
    table = cli("inspect-accuracy", model, qdq, "--calib", calib, "--sort", "drop")
    assert table.code == 0 and "conv_b_relu" in table.stdout and "SNR dB" in table.stdout
    from edgeconv.cli.inspect_accuracy import build_report
    from edgeconv.errors import InvalidInputError, UsageError

    with pytest.raises(InvalidInputError, match="QOperator"):  # exit 3: QOperator renames every tensor
        build_report(model, qop, str(calib), None, 4, [])
    with pytest.raises(UsageError, match="--calib"):  # exit 2: no samples
        build_report(model, qdq, None, None, 4, [])
