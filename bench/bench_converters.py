"""Converter bake-off (issue 16, item 4): where two converters exist, which one should be edgeconv's default route?

TFLite from PyTorch:
  (a) edgeconv's route   torch → ONNX → onnx2tf           `edgeconv convert SRC -t tflite-fp32 --json`
  (b) litert-torch       torch → TFLite directly           litert_torch.convert(module, sample).export(...)
Core ML from ONNX (the ONNX file: the corpus model exported by `edgeconv convert SRC -t onnx`):
  (c) edgeconv           `edgeconv convert MODEL.onnx -t coreml-fp32 --json`: since issue 16 the onnx_to_coreml edge
                         (onnx2torch → torch.jit.trace → coremltools); before it, exit 4 for every ONNX source
                         (kept as `c_before` in the results)
  (d) by hand            onnx2torch → torch.export (.pt2) or torch.jit.trace (.pt) → `edgeconv convert` (torch_to_coreml)
                         → `edgeconv validate MODEL.onnx PACKAGE`: the cross-check the edge was chosen on

Per corpus model (tests/corpus, torch sources) and route: success, SNR against the source on the model's eval samples
(`edgeconv validate`, the same metrics and gate as `convert`; for (d) against the ONNX model the user handed over, not
the regenerated torch module), and TFLite CPU latency (`edgeconv bench`, LiteRT interpreter, 1 thread). Core ML has no
runtime on Linux (validation there is MIL reference execution), so (c)/(d) have no latency.

litert-torch is not an edgeconv dependency (pip cannot install it beside the pinned set: see bench/README.md); point
--deps at a folder it was installed into with `pip install --no-deps --target DIR ...` (never let pip change torch).
A route whose converter is not importable is skipped and keeps its earlier row. Each conversion runs in its own process.

    python bench/bench_converters.py --deps /tmp/convdeps --models resnet,yolo     # results: bench/results/converters.json
    python bench/bench_converters.py --table                                       # the markdown table for bench/README.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "converters.json"
CORPUS = REPO / "bench" / "results" / "corpus"
EDGECONV = [sys.executable, "-m", "edgeconv"]
DEFAULT_MODELS = ("resnet,mobilenetv2,mobilenetv3,efficientnet,convnext,vit_tiny,crnn,yolo,unet,mtcnn_rnet,audio_kws,"
                  "bert_tiny")


# ---------------------------------------------------------------------------------------------------- workers
def _sample_args(folder: Path, names: list[str]) -> tuple:
    import numpy as np
    import torch

    first = sorted(p for p in (folder / "eval").iterdir() if p.suffix in (".npy", ".npz"))[0]
    if first.suffix == ".npy":
        return (torch.from_numpy(np.load(first)),)
    data = np.load(first)
    keys = [k for k in data.files if k != "label"]
    ordered = [n if n in keys else keys[i] for i, n in enumerate(names)]
    return tuple(torch.from_numpy(data[k]) for k in ordered)


def worker_litert(src: str, out: str) -> None:
    import torch
    import litert_torch

    ep = torch.export.load(src)
    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    args = _sample_args(Path(src).parent, names)
    t0 = time.perf_counter()
    edge = litert_torch.convert(ep.module(), args)
    edge.export(out)
    print(json.dumps({"convert_s": round(time.perf_counter() - t0, 2)}))


def _import_onnx2torch():
    try:
        import torchvision  # noqa: F401
    except Exception:  # no CPU torchvision here: onnx2torch imports it for NonMaxSuppression / RoiAlign only
        import types

        stub = types.ModuleType("torchvision")
        stub.ops = types.ModuleType("torchvision.ops")

        def missing(*_a, **_k):
            raise NotImplementedError("torchvision is not installed (NonMaxSuppression / RoiAlign)")

        stub.ops.roi_align = stub.ops.nms = stub.ops.box_convert = missing
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, stub.ops
    import onnx2torch

    return onnx2torch


def worker_onnx2torch(onnx_path: str, folder: str, out: str) -> None:
    import onnx
    import torch

    onnx2torch = _import_onnx2torch()
    model = onnx.load(onnx_path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > 17:  # onnx2torch 1.5 knows opsets <= 17 for many ops (ReduceMean-18, Split-18, ...): step down first
        from onnx import version_converter

        model = version_converter.convert_version(model, 17)
    _allowzero_off(model)
    names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    args = _sample_args(Path(folder), names)
    t0 = time.perf_counter()
    gm = onnx2torch.convert(model).eval()
    try:
        torch.export.save(torch.export.export(gm, args), out)
        saved = "torch.export"
    except Exception as e:  # onnx2torch's Reshape reads its shape from a tensor: data-dependent for torch.export
        print(f"torch.export failed ({type(e).__name__}); tracing instead", file=sys.stderr)
        out = str(Path(out).with_suffix(".pt"))
        with torch.no_grad():
            traced = torch.jit.trace(gm, args, check_trace=False)
        torch.jit.save(traced, out)
        saved = "torch.jit.trace"
        names = [i.debugName().split(".")[0] for i in list(traced.graph.inputs())[1:]]  # onnx2torch renames them
    shapes = {n: list(a.shape) for n, a in zip(names, args)}  # TorchScript records no input shapes
    print(json.dumps({"convert_s": round(time.perf_counter() - t0, 2), "saved": saved, "path": out, "shapes": shapes}))


def _allowzero_off(model) -> None:
    """Reshape(allowzero=1) (what torch's dynamo exporter writes) means the same as allowzero=0 when the shape holds
    no 0; onnx2torch implements only allowzero=0."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        shape = consts.get(node.input[1]) if len(node.input) > 1 else None
        for a in node.attribute:
            if a.name == "allowzero" and a.i == 1 and shape is not None and not (shape == 0).any():
                a.i = 0


# ---------------------------------------------------------------------------------------------------- driver
def _run(cmd: list[str], env: dict | None = None, timeout: float = 900) -> tuple[int, dict, str]:
    try:
        p = subprocess.run(["nice", "-n", "10", *cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired:
        return 124, {}, f"timed out after {timeout:.0f}s"
    doc: dict = {}
    try:  # edgeconv --json: one (pretty-printed) object; a worker: one JSON line last
        doc = json.loads(p.stdout)
    except ValueError:
        for line in reversed(p.stdout.strip().splitlines()):
            try:
                doc = json.loads(line)
                break
            except ValueError:
                continue
    doc = doc if isinstance(doc, dict) else {}
    tail = (p.stderr.strip().splitlines() or [""])[-1][:300]
    return p.returncode, doc, tail


def _err(doc: dict, tail: str) -> str:
    errors = [doc.get("error"), *(t.get("error") for t in doc.get("targets") or [] if isinstance(t, dict))]
    e = next((x for x in errors if x), None)
    msg = e.get("message") if isinstance(e, dict) else None
    return (msg or doc.get("message") or tail or "")[:300]


def _validation_metrics(v: dict) -> dict:
    # numerical validation (LiteRT) or, for Core ML on Linux, the MIL reference run inside the structural check
    return v.get("metrics") or ((v.get("checks") or {}).get("mil_reference") or {}).get("metrics") or {}


def _metrics(doc: dict) -> dict:
    m = doc.get("metrics") or _validation_metrics(doc.get("validation") or {})
    if not m:
        for t in doc.get("targets") or doc.get("results") or []:
            m = t.get("metrics") or _validation_metrics(t.get("validation") or {}) or m
    return {"snr_db": m.get("snr_db"), "exact_match": m.get("exact_match"), "top1": m.get("top1_agreement")}


def _mil_note(doc: dict) -> dict:
    """Core ML on Linux: why the MIL reference did not run (then only the structural check did)."""
    for v in [doc.get("validation") or {}, *((t.get("validation") or {}) for t in doc.get("targets") or [])]:
        mil = (v.get("checks") or {}).get("mil_reference") or {}
        if mil and not mil.get("ran", True):
            return {"note": "structural check only: " + str(mil.get("reason", ""))}
    return {}


def _artifact(doc: dict, out: Path, fmt: str) -> Path | None:
    for t in [doc, *(doc.get("targets") or [])]:
        for a in t.get("artifacts") or []:
            if a.get("format") == fmt and a.get("role", "model") == "model":
                p = Path(a["path"])
                return p if p.is_absolute() else out / p
    hits = sorted(out.rglob(f"*.{'mlpackage' if fmt == 'coreml' else fmt}"))
    return hits[0] if hits else None


def _installed(module: str, env: dict) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def _latency(tflite: Path, runs: int) -> float | None:
    rc, doc, _ = _run([*EDGECONV, "bench", str(tflite), "-n", str(runs), "--json"], timeout=300)
    if rc != 0:
        return None
    lat = doc.get("latency_ms") or doc.get("latency") or {}
    return lat.get("p50") if isinstance(lat, dict) else doc.get("p50_ms")


def _validate(src: Path, artifact: Path, target: str, folder: Path) -> tuple[int, dict, str]:
    return _run([*EDGECONV, "validate", str(src), str(artifact), "-t", target, "--eval", str(folder / "eval"),
                 "--json"], timeout=600)


def bench_tflite(name: str, root: Path, out: Path, env: dict, runs: int) -> dict:
    from tests.corpus import registry

    folder = root / name
    src = folder / registry.read_meta(folder)["file"]
    rows: dict = {}
    o = out / name / "a"
    t0 = time.perf_counter()
    rc, doc, tail = _run([*EDGECONV, "convert", *registry.cli_args(root, name), "-t", "tflite-fp32", "-o", str(o),
                          "--force", "--json"])
    row = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), **_metrics(doc)}
    art = _artifact(doc, o, "tflite") if rc in (0, 5) else None
    if rc != 0:
        row["error"] = _err(doc, tail)
    if art and art.exists():
        row["bytes"] = art.stat().st_size
        row["latency_ms"] = _latency(art, runs)
    rows["a"] = row

    o = out / name / "b"
    if not _installed("litert_torch", env):
        return rows  # keeps the (b) row measured before, if any
    o.mkdir(parents=True, exist_ok=True)
    tfl = o / f"{name}.tflite"
    t0 = time.perf_counter()
    if src.suffix != ".pt2":
        rows["b"] = {"rc": -1, "error": "litert-torch takes an nn.Module it can torch.export; TorchScript cannot be"}
        return rows
    rc, doc, tail = _run([sys.executable, __file__, "--worker", "litert", str(src), str(tfl)], env=env)
    row = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1)}
    if rc != 0:
        row["error"] = tail
    else:
        vrc, vdoc, vtail = _validate(src, tfl, "tflite-fp32", folder)
        row.update({"rc": vrc, **_metrics(vdoc), "bytes": tfl.stat().st_size, "latency_ms": _latency(tfl, runs)})
        if vrc != 0:
            row["error"] = _err(vdoc, vtail)
    rows["b"] = row
    return rows


