"""Profiles are data: every built-in loads; users' files extend them; errors name the key and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeconv.errors import UsageError
from edgeconv.formats import Format
from edgeconv.targets import builtin_profiles, profile_names, resolve
from edgeconv.targets.schema import OpsetRange, apply_overrides


def test_builtin_profiles_load() -> None:
    profiles = {p.name: p for p in builtin_profiles()}
    assert {"onnx", "onnx-fp16"} <= set(profiles)
    assert profiles["onnx-fp16"].quantize.precision == "fp16"
    assert profiles["onnx-fp16"].validate.runtime == "onnxruntime"  # inherited through extends
    for profile in profiles.values():
        assert profile.produces and profile.description and profile.validate.gate


def test_user_profile_extends_builtin(tmp_path: Path) -> None:
    path = tmp_path / "my-target.toml"
    path.write_text('name = "my-onnx"\nextends = "onnx"\nopset = 19\n[validate.gate]\nmin_snr_db = 45.0\n')
    profile = resolve(str(path))
    assert (profile.name, profile.opset, profile.validate.gate.min_snr_db) == ("my-onnx", OpsetRange(19, 19, 19), 45.0)
    assert profile.validate.gate.min_cosine == 0.99999 and profile.produces == (Format.ONNX,)


def test_unknown_key_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\nextends = "onnx"\n\n[quantize]\nprecison = "int8"\n')
    with pytest.raises(UsageError, match=r"bad.toml:5: unknown key 'precison'") as info:
        resolve(str(path))
    assert "precision" in info.value.hint and info.value.exit_code == 2


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nproduces = [onnx\n')
    with pytest.raises(UsageError, match="line 2"):
        resolve(str(path))


def test_unknown_target_suggests() -> None:
    with pytest.raises(UsageError, match="unknown target 'onx'") as info:
        resolve("onx")
    assert "did you mean onnx" in info.value.hint
    assert all(name in info.value.hint for name in profile_names())


def test_overrides() -> None:
    profile = apply_overrides(resolve("onnx-fp16"), ["validate.gate.min_snr_db=10", "quantize.keep_io_types=false"])
    assert profile.validate.gate.min_snr_db == 10 and profile.quantize.keep_io_types is False
    with pytest.raises(UsageError):
        apply_overrides(resolve("onnx"), ["quantize.method=magic"])


def test_normalise_fusions_are_data(tmp_path: Path) -> None:
    """The hexagon profiles ask for ONNX Runtime's GELU and LayerNorm fusions in their TOML; nothing else does."""
    for name in ("hexagon-int8", "hexagon-int16", "hexagon-fp16"):
        assert resolve(name).normalise.fuse == ("gelu", "layernorm")
        assert resolve(name).quantize.options["op_types"] == "all"  # every op type in the graph, as ORT's QNN config
    assert all(resolve(name).normalise.fuse == ("gelu",) for name in profile_names() if name.startswith("tflite-"))
    assert all(not p.normalise.fuse for p in builtin_profiles() if p.family not in ("hexagon", "tflite"))
    assert apply_overrides(resolve("onnx"), ['normalise.fuse=["gelu"]']).normalise.fuse == ("gelu",)
    path = tmp_path / "fuse.toml"
    path.write_text('name = "x"\nextends = "onnx"\n\n[normalise]\nfuse = ["gelu", "erf"]\n')
    with pytest.raises(UsageError, match=r"fuse.toml:5: fuse = 'erf' is not one of gelu, layernorm"):
        resolve(str(path))


def test_quantize_op_types_all_or_a_list(tmp_path: Path) -> None:
    """[quantize.options] op_types: a list of op types, or "all" (every op type in the graph); anything else is a usage
    error naming the line, also through --set."""
    from edgeconv.quantizers.onnx_qdq import StaticSettings

    assert StaticSettings.from_scheme(resolve("hexagon-int8").quantize).all_op_types is True
    assert StaticSettings.from_scheme(resolve("onnx-int8-qdq").quantize).all_op_types is False
    profile = apply_overrides(resolve("onnx-int8-qdq"), ["quantize.options.op_types=all"])
    assert profile.quantize.options["op_types"] == "all"
    listed = apply_overrides(resolve("hexagon-int8"), ['quantize.options.op_types=["Conv", "MatMul"]'])
    settings = StaticSettings.from_scheme(listed.quantize)
    assert settings.op_types == ("Conv", "MatMul") and settings.all_op_types is False
    with pytest.raises(UsageError, match="must be a list of op types or \"all\""):
        apply_overrides(resolve("hexagon-int8"), ["quantize.options.op_types=everything"])
    path = tmp_path / "ops.toml"
    path.write_text('name = "x"\nextends = "onnx-int8-qdq"\n\n[quantize.options]\nop_types = "All"\n')
    with pytest.raises(UsageError, match=r"ops.toml:5: op_types = 'All'"):
        resolve(str(path))


