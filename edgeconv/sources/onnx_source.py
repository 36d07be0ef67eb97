"""ONNX sources, including models whose tensors live in external data files.

External data locations are checked before anything reads them: a path that escapes the model's folder (`../`,
absolute, or a symlink pointing outside) is refused (exit 7); a missing or short file is invalid input (exit 3).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeconv.context import ConvertOptions
from edgeconv.errors import InvalidInputError, SafetyError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format, TensorSpec
from edgeconv.sources import SourceLoader, SourceModel

ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
# input types no sample can be made for (strings, complex, sub-byte and 8-bit floats): exit 4 naming the input
UNFEEDABLE_DTYPES = {8: "string", 14: "complex64", 15: "complex128", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
                     19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1",
                     24: "float8e8m0", 25: "uint2", 26: "int2"}


def check_input_dtypes(model: Any, path: Path, names: set[str]) -> None:
    """Exit 4 for graph inputs of a type edgeconv cannot generate or feed samples for."""
    bad = []
    for value in model.graph.input:
        if value.name not in names:
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            bad.append(f"{value.name} ({kind or 'no type'})")
            continue
        elem = value.type.tensor_type.elem_type
        if elem in UNFEEDABLE_DTYPES or elem not in ONNX_DTYPES:
            bad.append(f"{value.name} ({UNFEEDABLE_DTYPES.get(elem, f'onnx type {elem}')})")
    if bad:
        raise UnsupportedError(
            f"{path}: unsupported input dtype: {', '.join(bad)}",
            "edgeconv feeds numeric tensors (float, int, uint, bool); wrap the model so these inputs are computed "
            "inside it, or feed them as numbers",
            details={"inputs": bad},
        )


def value_info_spec(value_info: Any) -> TensorSpec:
    tt = value_info.type.tensor_type
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return TensorSpec(value_info.name, tuple(dims), ONNX_DTYPES.get(tt.elem_type, f"onnx-type-{tt.elem_type}"))


def external_data_files(model: Any, model_path: Path) -> dict[Path, int]:
    """Every external data file the model references → the bytes it must hold at least. Safety-checked."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    base = model_path.parent.resolve()
    needed: dict[Path, int] = {}
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location or os.path.isabs(location) or location.startswith(("/", "\\")) or ".." in Path(location).parts:
            raise SafetyError(
                f"{model_path}: tensor {tensor.name!r} points to external data {location!r} outside the model's folder",
                "external data must sit beside the model; do not load files from untrusted sources",
            )
        path = model_path.parent / location
        resolved = path.resolve()
        if base not in resolved.parents and resolved != base:
            raise SafetyError(
                f"{model_path}: external data {location!r} is a link to {resolved}, outside the model's folder",
                "copy the data file next to the model instead of linking it",
            )
        try:
            offset, length = int(info.get("offset", 0) or 0), int(info.get("length", 0) or 0)
        except ValueError as e:
            raise InvalidInputError(f"{model_path}: tensor {tensor.name!r} has a bad external data offset/length "
                                    f"({info.get('offset')!r}, {info.get('length')!r})", "the model file is damaged") from e
        if offset < 0 or length < 0:
            raise InvalidInputError(f"{model_path}: tensor {tensor.name!r} has a negative external data offset/length",
                                    "the model file is damaged")
        end = offset + length
        needed[path] = max(needed.get(path, 0), end)
    for path, end in needed.items():
        if not path.is_file():
            raise InvalidInputError(f"{model_path}: external data file {path.name} is missing", "copy it next to the model")
        if path.stat().st_size < end:
            raise InvalidInputError(
                f"{model_path}: external data file {path.name} is too short ({path.stat().st_size} bytes, needs {end})",
                "the data file is truncated; copy it again",
            )
    return needed


def load_onnx_checked(path: Path, *, with_data: bool = True) -> Any:
    """onnx.load with the external-data safety checks and one-line errors."""
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:
        raise InvalidInputError(f"cannot parse ONNX model {path}: {first_line(e)}", "the file is damaged or not ONNX") from e
    external_data_files(model, path)
    if with_data:
        try:
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(model, str(path.parent))
        except Exception as e:
            raise InvalidInputError(f"cannot read external data of {path}: {first_line(e)}", "check the data files") from e
    return model


class OnnxSourceLoader(SourceLoader):
    name = "onnx"
    formats = frozenset({Format.ONNX})

    def open(self, artifact: Artifact, options: ConvertOptions) -> SourceModel:
        model = load_onnx_checked(artifact.path, with_data=False)
        initializers = {i.name for i in model.graph.initializer}
        check_input_dtypes(model, artifact.path, {v.name for v in model.graph.input} - initializers)
        inputs = tuple(value_info_spec(v) for v in model.graph.input if v.name not in initializers)
        outputs = tuple(o.name for o in model.graph.output)
        if not outputs:
            raise InvalidInputError(f"{artifact.path} has no graph outputs", "the model is incomplete")
        companions = tuple(external_data_files(model, artifact.path))
        src_artifact = Artifact(artifact.path, artifact.format, artifact.variant, companions, artifact.layout)
        return SourceModel(src_artifact, inputs, outputs, "onnx", self)

    def load_handle(self, source: SourceModel) -> Any:
        return source.artifact.path
