"""Mixed-bit palettization (targets/coreml/mixed_bits.py) on a MobileNetV2 (the corpus definition, random init): the
search's judgement of a candidate (decompressed weights swapped into the float program) is what coremltools' real
mixed-bit compression computes, the result meets the gate it was given within its budget, and the structural check
holds the package to what the search recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("coremltools")

SAMPLES = 8


@pytest.fixture(scope="module")
def mobilenet() -> tuple[Any, list[dict[str, np.ndarray]], list[list[np.ndarray]]]:
    """A float16 Core ML program of the corpus MobileNetV2 (random weights), its samples, and the float program's
    outputs on them."""
    import coremltools as ct
    import torch

    from edgeconv.targets.coreml._loader import quiet
    from edgeconv.targets.coreml._mil_reference import program_of, run_program
    from tests.corpus.torch_models import MobileNetV2

    torch.manual_seed(0)
    model = MobileNetV2().train()
    with torch.no_grad():  # BatchNorm statistics of real activations (at its init statistics every ReLU6 is dead)
        for _ in range(8):
            model(torch.randn(32, 3, 32, 32))
    model.eval()
    example = torch.randn(1, 3, 32, 32)
    with quiet():
        mlmodel = ct.convert(torch.jit.trace(model, example), inputs=[ct.TensorType(name="image", shape=(1, 3, 32, 32))],
                             convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                             minimum_deployment_target=ct.target.iOS16, skip_model_load=True)
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(SAMPLES)]
    program = program_of(mlmodel)
    return mlmodel, feeds, [run_program(program, f) for f in feeds]


def _judge(mlmodel: Any, feeds: list[dict[str, np.ndarray]], references: list[list[np.ndarray]]) -> Any:
    from edgeconv.targets.coreml._mil_reference import program_of, run_program
    from edgeconv.targets.coreml.mixed_bits import Judge

    def run(program: Any, consts: Any, samples: int | None) -> list[list[np.ndarray]]:
        return [run_program(program, f, consts=consts) for f in feeds[:samples or len(feeds)]]

    return Judge(program_of(mlmodel), run, ["logits"], references)


def _snr(mlmodel: Any, feeds: list[dict[str, np.ndarray]], references: list[list[np.ndarray]]) -> float:
    from edgeconv.targets.coreml._mil_reference import program_of, run_program
    from edgeconv.validation import compare

    program = program_of(mlmodel)
    return compare(["logits"], references, [run_program(program, f) for f in feeds]).snr_db


def test_search_meets_the_gate_and_the_real_compression_matches_it(mobilenet: Any, tmp_path: Path) -> None:
    from edgeconv.targets.coreml import compression as cq
    from edgeconv.targets.coreml._loader import quiet
    from edgeconv.targets.coreml._spec import inspect_package
    from edgeconv.targets.coreml.mixed_bits import RAISED_BITS, memoised_kmeans, package_average_bits, search
    from edgeconv.targets.schema import Gate, QuantScheme

    mlmodel, feeds, references = mobilenet
    scheme = QuantScheme(precision="palettize4", stage="converter", options={"weight_threshold": 256})
    with quiet(), memoised_kmeans():
        uniform = cq.compress_weights(mlmodel, scheme)
        base_snr = _snr(uniform, feeds, references)
        everything_raised = _snr(cq.compress_weights(mlmodel, QuantScheme(precision="palettize6", stage="converter",
                                                                             options={"weight_threshold": 256})),
                                 feeds, references)
        assert everything_raised > base_snr + 6  # the corpus MobileNetV2: 4 → 6 bits is worth ~10 dB
        gate = Gate(min_snr_db=round((base_snr + everything_raised) / 2, 1))
        raised, result = search(mlmodel, cq.weight_config(scheme), cq.weight_config(scheme, nbits=RAISED_BITS[4]), 4,
                                _judge(mlmodel, feeds, references), gate, max_average_bits=6.0)
        mixed = cq.compress_weights(mlmodel, scheme, {w.name: w.storage for w in raised})

    assert not result.passed_before and result.passed_after and raised
    assert result.before["snr_db"] == pytest.approx(base_snr, abs=0.01)  # the swapped-in weights are coremltools' own
    assert result.ceiling is not None and result.ceiling["snr_db"] == pytest.approx(everything_raised, abs=0.01)
    # the package coremltools writes for the chosen weights computes what the search measured, and meets the gate
    assert _snr(mixed, feeds, references) == pytest.approx(result.after["snr_db"], abs=0.01)
    assert result.after["snr_db"] >= gate.min_snr_db
    # the smallest raise that passes: far below raising everything, and counted as the package stores it
    assert result.average_bits_before < result.average_bits < 5.5
    with quiet():
        mixed.save(str(tmp_path / "mixed.mlpackage"))
    info = inspect_package(tmp_path / "mixed.mlpackage")
    stored = {w["storage"] for w in info.weights if w["compression"] == "palettized"}
    assert stored <= {"UINT4", "UINT6"}
    assert "UINT6" in stored or any(w.storage == "float16" for w in raised)
    assert package_average_bits(info.weights, {w.name: w.storage for w in raised}) == pytest.approx(result.average_bits,
                                                                                                     abs=0.01)
    _structural_check_follows_the_search(info, result)


def _structural_check_follows_the_search(info: Any, result: Any) -> None:
    """The structural check accepts the wider palettes / float16 weights the search recorded, and only those, and
    holds the package to the search's budget."""
    from types import SimpleNamespace

    from edgeconv.targets import resolve
    from edgeconv.targets.coreml.runtime import _check_weights

    def problems(note: dict[str, Any] | None) -> list[str]:
        ctx = SimpleNamespace(profile=resolve("coreml-palettize4"), notes={"coreml_mixed_bits": note} if note else {},
                              warn=lambda message: None)
        return _check_weights(info, ctx)

    note = result.to_json()
    assert problems(note) == []
    unrecorded = problems(None)  # the same package without the search's record: its wider weights are wrong
    assert unrecorded and all("UINT4" in p or "uncompressed" in p for p in unrecorded)
    over = problems({**note, "max_average_bits": result.average_bits_before})
    assert any("bits per weight > the budget" in p for p in over)


