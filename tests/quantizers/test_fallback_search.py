"""quantizers/fallback.search: the accuracy-fallback search as pure logic. The graph is a real (tiny) ONNX model, since
the search walks it for each candidate's nodes, pass-through chains and front-end units; the scoring is fake: edgeconv's
own Evaluator and per-layer ranking (layer_errors) are replaced by a table of what each trial keeps in higher precision
→ output SNR, so every measurement, ranking, budget and stopping decision can be asserted exactly. The search units of a
log-mel front end end to end: test_fallback_units.py."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.quantizers import fallback
from edgeconv.quantizers.fallback import NODES, UNIT, Evaluation, FallbackResult, objective, passes, search
from edgeconv.quantizers.layer_errors import LayerError
from edgeconv.quantizers.target_scoring import TargetUnavailable
from edgeconv.targets.schema import Gate
from edgeconv.validation import Metrics

GATE = Gate(min_snr_db=20.0)
Score = Callable[[frozenset[str]], "float | None"]  # what a trial keeps float → output SNR (None: the target refuses)


def fan_model(folder: Path, branches: int = 8) -> Path:
    """x → MatMul_i → t_i (i = 1..branches, each straight from the input: no front-end units) → Relu(t1) → r1 →
    Concat(r1, t2..) → y."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], [f"t{i}"], name=f"mm{i}") for i in range(1, branches + 1)]
    nodes.append(helper.make_node("Relu", ["t1"], ["r1"], name="relu1"))
    rest = [f"t{i}" for i in range(2, branches + 1)]
    nodes.append(helper.make_node("Concat", ["r1", *rest], ["y"], axis=1, name="cat"))
    return _save(folder, nodes, [w], branches * 4)


def chain_model(folder: Path) -> Path:
    """A front end: x → MatMul (spec) → Mul (power) → MatMul (mel) → Add (eps) → Log (logmel) → MatMul (y)."""
    inits = [numpy_helper.from_array(np.ones((4, 4), np.float32), n) for n in ("dft", "melw", "head")]
    inits.append(numpy_helper.from_array(np.array(1e-6, np.float32), "eps"))
    nodes = [helper.make_node("MatMul", ["x", "dft"], ["spec"], name="stft"),
             helper.make_node("Mul", ["spec", "spec"], ["power"], name="square"),
             helper.make_node("MatMul", ["power", "melw"], ["mel"], name="mel_mm"),
             helper.make_node("Add", ["mel", "eps"], ["mel_eps"], name="eps_add"),
             helper.make_node("Log", ["mel_eps"], ["logmel"], name="log"),
             helper.make_node("MatMul", ["logmel", "head"], ["y"], name="classifier")]
    return _save(folder, nodes, inits, 4)


def _save(folder: Path, nodes: list, inits: list, width: int) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], inits)
    path = folder / "float.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def rows(costs: dict[str, float], unquantized: Iterable[str] = ()) -> list[LayerError]:
    """layer_errors' rows: `cost_db` is the drop (input and channel SNR alike), in any order (search ranks them)."""
    out = [LayerError(f"node_{t}", "MatMul", t, 30.0, 100.0, 100.0, cost, True) for t, cost in reversed(costs.items())]
    return out + [LayerError(f"node_{t}", "MatMul", t, 1.0, 100.0, 100.0, 99.0, False) for t in unquantized]


def additive(base: float, gains: dict[str, float]) -> Score:
    return lambda kept: base + sum(gains.get(item, 0.0) for item in kept)


class World:
    """Stands in for the model on disk: requantize() records what each trial file keeps float, and the fake evaluator
    scores a file by that set (the base QDQ model: the empty set)."""

    def __init__(self, score: Score, target_score: Score | None = None) -> None:
        self.score, self.target_score = score, target_score
        self.trials: dict[str, frozenset[str]] = {}
        self.calls: list[tuple[str, list[str]]] = []

    def requantize(self, items: list[str], path: Path) -> Path:
        self.trials[path.name] = frozenset(items)
        self.calls.append((path.name, list(items)))
        return path

    def evaluator(self, float_path: Path, feeds: list) -> "FakeEvaluator":
        return FakeEvaluator(self, self.score)


class FakeEvaluator:
    def __init__(self, world: World, score: Score) -> None:
        self.world, self.score = world, score

    def on(self, sessions: object) -> "FakeEvaluator":
        if sessions is None:
            return self
        assert self.world.target_score is not None
        return FakeEvaluator(self.world, self.world.target_score)

    def evaluate(self, path: Path) -> Evaluation:
        snr = self.score(self.world.trials.get(path.name, frozenset()))
        if snr is None:
            raise TargetUnavailable(f"the target refuses {path.name}")
        return Evaluation(Metrics(snr, 1.0, 0.0, 0.0, None))


