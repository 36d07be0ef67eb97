"""SavedModel graphs that touch files, the process or Python: found in `saved_model.pb` before TensorFlow loads it.

Every node of every meta graph and every function of its library is looked at. The proto is decoded from its wire
format here (no TensorFlow import: that alone writes ~/.keras/keras.json; decoding runs nothing). The
checkpoint machinery legitimately writes and reads files: SaveV2 / RestoreV2 / MergeV2Checkpoints / ShardedFilename
(and the TF1 Save / Restore family) are allowed only in the saver's own context: the graph nodes the SaverDef names (TF1:
its name scope) and the functions reachable from them alone (`__inference__traced_save_N` / `_restore_N` in a Keras
`model.export()`). In any other place (the serving function, a function it calls) they, and every op in FILE_OPS, are
refused (exit 7) unless trusted; the error names each op and the function (or graph) it is in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgeconv.errors import InvalidInputError, SafetyError, first_line

SAVER_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec", "Save",
                       "SaveSlices", "Restore", "RestoreSlice"})
FILE_OPS = frozenset({
    # files
    "WriteFile", "ReadFile", "MatchingFiles", "DeleteFile", "ImmutableConst", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "GenerateVocabRemapping", "LoadAndRemapMatrix", "RecordInput",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2", "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2", "TFRecordReader", "TFRecordReaderV2", "LMDBReader", "IdentityReader",
    "IdentityReaderV2", "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset", "SqlDataset",
    "ExperimentalSqlDataset", "LMDBDataset", "ExperimentalLMDBDataset", "SnapshotDataset", "SnapshotDatasetV2",
    "SnapshotDatasetReader", "SaveDataset", "SaveDatasetV2", "LoadDataset", "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord", "CacheDataset", "CacheDatasetV2", "DecodeProtoV2", "EncodeProto",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteRawProtoSummary", "WriteScalarSummary",
    "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary", "ImportEvent",
    "FlushSummaryWriter", "CloseSummaryWriter", "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3",
    "DebugNanCount", "DebugNumericSummary", "DebugNumericSummaryV2",
    # Python callbacks
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
})
# ops judged by an attribute: PrintV2 writing to a file (output_stream "file://...")
_ATTR_CHECKS = {"PrintV2": "output_stream"}


class _Msg:
    """A protobuf message decoded from the wire format without its schema: field number → raw values (ints for
    varints and fixed-width fields, bytes for length-delimited ones). Enough to walk SavedModel → MetaGraphDef →
    GraphDef / FunctionDefLibrary → NodeDef without importing TensorFlow (whose import writes ~/.keras/keras.json)."""

    def __init__(self, data: bytes):
        self.fields: dict[int, list[Any]] = {}
        i, n = 0, len(data)
        value: int | bytes
        while i < n:
            key, i = _varint(data, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, i = _varint(data, i)
            elif wire == 1:
                value, i = int.from_bytes(data[i:i + 8], "little"), i + 8
            elif wire == 5:
                value, i = int.from_bytes(data[i:i + 4], "little"), i + 4
            elif wire == 2:
                size, i = _varint(data, i)
                value, i = data[i:i + size], i + size
            else:
                raise ValueError(f"unsupported wire type {wire}")
            if i > n or number == 0:
                raise ValueError("truncated message")
            self.fields.setdefault(number, []).append(value)

    def messages(self, number: int) -> list[_Msg]:
        """A repeated message field (a singular one given several times merges: the same list)."""
        return [_Msg(v) for v in self.fields.get(number, []) if isinstance(v, bytes)]

    def merged(self, number: int) -> _Msg:
        """A singular message field: occurrences merge (their bytes concatenated), as in protobuf."""
        return _Msg(b"".join(v for v in self.fields.get(number, []) if isinstance(v, bytes)))

    def string(self, number: int) -> str:
        """A singular string field: the last value wins, as in protobuf."""
        values = [v for v in self.fields.get(number, []) if isinstance(v, bytes)]
        return values[-1].decode("utf-8", errors="replace") if values else ""


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


class _Node:
    """NodeDef: name (1), op (2), attr (5: map entries key 1 / AttrValue 2)."""

    def __init__(self, msg: _Msg):
        self.name, self.op = msg.string(1), msg.string(2)
        self.attr: dict[str, _Msg] = {}
        for entry in msg.messages(5):
            self.attr[entry.string(1)] = entry.merged(2)

    def funcs(self) -> set[str]:
        """Functions named by attributes: AttrValue.func (10: NameAttrList, name 1) or list.func (1 → 9)."""
        out = {f.string(1) for a in self.attr.values() for f in a.messages(10)}
        out |= {f.string(1) for a in self.attr.values() for lst in a.messages(1) for f in lst.messages(9)}
        return out

    def attr_string(self, name: str) -> str:
        return self.attr[name].string(2) if name in self.attr else ""


class _MetaGraph:
    """MetaGraphDef: graph_def (2: node 1, library 2 → function 1 → signature 1 (name 1), node_def 3), saver_def (3:
    filename 1, save 2, restore 3), object_graph_def (7: concrete_functions 2, map entries key 1)."""

    def __init__(self, msg: _Msg):
        graphs = msg.messages(2)
        self.nodes = [_Node(n) for g in graphs for n in g.messages(1)]
        self.functions: dict[str, list[_Node]] = {}
        for library in (lib for g in graphs for lib in g.messages(2)):
            for fn in library.messages(1):
                name = fn.merged(1).string(1)
                self.functions.setdefault(name, []).extend(_Node(n) for n in fn.messages(3))
        saver = msg.merged(3)
        self.saver_filename = saver.string(1)
        self.saver_nodes = {n.split(":")[0] for n in (saver.string(2), saver.string(3)) if n}
        self.concrete = {e.string(1) for og in msg.messages(7) for e in og.messages(2)}


def _read_meta_graphs(path: Path) -> list[_MetaGraph]:
    pb, pbtxt = path / "saved_model.pb", path / "saved_model.pbtxt"
    try:
        if pb.exists():
            return [_MetaGraph(m) for m in _Msg(pb.read_bytes()).messages(2)]
        from google.protobuf import (
            text_format,  # the text form needs the schema: TensorFlow's own
        )
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        text_format.Parse(pbtxt.read_text(), proto)
        return [_MetaGraph(_Msg(m.SerializeToString())) for m in proto.meta_graphs]
    except Exception as e:  # ValueError from the decoder, ParseError, OSError
        raise InvalidInputError(f"cannot parse {path}/saved_model.pb: {first_line(e)}",
                                "the SavedModel is damaged; export it again") from e


def _called(nodes: Iterable[_Node]) -> set[str]:
    """Names of the functions NodeDefs call: attributes naming functions, and the op itself (a library function can
    be called as an op)."""
    out: set[str] = set()
    for node in nodes:
        out.add(node.op)
        out |= node.funcs()
    return out


def _reach(roots: set[str], calls: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    stack = [r for r in roots if r in calls]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(c for c in calls[name] if c in calls and c not in seen)
    return seen


def _bad(node: _Node, allow_saver: bool) -> bool:
    if node.op in FILE_OPS or (node.op in SAVER_OPS and not allow_saver):
        return True
    attr = _ATTR_CHECKS.get(node.op)
    return attr is not None and node.attr_string(attr).startswith("file://")


def risky_ops(meta_graph: _MetaGraph) -> list[tuple[str, str, str]]:
    """(op, node, where) for every refused node of one meta graph."""
    functions = meta_graph.functions
    calls = {name: _called(nodes) for name, nodes in functions.items()}
    scope = meta_graph.saver_filename.rsplit("/", 1)[0] + "/" if "/" in meta_graph.saver_filename else None

    def in_saver(node: _Node) -> bool:
        return node.name in meta_graph.saver_nodes or bool(scope and node.name.startswith(scope))

    saver_roots = _called(n for n in meta_graph.nodes if in_saver(n))
    other_roots = _called(n for n in meta_graph.nodes if not in_saver(n)) | meta_graph.concrete
    saver_only = _reach(saver_roots, calls) - _reach(other_roots, calls)
    found = [(node.op, node.name, "graph") for node in meta_graph.nodes if _bad(node, allow_saver=in_saver(node))]
    for name in sorted(functions):
        found += [(node.op, node.name, name) for node in functions[name] if _bad(node, allow_saver=name in saver_only)]
    return found


def check_savedmodel(path: Path, trust_code: bool) -> None:
    """Refuse (exit 7) a SavedModel whose graphs touch files, the process or Python, unless trusted."""
    if trust_code:
        return
    found = [hit for mg in _read_meta_graphs(path) for hit in risky_ops(mg)]
    if found:
        by_op: dict[str, list[str]] = {}
        for op, _node, where in found:
            by_op.setdefault(op, [])
            if where not in by_op[op]:
                by_op[op].append(where)
        shown = "; ".join(f"{op} in {', '.join(wheres[:3])}{' …' if len(wheres) > 3 else ''}"
                          for op, wheres in sorted(by_op.items()))
        raise SafetyError(
            f"SavedModel {path} has ops that touch files, the process or Python when it runs: {shown}",
            "export the model without file-system / Python ops in its functions, or pass --trust-code if you trust "
            "its origin",
            details={"ops": [{"op": op, "node": node, "function": where} for op, node, where in found]},
        )
