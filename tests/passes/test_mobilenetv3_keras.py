"""On a real architecture: keras.applications MobileNetV3Small (the corpus' keras_mobilenetv3small) exported by
edgeconv's tf2onnx route writes every hard-swish as Add → Clip → Mul(1/6) → Mul and every SE gate as
Add → Clip → Mul(1/6) (28 Add → Clip in all), and leaves the BatchNorm scale after each depthwise Conv as a per-channel
Mul behind the Conv's Transpose (tf2onnx's transpose optimizer gives up on this graph, so it folds none of them).
After normalisation none is left (the Conv-affine pass or the optimiser before it folds them, by the model's
statistics), and full int8 (cpu-int8, no fallback) holds: 19.9 dB, top-1 1.0 on the corpus model trained on digits
(bench/README.md, "graph passes", has the with / without comparison)."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import onnx
import pytest

from tests.corpus import registry

pytestmark = [pytest.mark.slow]
ROOT = Path(os.environ.get("EDGECONV_CORPUS_ROOT") or Path(tempfile.gettempdir()) / "edgeconv-corpus")
NAME = "keras_mobilenetv3small"
MIN_SNR_DB = 16.0  # full int8, no fallback: 19.9 dB on the trained corpus model (10.5 dB when it had random weights)


def spelt_out(model: onnx.ModelProto) -> dict[str, int]:
    """Hard-swish gates still written out (Clip fed by an Add) and constant affine ops right after a Conv (or after
    the Conv's one Transpose) whose output nothing else reads (an SE gate's `+ 3` counts here too)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    readers = Counter(i for n in model.graph.node for i in n.input)
    inits = {t.name for t in model.graph.initializer}
    gates = sum(n.op_type == "Clip" and getattr(producer.get(n.input[0]), "op_type", "") == "Add" for n in model.graph.node)
    affine = 0
    for node in model.graph.node:
        if node.op_type in ("Mul", "Add", "Div", "Sub") and any(i in inits for i in node.input):
            src = producer.get(next((i for i in node.input if i not in inits), ""))
            if src is not None and src.op_type == "Transpose" and readers[src.output[0]] == 1:
                src = producer.get(src.input[0])
            affine += src is not None and src.op_type == "Conv" and readers[src.output[0]] == 1
    return {"gates": gates, "affine": affine}


def test_keras_mobilenetv3small_patterns_gone_and_int8_holds(cli, tmp_path: Path) -> None:
    errors = registry.ensure(ROOT, [NAME])
    assert not errors, errors
    out = tmp_path / "out"
    result = cli("convert", *registry.cli_args(ROOT, NAME), "-t", "cpu-int8", "-o", out, "--json", "--keep-work",
                 "--max-fallback", "0", "--set", "validate.gate.min_top1_agreement=0", "--set",
                 "validate.gate.min_snr_db=0", "--set", "validate.gate.min_cosine=0")
    assert result.code == 0, result.stdout[-3000:]
    exported = onnx.load(str(next(out.glob(".work/*keras_to_onnx*/model.onnx"))))
    normalised = onnx.load(str(next(out.glob(".work/*normalise*/model.onnx"))))
    exported_counts = spelt_out(exported)  # the affine count follows the corpus model's BatchNorm statistics
    assert exported_counts["gates"] == 28 and exported_counts["affine"] >= 20, exported_counts
    assert spelt_out(normalised) == {"gates": 0, "affine": 0}
    ops = Counter(n.op_type for n in normalised.graph.node)
    assert ops["HardSwish"] == 19 and ops["HardSigmoid"] == 9, ops
    target = json.loads(result.stdout)["targets"][0]
    notes = target["notes"]["normalise"]["notes"]
    assert "hard-swish / hard-sigmoid fused: 28" in notes, notes
    metrics = target["validation"]["metrics"]
    assert metrics["snr_db"] >= MIN_SNR_DB and metrics["top1_agreement"] >= 0.95, metrics