@pytest.fixture
def run_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def run(world: World, ranking: list[LayerError], *, model: Callable[[Path], Path] = fan_model, budget: int = 3,
            precision: str = "fp32", gate: Gate = GATE, **kwargs) -> FallbackResult:
        monkeypatch.setattr(fallback, "Evaluator", world.evaluator)
        monkeypatch.setattr(fallback, "layer_errors", lambda float_path, rank_path, feeds: list(ranking))
        return search(model(tmp_path), tmp_path / "qdq.onnx", world.requantize, [{}], gate, budget, tmp_path,
                      precision, **kwargs)
    return run


COSTS = {"t1": 9.0, "t2": 8.0, "t3": 7.0, "t4": 6.0}  # the per-layer ranking: t1 first
GAINS = {"t1": 1.0, "t2": 4.0, "t3": 6.0, "t4": 0.0}  # what each buys back alone: t3 most


def test_a_model_that_passes_is_not_searched(run_search) -> None:
    world = World(additive(25.0, GAINS))
    result = run_search(world, rows(COSTS))
    assert result.gate_passed_before and result.gate_passed_after and result.nodes == []
    assert world.calls == [] and result.candidates_measured == 0 and result.final_path.name == "qdq.onnx"


def test_budget_zero_searches_nothing(run_search) -> None:
    world = World(additive(10.0, GAINS))
    result = run_search(world, rows(COSTS), budget=0)
    assert not result.gate_passed_after and result.failures_after == ("SNR 10.0 dB < 20.0 dB",)
    assert world.calls == [] and result.nodes == []


def test_candidates_are_measured_in_rank_order_and_kept_by_what_they_buy(run_search) -> None:
    world = World(additive(10.0, GAINS))
    result = run_search(world, rows(COSTS, unquantized=["t5"]))
    # every quantized candidate measured alone, costliest layer first (t5 is not quantized: not a candidate)
    alone = [items for name, items in world.calls if name.startswith("fallback.try") and not name.endswith("n.onnx")]
    assert alone == [["t1"], ["t2"], ["t3"], ["t4"]] and result.candidates_measured == 4
    # then added by gain: t3 (+6 → 16 dB), t2 (+4 → 20 dB): the gate passes, the search stops
    steps = [items for name, items in world.calls if name.startswith("fallback.step")]
    assert steps == [["t3"], ["t3", "t2"]]
    assert [(n.tensor, n.gain_alone, n.gain, n.snr_db_after) for n in result.nodes] == [("t3", 6.0, 6.0, 16.0),
                                                                                        ("t2", 4.0, 4.0, 20.0)]
    assert result.gate_passed_after and result.failures_after == () and result.final_path.name == "fallback.step2.onnx"
    assert result.before["snr_db"] == 10.0 and result.after["snr_db"] == 20.0 and result.tensors() == ["t3", "t2"]
    assert [n.float_tensors for n in result.nodes] == [["t3"], ["t2"]] and all(n.nodes == [] for n in result.nodes)


def test_the_budget_caps_what_is_kept(run_search) -> None:
    world = World(additive(10.0, GAINS))
    result = run_search(world, rows(COSTS), budget=1)
    assert [n.tensor for n in result.nodes] == ["t3"]
    assert not result.gate_passed_after and result.failures_after == ("SNR 16.0 dB < 20.0 dB",)
    assert result.after["snr_db"] == 16.0 and result.final_path.name == "fallback.step1.onnx"


@pytest.mark.parametrize("budget, max_candidates, measured", [(1, None, 6), (2, None, 6), (5, None, 8), (2, 3, 3)])
def test_how_many_candidates_are_measured(run_search, budget: int, max_candidates: int | None, measured: int) -> None:
    """max_candidates (quantize.options.fallback_candidates), else max(6, 2 x budget) of the costliest layers."""
    costs = {f"t{i}": 10.0 - i for i in range(1, 9)}
    world = World(additive(10.0, {}))
    result = run_search(world, rows(costs), budget=budget, max_candidates=max_candidates)
    tried = [items[0] for name, items in world.calls if name.startswith("fallback.try") and name.count(".") == 2
             and not name.endswith("n.onnx")]
    assert result.candidates_measured == measured and tried == [f"t{i}" for i in range(1, measured + 1)]


