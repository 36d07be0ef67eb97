"""PyTorch → Core ML (digits CNN, transformer block) for every Core ML profile: structure and compression asserted.

On Linux the Core ML runtime does not exist, so the manifest's validation is the structural check; the numbers asserted
here are what can be measured without it (weight SNR after compression, size vs float32, the PyTorch fake-quant proxy
for w8a8). tests/targets/coreml/test_runtime.py holds the macOS-only numerical test.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import convert, model_path, target_record

PROFILES = ["coreml-fp32", "ane-fp16", "coreml-w8", "coreml-palettize6", "coreml-palettize4"]
ON_MACOS = sys.platform == "darwin"


def coreml_notes(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return target_record(manifest, name)["notes"]["coreml"]


def check(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    validation = target_record(manifest, name)["validation"]
    assert validation["passed"] and validation["runtime"] == "coreml"
    assert validation["kind"] == ("numerical" if ON_MACOS else "structural")
    return validation["checks"]


def reference(checks: dict[str, Any]) -> dict[str, Any]:
    """Metrics of the NumPy MIL reference execution against the source (Linux)."""
    assert checks["mil_reference"]["ran"] and checks["mil_reference"]["passed"]
    return checks["mil_reference"]["metrics"]


@pytest.fixture(scope="module")
def digits_coreml(digits, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("digits_coreml") / "out"
    return convert(digits.pt2, PROFILES, out, calib=str(digits.calib), eval=str(digits.eval)), out


@pytest.mark.slow
def test_digits_every_profile(digits_coreml: tuple[dict[str, Any], Path]) -> None:
    manifest, out = digits_coreml
    for name in PROFILES:
        record = target_record(manifest, name)
        assert [s["name"] for s in record["steps"]] == ["torch_to_coreml"]  # direct, no ONNX
        assert record["notes"]["coreml_route"].startswith("torch.export")
        assert model_path(manifest, out, name, "coreml").is_dir()
    if ON_MACOS:
        return
    checks = {name: check(manifest, name) for name in PROFILES}
    for c in checks.values():
        assert c["inputs"][0]["name"] == "image" and c["inputs"][0]["shape"] == [1, 1, 8, 8]
        assert c["inputs"][0]["dtype"] == "FLOAT32" and c["outputs"][0]["dtype"] == "FLOAT32"  # fp32 I/O kept
        assert c["outputs"][0]["shape"] == [1, 10]
        assert {"conv", "linear", "max_pool"} <= set(c["ops"]) and c["ane_unsupported_ops"] == {}
    # weights: 2 convs + 1 linear (+ biases); conv1 (144 elements) is under the 256 threshold and stays float
    assert checks["coreml-fp32"]["weights"] == {"FLOAT32": 5}
    assert checks["ane-fp16"]["weights"] == {"FLOAT16": 5}
    assert checks["coreml-w8"]["weights"] == {"FLOAT16": 3, "linear/INT8": 2}
    assert checks["coreml-palettize6"]["weights"] == {"FLOAT16": 3, "palettized/UINT6": 2}
    assert checks["coreml-palettize4"]["weights"] == {"FLOAT16": 3, "palettized/UINT4": 2}
    assert checks["coreml-w8"]["ops"]["constexpr_affine_dequantize"] == 2  # iOS17 target
    assert checks["coreml-palettize4"]["ops"]["constexpr_lut_to_dense"] == 2
    assert checks["coreml-fp32"]["ane_notes"] and not checks["ane-fp16"]["ane_notes"]  # fp32 compute is not ANE
    assert coreml_notes(manifest, "ane-fp16")["compute_units"] == "CPU_AND_NE"
    ratio = {name: coreml_notes(manifest, name)["weights_vs_fp32"] for name in PROFILES}
    assert 0.99 < ratio["coreml-fp32"] < 1.05
    assert ratio["ane-fp16"] < 0.53 and ratio["coreml-w8"] < 0.30
    assert ratio["coreml-palettize6"] < 0.23 and ratio["coreml-palettize4"] < 0.16
    snr = {name: coreml_notes(manifest, name)["weight_snr_db"] for name in ("coreml-w8", "coreml-palettize6", "coreml-palettize4")}
    assert snr["coreml-w8"]["min"] > 40 and snr["coreml-palettize6"]["min"] > 30 and snr["coreml-palettize4"]["min"] > 18
    assert all(s["compressed"] == 2 for s in snr.values())
    # the programs executed (NumPy reference) against PyTorch on 16 held-out digits
    ref = {name: reference(checks[name]) for name in PROFILES}
    assert ref["coreml-fp32"]["snr_db"] > 100 and ref["ane-fp16"]["snr_db"] > 55 and ref["coreml-w8"]["snr_db"] > 40
    assert ref["coreml-palettize6"]["snr_db"] > 30 and ref["coreml-palettize4"]["snr_db"] > 20
    assert all(r["top1_agreement"] == 1.0 for r in ref.values())


@pytest.mark.slow
def test_digits_w8a8_calibrated_in_pytorch(digits, tmp_path: Path, monkeypatch) -> None:
    """An eager module (--model factory + --weights) gets int8 activations calibrated in PyTorch: works on Linux."""
    monkeypatch.chdir(Path(__file__).parents[2])  # `model_zoo:digits_architecture` imports from tests/
    from edgeconv.context import ConvertOptions
    from edgeconv.formats import TORCH_FACTORY, Artifact, Format
    from edgeconv.pipeline import build_plan, run
    from edgeconv.targets import resolve

    options = ConvertOptions(model_factory="model_zoo:digits_architecture", weights=digits.state_dict,
                             input_shapes={"image": (1, 1, 8, 8)}, calib=str(digits.calib), eval=str(digits.eval))
    plan = build_plan(Artifact(digits.state_dict, Format.TORCH, TORCH_FACTORY), [resolve("coreml-w8a8")], options)
    manifest = run(plan, tmp_path / "out").to_json()
    record = target_record(manifest, "coreml-w8a8")
    assert "LinearQuantizer" in record["notes"]["coreml_route"]
    proxy = record["notes"]["pytorch_fake_quant_proxy"]  # int8 activations vs float, on held-out digits
    assert proxy["snr_db"] > 30 and proxy["top1_agreement"] == 1.0
    if ON_MACOS:
        return
    checks = check(manifest, "coreml-w8a8")
    assert checks["ops"]["quantize"] >= 4 and checks["ops"]["dequantize"] >= 4  # activations: conv/linear inputs
    assert checks["weights"].get("linear/INT8") == 3 and "FLOAT32" not in checks["weights"]
    ref = reference(checks)  # int8 activations executed: the same as the PyTorch proxy, within fp16 rounding
    assert ref["snr_db"] > 30 and ref["top1_agreement"] == 1.0 and abs(ref["snr_db"] - proxy["snr_db"]) < 6


@pytest.mark.slow
def test_transformer_block(transformer: Path, tmp_path: Path) -> None:
    profiles = ["coreml-fp32", "ane-fp16", "coreml-w8", "coreml-palettize6", "coreml-palettize4"]
    manifest = convert(transformer / "transformer.pt2", profiles, tmp_path / "out", eval=str(transformer / "eval"))
    if ON_MACOS:
        return
    checks = {name: check(manifest, name) for name in profiles}
    for c in checks.values():
        assert c["inputs"][0]["name"] == "tokens" and c["inputs"][0]["shape"] == [1, 16, 32]
        assert c["outputs"][0]["shape"] == [1, 16, 8]
        assert {"layer_norm", "softmax", "matmul", "linear"} <= set(c["ops"])
    assert checks["ane-fp16"]["ane_unsupported_ops"] == {} and checks["ane-fp16"]["ane_notes"] == []
    # in_proj 96x32, out_proj 32x32, linear1 128x32, linear2 32x128 are compressed; the 8x32 head (256) is not
    assert checks["coreml-w8"]["weights"]["linear/INT8"] == 4
    assert checks["coreml-palettize6"]["weights"]["palettized/UINT6"] == 4
    assert checks["coreml-palettize4"]["weights"]["palettized/UINT4"] == 4
    snr = {n: coreml_notes(manifest, n)["weight_snr_db"]["min"] for n in ("coreml-w8", "coreml-palettize6", "coreml-palettize4")}
    assert snr["coreml-w8"] > 40 and snr["coreml-palettize6"] > 30 and snr["coreml-palettize4"] > 18
    assert coreml_notes(manifest, "coreml-palettize4")["weights_vs_fp32"] < 0.2
    ref = {n: reference(checks[n])["snr_db"] for n in profiles}
    assert ref["coreml-fp32"] > 100 and ref["ane-fp16"] > 45 and ref["coreml-w8"] > 35 and ref["coreml-palettize4"] > 15


@pytest.mark.slow
@pytest.mark.skipif(ON_MACOS, reason="on macOS activations are calibrated with the Core ML runtime instead")
def test_w8a8_calibrated_with_the_reference_executor(digits, transformer: Path, tmp_path: Path) -> None:
    """No Core ML runtime and no eager module: activation ranges come from the NumPy MIL reference executor, and
    coremltools' passes insert the quantize/dequantize pairs."""
    cases = [(digits.pt2, digits.calib, digits.eval, 35.0, 5), (transformer / "transformer.pt2", transformer / "calib",
                                                                   transformer / "eval", 25.0, 10)]
    for source, calib, evals, min_snr, min_quantize in cases:
        manifest = convert(source, ["coreml-w8a8"], tmp_path / source.stem, calib=str(calib), eval=str(evals))
        record = target_record(manifest, "coreml-w8a8")
        assert "reference executor" in record["notes"]["activation_calibration"]
        checks = check(manifest, "coreml-w8a8")
        assert checks["ops"]["quantize"] >= min_quantize and checks["ops"]["dequantize"] >= min_quantize
        assert checks["weights"].get("linear/INT8", 0) >= 2
        assert reference(checks)["snr_db"] > min_snr


