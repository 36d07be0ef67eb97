"""ONNX → QNN HTP context binary (EPContext model) for a Snapdragon part, with the placement report, validated on the
HTP simulator of onnxruntime-qnn. Real trained models (digits CNN, transformer block), real compiler, no device."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest

from edgeconv.targets.qnn._ep import htp_options, qnn_session
from edgeconv.targets.qnn._placement import check_placement
from edgeconv.targets.qnn.onnx_to_qnn import placement_gate
from edgeconv.errors import UnsupportedError
from edgeconv.formats import Artifact, Format, detect
from edgeconv.normalise import normalise
from edgeconv.runtimes.ort import cpu_session
from edgeconv.targets.qnn.socs import SOCS, resolve_soc
from model_zoo import accuracy, digits_split
from tests.conftest import cached
from tests.targets.qnn import hexagon_models
from tests.targets.qnn.hexagon_models import float_nodes, rmsnorm_digits_classifier, save_calib, shape_subgraph_model
from tests.helpers import convert, model_path, target_record

pytest.importorskip("onnxruntime_qnn")
HEXAGON = ["hexagon-int8", "hexagon-int16", "hexagon-fp16"]


def files(manifest: dict[str, Any], out: Path, target: str) -> dict[str, Path]:
    return {Path(a["path"]).name: out / a["path"] for a in target_record(manifest, target)["artifacts"]}


def htp_logits(ctx_model: Path, x: np.ndarray) -> np.ndarray:
    session = qnn_session(ctx_model, htp_options(None), {"session.disable_cpu_ep_fallback": 1})
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


@pytest.fixture(scope="module")
def digits_hexagon(digits, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("hexagon-digits") / "out"
    return convert(digits.pt2, HEXAGON, out, calib=str(digits.calib), eval=str(digits.eval)), out


@pytest.mark.slow
def test_digits_cnn_every_profile_fully_on_htp(digits_hexagon, digits) -> None:
    manifest, out = digits_hexagon
    min_snr = {"hexagon-int8": 30.0, "hexagon-int16": 40.0, "hexagon-fp16": 55.0}
    for target in HEXAGON:
        record = target_record(manifest, target)
        assert [s["name"] for s in record["steps"]] == ["torch_to_onnx", "normalise + fuse gelu, layernorm + decompose reciprocal, batchnorm, stft",
                                                        "quantize " + record["profile"]["precision"], "onnx_to_qnn",
                                                        "onnx_to_dlc"]
        placement = record["notes"]["hexagon"]["placement"]
        assert placement["on_htp"] == placement["total"] >= 5 and placement["refused"] == [] and placement["partitions"] == 1
        assert record["notes"]["hexagon"]["soc"] == {"name": "Snapdragon 8 Gen 3", "chip": "SM8650", "soc_model": 57,
                                                     "htp_arch": 75, "fp16": True}
        validation = record["validation"]
        assert validation["runtime"] == "qnn_htp" and validation["kind"] == "numerical" and validation["passed"]
        assert validation["metrics"]["snr_db"] > min_snr[target], (target, validation["metrics"])
        assert validation["metrics"]["top1_agreement"] == 1.0
        stem = "digits_cnn"
        precision = record["profile"]["precision"]
        assert set(files(manifest, out, target)) == {f"{stem}_ctx.onnx", f"{stem}_ctx_qnn.bin", f"{stem}.{precision}.onnx",
                                                    f"{stem}.dlc"}
        ctx_model = onnx.load_model(str(out / target / f"{stem}_ctx.onnx"))
        assert [n.op_type for n in ctx_model.graph.node] == ["EPContext"]  # the whole graph is one HTP partition
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in ctx_model.graph.node[0].attribute}
        assert attrs["ep_cache_context"] == f"{stem}_ctx_qnn.bin".encode() and attrs["embed_mode"] == 0
        found = detect(out / target / f"{stem}_ctx.onnx")  # by content: ONNX whose nodes are QNN EPContext
        assert found.format == Format.QNN_CONTEXT and found.companions == (out / target / f"{stem}_ctx_qnn.bin",)
        binary = (out / target / f"{stem}_ctx_qnn.bin").read_bytes()
        assert b"soc_type=SM8650;arch=75" in binary  # the part reached the compiler
        assert record["notes"]["hexagon"]["context"]["reload_run"] == "ok"


@pytest.mark.slow
def test_digits_accuracy_on_the_simulator(digits_hexagon, digits) -> None:
    """Held-out digits: the compiled models, run on the HTP simulator, stay within 1 point of the float model."""
    manifest, out = digits_hexagon
    x, y = digits.split.x_test[:128], digits.split.y_test[:128]
    float_session = cpu_session(str(digits.onnx))
    float_acc = accuracy(np.concatenate([float_session.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))]), y)
    assert float_acc > 0.9
    for target in HEXAGON:
        acc = accuracy(htp_logits(model_path(manifest, out, target, "qnn-context"), x), y)
        assert abs(acc - float_acc) <= 0.01, (target, acc, float_acc)


@pytest.mark.slow
def test_simulator_agrees_with_the_compiled_qdq_graph(digits_hexagon, digits) -> None:
    """The shipped .int8.onnx is the graph that was compiled: ORT CPU on it and the HTP simulator on the binary agree."""
    manifest, out = digits_hexagon
    x = digits.split.x_test[:32]
    for target, min_snr in (("hexagon-int8", 30.0), ("hexagon-int16", 45.0)):
        precision = target_record(manifest, target)["profile"]["precision"]
        qdq = cpu_session(str(out / target / f"digits_cnn.{precision}.onnx"))
        cpu = np.concatenate([qdq.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))])
        htp = htp_logits(out / target / "digits_cnn_ctx.onnx", x)
        snr = 10 * np.log10(np.sum(cpu ** 2) / np.sum((cpu - htp) ** 2))
        assert snr > min_snr, (target, snr)
        assert (cpu.argmax(1) == htp.argmax(1)).mean() == 1.0


@pytest.mark.slow
def test_transformer_block_int8_and_int16_fully_on_htp(transformer: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    targets = ["hexagon-int8", "hexagon-int16"]
    manifest = convert(transformer / "transformer.pt2", targets, out, calib=str(transformer / "calib"),
                       eval=str(transformer / "eval"))
    for target, min_snr in zip(targets, (25.0, 35.0)):
        record = target_record(manifest, target)
        notes = record["notes"]["hexagon"]
        assert notes["placement"]["refused"] == [] and notes["placement"]["on_htp"] == notes["placement"]["total"] > 50
        # ORT's quantizer gives LayerNorm an int8 gamma, which the HTP refuses: both LayerNorms were legalised
        assert len(notes["legalised"]["requantized_uint8"]) == 2
        assert record["validation"]["metrics"]["snr_db"] > min_snr, (target, record["validation"]["metrics"])
        assert record["validation"]["metrics"]["cosine"] > 0.999
        ctx_model = onnx.load_model(str(model_path(manifest, out, target, "qnn-context")))
        assert {n.op_type for n in ctx_model.graph.node} == {"EPContext"}


def test_opset17_erf_gelu_onnx_converts_and_validates_on_htp(gelu_transformer: Path, tmp_path: Path) -> None:
    """A real opset-17 export writes nn.GELU as Div → Erf → Add → Mul → Mul, and the HTP refuses Erf in a QDQ graph:
    the hexagon profiles fuse it into one Gelu (normalise.fuse), quantize around it (quantize.options.op_types = "all")
    and the block validates on the simulator."""
    source = gelu_transformer / "gelu_block_opset17.onnx"
    assert "Erf" in {n.op_type for n in onnx.load_model(str(source)).graph.node}
    out = tmp_path / "out"
    targets = {"hexagon-int8": (25.0, 0.998, 0.95), "hexagon-int16": (35.0, 0.9999, 0.99)}  # SNR dB, cosine, top-1
    manifest = convert(source, list(targets), out, calib=str(gelu_transformer / "calib"), eval=str(gelu_transformer / "eval"))
    eval_x = np.concatenate([np.load(p) for p in sorted((gelu_transformer / "eval").glob("*.npy"))])
    float_session = cpu_session(str(source))
    reference = np.stack([float_session.run(None, {"tokens": x[None]})[0] for x in eval_x])  # [16 samples, 16, 8]
    normalised = target_record(manifest, "hexagon-int8")["notes"]["normalise"]  # hexagon-int16 reuses that step
    assert normalised["fused"] == {"gelu": 1}  # its LayerNorms are LayerNormalization ops already at opset 17
    assert "fused 1 Erf-GELU into Gelu (onnxruntime FusionGelu)" in normalised["notes"]
    for target, (min_snr, min_cosine, min_top1) in targets.items():
        record = target_record(manifest, target)
        assert record["steps"][0]["name"] == "normalise + fuse gelu, layernorm + decompose reciprocal, batchnorm, stft"
        placement = record["notes"]["hexagon"]["placement"]
        assert placement["refused"] == [] and placement["on_htp"] == placement["total"] > 100 and placement["partitions"] == 1
        compiled_path = out / target / f"gelu_block_opset17.{record['profile']['precision']}.onnx"
        compiled = onnx.load_model(str(compiled_path))
        gelu = [n for n in compiled.graph.node if n.op_type == "Gelu"]
        assert len(gelu) == 1 and gelu[0].domain == "" and "Erf" not in {n.op_type for n in compiled.graph.node}
        producers = {o: n.op_type for n in compiled.graph.node for o in n.output}  # quantized around, not a float island:
        assert producers[gelu[0].input[0]] == "DequantizeLinear"
        assert {n.op_type for n in compiled.graph.node if gelu[0].output[0] in n.input} == {"QuantizeLinear"}
        assert check_placement(compiled_path, resolve_soc("7 Gen 3")).complete  # so a part without HTP fp16 takes it
        metrics = record["validation"]["metrics"]
        assert record["validation"]["runtime"] == "qnn_htp" and record["validation"]["passed"]
        assert metrics["snr_db"] > min_snr and metrics["cosine"] > min_cosine and metrics["top1_agreement"] >= min_top1, (
            target, metrics)
        # independently: the context binary on the HTP simulator against ORT CPU on the original Erf graph
        htp = htp_logits(model_path(manifest, out, target, "qnn-context"), eval_x).reshape(reference.shape)
        snr = 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - htp) ** 2))
        top1 = (htp.argmax(-1) == reference.argmax(-1)).mean()
        assert snr > min_snr and top1 >= min_top1, (target, snr, top1)
        assert record["artifacts"][-1]["path"] == f"{target}/gelu_block_opset17.dlc"


def test_opset14_layernorm_chain_fused_for_a_part_without_fp16(gelu_transformer: Path, tmp_path: Path) -> None:
    """Below opset 17, LayerNorm is exported as ReduceMean → Sub → Pow → ReduceMean → Add → Sqrt → Div → Mul → Add,
    whose Sub/Pow/Sqrt/Div ORT's quantizer leaves float: the HTP of a 7-series part (no fp16) refuses them. Fused into
    LayerNormalization, the whole block is a16w8 / a8w8 and runs on it."""
    out = tmp_path / "out"
    manifest = convert(gelu_transformer / "gelu_block_opset14.onnx", ["hexagon-int8"], out, soc="7 Gen 3",
                       calib=str(gelu_transformer / "calib"), eval=str(gelu_transformer / "eval"))
    record = target_record(manifest, "hexagon-int8")
    assert record["notes"]["normalise"]["fused"] == {"gelu": 1, "layernorm": 2}
    placement = record["notes"]["hexagon"]["placement"]
    assert placement["refused"] == [] and placement["on_htp"] == placement["total"] and "SM7550" in placement["soc"]
    ops = {n.op_type for n in onnx.load_model(str(out / "hexagon-int8" / "gelu_block_opset14.int8.onnx")).graph.node}
    assert {"Gelu", "LayerNormalization"} <= ops and not {"Erf", "ReduceMean", "Pow", "Sqrt"} & ops
    metrics = record["validation"]["metrics"]
    assert metrics["snr_db"] > 25.0 and metrics["cosine"] > 0.998 and metrics["top1_agreement"] >= 0.95, metrics


NORM_CHAIN_OPS = {"Pow", "ReduceMean", "Sqrt", "Div", "Sub", "Tanh"}  # not in ONNX Runtime's quantizer registry


@pytest.fixture(scope="module")
def rmsnorm_digits() -> Path:
    """hexagon_models.rmsnorm_digits_classifier, trained once (on-disk cache keyed by hexagon_models.py)."""
    key = hashlib.sha256(Path(hexagon_models.__file__).read_bytes()).hexdigest()[:10]
    return cached(f"rmsnorm-digits-{key}", rmsnorm_digits_classifier)


def test_unfused_norm_chain_quantized_whole_for_a_part_without_fp16(rmsnorm_digits: Path, tmp_path: Path) -> None:
    """An RMSNorm written out (Pow, ReduceMean, Add, Sqrt, Div), a Sub and a Tanh: ONNX Runtime's quantizer registry
    lacks six of them, and quantizing only what it knows left them float, which a 7 Gen 3 (no HTP fp16) refuses.
    With `op_types = "all"` (the hexagon profiles, as ORT's own QNN config) every op is a8w8 / a16w8, the whole graph
    runs on that part and matches the float model on held-out digits."""
    source = rmsnorm_digits / "rmsnorm_digits.onnx"
    data = {"calib": str(rmsnorm_digits / "calib"), "eval": str(rmsnorm_digits / "eval")}
    assert NORM_CHAIN_OPS <= {n.op_type for n in onnx.load_model(str(source)).graph.node}
    with pytest.raises(UnsupportedError) as before:  # ORT's registry only: what the profiles quantized before
        convert(source, ["hexagon-int8"], tmp_path / "before", soc="7 Gen 3", overrides=("quantize.options.op_types=[]",),
                **data)
    assert before.value.exit_code == 4
    assert {r["op_type"] for r in before.value.details["placement"]["refused"]} == NORM_CHAIN_OPS
    out = tmp_path / "out"
    targets = {"hexagon-int8": (38.0, 0.9998), "hexagon-int16": (43.0, 0.99995)}  # measured 40.8 / 45.8 dB
    manifest = convert(source, list(targets), out, soc="7 Gen 3", **data)
    split = digits_split()
    x, y = split.x_test[:128], split.y_test[:128]  # the eval/ images
    float_session = cpu_session(str(source))
    float_acc = accuracy(np.concatenate([float_session.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))]), y)
    assert float_acc > 0.95
    for target, (min_snr, min_cosine) in targets.items():
        record = target_record(manifest, target)
        assert record["notes"]["quantize"]["settings"]["op_types"] == "all"
        assert record["notes"]["quantize"]["fallback"]["nodes"] == []
        placement = record["notes"]["hexagon"]["placement"]
        assert placement["refused"] == [] and placement["on_htp"] == placement["total"] and placement["partitions"] == 1
        assert "SM7550" in placement["soc"]
        compiled = out / target / f"rmsnorm_digits.{record['profile']['precision']}.onnx"
        assert NORM_CHAIN_OPS <= {n.op_type for n in onnx.load_model(str(compiled)).graph.node}
        assert float_nodes(compiled) == []  # every op reads DequantizeLinear and writes QuantizeLinear
        metrics = record["validation"]["metrics"]
        assert record["validation"]["runtime"] == "qnn_htp" and record["validation"]["passed"]
        assert metrics["snr_db"] > min_snr and metrics["cosine"] > min_cosine and metrics["top1_agreement"] == 1.0, (
            target, metrics)
        acc = accuracy(htp_logits(model_path(manifest, out, target, "qnn-context"), x), y)
        assert abs(acc - float_acc) <= 0.01, (target, acc, float_acc)


@pytest.fixture(scope="module")
def reciprocal_digits() -> Path:
    key = hashlib.sha256(Path(hexagon_models.__file__).read_bytes()).hexdigest()[:10]
    return cached(f"rmsnorm-reciprocal-digits-{key}", lambda f: rmsnorm_digits_classifier(f, reciprocal=True))


def test_quantized_reciprocal_computed_right_on_the_htp(reciprocal_digits: Path, tmp_path: Path) -> None:
    """A norm written x * Reciprocal(Sqrt(mean(x^2) + eps)), as tf2onnx writes Keras's LayerNormalization: onnxruntime-qnn
    hands a quantized Reciprocal's numerator to the HTP as 0 (passes/reciprocal_div.py), so the model came out as
    noise on the simulator while the same QDQ model is right on ONNX Runtime. The hexagon profiles write it as a Div
    by a constant 1, and the HTP then agrees with the float model."""
    source = reciprocal_digits / "rmsnorm_reciprocal_digits.onnx"
    assert "Reciprocal" in {n.op_type for n in onnx.load_model(str(source)).graph.node}
    data = {"calib": str(reciprocal_digits / "calib"), "eval": str(reciprocal_digits / "eval")}
    with pytest.raises(Exception) as before:  # the Reciprocal as exported: the accuracy gate catches it
        convert(source, ["hexagon-int8"], tmp_path / "before", overrides=("normalise.decompose=[]",), **data)
    assert getattr(before.value, "exit_code", None) == 5, before.value
    assert before.value.details["validation"]["metrics"]["snr_db"] < 10.0, before.value.details["validation"]
    out = tmp_path / "out"
    manifest = convert(source, ["hexagon-int8", "hexagon-int16"], out, **data)
    for target, min_snr in (("hexagon-int8", 30.0), ("hexagon-int16", 35.0)):
        record = target_record(manifest, target)
        assert any(n.startswith("reciprocal decomposed: 1") for n in record["notes"]["normalise"]["notes"])
        compiled = out / target / f"rmsnorm_reciprocal_digits.{record['profile']['precision']}.onnx"
        assert "Reciprocal" not in {n.op_type for n in onnx.load_model(str(compiled)).graph.node}
        metrics = record["validation"]["metrics"]
        assert record["validation"]["runtime"] == "qnn_htp" and record["validation"]["passed"]
        assert metrics["snr_db"] > min_snr and metrics["top1_agreement"] == 1.0, (target, metrics)


def test_quantized_batchnorm_computed_right_on_the_htp(tmp_path: Path) -> None:
    """A BatchNormalization after a Log (the keyword spotter's BatchNorm1d on log-mel features: no Conv to fold it
    into), with the same statistics on every channel, came out wrong on the HTP simulator, while the same QDQ model is
    right on ONNX Runtime. The hexagon profiles write it as Mul + Add per channel (passes/batchnorm_affine.py)."""
    source = hexagon_models.log_batchnorm_model(tmp_path / "log_bn.onnx")
    data = {split: str(save_calib(tmp_path / split, (1, 16, 20), n, seed, low=0.05, high=4.0))
            for split, n, seed in (("calib", 32, 2), ("eval", 16, 3))}
    relaxed = ("validate.gate.min_snr_db=-100", "validate.gate.min_cosine=-1", "validate.gate.min_top1_agreement=0")
    before = convert(source, ["hexagon-int8"], tmp_path / "before", overrides=("normalise.decompose=[]", *relaxed),
                     max_fallback=0, **data)
    assert "BatchNormalization" in {n.op_type for n in onnx.load_model(str(tmp_path / "before" / "hexagon-int8" / "log_bn.int8.onnx")).graph.node}
    assert target_record(before, "hexagon-int8")["validation"]["metrics"]["snr_db"] < 10.0
    after = convert(source, ["hexagon-int8"], tmp_path / "after", max_fallback=0, **data)
    record = target_record(after, "hexagon-int8")
    assert any(n.startswith("batchnorm decomposed: 1") for n in record["notes"]["normalise"]["notes"])
    assert record["validation"]["passed"] and record["validation"]["metrics"]["snr_db"] > 30.0, record["validation"]


def test_an_stft_front_end_builds_on_the_htp(tmp_path: Path) -> None:
    """An ONNX STFT (torch.stft's export) is taken by the QNN EP and then the HTP backend cannot build the graph
    (exit 4, QNN_COMMON_ERROR_MEM_ALLOC). The hexagon profiles write it as a strided Conv over the windowed DFT basis
    (passes/stft_conv.py): the front end builds and matches ONNX Runtime's STFT."""
    source = hexagon_models.stft_frontend_model(tmp_path / "stft.onnx")
    data = {split: str(save_calib(tmp_path / split, (1, 4000), n, seed, low=-1.0, high=1.0))
            for split, n, seed in (("calib", 16, 2), ("eval", 8, 3))}
    with pytest.raises(UnsupportedError, match="QNN_COMMON_ERROR_MEM_ALLOC"):
        convert(source, ["hexagon-int16"], tmp_path / "before", overrides=('normalise.decompose=["batchnorm"]',), **data)
    record = target_record(convert(source, ["hexagon-int16"], tmp_path / "after", **data), "hexagon-int16")
    assert "stft decomposed: 1" in record["notes"]["normalise"]["notes"]
    assert record["validation"]["passed"] and record["validation"]["metrics"]["snr_db"] > 30.0, record["validation"]


def test_int16_fallback_runs_on_a_part_without_fp16(rmsnorm_digits: Path, tmp_path: Path) -> None:
    """The accuracy fallback is the safety net of an all-a8w8 graph: asked for more than a8w8 gives (a 42 dB gate; about
    40.8 dB without fallback), it gives the costliest tensor 16-bit activations. The nodes around that tensor then mix
    8 and 16 bits, which a part without HTP fp16 refuses; legalisation makes them 16-bit throughout (Converts at the
    edges, bias rescaled), so the model runs whole on a 7 Gen 3 and passes the gate on the simulator."""
    out = tmp_path / "out"
    manifest = convert(rmsnorm_digits / "rmsnorm_digits.onnx", ["hexagon-int8"], out, soc="7 Gen 3",
                       calib=str(rmsnorm_digits / "calib"), eval=str(rmsnorm_digits / "eval"),
                       overrides=("validate.gate.min_snr_db=42",))
    record = target_record(manifest, "hexagon-int8")
    fallback = record["notes"]["quantize"]["fallback"]
    assert fallback["gate_passed_before"] is False and fallback["before"]["snr_db"] < 42 and fallback["nodes"]
    assert fallback["gate_passed_after"] is True
    notes = record["notes"]["hexagon"]
    assert notes["legalised"]["widened_to_16_bits"]  # the fallback tensor's producer (and consumers)
    assert notes["placement"]["refused"] == [] and notes["placement"]["on_htp"] == notes["placement"]["total"]
    metrics = record["validation"]["metrics"]
    assert record["validation"]["passed"] and metrics["snr_db"] > 42 and metrics["top1_agreement"] == 1.0, metrics
    assert float_nodes(out / "hexagon-int8" / "rmsnorm_digits.int8.onnx") == []
    assert record["artifacts"][-1]["path"] == "hexagon-int8/rmsnorm_digits.dlc"  # the DLC takes the widened graph too


@pytest.fixture(scope="module")
def shape_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shape_subgraph_model(tmp_path_factory.mktemp("shape-subgraph") / "shape_subgraph.onnx")


def test_shape_subgraph_refused_until_folded(shape_model: Path, tmp_path: Path) -> None:
    soc = resolve_soc("8 Gen 3")
    raw = check_placement(shape_model, soc)
    refused = {r.node: r for r in raw.refused}
    assert not raw.complete and raw.on_htp < raw.total == 13
    assert {"shape_batch", "range", "flatten", "fc"} <= set(refused)
    assert "must be constant initializers" in refused["range"].reason  # the HTP's own reason is reported
    ctx = SimpleNamespace(options=SimpleNamespace(allow_cpu_fallback=False), warn=lambda m: None)
    with pytest.raises(UnsupportedError) as err:
        placement_gate(raw, ctx, "hexagon-int8")
    assert err.value.exit_code == 4 and "range (Range)" in err.value.message and "--allow-cpu-fallback" in err.value.hint
    warnings: list[str] = []
    placement_gate(raw, SimpleNamespace(options=SimpleNamespace(allow_cpu_fallback=True), warn=warnings.append), "t")
    assert warnings and "not on the HTP" in warnings[0]

    folded, _ = normalise(Artifact(shape_model, Format.ONNX), tmp_path / "folded.onnx", 17, {"x": (1, 1, 8, 8)})
    after = check_placement(folded.path, soc)
    assert after.complete and after.partitions == 1, after.refused
    assert not {"Shape", "Range"} & {n.op_type for n in onnx.load_model(str(folded.path)).graph.node}


@pytest.mark.slow
def test_shape_subgraph_model_converts_fully_placed(shape_model: Path, tmp_path: Path) -> None:
    calib = save_calib(tmp_path / "calib", (1, 1, 8, 8))
    out = tmp_path / "out"
    manifest = convert(shape_model, ["hexagon-int8"], out, calib=str(calib))
    record = target_record(manifest, "hexagon-int8")
    placement = record["notes"]["hexagon"]["placement"]
    assert placement["percent"] == 100.0 and placement["partitions"] == 1
    assert record["validation"]["metrics"]["snr_db"] > 25


def test_soc_table_matches_what_the_compiler_builds(tmp_path: Path) -> None:
    """Each part's (soc_model, htp_arch) compiles, and the binary names that chip and arch."""
    from edgeconv.targets.qnn.onnx_to_qnn import check_context

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = shape_subgraph_model(tmp_path / "m.onnx")
    folded, _ = normalise(Artifact(model, Format.ONNX), tmp_path / "folded.onnx", 17, {"x": (1, 1, 8, 8)})
    samples = iter([{"x": np.random.default_rng(i).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)} for i in range(8)])
    reader = SimpleNamespace(get_next=lambda: next(samples, None), rewind=lambda: None)
    quantize_static(str(folded.path), str(tmp_path / "q.onnx"), reader, quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    for soc in SOCS:  # int8: the 7-series have no fp16
        folder = tmp_path / soc.chip
        folder.mkdir()
        ctx_model = folder / "m_ctx.onnx"
        session = qnn_session(tmp_path / "q.onnx", htp_options(soc), {"ep.context_enable": 1, "ep.context_file_path": str(ctx_model),
                                                               "ep.context_embed_mode": 0})
        del session
        binary = (folder / "m_ctx_qnn.bin").read_bytes()
        assert f"soc_type={soc.chip};".encode() in binary, soc
        assert f"min_arch={soc.htp_arch};".encode() in binary, soc
        assert check_context(ctx_model, allow_cpu=False)["reload_run"] == "ok"


@pytest.mark.slow
def test_gelu_transformer_fully_on_htp(tmp_path: Path) -> None:
    """nn.GELU: at opset 17 the exporter writes the Erf decomposition, which the HTP refuses inside a QDQ graph; the
    hexagon profiles export at opset 21, where it is one Gelu op the HTP takes."""
    import torch

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, activation="gelu").eval()
    tokens = torch.randn(1, 16, 32)
    torch.export.save(torch.export.export(layer, (tokens,)), str(tmp_path / "gelu_block.pt2"))
    calib = save_calib(tmp_path / "calib", (1, 16, 32))
    out = tmp_path / "out"
    manifest = convert(tmp_path / "gelu_block.pt2", ["hexagon-int8"], out, calib=str(calib))
    record = target_record(manifest, "hexagon-int8")
    assert record["notes"]["hexagon"]["placement"]["percent"] == 100.0
    compiled = onnx.load_model(str(out / "hexagon-int8" / "gelu_block.int8.onnx"))
    ops = {n.op_type for n in compiled.graph.node}
    assert "Gelu" in ops and "Erf" not in ops
    assert record["validation"]["metrics"]["snr_db"] > 20