def test_a_step_that_buys_nothing_more_is_skipped(run_search) -> None:
    """t2 alone buys 4 dB, but nothing once t3 is float (the same error): it is not kept; t1 after it is."""
    def score(kept: frozenset[str]) -> float:
        value = 10.0 + sum(GAINS.get(t, 0.0) for t in kept if t != "t2")
        return value + (4.0 if "t2" in kept and "t3" not in kept else 0.0)
    world = World(score)
    result = run_search(world, rows(COSTS))
    assert [n.tensor for n in result.nodes] == ["t3", "t1"]
    assert [items for name, items in world.calls if name.startswith("fallback.step")] == [["t3"], ["t3", "t2"],
                                                                                         ["t3", "t1"]]
    assert not result.gate_passed_after and result.after["snr_db"] == 17.0


def test_candidates_that_buy_nothing_alone_end_the_search(run_search) -> None:
    """Once something is kept, the first candidate with no gain alone (t4: 0) ends it: the rest gain no more."""
    world = World(additive(10.0, {"t1": 1.0, "t2": 0.5, "t3": 6.0, "t4": 0.0}))
    result = run_search(world, rows(COSTS), budget=4)
    steps = [items for name, items in world.calls if name.startswith("fallback.step")]
    assert steps == [["t3"], ["t3", "t1"], ["t3", "t1", "t2"]]  # t4 never tried
    assert [n.tensor for n in result.nodes] == ["t3", "t1", "t2"] and result.after["snr_db"] == 17.5


def test_on_the_target_every_candidate_is_tried(run_search) -> None:
    """Scored on the target's runtime, ORT's gains say little: a candidate with no gain on ORT is still tried there."""
    ort = additive(10.0, {"t1": 0.0, "t3": 6.0})
    target = additive(5.0, {"t1": 12.0, "t3": 4.0})
    world = World(ort, target)
    result = run_search(world, rows({"t1": 9.0, "t3": 7.0}), target_sessions=object())
    assert result.before["snr_db"] == 5.0 and result.target_unavailable == ""  # the base judged on the target
    assert [(n.tensor, n.gain_alone, n.gain) for n in result.nodes] == [("t3", 6.0, 4.0), ("t1", 0.0, 12.0)]
    assert result.gate_passed_after and result.after["snr_db"] == 21.0


def test_a_target_that_cannot_run_the_base_model_is_scored_on_ort(run_search) -> None:
    world = World(additive(10.0, GAINS), target_score=lambda kept: None)
    result = run_search(world, rows(COSTS), target_sessions=object())
    assert result.target_unavailable == "the target refuses qdq.onnx"
    assert result.before["snr_db"] == 10.0 and [n.tensor for n in result.nodes] == ["t3", "t2"]


def test_a_step_the_target_refuses_is_skipped(run_search) -> None:
    def target(kept: frozenset[str]) -> float | None:
        return None if "t3" in kept else additive(10.0, GAINS)(kept)
    world = World(additive(10.0, GAINS), target)
    result = run_search(world, rows(COSTS), target_sessions=object())
    assert [n.tensor for n in result.nodes] == ["t2", "t1"]  # t3 (best alone on ORT) makes a graph the target refuses
    assert not result.gate_passed_after and result.after["snr_db"] == 15.0


@pytest.mark.parametrize("node_gain, expected_item", [(5.0, NODES + "t1"), (1.5, "t1")])
def test_the_node_variant_wins_only_by_a_margin(run_search, node_gain: float, expected_item: str) -> None:
    """fp32 fallback in QDQ: a candidate that does not pass alone is also tried with its nodes excluded (weights float
    too); that variant is kept only when it buys more than NODE_VARIANT_MARGIN (1) beyond the activation alone."""
    world = World(additive(10.0, {"t1": 1.0, NODES + "t1": node_gain}))
    result = run_search(world, rows({"t1": 9.0}), budget=1)
    assert ("fallback.try0n.onnx", [NODES + "t1"]) in world.calls
    node, = result.nodes
    assert node.item == expected_item
    if expected_item.startswith(NODES):  # t1 feeds a Relu and the Concat; its producer is the MatMul
        assert (node.gain_alone, node.float_tensors, node.nodes) == (5.0, [], ["relu1", "mm1"])
    else:
        assert (node.gain_alone, node.float_tensors, node.nodes) == (1.0, ["t1"], [])


def test_a_candidate_that_passes_alone_needs_no_node_variant(run_search) -> None:
    world = World(additive(10.0, {"t1": 12.0}))
    result = run_search(world, rows({"t1": 9.0}))
    assert [name for name, _ in world.calls] == ["fallback.try0.onnx", "fallback.step1.onnx"]
    assert result.gate_passed_after