@pytest.mark.parametrize("text, want", [
    ("opset = 17", OpsetRange(17, 17, 17)),
    ("opset = { min = 11, max = 21, preferred = 17 }", OpsetRange(11, 21, 17)),
    ("opset = { max = 20 }", OpsetRange(13, 20, 18)),
    ("opset = { min = 19 }", OpsetRange(19, 23, 19)),
    ("opset = { preferred = 24 }", OpsetRange(13, 24, 24)),
])
def test_opset_range_forms(tmp_path: Path, text: str, want: OpsetRange) -> None:
    path = tmp_path / "ranged.toml"
    path.write_text(f'name = "ranged"\nextends = "onnx"\n{text}\n')
    assert resolve(str(path)).opset == want


@pytest.mark.parametrize("text, needle", [
    ("opset = { min = 20, max = 17 }", "min <= preferred <= max"),
    ("opset = { minimum = 13 }", "unknown key 'minimum'"),
    ('opset = "18"', "must be an integer or a table"),
    ("opset = { max = 20.5 }", "opset.max = 20.5"),
    ("opset = -7", "1 <= min"),
])
def test_bad_opset_range_is_a_usage_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "bad"\nextends = "onnx"\n{text}\n')
    with pytest.raises(UsageError, match="bad.toml:3") as info:
        resolve(str(path))
    assert needle in str(info.value) + info.value.hint


def test_opset_overrides() -> None:
    profile = resolve("tensorrt-fp16")
    assert apply_overrides(profile, ["opset.max=24"]).opset == OpsetRange(13, 24, 18)
    assert apply_overrides(profile, ["opset=19"]).opset == OpsetRange(19, 19, 19)
    with pytest.raises(UsageError):
        apply_overrides(profile, ["opset=-7"])


def test_opset_range_decides_the_target_opset() -> None:
    ranged = OpsetRange(13, 20, 18)
    assert [ranged.target_for(v) for v in (11, 13, 18, 20, 21, 24)] == [18, 13, 18, 20, 20, 20]


def test_target_names_are_case_insensitive() -> None:
    assert resolve("TFLite-INT8").name == "tflite-int8" and resolve("ONNX").name == "onnx"
    with pytest.raises(UsageError) as info:
        resolve("TFLite-INT9")
    assert info.value.hint.startswith("did you mean tflite-int8")


