"""pipeline: planning without converting. plan_target / find_route pick the cheapest installed route over the converter
edges for each source format and target, put normalisation and the ONNX quantizer wherever the route reaches ONNX, add
branches for a profile's extra formats, and refuse (exit 4) with what edgeconv can reach instead; build_plan applies
overrides, refuses two targets with one name before the source is opened, and checks static shapes."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from edgeconv.context import ConvertOptions
from edgeconv.converters import all_converters
from edgeconv.converters.base import Converter
from edgeconv.errors import InvalidInputError, MissingBackendError, UnsupportedError, UsageError
from edgeconv.formats import Artifact, Format, TensorSpec
from edgeconv.pipeline import Plan, build_plan, check_backends, find_route, plan_target, reachable, resolve_shapes
from edgeconv.routes import UNAVAILABLE_PENALTY
from edgeconv.sources import SourceModel
from edgeconv.targets import resolve
from edgeconv.targets.schema import Profile

SOURCE_FILES = {Format.ONNX: "model.onnx", Format.TORCH: "model.pt", Format.KERAS: "model.keras",
                Format.SAVEDMODEL: "saved_model"}


def source(fmt: Format, *inputs: TensorSpec) -> SourceModel:
    """A source model as planning sees it (nothing on disk is read while planning)."""
    specs = inputs or (TensorSpec("x", (1, 3, 8, 8)),)
    artifact = Artifact(Path(SOURCE_FILES[fmt]), fmt)
    return SourceModel(artifact, specs, ("y",), fmt.value, loader=None)  # type: ignore[arg-type]


def steps(fmt: Format, target: str) -> list[tuple[str, str, bool]]:
    return [(s.kind, s.name, s.branch) for s in plan_target(source(fmt), resolve(target)).steps]


def validate(profile: str) -> tuple[str, str, bool]:
    from edgeconv.validation_stage import planned_validation

    return ("validate", f"validate on {planned_validation(resolve(profile))}", False)


WRITE = ("write", "write", False)
NORMALISE = ("normalise", "normalise", False)


@pytest.mark.parametrize("fmt, target, expected", [
    (Format.ONNX, "onnx", [NORMALISE]),
    (Format.ONNX, "cpu-int8", [NORMALISE, ("quantize", "quantize int8", False)]),
    (Format.ONNX, "onnx-fp16", [NORMALISE, ("quantize", "quantize fp16", False)]),
    (Format.TORCH, "cpu-int8", [("export", "torch_to_onnx", False), NORMALISE, ("quantize", "quantize int8", False)]),
    (Format.KERAS, "onnx-dynamic", [("export", "keras_to_onnx", False), NORMALISE,
                                    ("quantize", "quantize dynamic", False)]),
    (Format.SAVEDMODEL, "onnx", [("export", "savedmodel_to_onnx", False), NORMALISE]),
    # direct edges (cost 5) beat the way through ONNX (10 + 10, or 10 + 40 for Core ML), and skip normalisation
    (Format.TORCH, "coreml-fp32", [("compile", "torch_to_coreml", False)]),
    (Format.KERAS, "coreml-w8", [("compile", "keras_to_coreml", False)]),
    (Format.KERAS, "tflite-int8", [("compile", "keras_to_tflite", False)]),
    (Format.SAVEDMODEL, "tflite-fp16", [("compile", "savedmodel_to_tflite", False)]),
    (Format.TORCH, "executorch-int8", [("compile", "torch_to_executorch", False)]),
    # from ONNX the only way to Core ML is onnx2torch (its converter quantizes: no ONNX quantize step)
    (Format.ONNX, "coreml-w8", [NORMALISE, ("compile", "onnx_to_coreml", False)]),
    (Format.TORCH, "tflite-fp32", [("export", "torch_to_onnx", False),
                                   ("normalise", "normalise + fuse gelu + decompose maxpool_ceil, neg, stft", False),
                                   ("compile", "onnx_to_tflite", False)]),
    (Format.ONNX, "openvino-int8", [NORMALISE, ("compile", "onnx_to_openvino", False)]),
    # a second format is a branch from the hub ONNX; the hub ONNX itself (tensorrt's second format) is no step
    (Format.KERAS, "hexagon-int8", [("export", "keras_to_onnx", False),
                                    ("normalise", "normalise + fuse gelu, layernorm + decompose reciprocal, batchnorm, stft", False),
                                    ("quantize", "quantize int8", False), ("compile", "onnx_to_qnn", False),
                                    ("compile", "onnx_to_dlc", True)]),
    (Format.TORCH, "tensorrt-fp16", [("export", "torch_to_onnx", False), NORMALISE,
                                     ("quantize", "quantize fp16", False), ("compile", "onnx_to_tensorrt", False)]),
    (Format.ONNX, "tensorrt-fp32", [NORMALISE, ("compile", "onnx_to_tensorrt", False)]),
], ids=lambda v: v.value if isinstance(v, Format) else (v if isinstance(v, str) else None))
def test_route_for_each_source_and_target(fmt: Format, target: str, expected: list) -> None:
    assert steps(fmt, target) == [*expected, validate(target), WRITE]


def test_tensorrt_validation_says_where_it_runs() -> None:
    """Without a GPU the engine is not built and its ONNX is validated on ONNX Runtime: the plan says so up front."""
    from edgeconv.runtimes import runtime_named

    line = validate("tensorrt-fp16")[1]
    if runtime_named("tensorrt").fallback_here():
        assert line.startswith("validate on onnxruntime") and line != "validate on onnxruntime"
    else:
        assert line == "validate on tensorrt"


@pytest.mark.parametrize("fmt, target", [(Format.ONNX, "executorch-fp32"), (Format.KERAS, "executorch-int8"),
                                         (Format.SAVEDMODEL, "executorch-fp32")])
def test_no_route_is_exit_4_naming_what_is_reachable(fmt: Format, target: str) -> None:
    with pytest.raises(UnsupportedError) as e:
        plan_target(source(fmt), resolve(target))
    assert e.value.exit_code == 4
    assert e.value.message == f"no route from {fmt} to {Format.EXECUTORCH} for target {target}"
    assert e.value.hint == f"edgeconv converts {fmt} sources to: {', '.join(sorted(reachable(fmt)))}"
    assert "executorch" not in e.value.hint


def test_reachable_formats() -> None:
    assert reachable(Format.ONNX) == {"coreml", "dlc", "openvino", "qnn-context", "tensorrt-engine", "tflite"}
    assert reachable(Format.TORCH) == reachable(Format.ONNX) | {"onnx", "executorch"}
    assert reachable(Format.KERAS) == reachable(Format.ONNX) | {"onnx"}
    assert reachable(Format.TFLITE) == set()


def test_same_format_is_the_empty_route() -> None:
    assert find_route(Format.ONNX, Format.ONNX, Artifact(Path("m.onnx"), Format.ONNX), resolve("onnx")) == []


def _cost(route: list[type[Converter]]) -> int:
    return sum(c.cost + (0 if c.available() else UNAVAILABLE_PENALTY) for c in route)


def _all_routes(src: Format, dst: Format, artifact: Artifact, profile: Profile) -> list[list[type[Converter]]]:
    """Every simple path src → dst over the edges that take `artifact` for `profile` (brute force)."""
    edges = [c for c in all_converters() if c().refuses(artifact, profile) is None]
    routes: list[list[type[Converter]]] = []

    def walk(fmt: Format, path: list[type[Converter]], seen: set[Format]) -> None:
        for conv in edges:
            if conv.source == fmt and conv.target not in seen:
                if conv.target == dst:
                    routes.append([*path, conv])
                else:
                    walk(conv.target, [*path, conv], seen | {conv.target})
    walk(src, [], {src})
    return routes


@pytest.mark.parametrize("fmt, target", list(itertools.product(
    [Format.ONNX, Format.TORCH, Format.KERAS, Format.SAVEDMODEL],
    ["coreml-fp32", "tflite-int8", "hexagon-int8", "tensorrt-fp32", "openvino-fp32", "executorch-fp32", "cpu-int8"])),
    ids=str)
def test_route_is_the_cheapest_of_all_routes(fmt: Format, target: str) -> None:
    profile = resolve(target)
    artifact = Artifact(Path(SOURCE_FILES[fmt]), fmt)
    if fmt == profile.primary_format:
        assert find_route(fmt, fmt, artifact, profile) == []
        return
    routes = _all_routes(fmt, profile.primary_format, artifact, profile)
    if not routes:
        with pytest.raises(UnsupportedError):
            find_route(fmt, profile.primary_format, artifact, profile)
        return
    found = find_route(fmt, profile.primary_format, artifact, profile)
    assert found in routes and _cost(found) == min(_cost(r) for r in routes)


def test_an_installed_route_beats_a_cheaper_missing_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    """keras → tflite (cost 5) not installed: keras → onnx → tflite (10 + 10) wins over the penalty (1000)."""
    from edgeconv.targets.tflite.keras_to_tflite import KerasToTflite

    monkeypatch.setattr(KerasToTflite, "available", classmethod(lambda cls: False))
    assert [s[1] for s in steps(Format.KERAS, "tflite-fp32")][:3] == ["keras_to_onnx",
                                                                       "normalise + fuse gelu + decompose maxpool_ceil, neg, stft",
                                                                       "onnx_to_tflite"]


def test_a_missing_backend_is_still_planned_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no route installed the cheapest one is planned anyway: --dry-run shows the extra, run refuses (exit 4)."""
    from edgeconv.targets.coreml.torch_to_coreml import TorchToCoreml

    monkeypatch.setattr(TorchToCoreml, "available", classmethod(lambda cls: False))
    target = plan_target(source(Format.TORCH), resolve("coreml-fp32"))
    step = target.steps[0]
    assert step.converter is TorchToCoreml
    assert step.describe() == "compile   torch_to_coreml (torch → coreml)  [needs: pip install 'edgeconv[coreml]']"
    plan = Plan(target.source, ConvertOptions(), [target])
    with pytest.raises(MissingBackendError) as e:
        check_backends(plan)
    assert e.value.exit_code == 4
    assert e.value.message == "missing optional backend(s): coreml-fp32 needs torch_to_coreml (edgeconv[coreml])"
    assert e.value.hint == "pip install 'edgeconv[coreml]'" and e.value.details == {"extras": ["coreml"]}