def test_qoperator_fallback_lists_nodes_and_never_tries_variants(run_search) -> None:
    """exclude_nodes (QOperator models): a tensor stays float only by excluding its nodes, walking up pass-throughs."""
    world = World(additive(10.0, {"r1": 11.0}))
    result = run_search(world, rows({"r1": 9.0}), exclude_nodes=True)
    assert [name for name, _ in world.calls] == ["fallback.try0.onnx", "fallback.step1.onnx"]
    node, = result.nodes
    assert node.nodes == ["cat", "relu1", "mm1"] and node.float_tensors == []  # Relu passes its input's range through
    assert result.node_names() == ["cat", "mm1", "relu1"]


def test_int16_fallback_keeps_everything_quantized(run_search) -> None:
    world = World(additive(10.0, GAINS))
    result = run_search(world, rows(COSTS), precision="int16")
    assert not any(name.endswith("n.onnx") for name, _ in world.calls)
    assert [n.tensor for n in result.nodes] == ["t3", "t2"]
    assert all(n.nodes == [] and n.float_tensors == [] for n in result.nodes)


def test_pass_through_chains_are_kept_float_together(run_search) -> None:
    """fp32 fallback of a Relu output keeps its input float too (the Relu carries its input's quantization)."""
    world = World(additive(10.0, {"r1": 11.0}))
    node, = run_search(world, rows({"r1": 9.0})).nodes
    assert node.float_tensors == ["r1", "t1"]


# --- front-end units -----------------------------------------------------------------------------------------------
FRONT = ("spec", "power", "mel", "mel_eps")


def front_end_score(kept: frozenset[str]) -> float:
    """Each activation of the front end loses the range alone (no single one helps), all of them float: +30 dB."""
    return 5.0 + (30.0 if set(FRONT) <= kept else 0.2 * len(kept & set(FRONT)))


def test_a_front_end_is_kept_as_one_unit(run_search) -> None:
    world = World(front_end_score)
    result = run_search(world, rows({"mel_eps": 9.0, "spec": 3.0}), model=chain_model, budget=1)
    assert ("fallback.try0u.onnx", ["spec", "power", "mel", "mel_eps"]) in world.calls  # the unit, in graph order
    node, = result.nodes
    assert (node.tensor, node.item, node.unit) == ("mel_eps", UNIT + "mel_eps", ["spec", "power", "mel"])
    assert node.gain_alone == 30.0 and sorted(node.float_tensors) == sorted(FRONT)
    assert result.tensors() == ["spec", "power", "mel", "mel_eps"]
    assert result.gate_passed_after and result.after["snr_db"] == 35.0
    assert "item" not in result.to_json()["nodes"][0] and "final_path" not in result.to_json()


def test_units_are_not_used_once_a_single_tensor_passes(run_search) -> None:
    """A candidate that passes alone ends the unit trials for those after it, and units never replace tensors."""
    def score(kept: frozenset[str]) -> float:
        return 26.0 if "logmel" in kept else front_end_score(kept)
    world = World(score)
    result = run_search(world, rows({"logmel": 9.0, "mel_eps": 8.0}), model=chain_model, budget=1)
    assert not any(name == "fallback.try1u.onnx" for name, _ in world.calls)
    node, = result.nodes
    assert (node.tensor, node.item, node.unit) == ("logmel", "logmel", [])


# --- objective and gate --------------------------------------------------------------------------------------------
def _ev(snr: float, top1: float | None = None, channel: float | None = None) -> Evaluation:
    return Evaluation(Metrics(snr, 1.0, 0.0, 0.0, top1), channel)


def test_objective_is_the_worst_snr_plus_50_per_top1() -> None:
    assert objective(_ev(20.0)) == 20.0
    assert objective(_ev(20.0, channel=12.5)) == 12.5 and objective(_ev(20.0, channel=30.0)) == 20.0
    assert objective(_ev(20.0, top1=0.9)) == pytest.approx(65.0)


def test_the_worst_channel_must_reach_half_the_snr_gate() -> None:
    assert passes(_ev(25.0, channel=10.0), GATE) == (True, ())
    ok, failures = passes(_ev(25.0, channel=9.0), GATE)
    assert not ok and failures == ("worst output channel SNR 9.0 dB < 10.0 dB",)
    assert passes(_ev(25.0, channel=1.0), Gate(min_cosine=0.5))[0]  # no SNR bound: no channel bound