def bench_coreml(name: str, root: Path, out: Path, env: dict, manual: bool = True) -> dict:
    from tests.corpus import registry

    folder = root / name
    rows: dict = {}
    o = out / name / "onnx"
    rc, doc, tail = _run([*EDGECONV, "convert", *registry.cli_args(root, name), "-t", "onnx", "-o", str(o),
                          "--force", "--json"])
    onnx_path = _artifact(doc, o, "onnx")
    if rc != 0 or not onnx_path:
        return {"c": {"rc": rc, "error": "no ONNX source: " + _err(doc, tail)}}
    o = out / name / "c"
    t0 = time.perf_counter()
    rc, doc, tail = _run([*EDGECONV, "convert", str(onnx_path), "--eval", str(folder / "eval"), "-t", "coreml-fp32",
                          "-o", str(o), "--force", "--json"])
    rows["c"] = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), **_metrics(doc), **_mil_note(doc),
                 **({"error": _err(doc, tail)} if rc else {})}

    o = out / name / "d"
    if not manual or not _installed("onnx2torch", env):
        return rows
    o.mkdir(parents=True, exist_ok=True)
    pt2 = o / f"{name}_onnx2torch.pt2"
    t0 = time.perf_counter()
    rc, doc, tail = _run([sys.executable, __file__, "--worker", "onnx2torch", str(onnx_path), str(folder), str(pt2)],
                         env=env)
    if rc != 0:
        rows["d"] = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "error": "onnx2torch: " + tail}
        return rows
    pt2 = Path(doc.get("path") or pt2)
    shape_args = [a for n, dims in (doc.get("shapes") or {}).items() if pt2.suffix == ".pt"
                  for a in ("--input-shape", f"{n}={'x'.join(map(str, dims))}")]
    rc, doc, tail = _run([*EDGECONV, "convert", str(pt2), "--eval", str(folder / "eval"), "-t", "coreml-fp32", "-o",
                          str(o / "out"), "--force", "--json", *shape_args])
    row = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "saved_as": pt2.suffix,
           "snr_vs_regenerated_db": _metrics(doc)["snr_db"]}
    pkg = _artifact(doc, o / "out", "coreml") if rc in (0, 5) else None
    if rc != 0:
        row["error"] = _err(doc, tail)
    if pkg and pkg.exists():  # the number that matters: the Core ML program against the ONNX model handed over
        vrc, vdoc, vtail = _validate(onnx_path, pkg, "coreml-fp32", folder)
        row.update({"rc": vrc if rc == 0 else rc, **_metrics(vdoc)})
        row.update(_mil_note(vdoc))
        if vrc != 0 and rc == 0:
            row["error"] = "validate vs ONNX: " + _err(vdoc, vtail)
    rows["d"] = row
    return rows


