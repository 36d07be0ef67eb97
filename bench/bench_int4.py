"""Block-wise int4 MatMul weights (onnx-int4) vs fp32 (onnx) and dynamic int8 (onnx-dynamic), on the corpus
transformers, and edgeconv's onnx-int4 vs the bare library call (ONNX Runtime's MatMulNBitsQuantizer on the same
normalised fp32 ONNX, block 32, symmetric). One run, ratios to fp32.

    .venv/bin/python bench/bench_int4.py [--runs 200] [--models bert_tiny,whisper_enc,vit_tiny]

Models: tests/corpus (built from definitions, no downloads) under bench/results/corpus. Sizes: the .onnx file. SNR:
each target's validation against the source model on its eval samples (the bare call's: against the fp32 ONNX on the
same samples, ORT). Latency: `edgeconv bench` (ORT's default CPU session), p50 of --runs after 10 warm-up runs,
batch 1. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["EDGECONV_NO_CACHE"] = "1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.corpus import registry  # noqa: E402

CORPUS = REPO / "bench" / "results" / "corpus"
TARGETS = ("onnx", "onnx-dynamic", "onnx-int4")


def convert(model: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "edgeconv", "convert", *registry.cli_args(CORPUS, model),
           *(a for t in TARGETS for a in ("-t", t)), "-o", str(out), "--json", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    doc = json.loads(proc.stdout)
    return doc.get("error", {}).get("details", {}).get("manifest", doc) if "error" in doc else doc


def bare_int4(fp32: Path, out: Path) -> tuple[Path, int]:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load_model(str(fp32)), bits=4, block_size=32, is_symmetric=True)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    return out, sum(n.op_type == "MatMulNBits" for n in onnx.load_model(str(out)).graph.node)


def snr_vs(fp32: Path, other: Path, folder: Path) -> float:
    import numpy as np

    from edgeconv.formats import TensorSpec
    from edgeconv.quantizers.calibration import read_sample, sample_files
    from edgeconv.runtimes.ort import cpu_session
    from edgeconv.validation import compare

    ref, act = cpu_session(str(fp32)), cpu_session(str(other))
    specs = tuple(TensorSpec(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                             "int64" if "int64" in i.type else "float32") for i in ref.get_inputs())
    samples = [read_sample(f, specs) for f in sample_files(folder)]
    refs = [ref.run(None, s) for s in samples]
    acts = [act.run(None, s) for s in samples]
    return compare([o.name for o in ref.get_outputs()], refs, acts).snr_db if len(refs) else float(np.nan)


def main() -> None:
    from edgeconv.benchmark import benchmark

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--models", default="bert_tiny,whisper_enc,vit_tiny")
    args = ap.parse_args()
    models = args.models.split(",")
    errors = registry.ensure(CORPUS, models)
    assert not errors, errors
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-int4-") as tmp:
        for model in models:
            out = Path(tmp) / model
            manifest = convert(model, out)
            records = {t["target"]: t for t in manifest["targets"]}
            fp32 = out / records["onnx"]["artifacts"][0]["path"]
            base_size = fp32.stat().st_size
            base_ms = benchmark(fp32, runs=args.runs, warmup=10).latency_ms["p50"]
            for target in TARGETS:
                rec = records.get(target)
                if rec is None or rec.get("error"):
                    rows.append(f"| {model} | {target} | — | — | — | — | {(rec or {}).get('error', {}).get('message', 'no record')[:80]} |")
                    continue
                path = out / rec["artifacts"][0]["path"]
                ms = base_ms if target == "onnx" else benchmark(path, runs=args.runs, warmup=10).latency_ms["p50"]
                quant = rec["notes"].get("quantize", {})
                note = (f"{quant['quantized']} of {quant['matmuls']} MatMul/Gemm → MatMulNBits" if target == "onnx-int4"
                        else "")
                rows.append(f"| {model} | edgeconv {target} | {path.stat().st_size / 1024:.0f} KiB | "
                            f"{path.stat().st_size / base_size:.2f}x | {ms:.3f} ms ({ms / base_ms:.2f}x) | "
                            f"{rec['validation']['metrics']['snr_db']:.1f} | {note} |")
            bare, count = bare_int4(fp32, Path(tmp) / f"{model}.bare.onnx")
            ms = benchmark(bare, runs=args.runs, warmup=10).latency_ms["p50"]
            rows.append(f"| {model} | bare MatMulNBitsQuantizer | {bare.stat().st_size / 1024:.0f} KiB | "
                        f"{bare.stat().st_size / base_size:.2f}x | {ms:.3f} ms ({ms / base_ms:.2f}x) | "
                        f"{snr_vs(fp32, bare, CORPUS / model / 'eval'):.1f} | {count} MatMulNBits (Gemm skipped) |")
    print("| model | quantizer | size | size ratio | latency p50 | SNR dB | note |")
    print("|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
