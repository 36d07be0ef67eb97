"""targets/family_options.py: every family folder has its typed [compiler] options class, every built-in profile's
[compiler] (and [quantize.options]) parses into it, and the one parser's type rules."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from edgeconv.errors import UsageError
from edgeconv.targets import BUILTIN_DIR, builtin_profiles
from edgeconv.targets.family_options import (Table, family_classes, option, options_class, options_for, parse_options,
                                             refuses_precision)
from edgeconv.targets.quantize_options import QuantizeOptions, parse_quantize_options

FAMILY_FOLDERS = sorted(p.name for p in BUILTIN_DIR.iterdir() if p.is_dir() and (p / "__init__.py").exists())


@pytest.mark.parametrize("folder", FAMILY_FOLDERS)
def test_every_family_folder_has_an_options_class(folder: str) -> None:
    module = importlib.import_module(f"edgeconv.targets.{folder}.options")
    families = module.FAMILY if isinstance(module.FAMILY, tuple) else (module.FAMILY,)
    assert dataclasses.is_dataclass(module.OPTIONS) and module.OPTIONS.__dataclass_params__.frozen
    assert all(family_classes()[name] is module.OPTIONS for name in families)
    module.OPTIONS()  # every key has a default


def test_every_builtin_profile_parses_into_its_family_class() -> None:
    profiles = builtin_profiles()
    assert {p.family for p in profiles} == {"hexagon", "cpu", "onnx", "tflite", "coreml", "tensorrt", "openvino",
                                            "executorch"}
    for profile in profiles:
        options = options_for(profile)
        assert isinstance(options, options_class(profile.family)), profile.name
        assert all(getattr(options, key) == (tuple(value) if isinstance(value, list) else value)
                   for key, value in profile.compiler.items()), profile.name
        parse_quantize_options(profile.quantize.options, Table("quantize.options", profile.name, profile.source_file))


def test_defaults_are_the_ones_the_code_used() -> None:
    """The values the converters read when a profile leaves a key out (formerly `compiler.get(key, default)`)."""
    from edgeconv.targets.coreml.options import CoreMlOptions
    from edgeconv.targets.qnn.options import HexagonOptions
    from edgeconv.targets.tensorrt.options import TensorRtOptions

    assert (TensorRtOptions().workspace_mib, TensorRtOptions().optimization_level, TensorRtOptions().tf32) == (1024, None, None)
    core = CoreMlOptions()
    assert (core.minimum_deployment_target, core.compute_units, core.io_dtype, core.min_neural_engine_share) == \
        ("iOS17", "ALL", "float32", 0.8)
    assert core.precision_for("fp32") == "float32" and core.precision_for("w8") == "float16"
    assert HexagonOptions().soc == "8 Gen 3" and HexagonOptions().provider_options() == {}
    assert HexagonOptions(htp_performance_mode="burst").provider_options() == {"htp_performance_mode": "burst"}
    assert QuantizeOptions().fp16_max_abs == 8192.0 and QuantizeOptions().weight_threshold == 2048


def test_family_cli_flags_exist() -> None:
    """The flags a family's options.py declares as its own (CLI_OPTIONS) are `edgeconv convert` flags."""
    import typer.main

    from edgeconv.cli.app import app

    command = next(c for c in typer.main.get_command(app).commands.values() if c.name == "convert")
    flags = {opt for param in command.params for opt in param.opts}
    declared = {flag for folder in FAMILY_FOLDERS
                for flag in getattr(importlib.import_module(f"edgeconv.targets.{folder}.options"), "CLI_OPTIONS", ())}
    assert declared == {"--soc", "--allow-cpu-fallback", "--shape-range", "--require-engine"} and declared <= flags


@dataclasses.dataclass(frozen=True)
class _Sample:
    count: int = option(1, bounds=(0, 10))
    share: float = 0.5
    flag: bool = False
    names: tuple[str, ...] = ()
    mode: str = option("a", choices=("a", "b"))
    limit: int | None = None


def _parse(**data: object) -> _Sample:
    return parse_options(_Sample, data, Table("compiler", "p", "f.toml", "\n".join(f"{k} = 0" for k in data)))


def test_parser_type_rules() -> None:
    assert _parse(share=1, names=["x", "y"], limit=None) == _Sample(share=1.0, names=("x", "y"))
    assert isinstance(_parse(share=1).share, float)
    for data, needle in (({"count": True}, "must be int"), ({"flag": 1}, "must be bool"), ({"share": "0.5"}, "int or float"),
                         ({"names": "x"}, "list of strings"), ({"names": [1]}, "list of strings"),
                         ({"count": 11}, "between 0 and 10"), ({"mode": "c"}, "is not one of a, b"),
                         ({"share": float("nan")}, "finite"), ({"mode": "a\x1b"}, "control characters"),
                         ({"cuont": 1}, "unknown key 'cuont'")):
        with pytest.raises(UsageError, match=needle) as info:
            _parse(**data)
        assert info.value.message.startswith("f.toml:1: ") and info.value.exit_code == 2
    with pytest.raises(UsageError) as info:
        _parse(cuont=1)
    assert "did you mean 'count'?" in info.value.hint


def test_refuses_precision(tmp_path: Path) -> None:
    from edgeconv.targets import resolve

    assert refuses_precision(resolve("openvino-int8"), "openvino", ("int8",), "OpenVINO") is None
    assert refuses_precision(resolve("onnx"), "openvino", ("int8",), "OpenVINO") is None  # another family's profile
    assert refuses_precision(resolve("openvino-fp32"), "openvino", ("int8",), "OpenVINO") == \
        "OpenVINO profiles take precision int8"
