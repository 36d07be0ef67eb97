"""What this machine can do (used by `edgeconv doctor`): installed backends and versions, which targets are usable, and
dependency clashes between the backends (protobuf and numpy above all: TensorFlow, ONNX and coremltools pin them
differently, and a clash shows up later as an obscure import error).

Reads package metadata only, unless `imports=True`: then each backend is imported in a fresh interpreter, which finds
binary incompatibilities (a wheel built against another numpy) that metadata cannot show.
"""

from __future__ import annotations


import importlib.metadata
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeconv.deps import backend_table, version_of

USER_GUIDE = """\
`edgeconv doctor` lists the installed backends and their versions, which targets are usable here, and dependency
clashes between the backends (protobuf and numpy above all: TensorFlow, ONNX and coremltools pin them differently,
and a clash shows up later as an obscure import error). It reads package metadata only; with --imports it also imports
each backend in a fresh interpreter, which finds binary incompatibilities (a wheel built against another numpy) that
metadata cannot show."""

# packages whose version every backend constrains; a mismatch here breaks imports
WATCHED = ("numpy", "protobuf")


@dataclass
class Clash:
    package: str
    installed: str
    required_by: str
    requirement: str

    def describe(self) -> str:
        return f"{self.required_by} requires {self.requirement}, but {self.package} {self.installed} is installed"


@dataclass
class ImportCheck:
    module: str
    ok: bool
    seconds: float
    error: str = ""


@dataclass
class DoctorReport:
    edgeconv: str
    python: str
    platform: str
    backends: list[dict[str, Any]]
    targets: list[dict[str, Any]]
    clashes: list[Clash] = field(default_factory=list)
    imports: list[ImportCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.clashes and all(i.ok for i in self.imports)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["clashes"] = [{**asdict(c), "message": c.describe()} for c in self.clashes]
        data["healthy"] = self.healthy
        return data


def _requirement_clashes(distributions: list[str], watched: tuple[str, ...] = WATCHED) -> tuple[list[Clash], list[str]]:
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name
    except ImportError:
        return [], ["`packaging` is not installed: dependency clashes were not checked"]
    installed = {canonicalize_name(w): version_of(w) for w in watched}
    clashes = []
    for dist in distributions:
        try:
            requires = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            name = canonicalize_name(req.name)
            have = installed.get(name)
            if have is None or not str(req.specifier):
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if not req.specifier.contains(have, prereleases=True):
                clashes.append(Clash(req.name, have, f"{dist} {version_of(dist)}", f"{req.name}{req.specifier}"))
    return clashes, []


def _check_import(module: str, timeout: float = 120) -> ImportCheck:
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                              timeout=timeout, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except subprocess.TimeoutExpired:
        return ImportCheck(module, False, timeout, f"import took more than {timeout:.0f} s")
    seconds = round(time.perf_counter() - started, 2)
    if proc.returncode == 0:
        return ImportCheck(module, True, seconds)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return ImportCheck(module, False, seconds, lines[-1] if lines else f"exit code {proc.returncode}")


def diagnose(*, imports: bool = False, only: list[str] | None = None) -> DoctorReport:
    """`only`: limit the import check to these backends (distribution or module names)."""
    from edgeconv import __version__
    from edgeconv.availability import availability
    from edgeconv.targets import builtin_profiles

    backends: list[dict[str, Any]] = []
    for dist, (module, extra) in backend_table().items():  # the pip extra that brings each backend
        backends.append({"name": dist, "module": module, "version": version_of(dist), "extra": extra})
    targets = []
    for profile in builtin_profiles():
        avail = availability(profile)
        targets.append({"name": profile.name, "usable": avail.usable, "validation": avail.validation if avail.usable else "none",
                        "note": avail.reason})
    present = [b["name"] for b in backends if b["version"] is not None]
    clashes, notes = _requirement_clashes(present)
    from edgeconv.host_cpu import host_int8_saturates

    if host_int8_saturates():
        notes.append("this CPU has no VNNI, so its int8 kernels saturate: validation computes int8 exactly "
                     "(ONNX Runtime and OpenVINO), while int8 models deployed on a CPU like this one lose accuracy")
    report = DoctorReport(__version__, platform.python_version(), f"{platform.system()} {platform.machine()}",
                          backends, targets, clashes, notes=notes)
    if imports:
        chosen = [b for b in backends if b["version"] is not None and (not only or b["name"] in only or b["module"] in only)]
        report.imports = [_check_import(b["module"]) for b in chosen]
    return report
