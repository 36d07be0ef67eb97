"""SavedModel graphs that touch files, the process or Python: found in `saved_model.pb` before TensorFlow loads it.

Every node of every meta graph and every function of its library is looked at (parsing the proto runs nothing). The
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


def _read_saved_model(path: Path) -> Any:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    pb, pbtxt = path / "saved_model.pb", path / "saved_model.pbtxt"
    try:
        if pb.exists():
            proto.ParseFromString(pb.read_bytes())
        else:
            from google.protobuf import text_format

            text_format.Parse(pbtxt.read_text(), proto)
    except Exception as e:  # DecodeError, ParseError, OSError
        raise InvalidInputError(f"cannot parse {path}/saved_model.pb: {first_line(e)}",
                                "the SavedModel is damaged; export it again") from e
    return proto


def _called(nodes: Iterable[Any]) -> set[str]:
    """Names of the functions a list of NodeDefs calls (attributes of type func, or lists of funcs; and the op itself
    when it names a library function)."""
    out: set[str] = set()
    for node in nodes:
        out.add(node.op)
        for attr in node.attr.values():
            if attr.HasField("func"):
                out.add(attr.func.name)
            if attr.HasField("list"):
                out.update(f.name for f in attr.list.func)
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


def _bad(node: Any, allow_saver: bool) -> bool:
    if node.op in FILE_OPS or (node.op in SAVER_OPS and not allow_saver):
        return True
    attr = _ATTR_CHECKS.get(node.op)
    if attr and attr in node.attr:
        return node.attr[attr].s.decode(errors="replace").startswith("file://")
    return False


def risky_ops(meta_graph: Any) -> list[tuple[str, str, str]]:
    """(op, node, where) for every refused node of one MetaGraphDef."""
    graph = meta_graph.graph_def
    functions = {f.signature.name: f for f in graph.library.function}
    calls = {name: _called(f.node_def) for name, f in functions.items()}
    saver = meta_graph.saver_def
    saver_nodes = {n.split(":")[0] for n in (saver.save_tensor_name, saver.restore_op_name) if n}
    scope = saver.filename_tensor_name.rsplit("/", 1)[0] + "/" if "/" in saver.filename_tensor_name else None

    def in_saver(node: Any) -> bool:
        return node.name in saver_nodes or bool(scope and node.name.startswith(scope))

    saver_roots = _called(n for n in graph.node if in_saver(n))
    other_roots = _called(n for n in graph.node if not in_saver(n))
    other_roots |= set(meta_graph.object_graph_def.concrete_functions)
    reached_by_saver = _reach(saver_roots, calls)
    untrusted_fns = set(functions) - (reached_by_saver - _reach(other_roots, calls))
    found = []
    for node in graph.node:
        if _bad(node, allow_saver=in_saver(node)):
            found.append((node.op, node.name, "graph"))
    for name in sorted(functions):
        for node in functions[name].node_def:
            if _bad(node, allow_saver=name not in untrusted_fns):
                found.append((node.op, node.name, name))
    return found


def check_savedmodel(path: Path, trust_code: bool) -> None:
    """Refuse (exit 7) a SavedModel whose graphs touch files, the process or Python, unless trusted."""
    if trust_code:
        return
    proto = _read_saved_model(path)
    found = [hit for mg in proto.meta_graphs for hit in risky_ops(mg)]
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