def test_search_stops_at_its_budget(mobilenet: Any) -> None:
    """A budget below what passing needs: the weights worth most per byte within it, the gate missed, and the bits
    passing would have taken reported."""
    from edgeconv.targets.coreml import compression as cq
    from edgeconv.targets.coreml._loader import quiet
    from edgeconv.targets.coreml.mixed_bits import RAISED_BITS, memoised_kmeans, search
    from edgeconv.targets.schema import Gate, QuantScheme

    mlmodel, feeds, references = mobilenet
    scheme = QuantScheme(precision="palettize4", stage="converter", options={"weight_threshold": 256})
    with quiet(), memoised_kmeans():
        ceiling = _snr(cq.compress_weights(mlmodel, QuantScheme(precision="palettize6", stage="converter",
                                                                  options={"weight_threshold": 256})), feeds, references)
        gate = Gate(min_snr_db=round(ceiling - 1.0, 1))  # passing needs nearly every weight at 6 bits
        _, result = search(mlmodel, cq.weight_config(scheme), cq.weight_config(scheme, nbits=RAISED_BITS[4]), 4,
                           _judge(mlmodel, feeds, references), gate, max_average_bits=4.5)
    assert not result.passed_after and result.failures_after
    assert result.average_bits <= 4.5 < (result.needed_average_bits or 0)
    assert result.after["snr_db"] > result.before["snr_db"]  # what the budget bought still helps


def test_weight_config_raises_the_named_weights() -> None:
    from edgeconv.targets.coreml import compression as cq
    from edgeconv.targets.schema import QuantScheme

    config = cq.weight_config(QuantScheme(precision="palettize4", stage="converter"), ["mask"],
                              {"conv1": "palette6", "fc": "float16"})
    assert config.global_config.nbits == 4
    assert config.op_name_configs["conv1"].nbits == 6
    assert config.op_name_configs["fc"] is None and config.op_name_configs["mask"] is None