def test_an_installed_step_describes_its_edge() -> None:
    target = plan_target(source(Format.TORCH), resolve("cpu-int8"))
    assert [s.describe() for s in target.steps[:3]] == ["export    torch_to_onnx (torch → onnx)",
                                                        "normalise normalise", "quantize  quantize int8"]
    assert target.to_json() == {"target": "cpu-int8", "steps": [s.describe() for s in target.steps]}


def test_a_direct_route_plans_its_fallback_through_onnx() -> None:
    """Keras → tflite-int8: TFLiteConverter directly, and the route --dry-run shows and convert takes when it refuses
    the model (routes.fallback_route). A single-route target plans no fallback."""
    target = plan_target(source(Format.KERAS), resolve("tflite-int8"))
    assert [s.name for s in target.steps] == ["keras_to_tflite", "validate on litert", "write"]
    assert [s.name for s in target.fallback] == ["keras_to_onnx", "normalise + fuse gelu + decompose maxpool_ceil, neg, stft",
                                                 "onnx_to_tflite", "validate on litert", "write"]
    assert target.to_json()["fallback"] == {"when": "keras_to_tflite refuses the model",
                                            "steps": [s.describe() for s in target.fallback]}
    assert plan_target(source(Format.ONNX), resolve("tflite-int8")).fallback == ()