@pytest.mark.slow
@pytest.mark.skipif(ON_MACOS, reason="on macOS activations are calibrated with the Core ML runtime instead")
def test_w8a8_keeps_an_audio_front_end_float(cli, tmp_path: Path) -> None:
    """The corpus keyword spotter (STFT as two conv1d, |X|², mel matmul, + eps, log, then a GRU): int8 activations on the
    power spectrum turned it into noise (SNR -4.1 dB, top-1 0.125). The log-domain rule (quantizers/log_domain.py), on
    the MIL program with the reference executor's statistics, keeps that chain without quantize / dequantize pairs;
    the rest is w8a8 as before."""
    import json
    import os
    import tempfile

    from tests.corpus import registry

    root = Path(os.environ.get("EDGECONV_CORPUS_ROOT") or Path(tempfile.gettempdir()) / "edgeconv-corpus")
    assert not (errors := registry.ensure(root, ["audio_kws"])), errors
    result = cli("convert", *registry.cli_args(root, "audio_kws"), "-t", "coreml-w8a8", "-o", tmp_path / "out", "--json")
    assert result.code == 0, result.stdout[-3000:]
    target = json.loads(result.stdout)["targets"][0]
    kept = {k["op_type"] for k in target["notes"]["log_domain_float"]}
    assert {"Log", "Mul", "conv", "matmul"} <= kept, target["notes"]["log_domain_float"]
    checks = target["validation"]["checks"]
    assert checks["ops"]["quantize"] > 100  # the GRU's gates and the classifier are still quantized
    metrics = checks["mil_reference"]["metrics"]
    assert metrics["snr_db"] > 30 and metrics["top1_agreement"] == 1.0, metrics