def test_package_average_bits_counts_tables_and_float16_weights() -> None:
    from edgeconv.targets.coreml.mixed_bits import package_average_bits

    weights = [{"name": "a_palettized", "compression": "palettized", "storage": "UINT4", "elements": 1024},
               {"name": "b_palettized", "compression": "palettized", "storage": "UINT6", "elements": 1024},
               {"name": "c", "compression": None, "storage": "FLOAT16", "elements": 300},
               {"name": "bias", "compression": None, "storage": "FLOAT16", "elements": 64}]
    stored = (512 + 32) + (768 + 128) + 600  # indices + float16 tables; c kept float16 by the search
    assert package_average_bits(weights, {"b": "palette6", "c": "float16"}) == pytest.approx(8 * stored / 2348)
    assert package_average_bits(weights, {}) == pytest.approx(8 * (544 + 896) / 2048)  # c: not the search's


def test_failed_structural_check_hint_says_what_passing_takes() -> None:
    """After a mixed-bit search that hit its budget, the exit-5 hint gives the budget that passes (rounded up, so that
    the flag it suggests is enough); after one whose every-weight-raised model fails too, a wider profile."""
    from types import SimpleNamespace

    from edgeconv.validation_stage import _structural_hint

    over = {"passed_before": False, "after": {"snr_db": 14.63}, "raised": [{"name": "w"}] * 9, "average_bits": 4.867,
            "max_average_bits": 5.0, "needed_average_bits": 5.413, "raised_bits": 6, "ceiling": {"snr_db": 22.5}}
    hint = _structural_hint(SimpleNamespace(notes={"coreml_mixed_bits": over}))
    assert "raised 9 weight(s) (4.87 bits per weight, budget 5)" in hint and "14.6 dB" in hint
    assert hint.endswith("--set quantize.options.max_average_bits=5.42")
    floor = {**over, "raised": [], "needed_average_bits": None, "average_bits": 4.178, "ceiling": {"snr_db": 12.0}}
    assert "every weight at 6 bits reaches only 12.0 dB" in _structural_hint(SimpleNamespace(notes={"coreml_mixed_bits": floor}))
    assert _structural_hint(SimpleNamespace(notes={})) == "see the listed problems"


def test_weights_inside_a_scripted_loop_are_judged_as_compressed(tmp_path: Path) -> None:
    """The corpus' scripted-control CNN keeps a conv inside its loop body (a while_loop block of the MIL program). The
    search read only the top-level weights, so it judged that conv uncompressed: 32.4 dB where the package computed
    28.7 dB. Every block's weights are swapped in now: the judgement is the package's."""
    import coremltools as ct
    import torch

    from edgeconv.targets.coreml import compression as cq
    from edgeconv.targets.coreml._loader import quiet
    from edgeconv.targets.coreml._mil_reference import program_of, run_program
    from edgeconv.targets.coreml.mixed_bits import _decompressed
    from edgeconv.targets.schema import QuantScheme
    from tests.corpus.torch_models import GatedScripted

    torch.manual_seed(0)
    model = GatedScripted().train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(16, 3, 32, 32))
    model.eval()
    with quiet():
        mlmodel = ct.convert(torch.jit.freeze(torch.jit.script(model)), inputs=[ct.TensorType(name="image", shape=(1, 3, 32, 32))],
                             convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                             minimum_deployment_target=ct.target.iOS17, skip_model_load=True)
        scheme = QuantScheme(precision="palettize4", stage="converter", options={"weight_threshold": 256})
        low = _decompressed(mlmodel, cq.weight_config(scheme))
        compressed = cq.compress_weights(mlmodel, scheme)
    assert any("c2" in name for name in low), sorted(low)  # the loop body's conv
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(4)]
    program = program_of(mlmodel)
    judged = [run_program(program, f, consts=low) for f in feeds]
    actual = [run_program(program_of(compressed), f) for f in feeds]
    for j, a in zip(judged, actual):
        np.testing.assert_allclose(j[0], a[0], rtol=0, atol=1e-3)