def test_a_documented_dead_end_is_refused_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeconv.targets.coreml.torch_to_coreml import TorchToCoreml

    monkeypatch.setattr(TorchToCoreml, "unsupported_reason", "this edge cannot do that")
    monkeypatch.setattr(TorchToCoreml, "unsupported_hint", "do the other thing")
    with pytest.raises(UnsupportedError) as e:
        plan_target(source(Format.TORCH), resolve("coreml-fp32"))
    assert (e.value.message, e.value.hint) == ("target coreml-fp32: this edge cannot do that", "do the other thing")
    assert e.value.details == {"source_format": "torch", "target_format": "coreml"}


def test_refusing_edges_are_left_out_of_the_search() -> None:
    """onnx_to_coreml takes only ONNX sources: a PyTorch model never goes torch → onnx → coreml."""
    from edgeconv.targets.coreml.onnx_to_coreml import OnnxToCoreml

    artifact = Artifact(Path("model.pt"), Format.TORCH)
    assert OnnxToCoreml().refuses(artifact, resolve("coreml-fp32"))
    routes = _all_routes(Format.TORCH, Format.COREML, artifact, resolve("coreml-fp32"))
    assert routes and all(OnnxToCoreml not in r for r in routes)


def test_a_precision_no_quantizer_handles_fails_while_planning() -> None:
    profile = resolve("cpu-int8")
    odd = replace(profile, quantize=replace(profile.quantize, precision="int3"))
    with pytest.raises(UnsupportedError) as e:
        plan_target(source(Format.ONNX), odd)
    assert e.value.exit_code == 4 and "int3" in e.value.message


