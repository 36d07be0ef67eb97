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


def test_hexagon_compiler_keys_pass_through() -> None:
    """Hexagon's [compiler] keys go to the QNN execution provider as provider options: an open set."""
    assert apply_overrides(resolve("hexagon-int8"), ["compiler.htp_graph_finalization_optimization_mode=3"])