def test_fill_default_args_lets_coremltools_read_exported_max_pool() -> None:
    """torch ≥ 2.5 exports max_pool2d(x, [2, 2]) without its default stride/padding; coremltools 9 needs them."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("coremltools")
    from edgeconv.targets.coreml.torch_to_coreml import contiguous_inputs, fill_default_args

    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.max_pool2d(x, 2) * 2.0

    x = torch.randn(4, 1, 8, 8)[:1].permute(0, 1, 3, 2)  # a non-contiguous example, as a slice of a batch gives
    program = torch.export.export(Pool(), (x,)).run_decompositions({})
    node = next(n for n in program.graph.nodes if n.op == "call_function" and "max_pool2d" in str(n.target))
    assert len(node.args) == 2
    assert fill_default_args(program) == 1
    assert len(node.args) == len([a for a in node.target._schema.arguments if not a.kwarg_only])
    assert contiguous_inputs(program) == 1

    from edgeconv.targets.coreml._loader import coremltools, quiet

    ct = coremltools()
    with quiet():
        model = ct.convert(program, convert_to="mlprogram", skip_model_load=True, minimum_deployment_target=ct.target.iOS17)
    f = model.get_spec().mlProgram.functions["main"]
    assert "max_pool" in {op.type for op in f.block_specializations[f.opset].operations}


def _build_onet(folder: Path) -> None:
    """MTCNN O-net style: conv → per-channel PReLU → x.view(x.shape[0], -1) → Linear → per-channel PReLU (rank 2) →
    softmax class head and box head. Saved as .pt2 and as a TorchScript trace (the trace keeps the shape arithmetic)."""
    import torch
    from torch import nn

    class ONet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.prelu1 = nn.Conv2d(3, 8, 3), nn.PReLU(8)
            self.fc, self.prelu2 = nn.Linear(8 * 14 * 14, 32), nn.PReLU(32)
            self.cls, self.box = nn.Linear(32, 2), nn.Linear(32, 4)

        def forward(self, x):
            x = self.prelu1(self.conv(x))
            x = self.prelu2(self.fc(x.view(x.shape[0], -1)))
            return torch.softmax(self.cls(x), dim=1), self.box(x)

    torch.manual_seed(0)
    model = ONet().eval()
    with torch.no_grad():  # trained PReLUs: one slope per channel (equal slopes would become one leaky_relu)
        model.prelu1.weight.uniform_(0.05, 0.5)
        model.prelu2.weight.uniform_(0.05, 0.5)
    x = torch.rand(1, 3, 16, 16)
    torch.export.save(torch.export.export(model, (x,)), str(folder / "onet.pt2"))
    torch.jit.save(torch.jit.trace(model, (x,)), str(folder / "onet.ts.pt"))


@pytest.fixture(scope="module")
def onet() -> Path:
    from tests.conftest import cached

    return cached("coreml-onet", _build_onet)


@pytest.mark.slow
@pytest.mark.skipif(ON_MACOS, reason="asserts the Linux reference execution")
@pytest.mark.parametrize("name", ["onet.pt2", "onet.ts.pt"])
def test_mtcnn_style_prelu_after_linear_and_traced_shape_arithmetic(onet: Path, tmp_path: Path, name: str) -> None:
    """coremltools refused per-channel PReLU on the rank-2 Linear output, and the traced x.view(x.shape[0], -1) failed
    in its `int` op under NumPy 2 (targets/coreml/_torch_ops.py fixes both in its front end)."""
    manifest = convert(onet / name, ["coreml-fp32", "ane-fp16"], tmp_path / "out", input_shapes={"x": (1, 3, 16, 16)},
                       calib="random")
    fp32, fp16 = (check(manifest, n) for n in ("coreml-fp32", "ane-fp16"))
    assert fp32["ops"].get("prelu") == 2 and fp32["ops"].get("expand_dims")  # rank 2 lifted to rank 4 around it
    assert reference(fp32)["snr_db"] > 100 and reference(fp16)["snr_db"] > 50
    assert fp16["ane_placement"]["share"] == 1.0


@pytest.mark.slow
@pytest.mark.skipif(ON_MACOS, reason="asserts the Linux structural check")
def test_w8_bias_and_small_weights_are_not_failures(tmp_path: Path) -> None:
    """coreml-w8 failed on a Linear's 512-element bias ("left uncompressed": coremltools never compresses a bias) and on
    a model whose weights are all below the threshold ("no linear weights found"), both with 75 dB on the reference."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    wide = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10)).eval()
    small = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    for name, model, dims in (("wide", wide, (1, 64)), ("small", small, (1, 8))):
        path = tmp_path / f"{name}.pt2"
        torch.export.save(torch.export.export(model, (torch.randn(*dims),)), str(path))
        manifest = convert(path, ["coreml-w8"], tmp_path / name, calib="random")
        checks = check(manifest, "coreml-w8")
        assert reference(checks)["snr_db"] > 30
        compressed = {k: v for k, v in checks["weights"].items() if "/" in k}
        record = target_record(manifest, "coreml-w8")
        if name == "wide":
            assert compressed == {"linear/INT8": 2}
        else:
            assert not compressed and any("none was compressed" in w for w in record["warnings"])


