"""Full-int8 quantizers side by side on the corpus models: ONNX Runtime (defaults, and per-channel by hand), Intel NNCF,
Qualcomm AIMET and edgeconv `cpu-int8`, on the same fp32 ONNX, the same calibration samples, the same evaluation
samples and the same checker (this script's own, not edgeconv's validation). One markdown table, and
bench/results/quant_peers.json.

    .venv/bin/python bench/bench_quant_peers.py [--models resnet,crnn] [--runs 50] [--corpus DIR]

Every quantizer starts from the fp32 ONNX that `edgeconv convert -t onnx` writes for the model (exported and
normalised), so the graph is the same for all of them; edgeconv's own row runs `convert -t cpu-int8` from the source
as a user would. Peers (installed with `make peers`; a peer that is not installed is a row saying so):
- ORT defaults: `quantize_static(fp32, out, reader)`, nothing else set.
- ORT per-channel: QDQ, per-channel s8 weights, u8 activations, MinMax (the best hand setting we found).
- NNCF: `nncf.quantize` (ONNX backend), preset MIXED, model_type TRANSFORMER for the transformer encoders; and the
  same with its fast bias correction off (on the corpus ResNet it costs 9 dB).
- AIMET: `aimet_onnx.QuantizationSimModel` with its default per-channel config, min-max encodings, exported with
  `to_onnx_qdq()`, run on ORT like every other row.
Columns: the worst float output's SNR against fp32 over the eval samples, the task agreement with fp32 (top-1 for the
classifiers, exact greedy CTC decodes for the CRNN, mean cosine of the last output for BERT and the Whisper-like
encoder), file size vs fp32, ORT CPU
latency vs fp32 (1 thread, batch 1, median), and the quantizer's wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["EDGECONV_NO_CACHE"] = "1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
logging.disable(logging.WARNING)

from bench_quant import median_run_ms, session  # noqa: E402  (the same ORT session and timing as bench_quant.py)
from tests.corpus import registry  # noqa: E402

# model -> (task metric, model_type for NNCF)
MODELS: dict[str, tuple[str, str]] = {
    "resnet": ("top1", ""), "mobilenetv3": ("top1", ""), "efficientnet": ("top1", ""), "mtcnn_rnet": ("top1", ""),
    "vit_tiny": ("top1", "transformer"), "audio_kws": ("top1", ""), "crnn": ("ctc", ""),
    "bert_tiny": ("cosine", "transformer"), "whisper_enc": ("cosine", "transformer"),
}
Feed = dict[str, np.ndarray]


@dataclass
class Row:
    model: str
    quantizer: str
    status: str  # ok | failed | refused | missing
    snr_db: float | None = None
    task: float | None = None
    size_ratio: float | None = None
    latency_ratio: float | None = None
    wall_s: float | None = None
    note: str = ""


def read_feeds(folder: Path, fp32: Path) -> list[Feed]:
    """The samples of a corpus folder as ORT feeds of the fp32 model's input names and dtypes."""
    from onnx.helper import tensor_dtype_to_np_dtype

    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    inputs = [(i.name, tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in graph.input if i.name not in inits]
    feeds = []
    for f in sorted(folder.glob("*.np[yz]")):
        loaded = np.load(f, allow_pickle=False)
        arrays = dict(loaded) if isinstance(loaded, np.lib.npyio.NpzFile) else {inputs[0][0]: loaded}
        feeds.append({name: np.asarray(arrays[name]).astype(dtype) for name, dtype in inputs})
    return feeds


def run_all(path: Path, feeds: list[Feed]) -> list[list[np.ndarray]]:
    s = session(path, 1)
    return [s.run(None, f) for f in feeds]


def worst_snr(ref: list[list[np.ndarray]], got: list[list[np.ndarray]]) -> float:
    worst = 300.0
    for k in range(len(ref[0])):
        r = np.concatenate([np.ravel(o[k]) for o in ref]).astype(np.float64)
        if r.dtype.kind != "f" or ref[0][k].dtype.kind != "f":
            continue
        g = np.concatenate([np.ravel(o[k]) for o in got]).astype(np.float64)
        noise = float(((r - g) ** 2).sum())
        worst = min(worst, 300.0 if noise == 0 else 10 * np.log10(float((r**2).sum()) / noise))
    return worst


def ctc_greedy(logits: np.ndarray) -> list[tuple[int, ...]]:
    """T x N x C (or N x T x C when T is not first: the CRNN's head is T x N x C) -> one label tuple per batch item."""
    best = logits.argmax(-1)  # T x N
    decoded = []
    for n in range(best.shape[1]):
        seq, prev = [], -1
        for t in best[:, n]:
            if t != prev and t != 0:
                seq.append(int(t))
            prev = t
        decoded.append(tuple(seq))
    return decoded


def task_agreement(kind: str, ref: list[list[np.ndarray]], got: list[list[np.ndarray]]) -> float:
    if kind == "top1":
        return float(np.mean([int(np.argmax(r[0]) == np.argmax(g[0])) for r, g in zip(ref, got)]))
    if kind == "ctc":
        return float(np.mean([ctc_greedy(r[0]) == ctc_greedy(g[0]) for r, g in zip(ref, got)]))
    cos = []
    for r, g in zip(ref, got):
        a, b = np.ravel(r[-1]).astype(np.float64), np.ravel(g[-1]).astype(np.float64)
        cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)))
    return float(np.mean(cos))


