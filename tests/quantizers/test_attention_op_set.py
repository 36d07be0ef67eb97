"""quantizers/attention_op_set: on a graph with attention, static QDQ quantizes ONNX Runtime's default op set or the
compute ops only, whichever measures better. Found on the corpus BERT-tiny (cpu-int8 34.8 dB with every Add /
LayerNorm / Softmax quantized, 43.0 dB with the compute ops only, which NNCF's transformer preset does too); a BERT
of the same shape (transformers' BertModel from a config, int64 ids + attention mask) is the regression model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgeconv.quantizers import attention_op_set as aos  # noqa: E402
from edgeconv.quantizers.onnx_qdq import StaticSettings  # noqa: E402
from tests.corpus import data  # noqa: E402
from tests.corpus.torch_models import BertClassifier  # noqa: E402


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    model = BertClassifier().eval()
    ids, mask = data.tokens(48, 32, seed=5)
    path = root / "bert.onnx"
    torch.onnx.export(model, (torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1])), str(path), dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=17)
    calib = data.save_npz(root / "calib", input_ids=ids[:32], attention_mask=mask[:32])
    evals = data.save_npz(root / "eval", input_ids=ids[32:], attention_mask=mask[32:])
    return path, calib, evals


def test_attention_is_found_in_a_bert_and_not_in_a_cnn_with_a_softmax_head(bert, tmp_path: Path) -> None:
    assert aos.has_attention(bert[0])

    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 36, 4),
                              torch.nn.Softmax(-1)).eval()
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(cnn, (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False, opset_version=17)
    assert not aos.has_attention(path)  # a MatMul before the Softmax, none after it


def test_only_the_default_op_set_is_second_guessed() -> None:
    plain = StaticSettings()
    assert aos.applies(plain, "measure") and aos.applies(plain, "compute")
    assert not aos.applies(plain, "default")
    for named in (replace(plain, op_types=("Conv",)), replace(plain, all_op_types=True),
                  replace(plain, extra_op_types=("Gelu",)), replace(plain, placement="tensorrt")):
        assert not aos.applies(named, "measure")
    assert aos.compute_only(plain).op_types == aos.COMPUTE_OP_TYPES


def _convert(cli, bert, out: Path, *extra: str) -> tuple[dict, dict]:
    path, calib, evals = bert
    res = cli("convert", path, "-t", "cpu-int8", "--calib", calib, "--eval", evals, "-o", out, "--json",
              "--set", "quantize.options.bias_correction=off", *extra)  # the op set's effect alone
    assert res.code == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rec = json.loads((out / "manifest.json").read_text())["targets"][0]
    return rec["validation"]["metrics"], rec["notes"]["quantize"]


@pytest.mark.slow
def test_bert_keeps_the_op_set_that_measures_better(cli, bert, tmp_path: Path) -> None:  # ~30 s
    metrics, notes = _convert(cli, bert, tmp_path / "measure")
    chosen = notes["attention_op_set"]
    assert chosen["chosen"] == "compute", chosen
    measured = chosen["measured"]
    assert measured["compute"]["snr_db"] >= measured["default"]["snr_db"] + 3, measured
    assert metrics["snr_db"] >= measured["compute"]["snr_db"] - 0.5  # the validate stage measures what was chosen

    default_metrics, default_notes = _convert(cli, bert, tmp_path / "default",
                                              "--set", "quantize.options.attention_op_set=default")
    assert "attention_op_set" not in default_notes
    assert metrics["snr_db"] >= default_metrics["snr_db"] + 3, (metrics["snr_db"], default_metrics["snr_db"])
    assert np.isclose(default_metrics["snr_db"], measured["default"]["snr_db"], atol=1.0)
