"""Re-running a conversion with a warm stage cache vs a cold one (edgeconv/stage_cache.py).

    .venv/bin/python bench/bench_stage_cache.py [--targets examples/demo-targets.txt]

Runs `make demo`'s command (the example digits CNN, .pt2, to every target in the list) twice in fresh processes with
a stage cache of its own: once cold (empty cache: every step runs and is stored), once warm (export, normalise,
quantize and compile steps come from the cache; validation always runs). One run each. Prints a markdown table with
wall times, how many steps ran or came from the cache, and whether both runs wrote byte-identical artifacts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def convert(targets: list[str], out: Path, cache: Path) -> tuple[float, dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "EDGECONV_CACHE_DIR": str(cache)}
    env.pop("EDGECONV_NO_CACHE", None)
    args = [sys.executable, "-m", "edgeconv", "convert", str(EXAMPLES / "digits_cnn.pt2"), "--input-shape",
            "image=1x1x8x8", *(a for t in targets for a in ("--target", t)), "--calib", str(EXAMPLES / "digits_calib"),
            "--eval", str(EXAMPLES / "digits_eval"), "-o", str(out), "--force", "--json"]
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"convert failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)


def summary(manifest: dict) -> tuple[int, int, float, dict[str, str]]:
    """(steps run, steps from the stage cache, seconds in steps that ran, artifact path → sha256)."""
    steps = [s for t in manifest["targets"] for s in t["steps"]]
    ran = [s for s in steps if not s["reused"]]
    cached = [s for s in steps if s.get("cached")]
    hashes = {a["path"]: a["sha256"] for t in manifest["targets"] for a in t["artifacts"] if a["sha256"]}
    return len(ran), len(cached), sum(s["seconds"] for s in ran), hashes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=Path, default=EXAMPLES / "demo-targets.txt")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.read_text().splitlines() if t.strip()]
    work = Path(tempfile.mkdtemp(prefix="edgeconv-bench-stage-cache-"))
    try:
        load = os.getloadavg()[0]
        rows = []
        for label in ("cold (empty cache)", "warm (same command again)"):
            seconds, manifest = convert(targets, work / "out", work / "cache")
            rows.append((label, seconds, *summary(manifest)))
        cache_bytes = sum(p.stat().st_size for p in (work / "cache").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    identical = rows[0][5] == rows[1][5]
    print(f"### stage cache: digits CNN (.pt2) → {len(targets)} targets ({args.targets.name}), one run each\n")
    print(f"load average at start: {load:.1f} on {os.cpu_count()} cores; cache after both runs: "
          f"{cache_bytes / 1e6:.1f} MB\n")
    print("| run | wall s | steps run | steps from the cache | s in steps that ran | artifacts |")
    print("|---|---:|---:|---:|---:|---|")
    for label, seconds, ran, cached, step_s, hashes in rows:
        note = f"{len(hashes)} files" + ("" if label.startswith("cold") else
                                         (", byte-identical to cold" if identical else ", **differ from cold**"))
        print(f"| {label} | {seconds:.1f} | {ran} | {cached} | {step_s:.1f} | {note} |")
    print(f"\nwarm / cold wall time: {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
