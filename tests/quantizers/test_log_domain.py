"""quantizers/log_domain: the chains feeding Log / Sqrt / Reciprocal that integer activations cannot resolve stay
float, found on the corpus keyword spotter's log-mel front end (STFT as Conv1d, |X|², mel MatMul, + eps, Log), in its
ONNX export and in its torch.export graph alike; a LayerNorm's variance (narrow range) is left alone."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from edgeconv.quantizers.log_domain import GraphNode, TensorStats, float_chains, fx_log_domain_nodes, log_domain_nodes  # noqa: E402
from tests.corpus import data  # noqa: E402
from tests.corpus.torch_models import AudioKWS  # noqa: E402

FRONT_END = {"Log", "Add", "MatMul", "Mul", "Conv"}  # |X|² = re*re + im*im, mel @ power, + eps, log


@pytest.fixture(scope="module")
def kws(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, onnx.ModelProto, np.ndarray]:
    torch.manual_seed(0)
    model = AudioKWS().eval()
    clips = data.audio(12, seed=3)
    path = tmp_path_factory.mktemp("kws") / "kws.onnx"
    torch.onnx.export(model, (torch.from_numpy(clips[:1]),), str(path), input_names=["waveform"], dynamo=False,
                      opset_version=17)
    return model, onnx.load_model(str(path)), clips


def test_onnx_front_end_kept_float_at_8_bits_and_the_convs_resolved_at_16(kws) -> None:
    _, model, clips = kws
    feeds = [{"waveform": c[None]} for c in clips]
    at8 = log_domain_nodes(model, feeds, 8)
    assert {n.op_type for n in at8} == FRONT_END, at8
    assert sum(n.op_type == "Conv" for n in at8) == 2 and sum(n.op_type == "Mul" for n in at8) == 2
    assert next(n for n in at8 if n.op_type == "Log").reason == "reads values integers cannot resolve"
    at16 = log_domain_nodes(model, feeds, 16)
    assert {n.op_type for n in at16} == FRONT_END - {"Conv"}  # the STFT outputs resolve at 16 bits
    head = {n.name for n in model.graph.node if n.op_type in ("GRU", "Gemm", "BatchNormalization")}
    assert not head & {n.node for n in at8}  # after the Log everything is quantized as usual


def test_fx_graph_gives_the_same_chain(kws) -> None:
    model, _, clips = kws
    program = torch.export.export(model, (torch.from_numpy(clips[:1]),)).module()
    kept = fx_log_domain_nodes(program, [(torch.from_numpy(c[None]),) for c in clips], 8)
    ops = sorted(k.op_type for k in kept)
    assert ops.count("Log") == 1 and ops.count("Mul") == 2 and "Add" in ops, kept
    assert len(kept) >= 6  # two convs, two squares, the sum, the mel matmul, + eps, the log (ATen names vary)


def test_narrow_variance_left_alone_and_signed_tensors_stop_the_walk() -> None:
    """x - mean (signed, many values near 0) is never walked into unless it is squared; a variance within one decade
    is resolved at 8 bits, so a LayerNorm chain keeps its quantization."""
    rng = np.random.default_rng(0)
    centred = rng.standard_normal(4096)
    nodes = [GraphNode("sub", "Sub", ("x", "mean"), "centred"),
             GraphNode("sq", "Mul", ("centred", "centred"), "squares", squared="centred"),
             GraphNode("var", "ReduceMean", ("squares",), "variance"),
             GraphNode("sqrt", "Sqrt", ("variance",), "std")]
    stats = {name: TensorStats() for name in ("x", "centred", "squares", "variance")}
    stats["x"].add(centred + 3.0)
    stats["centred"].add(centred)
    stats["squares"].add(centred ** 2)
    stats["variance"].add(rng.uniform(0.5, 3.0, 256))
    assert float_chains(nodes, stats, 8) == []
    stats["variance"] = TensorStats()
    stats["variance"].add(10 ** rng.uniform(-6, 2, 256))  # eight decades: unresolved, and so are its squares
    kept = {k.node for k in float_chains(nodes, stats, 8)}
    assert kept == {"sqrt", "var", "sq", "sub"}  # walked into centred only because `sq` squares it, never into x


def test_mil_walk_goes_through_the_values_torch_stft_moves() -> None:
    """torch.stft in Core ML's MIL: two convs, their outputs expanded and concatenated ("stft"), sliced apart again,
    squared by pow(x, 2). The walk stopped at the signed concat, so the STFT convs kept int8 outputs and coreml-w8a8 of
    the corpus audio_torchstft measured 10.7 dB; through the data-movement ops the whole front end stays float."""
    ct = pytest.importorskip("coremltools")
    from edgeconv.quantizers.log_domain import mil_log_domain_nodes
    from edgeconv.targets.coreml import _torch_ops
    from edgeconv.targets.coreml._loader import quiet
    from edgeconv.targets.coreml._mil_reference import activation_stats, program_of

    _torch_ops.install()  # edgeconv's torch.export front-end ops for coremltools (the GRU)
    torch.manual_seed(0)
    model = AudioKWS(stft="torch").eval()
    clips = data.audio(8, seed=3)
    exported = torch.export.export(model, (torch.from_numpy(clips[:1]),)).run_decompositions({})
    with quiet():
        mlmodel = ct.convert(exported, inputs=[ct.TensorType(name="waveform", shape=clips[:1].shape)],
                             convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17, skip_model_load=True)
    program = program_of(mlmodel)
    values: dict[str, TensorStats] = {}
    name = next(iter(program.functions["main"].inputs))
    activation_stats(mlmodel, [{name: c[None]} for c in clips], values)
    kept = mil_log_domain_nodes(program, values, 8)
    ops = [k.op_type for k in kept]
    assert ops.count("conv") == 2 and "Concat" in ops and ops.count("Slice") == 2, kept  # the STFT itself
    assert {"Log", "matmul", "Add", "Pow"} <= set(ops), kept
    assert not any(k.op_type in ("gru", "linear") for k in kept)  # after the Log everything is quantized as usual