@pytest.mark.slow
@pytest.mark.skipif(ON_MACOS, reason="asserts the Linux reference execution")
def test_torch_export_bert_and_crnn(tmp_path: Path) -> None:
    """torch.export programs of real architectures that coremltools' torch.export front end refused: transformers'
    BERT ("Unsupported fx node alias / new_ones / __and__ / where.ScalarOther", its mask code) and a CRNN's
    bidirectional LSTM ("Unsupported fx node lstm"); targets/coreml/_torch_ops.py maps them."""
    pytest.importorskip("transformers")
    from tests.corpus import registry
    from tests.corpus.test_route_matrix import ROOT

    assert not registry.ensure(ROOT, ["bert_tiny", "crnn"])
    bert = ROOT / "bert_tiny"
    manifest = convert(bert / "bert_tiny.pt2", ["coreml-fp32", "ane-fp16"], tmp_path / "bert",
                       calib=str(bert / "calib"), eval=str(bert / "eval"))
    assert reference(check(manifest, "coreml-fp32"))["snr_db"] > 100
    assert reference(check(manifest, "ane-fp16"))["snr_db"] > 45
    crnn = ROOT / "crnn"
    manifest = convert(crnn / "crnn.pt2", ["coreml-fp32"], tmp_path / "crnn", calib=str(crnn / "calib"),
                       eval=str(crnn / "eval"))
    checks = check(manifest, "coreml-fp32")
    assert checks["ops"].get("lstm") == 1
    # the NumPy reference executor runs MIL's bidirectional lstm (it used to report "no 'lstm' op" and measure nothing)
    assert reference(checks)["snr_db"] > 100


