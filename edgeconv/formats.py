"""Model formats, the Artifact that flows between stages, and detection of a file's format by its content.

Detection never trusts the file extension: a zip named `.onnx` is looked into, an ONNX file named `.pt` is found to be
ONNX. Nothing here imports a heavy framework; ONNX files are recognised by parsing their protobuf header with `onnx`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgeconv.errors import InvalidInputError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
TFLITE_IDENTIFIER = b"TFL3"


class Format(str, Enum):
    """What a file is. Converter edges connect formats; a profile names the format(s) it produces."""

    TORCH = "torch"  # TorchScript archive, torch.export .pt2, or a Python factory (+ optional state_dict)
    KERAS = "keras"  # .keras (Keras 3 zip) or legacy .h5
    SAVEDMODEL = "savedmodel"  # TensorFlow SavedModel directory
    ONNX = "onnx"
    TFLITE = "tflite"
    COREML = "coreml"  # .mlpackage directory
    QNN_CONTEXT = "qnn-context"  # EPContext ONNX model + HTP context binary
    DLC = "dlc"  # Qualcomm DLC archive
    TENSORRT_ENGINE = "tensorrt-engine"
    OPENVINO = "openvino"  # OpenVINO IR: model.xml (topology) + model.bin (weights, a companion)
    EXECUTORCH = "executorch"  # ExecuTorch program (.pte flatbuffer)

    def __str__(self) -> str:
        return self.value


# File name suffix of each format's main file, used when naming outputs.
FILE_SUFFIXES: dict[Format, str] = {
    Format.ONNX: ".onnx",
    Format.TFLITE: ".tflite",
    Format.COREML: ".mlpackage",
    Format.QNN_CONTEXT: "_ctx.onnx",
    Format.DLC: ".dlc",
    Format.TENSORRT_ENGINE: ".engine",
    Format.OPENVINO: ".xml",
    Format.EXECUTORCH: ".pte",
    Format.KERAS: ".keras",
}

# Sub-kinds of a source format, recorded in Artifact.variant.
TORCHSCRIPT = "torchscript"
EXPORTED_PROGRAM = "exported-program"
TORCH_FACTORY = "factory"
TORCH_PICKLE = "pickle"
KERAS_V3 = "keras-v3"
KERAS_H5 = "h5"


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output. Dims are ints, or a str/None for a dynamic dim."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str = "float32"
    rank_known: bool = True  # False for PyTorch inputs before --input-shape (the module does not record them)

    @property
    def is_static(self) -> bool:
        return self.rank_known and all(isinstance(d, int) and d > 0 for d in self.shape)

    @property
    def dynamic_dims(self) -> list[int]:
        return [i for i, d in enumerate(self.shape) if not (isinstance(d, int) and d > 0)]

    def shape_str(self) -> str:
        if not self.rank_known:
            return "unknown"
        return "x".join(str(d) if isinstance(d, int) and d > 0 else str(d or "?") for d in self.shape) or "scalar"


@dataclass(frozen=True)
class TensorLink:
    """One source model input or output and the artifact's own tensor for it."""

    source: str  # the source model's input / output name
    key: str  # the artifact's tensor (for TFLite: the signature key)
    perm: tuple[int, ...] | None = None  # axis permutation (None = same layout): an input's turns a source-layout array
    #                                      into the artifact's layout, an output's turns the artifact's into the source's

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "key": self.key, "perm": None if self.perm is None else list(self.perm)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TensorLink":
        perm = data.get("perm")
        return cls(str(data["source"]), str(data["key"]), None if perm is None else tuple(int(p) for p in perm))


@dataclass(frozen=True)
class IoMap:
    """How an artifact's inputs and outputs relate to the source model's, when their names or layouts differ: which
    of its tensors takes each source input and which gives each source output, in source order. The edge that writes
    the artifact fills it (Artifact.io); the runtime that loads it reads it. The manifest records it in the target's
    notes under `io_note_key(format)` (notes.tflite_io), where bench and validate read it back."""

    signature: str  # the entry point the tensors belong to (a TFLite signature key)
    inputs: tuple[TensorLink, ...] = ()
    outputs: tuple[TensorLink, ...] = ()
    layout: str = "source"  # "source" = the source's; "nhwc" = channels-last as onnx2tf writes it; "guessed"

    def to_json(self) -> dict[str, Any]:
        return {"signature": self.signature, "inputs": [m.to_json() for m in self.inputs],
                "outputs": [m.to_json() for m in self.outputs], "layout": self.layout}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "IoMap":
        return cls(str(data.get("signature", "")), tuple(TensorLink.from_json(m) for m in data["inputs"]),
                   tuple(TensorLink.from_json(m) for m in data["outputs"]), str(data.get("layout", "source")))