@pytest.mark.parametrize("target, item, needle", [
    ("tensorrt-fp32", "compiler.workspace_mb=4096", "did you mean 'workspace_mib'"),  # was accepted and ignored
    ("tensorrt-fp16", "compiler.tf32=1", "compiler.tf32 = 1 in profile 'tensorrt-fp16' must be bool"),
    ("coreml-fp32", "compiler.compute_units=3", "must be str"),
    ("ane-fp16", "compiler.min_neural_engine_share=2.0", "min_neural_engine_share"),
    ("onnx", "compiler.threads=4", "onnx profiles take no [compiler] keys"),
])
def test_compiler_keys_are_checked_when_the_profile_loads(target: str, item: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        apply_overrides(resolve(target), [item])
    assert needle in f"{info.value.message} {info.value.hint}"


def test_hexagon_compiler_keys_are_typed() -> None:
    """Hexagon's [compiler] keys (soc, then QNN EP provider options) are a typed set: the ones the code and profiles
    use. An unknown one is exit 2 with the closest key, not an option the EP ignores."""
    profile = apply_overrides(resolve("hexagon-int8"), ["compiler.htp_graph_finalization_optimization_mode=3"])
    assert profile.compiler == {"soc": "8 Gen 3", "htp_performance_mode": "burst",
                                "htp_graph_finalization_optimization_mode": 3}
    with pytest.raises(UsageError, match="htp_performance_mod") as info:
        apply_overrides(resolve("hexagon-int8"), ["compiler.htp_performance_mod=burst"])
    assert "did you mean 'htp_performance_mode'" in info.value.hint and info.value.exit_code == 2


@pytest.mark.parametrize("target, key, close", [
    ("tensorrt-fp32", "workspace", "workspace_mib"),
    ("coreml-fp32", "compute_unit", "compute_units"),
    ("hexagon-int8", "vtcm", "vtcm_mb"),
    ("openvino-int8", "presets", "preset"),
    ("executorch-int8", "delegat", "delegate"),
    ("tflite-int8", "rnn_unrol", "rnn_unroll"),
])
def test_unknown_compiler_key_per_family(tmp_path: Path, target: str, key: str, close: str) -> None:
    """In a user's file: exit 2 naming the key, the file and its line, with the closest key of that family."""
    path = tmp_path / "mine.toml"
    path.write_text(f'name = "mine"\nextends = "{target}"\n\n[compiler]\n{key} = 1\n')
    with pytest.raises(UsageError) as info:
        resolve(str(path))
    assert info.value.exit_code == 2
    assert info.value.message.startswith(f"{path}:5: unknown key '{key}' in [compiler] of 'mine'")
    assert f"did you mean '{close}'?" in info.value.hint


@pytest.mark.parametrize("target", ["onnx", "cpu-int8"])
def test_families_without_compiler_keys(tmp_path: Path, target: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(f'name = "mine"\nextends = "{target}"\n[compiler]\nthreads = 4\n')
    family = resolve(target).family
    with pytest.raises(UsageError, match=rf"mine.toml:4: .*{family} profiles take no \[compiler\] keys") as info:
        resolve(str(path))
    assert info.value.exit_code == 2


@pytest.mark.parametrize("target, item, needle", [
    ("tensorrt-fp32", "compiler.workspace_mib=true", "compiler.workspace_mib = True in profile 'tensorrt-fp32' must be int"),
    ("tensorrt-fp32", "compiler.workspace_mib=0", "between 1 and 1048576"),
    ("tensorrt-fp32", "compiler.optimization_level=9", "between 0 and 5"),
    ("openvino-int8", "compiler.fast_bias_correction=1", "must be bool"),
    ("openvino-int8", 'compiler.placement="NPU"', "must be a list of strings"),
    ("openvino-int8", 'compiler.fallback=["mixed", "retry"]', "fallback = 'retry' in [compiler] of 'openvino-int8' is "
                                                              "not one of mixed, ignore_worst, accuracy_control"),
    ("executorch-int8", "compiler.min_delegated=true", "must be int or float"),
    ("hexagon-int8", 'compiler.vtcm_mb="8"', "must be int"),
    ("hexagon-int8", "compiler.htp_performance_mode=fast", "is not one of burst"),
    ("coreml-fp32", "compiler.io_dtype=int8", "is not one of float32, float16"),
])
def test_mistyped_compiler_values(target: str, item: str, needle: str) -> None:
    """bool is no int (nor an int a bool), a list of strings is a list, numbers keep their bounds: exit 2."""
    with pytest.raises(UsageError) as info:
        apply_overrides(resolve(target), [item])
    assert needle in info.value.message and info.value.exit_code == 2


def test_numbers_may_be_written_as_integers() -> None:
    """An integer is a number: min_neural_engine_share = 1 is 1.0."""
    from edgeconv.targets.family_options import options_for

    profile = apply_overrides(resolve("ane-fp16"), ["compiler.min_neural_engine_share=1"])
    assert options_for(profile).min_neural_engine_share == 1.0 and profile.compiler["min_neural_engine_share"] == 1


def test_quantize_options_are_checked_when_the_profile_loads(tmp_path: Path) -> None:
    """[quantize.options]: an unknown lower-case key is exit 2 with file, line and the closest key, when the file loads
    and through --set (it was exit 4 inside the QDQ quantizer, after export, and never for dynamic quantization);
    keys starting with a capital letter are ONNX Runtime's extra options and pass through."""
    path = tmp_path / "q.toml"
    path.write_text('name = "q"\nextends = "onnx-dynamic"\n\n[quantize.options]\nreduce_rang = true\n')
    with pytest.raises(UsageError) as info:
        resolve(str(path))
    assert info.value.message.startswith(f"{path}:5: unknown key 'reduce_rang' in [quantize.options] of 'q'")
    assert "did you mean 'reduce_range'?" in info.value.hint and info.value.exit_code == 2
    with pytest.raises(UsageError) as info:
        apply_overrides(resolve("onnx-int8-qdq"), ["quantize.options.nodes_to_exclud=[\"a\"]"])
    assert info.value.message.startswith("--set: unknown key 'nodes_to_exclud'") and info.value.exit_code == 2
    assert "did you mean 'nodes_to_exclude'?" in info.value.hint
    with pytest.raises(UsageError, match=r"--set: quantize.options.reduce_range = 1 .* must be bool"):
        apply_overrides(resolve("onnx-int8-qdq"), ["quantize.method=entropy", "quantize.options.reduce_range=1"])
    with pytest.raises(UsageError, match="placement = 'tensorrtx' in .* is not one of , tensorrt"):
        apply_overrides(resolve("onnx-int8-qdq"), ["quantize.options.placement=tensorrtx"])
    with pytest.raises(UsageError, match="score_on = 'gpu' is not one of ort, target"):  # QUANTIZE_OPTION_CHOICES
        apply_overrides(resolve("hexagon-int8"), ["quantize.options.score_on=gpu"])
    kept = apply_overrides(resolve("onnx-int8-qdq"), ["quantize.options.CalibPercentile=99.9"])
    assert kept.quantize.options["CalibPercentile"] == 99.9