# --- shapes and build_plan -----------------------------------------------------------------------------------------
DYNAMIC = TensorSpec("pixels", ("N", 3, None, 224))


def test_static_target_names_the_dynamic_inputs_and_the_fix() -> None:
    with pytest.raises(InvalidInputError) as e:
        resolve_shapes(source(Format.ONNX, DYNAMIC, TensorSpec("mask", (1, 224))), resolve("hexagon-int8"),
                       ConvertOptions())
    assert e.value.exit_code == 3
    assert e.value.message == "target hexagon-int8 needs static shapes; dynamic input(s): pixels [Nx3x?x224]"
    assert e.value.hint == "fix them with --input-shape pixels=1x3x1x224 (your real sizes)"
    assert e.value.details == {"dynamic_inputs": ["pixels"]}


def test_shapes_from_the_options_fix_a_static_target() -> None:
    resolved = resolve_shapes(source(Format.ONNX, DYNAMIC), resolve("hexagon-int8"),
                              ConvertOptions(input_shapes={"pixels": (2, 3, 160, 224)}))
    assert resolved.inputs[0].shape == (2, 3, 160, 224)


def test_a_dynamic_target_keeps_dynamic_inputs() -> None:
    src = source(Format.ONNX, DYNAMIC)
    assert resolve_shapes(src, resolve("cpu-int8"), ConvertOptions()) is src


def test_two_targets_with_one_name_are_refused_before_the_source_is_opened(tmp_path: Path) -> None:
    missing = Artifact(tmp_path / "nothing-here.onnx", Format.ONNX)  # opening it would be exit 3, not 2
    with pytest.raises(UsageError) as e:
        build_plan(missing, [resolve("cpu-int8"), resolve("CPU-int8")], ConvertOptions())
    assert e.value.exit_code == 2 and "OUTDIR/" in e.value.message


def test_build_plan_applies_overrides_and_plans_each_target(digits_onnx_path: Path) -> None:
    plan = build_plan(Artifact(digits_onnx_path, Format.ONNX), [resolve("onnx"), resolve("tflite-fp32")],
                      ConvertOptions(overrides=("normalise.fuse=[\"gelu\", \"layernorm\"]",)))
    assert [t.profile.name for t in plan.targets] == ["onnx", "tflite-fp32"]
    assert [s.name for s in plan.targets[0].steps][0] == "normalise + fuse gelu, layernorm"
    assert plan.targets[1].steps[0].name == "normalise + fuse gelu, layernorm + decompose maxpool_ceil, neg, stft"
    assert plan.to_json()["source"]["format"] == "onnx"


@pytest.fixture
def digits_onnx_path(tmp_path: Path) -> Path:
    """A two-node ONNX model (build_plan opens its source to read the inputs)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path