def latency_ms(path: Path, feed: Feed, runs: int) -> float:
    return median_run_ms(session(path, 1), feed, runs)


def model_bytes(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    extra = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    return path.stat().st_size + sum((path.parent / f).stat().st_size for f in extra)


def edgeconv(args: list[str], out: Path, timeout: float = 3600) -> tuple[int, dict]:
    cmd = [sys.executable, "-m", "edgeconv", "convert", *args, "-o", str(out), "--force", "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    try:
        doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        doc = {}
    if not doc:
        doc = {"error": {"message": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}}
    return proc.returncode, doc


def model_artifact(doc: dict, out: Path) -> Path:
    target = doc["targets"][0]
    art = next(a for a in target["artifacts"] if a.get("role") == "model")
    return out / art["path"]


# ----- the quantizers: each takes (fp32, calib feeds, out path, model_type) and writes a QDQ/QOperator ONNX


class CalibReader:
    def __init__(self, feeds: list[Feed]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> Feed | None:
        return next(self._it, None)


def ort_defaults(fp32: Path, calib: list[Feed], out: Path, model_type: str) -> None:
    from onnxruntime.quantization import quantize_static

    quantize_static(str(fp32), str(out), CalibReader(calib))


def ort_per_channel(fp32: Path, calib: list[Feed], out: Path, model_type: str) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(fp32), str(out), CalibReader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def nncf_mixed(fp32: Path, calib: list[Feed], out: Path, model_type: str, bias_correction: bool = True) -> None:
    import nncf

    import onnx

    model = onnx.load(str(fp32))
    kwargs: dict[str, Any] = {"preset": nncf.QuantizationPreset.MIXED, "subset_size": len(calib)}
    if model_type == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if not bias_correction:
        kwargs["advanced_parameters"] = nncf.AdvancedQuantizationParameters(disable_bias_correction=True)
    quantized = nncf.quantize(model, nncf.Dataset(calib), **kwargs)
    onnx.save(quantized, str(out))


def nncf_mixed_no_bias_correction(fp32: Path, calib: list[Feed], out: Path, model_type: str) -> None:
    """NNCF's fast bias correction costs 9 dB on the corpus ResNet (64 samples): the peer at its better setting too."""
    nncf_mixed(fp32, calib, out, model_type, bias_correction=False)


def aimet_default(fp32: Path, calib: list[Feed], out: Path, model_type: str) -> None:
    from aimet_onnx.quantsim import QuantizationSimModel

    import onnx

    sim = QuantizationSimModel(onnx.load(str(fp32)), param_type="int8", activation_type="int8",
                               quant_scheme="min_max", config_file="default", path=str(out.parent / "aimet_tmp"))
    sim.compute_encodings(calib)
    onnx.save(sim.to_onnx_qdq(prequantize_constants=True), str(out))


PEERS: dict[str, tuple[str, Callable[[Path, list[Feed], Path, str], None]]] = {
    "ORT defaults": ("onnxruntime", ort_defaults),
    "ORT per-channel": ("onnxruntime", ort_per_channel),
    "NNCF mixed": ("nncf", nncf_mixed),
    "NNCF mixed, no bias corr.": ("nncf", nncf_mixed_no_bias_correction),
    "AIMET default": ("aimet_onnx", aimet_default),
}


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def bench_model(name: str, corpus: Path, work: Path, runs: int) -> list[Row]:
    kind, model_type = MODELS[name]
    folder = corpus / name
    args = registry.cli_args(corpus, name)
    rc, doc = edgeconv([*args, "-t", "onnx"], work / "fp32")
    if rc != 0:
        return [Row(name, "fp32", "failed", note=doc.get("error", {}).get("message", f"exit {rc}"))]
    fp32 = model_artifact(doc, work / "fp32")
    calib, evals = read_feeds(folder / "calib", fp32), read_feeds(folder / "eval", fp32)
    ref = run_all(fp32, evals)
    base_bytes, base_ms = model_bytes(fp32), latency_ms(fp32, evals[0], runs)
    rows = [Row(name, "fp32", "ok", latency_ratio=1.0, size_ratio=1.0,
                note=f"{base_bytes / 1024:.0f} KB, {base_ms:.3f} ms")]

    def measure(label: str, path: Path, wall: float, note: str = "") -> Row:
        got = run_all(path, evals)
        return Row(name, label, "ok", round(worst_snr(ref, got), 1), round(task_agreement(kind, ref, got), 4),
                   round(model_bytes(path) / base_bytes, 3), round(latency_ms(path, evals[0], runs) / base_ms, 2),
                   round(wall, 1), note)

    for label, (module, quantize) in PEERS.items():
        if not installed(module):
            rows.append(Row(name, label, "missing", note=f"{module} not installed (make peers)"))
            continue
        out = work / f"{label.replace(' ', '_')}.onnx"
        t0 = time.perf_counter()
        try:
            quantize(fp32, calib, out, model_type)
        except Exception as e:  # noqa: BLE001 - a peer failing is a row of the table
            rows.append(Row(name, label, "failed", wall_s=round(time.perf_counter() - t0, 1),
                            note=f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"))
            continue
        wall = time.perf_counter() - t0
        try:
            rows.append(measure(label, out, wall))
        except Exception as e:  # noqa: BLE001 - a model ORT cannot run is a row too
            rows.append(Row(name, label, "failed", wall_s=round(wall, 1),
                            note=f"ORT cannot run it: {type(e).__name__}: {str(e).splitlines()[0][:120]}"))
    t0 = time.perf_counter()
    rc, doc = edgeconv([*args, "-t", "cpu-int8"], work / "int8")
    wall = time.perf_counter() - t0
    if rc != 0:
        err = doc.get("error", {})
        rows.append(Row(name, "edgeconv cpu-int8", "refused" if rc == 5 else "failed", wall_s=round(wall, 1),
                        note=f"exit {rc}: {err.get('message', '')[:160]}"))
    else:
        fallback = ((doc["targets"][0].get("notes") or {}).get("quantize") or {}).get("fallback") or {}
        kept = fallback.get("nodes") or []
        rows.append(measure("edgeconv cpu-int8", model_artifact(doc, work / "int8"), wall,
                            f"{len(kept)} unit(s) kept higher" if kept else ""))
    return rows


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(rows: list[Row]) -> str:
    lines = ["| model | quantizer | SNR dB (worst output) | task agreement | size vs fp32 | latency vs fp32 | wall s | note |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        status = "" if r.status == "ok" else f"**{r.status}** "
        lines.append(f"| {r.model} | {r.quantizer} | {fmt(r.snr_db, '.1f')} | {fmt(r.task, '.3f')} | "
                     f"{fmt(r.size_ratio, '.3f')} | {fmt(r.latency_ratio, '.2f')} | {fmt(r.wall_s, '.1f')} | "
                     f"{status}{r.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--corpus", type=Path, default=Path(tempfile.gettempdir()) / "edgeconv-corpus")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "quant_peers.json")
    opts = parser.parse_args()
    names = [n for n in opts.models.split(",") if n]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    errors = registry.ensure(opts.corpus, names)
    rows: list[Row] = []
    for name in names:
        if name in errors:
            rows.append(Row(name, "build", "failed", note=errors[name].strip().splitlines()[-1][:160]))
            continue
        with tempfile.TemporaryDirectory() as work:
            rows += bench_model(name, opts.corpus, Path(work), opts.runs)
        print(table([r for r in rows if r.model == name]).split("\n", 2)[-1], flush=True)
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    print("\nONNX Runtime CPU, 1 thread, batch 1; the same fp32 ONNX, calibration and eval samples for every row\n")
    print(table(rows))


if __name__ == "__main__":
    main()
