"""Core ML mixed-bit palettes (edgeconv/targets/coreml/mixed_bits.py) on the corpus: per model and palette profile, the
uniform palette against the mixed-bit one that edgeconv ships, in one run: output SNR and top-1 of the NumPy MIL
reference execution against the source on the held-out samples, weights raised, bits per compressed weight (tables
included) before and after, the search's seconds, and the size ratio of the package to the source.

    .venv/bin/python bench/bench_palettes.py [--root CORPUS_ROOT] [--models resnet,mobilenetv2,...]
                                             [--targets coreml-palettize4,coreml-palettize6]

Each row is one `edgeconv convert -t TARGET --json` subprocess with the model's --calib / --eval folders (stage cache
off). "uniform" is what the search measured before raising anything (every weight at the profile's width: the
package edgeconv shipped before the search, same samples); "shipped" is the package's own reference execution (the
structural check's numbers). A row whose uniform palette already passes shows no search.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.corpus import registry  # noqa: E402

MODELS = ["resnet", "mobilenetv2", "mobilenetv3", "efficientnet", "pt2_dynamic_batch", "ts_scripted_control",
          "ts_scripted_while", "keras_mobilenetv2", "keras_mobilenetv3small", "keras_savedmodel", "keras_efficientnetb0"]
TARGETS = ["coreml-palettize4", "coreml-palettize6"]


def _fmt(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def run_cell(root: Path, model: str, target: str, work: Path) -> dict:
    out = work / f"{model}-{target}"
    cmd = [str(REPO / ".venv" / "bin" / "edgeconv"), "convert", *registry.cli_args(root, model, static=True), "-t", target,
           "-o", str(out), "--json", "--force"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "EDGECONV_NO_CACHE": "1"})
    seconds = time.perf_counter() - started
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    row: dict = {"model": model, "target": target, "rc": proc.returncode, "seconds": round(seconds, 1)}
    if proc.returncode != 0:
        row["error"] = (doc.get("error") or {}).get("message", proc.stderr[-300:])
        return row
    rec = doc["targets"][0]
    search = rec.get("notes", {}).get("coreml_mixed_bits") or {}
    reference = ((rec.get("validation") or {}).get("checks") or {}).get("mil_reference") or {}
    metrics = reference.get("metrics") or {}
    row.update(shipped_snr=metrics.get("snr_db"), shipped_top1=metrics.get("top1_agreement"),
               uniform_snr=(search.get("before") or {}).get("snr_db"), raised=len(search.get("raised") or []),
               bits_before=search.get("average_bits_before"), bits=search.get("average_bits"),
               search_s=search.get("seconds"), gate=(rec.get("validation") or {}).get("gate", {}).get("min_snr_db"),
               size_ratio=rec.get("notes", {}).get("coreml", {}).get("weights_vs_fp32"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "edgeconv-corpus")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    errors = registry.ensure(args.root, models)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model in models:
            if model in errors:
                print(f"{model}: corpus build failed", file=sys.stderr)
                continue
            for target in args.targets.split(","):
                rows.append(run_cell(args.root, model, target, Path(work)))
                print(json.dumps(rows[-1]), file=sys.stderr)
    print("| model | target | gate dB | uniform SNR dB | shipped SNR dB (ref) | top-1 | weights raised | bits/weight "
          "uniform → shipped | weights vs fp32 | search s | total s |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        if r["rc"] != 0:
            print(f"| `{r['model']}` | {r['target']} | | | exit {r['rc']}: {r['error'][:120]} | | | | | | {r['seconds']} |")
            continue
        top1 = r.get("shipped_top1")
        bits = (f"{_fmt(r.get('bits_before'), '.2f')} → {_fmt(r.get('bits'), '.2f')}" if r.get("raised")
                else f"{_fmt(r.get('bits_before'), '.2f')} (no search)" if r.get("bits_before") else "uniform passed")
        print(f"| `{r['model']}` | {r['target']} | {_fmt(r.get('gate'), '.0f')} | {_fmt(r.get('uniform_snr'), '.1f')} | "
              f"{_fmt(r.get('shipped_snr'), '.1f')} | {_fmt(top1 * 100 if isinstance(top1, float) else None, '.0f')}"
              f"{'%' if isinstance(top1, float) else ''} | {r.get('raised', 0)} | {bits} | "
              f"{_fmt(r.get('size_ratio'), '.3f')} | {_fmt(r.get('search_s'), '.1f')} | {r['seconds']} |")


if __name__ == "__main__":
    main()