@pytest.mark.slow
@pytest.mark.skipif(ON_MACOS, reason="asserts the Linux reference execution")
def test_scripted_control_flow_with_batchnorm(tmp_path: Path) -> None:
    """torch.jit.script models with BatchNorm and data-dependent control flow (the corpus's GatedScripted: a loop with a
    runtime trip count and an `if` on a tensor; WhileScripted: a `while` on a tensor condition). coremltools read the
    unfrozen BatchNorm's `training` attribute as a string and stopped at the first `if` ("expects ... bool but got
    str"); frozen first, they convert to MIL while_loop / cond, which the reference executor runs. The Neural Engine
    has no control flow: ane-fp16 names those ops and takes them with --allow-cpu-fallback."""
    import torch

    from tests.corpus.torch_models import GatedScripted, WhileScripted

    for cls in (GatedScripted, WhileScripted):
        torch.manual_seed(0)
        model = cls().eval()
        with torch.no_grad():
            model.b1.running_mean.uniform_(-0.2, 0.2)
            model.b1.running_var.uniform_(0.5, 2.0)
        path = tmp_path / f"{cls.__name__}.pt"
        torch.jit.save(torch.jit.script(model), str(path))
        manifest = convert(path, ["coreml-fp32", "ane-fp16"], tmp_path / cls.__name__,
                           input_shapes={"image": (1, 3, 32, 32)}, calib="random", allow_cpu_fallback=True)
        fp32, fp16 = (check(manifest, n) for n in ("coreml-fp32", "ane-fp16"))
        assert fp32["ops"].get("while_loop") == 1 and fp32["ops"].get("cond", 0) >= 1, fp32["ops"]
        assert reference(fp32)["snr_db"] > 100 and reference(fp16)["snr_db"] > 40
        assert {"while_loop", "cond"} <= set(fp16["ane_placement"]["elsewhere"]), fp16["ane_placement"]
