"""PyTorch → ExecuTorch .pte (fp32, and int8 by PT2E with XNNPACKQuantizer), lowered to XNNPACK and validated by
running the .pte with executorch.runtime: the digits CNN, a transformer block and a detector-shaped CNN, with numbers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import UnsupportedError, UsageError
from model_zoo import accuracy
from tests.targets.openvino.openvino_models import build_detector_pt2
from tests.helpers import convert, model_path, target_record

pytest.importorskip("executorch")
PROFILES = ["executorch-fp32", "executorch-int8"]


def pte_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import torch

    from edgeconv.targets.executorch.runtime import load_program

    method = load_program(str(path)).load_method("forward")
    return np.concatenate([method.execute([torch.from_numpy(x[i:i + 1].copy())])[0].numpy() for i in range(len(x))])


@pytest.mark.slow
def test_digits_fp32_and_int8(digits, tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = dict(calib=str(digits.calib), eval=str(digits.eval), input_shapes={"image": (1, 1, 8, 8)})
    manifest = convert(digits.pt2, PROFILES, out, **options)
    fp32, int8 = (target_record(manifest, p) for p in PROFILES)
    assert [s["name"] for s in int8["steps"]] == ["torch_to_executorch"]
    assert fp32["validation"]["metrics"]["snr_db"] > 100
    assert int8["validation"]["metrics"]["snr_db"] > 30 and int8["validation"]["metrics"]["top1_agreement"] >= 0.97
    sizes = {p: model_path(manifest, out, p).stat().st_size for p in PROFILES}
    assert sizes["executorch-int8"] < 0.45 * sizes["executorch-fp32"], sizes
    for record in (fp32, int8):  # XNNPACK takes every compute node of this CNN
        delegation = record["notes"]["executorch"]["delegation"]
        assert delegation["coverage"] == 1.0 and delegation["non_delegated_ops"] == {}, delegation
    assert int8["notes"]["executorch"]["pt2e"]["calibration_samples"] == 64
    x, y = digits.split.x_test, digits.split.y_test
    acc = {p: accuracy(pte_logits(model_path(manifest, out, p), x), y) for p in PROFILES}
    assert acc["executorch-fp32"] > 0.9 and acc["executorch-fp32"] - acc["executorch-int8"] <= 0.02, acc
    again = convert(digits.pt2, PROFILES[::-1], tmp_path / "again", **options)  # same bytes, other order
    for p in PROFILES:
        assert hashlib.sha256(model_path(manifest, out, p).read_bytes()).digest() == \
            hashlib.sha256(model_path(again, tmp_path / "again", p).read_bytes()).digest()


@pytest.mark.slow
def test_transformer_block_delegation(transformer: Path, tmp_path: Path) -> None:
    manifest = convert(transformer / "transformer.pt2", PROFILES, tmp_path / "out",
                       calib=str(transformer / "calib"), eval=str(transformer / "eval"))
    assert target_record(manifest, "executorch-fp32")["validation"]["metrics"]["snr_db"] > 100
    int8 = target_record(manifest, "executorch-int8")
    assert int8["validation"]["metrics"]["snr_db"] > 25 and int8["validation"]["metrics"]["cosine"] > 0.998
    delegation = int8["notes"]["executorch"]["delegation"]
    # attention's masking / layer norm stay on the portable kernels; the matmuls go to XNNPACK
    assert 0.5 < delegation["coverage"] < 1.0 and "aten_native_layer_norm_default" in delegation["non_delegated_ops"]


@pytest.mark.slow
def test_detector_two_heads(tmp_path: Path) -> None:
    pt2 = build_detector_pt2(tmp_path / "detector")
    manifest = convert(pt2, PROFILES, tmp_path / "out", calib=str(pt2.parent / "calib"), eval=str(pt2.parent / "eval"))
    for p in PROFILES:
        metrics = target_record(manifest, p)["validation"]["metrics"]
        assert len(metrics["outputs"]) == 2
    assert target_record(manifest, "executorch-int8")["validation"]["metrics"]["snr_db"] > 30


@pytest.mark.slow
def test_torchscript_is_refused_with_the_way_out(digits, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="TorchScript") as info:
        convert(digits.torchscript, ["executorch-fp32"], tmp_path / "out", input_shapes={"image": (1, 1, 8, 8)})
    assert "torch.export.save" in info.value.hint and info.value.exit_code == 4


def test_unknown_compiler_key_fails_while_planning(digits, tmp_path: Path) -> None:
    from edgeconv.context import ConvertOptions
    from edgeconv.formats import detect
    from edgeconv.pipeline import build_plan
    from edgeconv.targets import resolve

    profile = tmp_path / "mine.toml"
    profile.write_text('name = "mine"\nextends = "executorch-int8"\n[compiler]\nper_chanel = false\n')
    with pytest.raises(UsageError, match="per_chanel") as info:
        build_plan(detect(digits.pt2), [resolve(str(profile))], ConvertOptions(input_shapes={"image": (1, 1, 8, 8)}))
    assert "per_channel" in info.value.hint


@pytest.mark.slow
def test_integer_position_arithmetic_stays_integer(tmp_path: Path) -> None:
    """transformers' embeddings compute position indices as `arange(n) + offset` (int64). XNNPACK's
    transform_for_annotation made the scalar a float32 tensor and annotated the add, so the index op read floats and
    PT2E calibration failed ("tensors used as indices must be long": BERT-tiny at executorch-int8, exit 4). Integer
    ops stay unannotated and their scalars integer; the int8 program matches."""
    import torch
    from torch import nn

    class PositionalEncoder(nn.Module):  # token + position embeddings (positions as a gather), LayerNorm, Linear
        def __init__(self) -> None:
            super().__init__()
            self.tokens, self.positions = nn.Embedding(100, 32), nn.Embedding(40, 32)
            self.norm, self.head = nn.LayerNorm(32), nn.Linear(32, 10)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(input_ids.shape[1]) + 2  # an offset, as RoBERTa's padding_idx + 1
            table = self.positions.weight[positions]
            return self.head(self.norm(self.tokens(input_ids) + table))  # per token: no top-1 among near ties

    torch.manual_seed(0)
    path = tmp_path / "encoder.pt2"
    torch.export.save(torch.export.export(PositionalEncoder().eval(), (torch.randint(0, 100, (1, 16)),)), str(path))
    samples = tmp_path / "ids"
    samples.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        np.save(samples / f"{i:02d}.npy", rng.integers(0, 100, (1, 16)).astype(np.int64))
    manifest = convert(path, ["executorch-int8"], tmp_path / "out", calib=str(samples), eval=str(samples))
    record = target_record(manifest, "executorch-int8")
    assert record["validation"]["passed"] and record["validation"]["metrics"]["snr_db"] > 25, record["validation"]


@pytest.mark.slow
def test_prelu_after_linear_lowers(cli, tmp_path: Path) -> None:
    """The corpus MTCNN R-Net (trained on faces): a PReLU after its Linear (rank 2) made XNNPACK's layout pass fail
    ("ChannelsLastTaggedReshapePass", exit 4) for both profiles. The conv PReLUs stay delegated; the rank-2 one is
    decomposed (x > 0 ? x : w·x) onto the portable kernels, and both heads validate on the .pte."""
    import json
    import os
    import tempfile

    from tests.corpus import registry

    root = Path(os.environ.get("EDGECONV_CORPUS_ROOT") or Path(tempfile.gettempdir()) / "edgeconv-corpus")
    assert not (errors := registry.ensure(root, ["mtcnn_rnet"])), errors
    result = cli("convert", *registry.cli_args(root, "mtcnn_rnet"), *(a for p in PROFILES for a in ("-t", p)),
                 "-o", tmp_path / "out", "--json")
    assert result.code == 0, result.stdout[-3000:]
    records = {t["target"]: t for t in json.loads(result.stdout)["targets"]}
    for profile, min_snr in (("executorch-fp32", 100), ("executorch-int8", 30)):
        metrics = records[profile]["validation"]["metrics"]
        assert len(metrics["outputs"]) == 2 and metrics["top1_agreement"] == 1.0, metrics
        assert min(o["snr_db"] for o in metrics["outputs"]) > min_snr, metrics["outputs"]
        delegation = records[profile]["notes"]["executorch"]["delegation"]
        assert delegation["non_delegated_ops"] == {"aten_gt_scalar": 1, "aten_where_self": 1}, delegation
        assert delegation["coverage"] > 0.85, delegation
