"""Route matrix: convert every corpus model (tests/corpus) to every target its source format can reach, each
(model, target) as its own `edgeconv convert ... --json` subprocess with the model's local --calib / --eval folders, and
write docs/coverage.md (per cell: ✓ with SNR / top-1 agreement / size ratio, or the exit code and the one-line reason).

    .venv/bin/python bench/matrix.py                                  # everything (hours)
    .venv/bin/python bench/matrix.py --targets onnx,cpu-int8 --models resnet,unet --jobs 2
    make matrix MATRIX_ARGS="--targets tflite-int8"

Which targets a model gets is asked of edgeconv (`edgeconv targets --json` for the profiles usable here, the converter
graph for what a source format reaches), never listed here. Resumable: cells already in the results JSON
(bench/results/matrix.json) are skipped unless --rerun (all) or --rerun-failed. The table is rewritten after every cell,
so an interrupted run still leaves a correct partial table.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.corpus import registry  # noqa: E402

RESULTS = REPO / "bench" / "results" / "matrix.json"
CORPUS_ROOT = REPO / "bench" / "results" / "corpus"
OUT_ROOT = REPO / "bench" / "results" / "out"
COVERAGE = REPO / "docs" / "coverage.md"
EDGECONV = [sys.executable, "-m", "edgeconv"]

# Refusals a user accepts (issue #16: "a named limit of the target itself, exit 4, with the workaround"): an exit-4
# message matching one of these is a limit of the target or of its only converter, not a defect edgeconv could fix.
# Matched when the table is written, so that old cells are judged by the current list. Anything else is a failure.
LIMITS = (
    (r"ExecuTorch needs a torch\.export program", "ExecuTorch lowers torch.export programs only; a TorchScript "
     "archive has none (re-export with torch.export)"),
    (r"has no converter for .*\bLoop\b|onnx2tf\.ops\.Loop", "onnx2tf, TFLite's only ONNX route, has no Loop "
     "(trace or torch.export the model)"),
    (r"Operators of type `Loop` are not supported by QNN", "the HTP has no Loop op (trace or torch.export the model)"),
    (r"on the Neural Engine; on GPU/CPU: .*\b(cond|while_loop)\b", "the Neural Engine runs no control flow: Core ML "
     "runs the scripted if / loop on the CPU (--allow-cpu-fallback takes it)"),
    (r"QOperator format has no integer ConvTranspose", "the QOperator format has no integer ConvTranspose "
     "(cpu-int8, QDQ, quantizes it)"),
    (r"LiteRT has no \w+ kernel for this model's int16 tensors", "LiteRT cannot invoke the int16 op TFLiteConverter "
     "wrote (LayerNorm's SQUARED_DIFFERENCE): tflite-int8 or tflite-fp16"),
    (r"no 16x8 \(int16 activation\) kernel for", "TFLite has no 16x8 kernel for the ops named (HARD_SWISH in every "
     "MobileNetV3, PRELU, TOPK_V2...): --allow-cpu-fallback keeps them float, or tflite-int8 / tflite-fp16"),
    (r"16x8 calibration records no range for", "TFLiteConverter's 16x8 mode calibrates no integer input (token ids; "
     "tensorflow/tensorflow#60799): tflite-int8, tflite-dynamic or tflite-fp16"),
    (r"a full-integer TFLite has no float island", "a full-integer TFLite has no float island for an in-graph power "
     "spectrum feeding Log: tflite-fp16 / tflite-dynamic, or an ONNX integer target (they keep the front end float)"),
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return env


def edgeconv_targets() -> list[dict]:
    """The profiles edgeconv knows, with availability here (`edgeconv targets --json`)."""
    proc = subprocess.run([*EDGECONV, "targets", "--json"], capture_output=True, text=True, env=_env(), cwd=REPO)
    return json.loads(proc.stdout)["targets"]


def reachable_targets(source: Path, targets: list[dict]) -> list[tuple[str, bool, str]]:
    """[(target, static_shapes, why_not)] for the usable targets; why_not is '' when the source's format reaches the
    target's primary format through edgeconv's converter graph, else the reason it is skipped."""
    from edgeconv.formats import detect
    from edgeconv.targets import resolve

    try:
        from edgeconv.pipeline import reachable
    except ImportError:  # the API moved: let edgeconv itself say no, per cell
        reachable = None
    fmt = detect(source).format
    reach = reachable(fmt) | {fmt.value} if reachable else None
    out = []
    for t in targets:
        if not t.get("available", True):
            out.append((t["name"], False, f"not usable here: {t.get('note', '')}"))
            continue
        try:
            profile = resolve(t["name"])
        except Exception as exc:  # noqa: BLE001 - report, do not stop the matrix
            out.append((t["name"], False, f"profile: {exc}"))
            continue
        static = bool(getattr(getattr(profile, "shapes", None), "static", False))
        primary = profile.primary_format.value
        if reach is not None and primary not in reach:
            out.append((t["name"], static, f"no route from {fmt.value} to {primary}"))
        else:
            out.append((t["name"], static, ""))
    return out


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def limit_label(cell: dict) -> str:
    """The accepted limit an exit-4 cell hit (LIMITS), else ""."""
    if cell.get("rc") != 4:
        return ""
    text = f"{cell.get('message', '')} {cell.get('hint', '')}"
    return next((label for pattern, label in LIMITS if re.search(pattern, text)), "")


def _tree_error() -> str:
    """'' if every edgeconv source file compiles (others edit the tree while the matrix runs), else the error."""
    for f in sorted((REPO / "edgeconv").rglob("*.py")):
        try:
            compile(f.read_text(), str(f), "exec")
        except (SyntaxError, ValueError, OSError) as exc:
            return f"{f.relative_to(REPO)}: {exc}"
    return ""


def wait_for_tree(limit: float = 900) -> None:
    t0 = time.time()
    while (err := _tree_error()) and time.time() - t0 < limit:
        print(f"waiting for the tree to compile: {err}", flush=True)
        time.sleep(15)


def broken_tree(cell: dict) -> bool:
    return cell.get("rc") == 1 and bool(re.search(r"SyntaxError|IndentationError", cell.get("message", "")))


def run_cell(model: str, target: str, static: bool, timeout: float, keep: bool) -> dict:
    """One cell. A target that needs static shapes answers a dynamic input (a Keras batch dim) with exit 3 and the
    exact `--input-shape` to add: the cell does what a user would, reruns with it, and records that it had to."""
    cell = _run_cell(model, target, static, timeout, keep, [])
    hint = cell.get("hint", "")
    if cell.get("rc") == 3 and "fix them with --input-shape" in hint:
        extra = re.findall(r"--input-shape (\S+)", hint)
        retry = _run_cell(model, target, static, timeout, keep, [a for x in extra for a in ("--input-shape", x)])
        retry["shapes_from_hint"] = extra
        retry["first_attempt"] = cell.get("message", "")
        return retry
    return cell


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()


def _code_commit() -> str:
    """HEAD, with "+dirty" when the package's tracked files differ from it: the cell did not run that commit's code."""
    head = _head()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "edgeconv"],
                             capture_output=True, text=True, cwd=REPO).stdout.strip()
    return f"{head}+dirty" if changed else head


def _run_cell(model: str, target: str, static: bool, timeout: float, keep: bool, extra: list[str]) -> dict:
    out = OUT_ROOT / model / target
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*EDGECONV, "convert", *registry.cli_args(CORPUS_ROOT, model, static=static), *extra, "-t", target,
           "-o", str(out), "--force", "--json"]
    cell: dict = {"model": model, "target": target, "command": " ".join(cmd[2:]).replace(str(REPO) + "/", ""),
                  "commit": _code_commit(),
                  "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=REPO)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = "timeout", "", (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    cell["seconds"] = round(time.time() - t0, 1)
    cell["rc"] = rc
    try:
        doc = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        doc = None
    if rc == "timeout":
        cell.update(status="timeout", message=f"no result after {timeout:.0f} s")
    elif doc is None:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        cell.update(status="fail", message=one_line(tail[-1] if tail else f"exit {rc}, no JSON on stdout"),
                    stderr_tail=stderr[-3000:])
    elif "error" in doc:
        err = doc["error"]
        cell.update(status="fail", kind=err.get("kind", ""), message=one_line(err.get("message", "")),
                    hint=one_line(err.get("hint", "") or ""), details=err.get("details"))
        if rc == 1:
            cell["stderr_tail"] = stderr[-3000:]
    else:
        cell.update(_summarise(doc, target))
        cell["status"] = "ok" if rc == 0 else "fail"
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return cell


def _summarise(manifest: dict, target: str) -> dict:
    from edgeconv.manifest import target_shipped_bytes

    rec = next((t for t in manifest.get("targets", []) if t.get("target") == target), {})
    val = rec.get("validation", {}) or {}
    metrics = {k: v for k, v in (val.get("metrics") or {}).items() if k != "outputs"}
    outputs = (val.get("metrics") or {}).get("outputs") or []
    artifacts = rec.get("artifacts", [])
    model_art = next((a for a in artifacts if a.get("role") == "model"), artifacts[0] if artifacts else {})
    src_bytes = manifest.get("source", {}).get("bytes") or 0
    # the deployable's size, as the manifest records it (manifest.shipped_size: the primary artifact plus the files it
    # loads — a QNN context's binary, external data, an OpenVINO .bin), the figure convert and batch print
    primary_bytes = target_shipped_bytes(rec) or 0
    fallback = (rec.get("notes", {}).get("quantize") or {}).get("fallback") or {}
    mixed = rec.get("notes", {}).get("coreml_mixed_bits") or {}  # Core ML palettes: the weights raised a width
    return {
        "validation": val.get("kind", ""), "passed": val.get("passed"), "metrics": metrics,
        "outputs": [{k: v for k, v in o.items()} for o in outputs],
        "gate": val.get("gate"), "failures": val.get("failures"), "validation_note": one_line(val.get("note", "")),
        "artifact": model_art.get("path", ""), "artifact_bytes": primary_bytes, "source_bytes": src_bytes,
        "artifacts": [{k: a.get(k) for k in ("path", "format", "role", "bytes")} for a in artifacts],
        "size_ratio": round(primary_bytes / src_bytes, 3) if src_bytes and primary_bytes else None,
        "warnings": [one_line(w if isinstance(w, str) else json.dumps(w)) for w in rec.get("warnings", [])],
        "fallback_nodes": len(fallback.get("nodes") or mixed.get("raised") or []),
        "average_bits": mixed.get("average_bits") if mixed.get("raised") else None,
        "steps": [f"{s.get('name')} {s.get('seconds')}s" for s in rec.get("steps", [])],
    }


# ------------------------------------------------------------------------------------------------------ report
def _fmt(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"


def _ok_text(c: dict, short: bool) -> str:
    m = c.get("metrics") or {}
    parts = []
    if c.get("validation") == "structural":
        parts.append("structural")
    else:
        if m.get("snr_db") is not None:
            parts.append(f"{_fmt(m['snr_db'], '.1f')} dB")
        elif m.get("cosine") is not None:
            parts.append(f"cos {_fmt(m['cosine'], '.4f')}")
        if m.get("top1_agreement") is not None and not short:
            parts.append(f"top1 {_fmt(m['top1_agreement'] * 100, '.0f')}%")
        if m.get("exact_match") is not None and not short:
            parts.append(f"exact {_fmt(m['exact_match'] * 100, '.0f')}%")
    if c.get("size_ratio") and not short:
        parts.append(f"{c['size_ratio']:.2f}x")
    text = "✓ " + " · ".join(parts) if parts else "✓"
    return text + (" (‡)" if c.get("shapes_from_hint") else "")


def _source_bytes(model: str) -> int:
    meta = registry.read_meta(CORPUS_ROOT / model) or {}
    path = CORPUS_ROOT / model / meta.get("file", "")
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.is_file() else 0


def write_coverage(results: dict, models: list[str], targets: list[str], args_line: str, skipped: dict) -> None:
    cells = results["cells"]
    sizes = {m: _source_bytes(m) for m in models}
    for c in cells.values():  # size ratios against the source as it is now (rebuilt sources change size)
        if c.get("artifact_bytes") and sizes.get(c["model"]):
            c["size_ratio"] = round(c["artifact_bytes"] / sizes[c["model"]], 3)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    used_targets = [t for t in targets if any(f"{m}|{t}" in cells or (m, t) in skipped for m in models)]
    done = [c for c in cells.values() if c["model"] in models and c["target"] in used_targets]
    ok = sum(c["status"] == "ok" for c in done)
    accepted = sum(c["status"] != "ok" and bool(limit_label(c)) for c in done)
    planned = sum(1 for m in models for t in used_targets if (m, t) not in skipped)
    lines = [
        "# Route coverage: the corpus × targets",
        "",
        f"Generated by `bench/matrix.py` (`make matrix`) — last update {date}; edgeconv commits "
        f"{', '.join(sorted({c.get('commit') or results.get('commit', '?') for c in done})) or results.get('commit', '?')} "
        "(the tree moved while the matrix ran; each cell's commit is in bench/results/matrix.json).",
        f"This file: `{args_line}`; cells are kept across runs in bench/results/matrix.json (a run skips the cells "
        "it already has: `--rerun-failed` redoes failures).",
        "",
        f"**Targets run:** {', '.join(used_targets)}.  ",
        f"**Models run:** {', '.join(models)}.  ",
        f"**Cells:** {len(done)} of {planned} run, {ok} ✓, {accepted} ⊘ (accepted refusals), "
        f"{len(done) - ok - accepted} ✗."
        + ("" if len(done) >= planned else " **Partial table: the run is not finished (or was stopped); empty cells "
                                           "were not run.**"),
        "",
        "Each cell is one `edgeconv convert MODEL -t TARGET --calib … --eval … --json` subprocess on this Linux x86-64 "
        "CPU machine (corpus models: tests/corpus, built from definitions, no downloaded weights). ✓ = exit 0, with the "
        "validation SNR of the target's output against the source model on held-out samples (Core ML: structural check "
        "only, no runtime on Linux; TensorRT: engine not built without a GPU, its ONNX is validated). ✗N = exit code N "
        "(2 usage, 3 invalid input, 4 unsupported, 5 accuracy gate, 1 internal error); [k] points to the reason below. "
        "⊘ [Lk] = an accepted refusal: exit 4 at a named limit of the target or of its only converter, with the "
        "workaround (the LIMITS list in bench/matrix.py). "
        "`—` = the target's format is not reachable from this source format (edgeconv has no route). "
        "‡ = the target needs static shapes and the first try stopped with exit 3 naming the `--input-shape` to add; "
        "the cell is the rerun with it (a Keras batch dim is dynamic).",
        "",
        "## Matrix",
        "",
        "| model | source | " + " | ".join(used_targets) + " |",
        "|---|---|" + "---|" * len(used_targets),
    ]
    failures: list[dict] = []
    refusals: list[dict] = []
    for m in models:
        e = registry.BY_NAME[m]
        row = [f"`{m}`", e.source]
        for t in used_targets:
            c = cells.get(f"{m}|{t}")
            if (m, t) in skipped and not c:
                row.append("—")
            elif not c:
                row.append("")
            elif c["status"] == "ok":
                row.append(_ok_text(c, short=True))
            elif limit_label(c):
                refusals.append(c)
                row.append(f"⊘ [L{len(refusals)}]")
            else:
                failures.append(c)
                code = c["rc"] if c["rc"] != "timeout" else "T"
                row.append(f"✗{code} [{len(failures)}]")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Failures", "", "Exit code, error kind and edgeconv's one-line message (the hint follows when it "
              "adds something).", ""]
    for i, c in enumerate(failures, 1):
        msg = c.get("message", "")
        hint = f" — hint: {c['hint']}" if c.get("hint") else ""
        lines.append(f"{i}. `{c['model']}` × `{c['target']}`: exit {c['rc']} {c.get('kind', '')} — {msg}{hint}")
    lines += ["", "## Accepted refusals", "", "The limit, then edgeconv's message.", ""]
    for i, c in enumerate(refusals, 1):
        lines.append(f"L{i}. `{c['model']}` × `{c['target']}`: **{limit_label(c)}** — {c.get('message', '')}")
    lines += ["", "## Passing cells", "",
              "| model | target | validation | SNR dB | cosine | top-1 | size ratio | fallback nodes | seconds |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        for t in used_targets:
            c = cells.get(f"{m}|{t}")
            if c and c["status"] == "ok":
                mm = c.get("metrics") or {}
                top1 = mm.get("top1_agreement")
                lines.append(f"| `{m}` | {t} | {c.get('validation', '')} | {_fmt(mm.get('snr_db'), '.1f')} | "
                             f"{_fmt(mm.get('cosine'), '.5f')} | {_fmt(top1 * 100 if isinstance(top1, float) else None, '.0f')}"
                             f"{'%' if isinstance(top1, float) else ''} | {_fmt(c.get('size_ratio'), '.3f')} | "
                             f"{c.get('fallback_nodes', 0)} | {c.get('seconds')} |")
    lines += ["", "## Corpus", "", "| model | family | source form | features | trained on |", "|---|---|---|---|---|"]
    for m in models:
        e = registry.BY_NAME[m]
        lines.append(f"| `{m}` | {e.family} | {e.source} | {e.features} | {e.trained or 'random init'} |")
    if results.get("build_errors"):
        lines += ["", "## Corpus build failures", ""]
        for m, err in results["build_errors"].items():
            lines.append(f"- `{m}`: {one_line(err.strip().splitlines()[-1] if err.strip() else err)}")
    COVERAGE.parent.mkdir(parents=True, exist_ok=True)
    tmp = COVERAGE.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, COVERAGE)


def save_results(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
    os.replace(tmp, RESULTS)


def main() -> int:
    global RESULTS, COVERAGE, CORPUS_ROOT, OUT_ROOT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="", help="comma-separated corpus model names (default: all)")
    ap.add_argument("--targets", default="", help="comma-separated target names (default: every usable target)")
    ap.add_argument("--jobs", type=int, default=1, help="cells converted at once (default 1)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per cell before it counts as a timeout")
    ap.add_argument("--order", choices=("models", "targets"), default="models",
                    help="run row by row (default) or column by column")
    ap.add_argument("--rerun", action="store_true", help="rerun cells already in the results JSON")
    ap.add_argument("--rerun-failed", action="store_true", help="rerun the cells that failed last time")
    ap.add_argument("--keep-outputs", action="store_true", help="keep each cell's OUTDIR under bench/results/out")
    ap.add_argument("--report-only", action="store_true", help="rewrite docs/coverage.md from the results JSON")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--coverage", type=Path, default=COVERAGE)
    ap.add_argument("--corpus-root", type=Path, default=CORPUS_ROOT)
    args = ap.parse_args()
    RESULTS, COVERAGE, CORPUS_ROOT = args.results, args.coverage, args.corpus_root
    OUT_ROOT = RESULTS.parent / "out"
    args_line = "bench/matrix.py " + " ".join(sys.argv[1:])

    models = [m for m in args.models.split(",") if m] or [e.name for e in registry.CORPUS]
    unknown = [m for m in models if m not in registry.BY_NAME]
    if unknown:
        print(f"unknown models {unknown}; corpus: {', '.join(registry.BY_NAME)}", file=sys.stderr)
        return 2
    all_targets = edgeconv_targets()
    names = [t["name"] for t in all_targets]
    wanted = [t for t in args.targets.split(",") if t] or names
    missing = [t for t in wanted if t not in names]
    if missing:
        print(f"unknown targets {missing}; edgeconv knows: {', '.join(names)}", file=sys.stderr)
        return 2
    targets = [t for t in all_targets if t["name"] in wanted]
    targets.sort(key=lambda t: wanted.index(t["name"]))

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"cells": {}}
    results["commit"] = _head()
    if not args.report_only:
        print(f"building corpus models under {CORPUS_ROOT} (cached) ...", flush=True)
        errors = registry.ensure(CORPUS_ROOT, models)
        results.setdefault("build_errors", {}).update(errors)
        for m in models:
            if m not in errors:
                results["build_errors"].pop(m, None)
    built = [m for m in models if registry.is_built(CORPUS_ROOT, m)]

    skipped: dict[tuple[str, str], str] = {}
    todo: list[tuple[str, str, bool]] = []
    for m in built:
        meta = registry.read_meta(CORPUS_ROOT / m)
        for t, static, why_not in reachable_targets(CORPUS_ROOT / m / meta["file"], targets):
            key = f"{m}|{t}"
            if why_not:
                skipped[(m, t)] = why_not
                continue
            prev = results["cells"].get(key)
            if prev and not args.rerun and not (args.rerun_failed and prev["status"] != "ok"):
                continue
            todo.append((m, t, static))
    # Unreachable cells are kept in the JSON too, so --report-only draws `—` without the corpus built.
    stored = results.setdefault("unreachable", {})
    run_targets = {t["name"] for t in targets}
    for key in [k for k in stored if k.split("|")[0] in built and k.split("|", 1)[1] in run_targets]:
        del stored[key]
    stored.update({f"{m}|{t}": why for (m, t), why in skipped.items()})
    for key, why in stored.items():
        m, t = key.split("|", 1)
        skipped.setdefault((m, t), why)
    if args.order == "targets":  # whole columns first (a partial run then has complete targets, not models)
        order = [t["name"] for t in targets]
        todo.sort(key=lambda item: order.index(item[1]))
    lock = threading.Lock()
    write_coverage(results, models, [t["name"] for t in targets], args_line, skipped)
    if args.report_only:
        return 0
    print(f"{len(todo)} cells to run ({len(skipped)} unreachable)", flush=True)

    def work(item):
        m, t, static = item
        wait_for_tree()
        cell = run_cell(m, t, static, args.timeout, args.keep_outputs)
        if broken_tree(cell):  # someone's half-saved edit, not a result: once the tree compiles again, rerun
            wait_for_tree()
            cell = run_cell(m, t, static, args.timeout, args.keep_outputs)
            if broken_tree(cell):
                print(f"{m} × {t}: not recorded (edgeconv's source does not compile: {cell.get('message')})")
                return
        with lock:
            results["cells"][f"{m}|{t}"] = cell
            save_results(results)
            write_coverage(results, models, [x["name"] for x in targets], args_line, skipped)
            status = "ok " + _ok_text(cell, short=False) if cell["status"] == "ok" else \
                f"FAIL exit {cell['rc']}: {cell.get('message', '')}"
            print(f"[{cell['seconds']:6.1f}s] {m} × {t}: {status}", flush=True)

    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(work, todo))
    save_results(results)
    write_coverage(results, models, [t["name"] for t in targets], args_line, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
