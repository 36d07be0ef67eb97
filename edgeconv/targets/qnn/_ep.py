"""Shared plumbing for the Qualcomm QNN targets (onnx_to_qnn, onnx_to_dlc, targets/qnn/runtime.py): the onnxruntime-qnn
plugin execution provider, sessions on its HTP backend (compiler + x86-64 simulator), and the DLC archive reader.

Facts this code relies on (onnxruntime-qnn 2.7, QAIRT 2.51; see docs/targets/hexagon.md):
- The EP is a plugin library: register it once per process (a second registration raises), then add it to a session
  with `SessionOptions.add_provider_for_devices`.
- libQnnHtp prints a line (" # LIBNATIVE: ...") to file descriptor 1 when it first loads; that would corrupt `--json`
  output, so sessions are created with fd 1 pointed at stderr.
- onnxruntime's Python `InferenceSession.run` silently retries on the CPU provider after an EP failure unless
  `disable_fallback()` is called: a validation would then compare CPU with CPU. Every session here disables it.
- Without an explicit `htp_arch`, a session reuses the previous session's arch in the same process: always pass both
  `soc_model` and `htp_arch`.
- ORT's own graph optimisations are switched off (ORT_DISABLE_ALL): the HTP must take the graph as edgeconv wrote it,
  so what the placement check reports is what ships (a shape subgraph folded only inside ORT would hide a problem).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

from edgeconv.deps import require
from edgeconv.errors import InvalidInputError

EP_NAME = "QNNExecutionProvider"
_LOCK = threading.Lock()


def qnn_module() -> Any:
    return require("onnxruntime_qnn", "qnn", purpose="Qualcomm HTP targets")


def ep_devices() -> list[Any]:
    """The QNN EP's devices, registering the plugin library on first use."""
    ort = require("onnxruntime", "qnn")
    qnn = qnn_module()
    with _LOCK:
        if not any(d.ep_name == qnn.EP_NAME for d in ort.get_ep_devices()):
            ort.register_execution_provider_library(qnn.EP_NAME, qnn.get_library_path())
    devices = [d for d in ort.get_ep_devices() if d.ep_name == qnn.EP_NAME]
    if not devices:
        raise InvalidInputError("the QNN execution provider registered no device", "reinstall onnxruntime-qnn")
    return devices


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr (native libraries print there, bypassing sys.stdout)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no usable stdout (closed pipe): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        _flush_c_stdio()  # C stdout is block-buffered on a pipe: flush it while fd 1 still points at stderr
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)


def htp_options(soc: Any | None, **extra: Any) -> dict[str, str]:
    """Provider options for the HTP backend compiling for `soc` (a hexagon_socs.Soc; None when loading a context
    binary, which carries its own target)."""
    options: dict[str, Any] = {"backend_type": "htp", "offload_graph_io_quantization": "0"}
    if soc is not None:
        options.update(soc_model=soc.soc_model, htp_arch=soc.htp_arch)
    options.update(extra)
    return {k: str(v) for k, v in options.items()}


def qnn_session(model: Path, provider_options: dict[str, str], config: dict[str, Any] | None = None,
                log_level: int = 3) -> Any:
    """An InferenceSession on the QNN EP (creating it compiles the graph). Raises what onnxruntime raises."""
    ort = require("onnxruntime", "qnn")
    so = ort.SessionOptions()
    so.log_severity_level = log_level
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, str(value))
    so.add_provider_for_devices(ep_devices(), provider_options)
    with stdout_to_stderr():
        session = ort.InferenceSession(str(model), sess_options=so)
    session.disable_fallback()
    return session


def _entry_spans(path: Path) -> dict[str, tuple[int, int]]:
    """name → (data offset, size) of each entry of a zip, read from the local headers."""
    spans = {}
    with zipfile.ZipFile(path) as archive, path.open("rb") as fh:
        for info in archive.infolist():
            fh.seek(info.header_offset + 26)
            name_len = int.from_bytes(fh.read(2), "little")
            extra_len = int.from_bytes(fh.read(2), "little")
            spans[info.filename] = (info.header_offset + 30 + name_len + extra_len, info.compress_size)
    return spans


_TIMESTAMP = re.compile(rb'"timestamp": "\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"')
FIXED_TIMESTAMP = b'"timestamp": "1980-01-01 00:00:00 UTC"'


def stabilise_dlc(path: Path) -> int:
    """Make a DLC reproducible: its metadata JSON carries the wall-clock time of writing (the only difference between
    two runs). Overwrite those timestamps in place with a fixed one of the same length, so no offset moves (entries
    are aligned for mmap) and the CRC fields stay what Qualcomm wrote (0). Returns how many were replaced."""
    spans = {n: span for n, span in _entry_spans(path).items() if n.startswith("dlc.metadata")}
    data = bytearray(path.read_bytes())
    count = 0
    for start, size in spans.values():
        chunk = bytes(data[start:start + size])
        fixed, n = _TIMESTAMP.subn(FIXED_TIMESTAMP, chunk)
        if n and len(fixed) == len(chunk):
            data[start:start + size] = fixed
            count += n
    if count:
        path.write_bytes(bytes(data))
    return count


def read_dlc(path: Path) -> dict[str, bytes]:
    """Entries of a DLC archive. A DLC is a zip whose entries are stored with CRC fields left at 0, so
    `zipfile.ZipFile.read` raises "Bad CRC-32": read each entry's bytes from its local header instead."""
    out: dict[str, bytes] = {}
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise InvalidInputError(f"{path.name} is not a DLC archive: {e}", "the file is damaged; convert again") from e
    with path.open("rb") as fh:
        for info in infos:
            fh.seek(info.header_offset + 26)
            name_len = int.from_bytes(fh.read(2), "little")
            extra_len = int.from_bytes(fh.read(2), "little")
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            data = fh.read(info.compress_size)
            if info.compress_type == zipfile.ZIP_DEFLATED:
                data = zlib.decompress(data, -15)
            out[info.filename] = data
    return out
