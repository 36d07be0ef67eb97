"""CLI start-up time (`edgeconv --help`, `edgeconv targets`; target < 0.5 s) and `edgeconv batch` speed-up, -j 2 vs -j 1.

    .venv/bin/python bench/bench_cli.py [--repeat 7] [--jobs 2]

Start-up is the wall time of a fresh process (`python -m edgeconv ...`, as Makefiles and CI call it), median of
--repeat runs. The batch part converts the example digits CNN (exported once to ONNX first) for four ONNX targets with
`--force`, so every pair runs, with -j 1 and with -j N. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# stage times, not stage-cache hits (bench_stage_cache.py measures those)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "EDGECONV_NO_CACHE": "1"}
TARGETS = ["onnx", "onnx-fp16", "onnx-int8-qdq", "onnx-dynamic"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(*args: str, cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgeconv", *args], capture_output=True, text=True, cwd=cwd, env=ENV)
    return time.perf_counter() - started, proc


def _timed(argv: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child: user + system) — CPU time is what start-up costs when the cores are shared."""
    cpu0, started = _children_cpu(), time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    return time.perf_counter() - started, _children_cpu() - cpu0, proc


def startup(repeat: int) -> list[tuple[str, float, float, float]]:
    """(command, median wall s, best wall s, median CPU s)."""
    rows = []
    commands = [("python -c pass (interpreter alone)", [sys.executable, "-c", "pass"])]
    for args in (["--help"], ["targets"], ["targets", "show", "onnx"], ["targets", "--json"]):
        commands.append((f"edgeconv {' '.join(args)}", [sys.executable, "-m", "edgeconv", *args]))
    for name, argv in commands:
        walls, cpus = [], []
        for _ in range(repeat):
            wall, cpu, proc = _timed(argv)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed: {proc.stderr}")
            walls.append(wall)
            cpus.append(cpu)
        rows.append((name, statistics.median(walls), min(walls), statistics.median(cpus)))
    return rows


def batch_speedup(jobs: int) -> tuple[list[tuple[int, float, int]], int]:
    work = Path(tempfile.mkdtemp(prefix="edgeconv-bench-cli-"))
    try:
        seconds, proc = _run("convert", str(EXAMPLES / "digits_cnn.pt2"), "-t", "onnx", "--eval", str(EXAMPLES / "digits_eval"),
                             "-o", str(work / "src"), "--json")
        if proc.returncode != 0:
            raise SystemExit(f"export failed: {proc.stdout}{proc.stderr}")
        (work / "edgeconv.toml").write_text(
            f'output = "out"\ntargets = {json.dumps(TARGETS)}\n[defaults]\ncalib = "{EXAMPLES / "digits_calib"}"\n'
            f'eval = "{EXAMPLES / "digits_eval"}"\n[models.digits]\nsource = "src/onnx/digits_cnn.onnx"\n')
        rows = []
        for j in (1, jobs):
            seconds, proc = _run("batch", "-j", str(j), "--force", "--json", cwd=work)
            summary = json.loads(proc.stdout)
            if summary["exit_code"] != 0:
                raise SystemExit(f"batch -j {j} failed: {json.dumps(summary['runs'], indent=1)}")
            rows.append((j, seconds, summary["counts"]["ok"]))
        cached, proc = _run("batch", "--json", cwd=work)
        skipped = json.loads(proc.stdout)["counts"]["skipped"]
        rows.append((0, cached, skipped))
        return rows, os.cpu_count() or 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    print("### start-up (fresh process, wall time)\n")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| command | median wall s | best wall s | median CPU s | best wall < 0.5 s |")
    print("|---|---:|---:|---:|---|")
    for name, median, best, cpu in startup(args.repeat):
        ok = "" if name.startswith("python") else ("yes" if best < 0.5 else "**no**")
        print(f"| `{name}` | {median:.3f} | {best:.3f} | {cpu:.3f} | {ok} |")
    rows, cpus = batch_speedup(args.jobs)
    base = rows[0][1]
    print(f"\n### batch: digits CNN × {len(TARGETS)} ONNX targets ({', '.join(TARGETS)}), {cpus} CPU cores\n")
    print("| run | pairs | wall s | speed-up vs -j 1 |")
    print("|---|---:|---:|---:|")
    for j, seconds, count in rows:
        label = f"`batch -j {j} --force`" if j else "`batch` again (all unchanged → skipped)"
        print(f"| {label} | {count} | {seconds:.2f} | {base / seconds:.2f}× |")


if __name__ == "__main__":
    main()