# ---------------------------------------------------------------------------------------------------- table
def _cell(r: dict | None, latency: bool = True) -> str:
    if not r:
        return "—"
    if r.get("rc") != 0:
        why = (r.get("error") or "").replace("|", "/").strip()
        snr = f", {r['snr_db']:.1f} dB" if isinstance(r.get("snr_db"), (int, float)) else ""
        return f"✗ exit {r.get('rc')}{snr}: {why[:110]}"
    snr = r.get("snr_db")
    s = f"✓ {snr:.1f} dB" if isinstance(snr, (int, float)) else f"✓ ({r['note']})" if r.get("note") else "✓"
    if latency and r.get("latency_ms") is not None:
        s += f", {r['latency_ms']:.2f} ms"
    return s


def table(results: dict) -> str:
    """One row per model: (a), (b), and Core ML from ONNX before the onnx2torch edge (c_before) and with it (c)."""
    lines = ["| model | (a) torch→ONNX→onnx2tf: SNR, p50 | (b) litert-torch: SNR, p50 | ONNX→Core ML before "
             "| (c) ONNX→onnx2torch→Core ML: SNR (MIL reference) |", "|---|---|---|---|---|"]
    passed = {k: [0, 0] for k in ("a", "b", "c_before", "c")}
    for name, rows in results.items():
        for k in passed:
            r = rows.get(k)
            if r and r.get("rc", -1) >= 0:
                passed[k][1] += 1
                passed[k][0] += r.get("rc") == 0
        before = rows.get("c_before")
        was = f"exit {before.get('rc')}" if before else "—"
        lines.append(f"| {name} | {_cell(rows.get('a'))} | {_cell(rows.get('b'))} | {was} | "
                     f"{_cell(rows.get('c'), False)} |")
    lines.append("| **passed** | " + " | ".join(f"{ok}/{n}" for ok, n in passed.values()) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--part", choices=("tflite", "coreml", "all"), default="all")
    ap.add_argument("--root", type=Path, default=CORPUS)
    ap.add_argument("--out", type=Path, default=Path("/tmp/edgeconv-bench-converters"))
    ap.add_argument("--deps", default="", help="folder holding litert-torch / onnx2torch (pip --no-deps --target)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per latency measurement")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--no-manual", action="store_true",
                    help="skip (d), the onnx2torch → .pt2/.pt → torch_to_coreml cross-check by hand")
    ap.add_argument("--table", action="store_true", help="print the markdown table of --results and exit")
    args = ap.parse_args()
    if args.worker:
        kind, *rest = args.worker
        {"litert": worker_litert, "onnx2torch": worker_onnx2torch}[kind](*rest)
        return 0
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    if args.table:
        print(table(results))
        return 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), args.deps, env.get("PYTHONPATH", "")) if p)
    for name in [m for m in args.models.split(",") if m]:
        rows = results.setdefault(name, {})
        if args.part in ("tflite", "all"):
            rows.update(bench_tflite(name, args.root, args.out, env, args.runs))
        if args.part in ("coreml", "all"):
            rows.update(bench_coreml(name, args.root, args.out, env, manual=not args.no_manual))
        print(name, json.dumps(rows), flush=True)
        args.results.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