def io_note_key(fmt: Format) -> str:
    """The manifest notes key under which a target records its artifact's I/O map (tflite_io)."""
    return f"{fmt.value}_io"


@dataclass(frozen=True)
class Artifact:
    """A model file (or directory) on disk and what it is.

    `companions` are files that belong with it (external data, a context binary, a timing cache); `io` maps the source
    model's inputs and outputs to the artifact's own tensors where they differ in name or layout (None: same as the
    source's, or not known).
    """

    path: Path
    format: Format
    variant: str = ""
    companions: tuple[Path, ...] = field(default_factory=tuple)
    io: IoMap | None = None

    def all_paths(self) -> tuple[Path, ...]:
        return (self.path, *self.companions)


def read_head(path: Path, n: int = 16) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e.strerror}", "check the path and its permissions") from e


def detect(path: Path) -> Artifact:
    """Identify a model by its content. Raises InvalidInputError (exit 3) naming what was found instead."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path} does not exist", "check the model path")
    if path.is_dir():
        return _detect_dir(path)
    size = path.stat().st_size
    if size == 0:
        raise InvalidInputError(f"{path} is empty (0 bytes)", "the file was not written completely; export it again")
    head = read_head(path, 64)
    if head.startswith(HDF5_MAGIC):
        _check_hdf5(path, head, size)
        return Artifact(path, Format.KERAS, KERAS_H5)
    if head.startswith(ZIP_MAGIC):
        return _detect_zip(path)
    if len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER:
        _check_flatbuffer(path, size)
        return Artifact(path, Format.TFLITE)
    from edgeconv.artifact_readers import sniff

    claimed = sniff(path, head)  # a family's own format (OpenVINO IR, ExecuTorch .pte): its reader knows its bytes
    if claimed is not None:
        return claimed
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # a bare pickle (legacy torch.save)
        return Artifact(path, Format.TORCH, TORCH_PICKLE)
    onnx_kind = _onnx_artifact(path)
    if onnx_kind is not None:
        return onnx_kind
    if len(head) > 2 and head[0] == 0x08 and 3 <= head[1] <= 15 and head[2] in ONNX_SECOND_FIELDS:
        raise InvalidInputError(
            f"{path} starts like an ONNX model (IR version {head[1]}) but cannot be parsed ({size} bytes): it is truncated "
            "or damaged", "export or copy the model again")
    raise InvalidInputError(
        f"{path} is not a model edgeconv can read (found {size} bytes starting with {head[:8].hex(' ')})",
        "expected ONNX, TorchScript, torch.export .pt2, Keras .keras/.h5, a SavedModel directory or TFLite",
    )


# ModelProto tags that can follow ir_version (field 1): producer_name/version, domain, model_version, doc_string, graph,
# opset_import, metadata_props.
ONNX_SECOND_FIELDS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})


def _check_hdf5(path: Path, head: bytes, size: int) -> None:
    """The HDF5 superblock says where the file ends: a shorter file was cut off (no h5py / TensorFlow needed)."""
    version = head[8] if len(head) > 8 else -1
    if version in (0, 1):
        offsets = head[13] if len(head) > 13 else 0
        eof_at = 24 + (4 if version == 1 else 0) + 2 * offsets
    elif version in (2, 3):
        offsets = head[9] if len(head) > 9 else 0
        eof_at = 12 + 2 * offsets
    else:
        raise InvalidInputError(f"{path} has an HDF5 signature but a damaged header (superblock version {version})",
                                "the file is corrupt; save the model again")
    if offsets not in (2, 4, 8) or len(head) < eof_at + offsets:
        raise InvalidInputError(f"{path} has an HDF5 signature but a damaged header ({size} bytes)",
                                "the file is corrupt; save the model again")
    end = int.from_bytes(head[eof_at:eof_at + offsets], "little")
    if end > size:
        raise InvalidInputError(f"{path} is a truncated HDF5 file: {size} bytes, its header says {end}",
                                "the file was not copied or written completely; save the model again")


def _check_flatbuffer(path: Path, size: int) -> None:
    """A TFLite flatbuffer's root table and its vtable must lie inside the file."""
    import struct

    with path.open("rb") as f:
        data = f.read(min(size, 1 << 20))
    ok = False
    if size >= 12:
        root = struct.unpack_from("<I", data, 0)[0]
        if 8 <= root <= len(data) - 4:
            vtable = root - struct.unpack_from("<i", data, root)[0]
            if 0 <= vtable <= len(data) - 4:
                vt_size, table_size = struct.unpack_from("<HH", data, vtable)
                ok = vtable + vt_size <= size and root + table_size <= size
    if not ok:
        raise InvalidInputError(f"{path} has the TFLite identifier but its structure points outside the file "
                                f"({size} bytes): it is truncated or damaged", "convert or copy the model again")


