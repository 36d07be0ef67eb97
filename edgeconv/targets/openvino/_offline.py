"""openvino.convert_model (OVC) and NNCF send usage telemetry (Google Analytics) unless the user opted out: with no
consent file they count it as consent, write a client id and stats into ~/intel/ and try the network (a bare
`import openvino` already writes the files). A conversion
writes nothing outside OUTDIR and sends nothing anywhere, so openvino_telemetry's Telemetry is replaced by a no-op
before either is imported (NNCF builds its telemetry object at import time)."""

from __future__ import annotations

import importlib
from typing import Any


class _NoTelemetry:
    """Every method is a no-op (send_event, start_session, end_session, force_shutdown, ...); no backend attribute
    (OVC re-initialises a Telemetry whose backend has another app name)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("backend", "sender", "tid", "consent"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def no_telemetry() -> None:
    try:
        module: Any = importlib.import_module("openvino_telemetry")
    except ImportError:  # OVC and NNCF then use their own stubs
        return
    module.Telemetry = _NoTelemetry