def _detect_dir(path: Path) -> Artifact:
    from edgeconv.sources.archive_safety import check_tree

    if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
        check_tree(path)  # no symlink pointing out of the folder (exit 7), as for ONNX external data
        return Artifact(path, Format.SAVEDMODEL)
    if (path / "Manifest.json").exists() and (path / "Data").is_dir():
        check_tree(path)
        return Artifact(path, Format.COREML)
    raise InvalidInputError(
        f"{path} is a directory but neither a TensorFlow SavedModel (no saved_model.pb) nor a Core ML .mlpackage",
        "pass a model file, or a SavedModel directory",
    )


def _detect_zip(path: Path) -> Artifact:
    from edgeconv.sources.archive_safety import check_zip

    # member names escaping the archive, symlink members, zip bombs: exit 7 before anything is decompressed
    names = [info.filename for info in check_zip(path)]
    base = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if {"config.json", "metadata.json"} <= set(names):
        return Artifact(path, Format.KERAS, KERAS_V3)
    if "models/model.json" in base:
        return Artifact(path, Format.TORCH, EXPORTED_PROGRAM)
    if "constants.pkl" in base and any("/code/" in n for n in names):
        return Artifact(path, Format.TORCH, TORCHSCRIPT)
    if "data.pkl" in base:
        return Artifact(path, Format.TORCH, TORCH_PICKLE)
    if any(n.lower().endswith("model.dlc") or n.startswith("dlc.metadata") for n in names):  # QNN: dlc.metadata2.3.0
        return Artifact(path, Format.DLC)
    shown = ", ".join(sorted(names)[:5])
    raise InvalidInputError(
        f"{path} is a zip archive but not a model format edgeconv knows (entries: {shown})",
        "expected a TorchScript archive, a torch.export .pt2 or a Keras .keras file",
    )


def _looks_like_onnx(path: Path) -> bool:
    return _onnx_artifact(path) is not None


def _onnx_artifact(path: Path) -> Artifact | None:
    """ONNX, or a QNN EPContext model (ONNX whose nodes are `EPContext` from the QNN EP; its context binary beside it
    is a companion). None if the file is not ONNX."""
    import onnx  # light: protobuf only

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # protobuf DecodeError and friends: not ONNX
        return None
    if not (model.ir_version and model.HasField("graph") and len(model.opset_import) > 0):
        return None
    binaries = []
    for node in model.graph.node:
        if node.op_type == "EPContext":
            attrs = {a.name: a for a in node.attribute}
            source = attrs["source"].s.decode(errors="replace") if "source" in attrs else ""
            if "QNN" not in source.upper():
                return Artifact(path, Format.ONNX)
            name = attrs["ep_cache_context"].s.decode(errors="replace") if "ep_cache_context" in attrs else ""
            embedded = "embed_mode" in attrs and attrs["embed_mode"].i == 1
            if name and not embedded and "/" not in name and "\\" not in name and (path.parent / name).is_file():
                binaries.append(path.parent / name)
    if any(n.op_type == "EPContext" for n in model.graph.node):
        return Artifact(path, Format.QNN_CONTEXT, companions=tuple(dict.fromkeys(binaries)))
    return Artifact(path, Format.ONNX)
