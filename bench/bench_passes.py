"""cpu-int8 with and without the quantization-friendly graph passes (edgeconv/passes/hardswish.py, conv_affine.py), on
the corpus' MobileNetV3 models, in one run: pattern counts in the normalised float graph, output SNR and top-1 against
the source, size and ORT CPU latency (1 thread) of the int8 model vs the float one.

    .venv/bin/python bench/bench_passes.py [--root CORPUS_ROOT] [--models keras_mobilenetv3small,mobilenetv3,...]

`keras_mobilenetv3small_digits` is built here (not in the corpus: ~90 s of training): keras.applications
MobileNetV3Small(weights=None, 64x64, no Rescaling) trained 6 epochs on the digits (BatchNorm momentum 0.8 so that its
moving statistics settle), 96 % test accuracy: the corpus' keras_mobilenetv3small has random weights, where BatchNorm
is an identity and the SE gates sit at 0.5, so it shows the patterns but not what they cost.

Every cell is `edgeconv convert -t cpu-int8 --max-fallback 0` (full int8: the passes' own effect, not the search's)
with the gate opened so that the artifact is written; "without" runs the same CLI in a process where the two passes
return 0. Stage cache off.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OPEN_GATE = ["--set", "validate.gate.min_snr_db=0", "--set", "validate.gate.min_cosine=0",
             "--set", "validate.gate.min_top1_agreement=0", "--max-fallback", "0"]


def _cell(args: list[str], without: bool) -> None:
    """Child process: the CLI, with the passes off when asked."""
    if without:
        from edgeconv.passes import conv_affine, hardswish

        conv_affine.fold_conv_affine = lambda model: 0
        hardswish.fuse_hardswish = lambda model: 0
    from edgeconv.cli.app import main

    main(args)


TRAINED = "keras_mobilenetv3small_digits"


def build_trained(folder: Path) -> None:
    """Child process (TensorFlow): the trained Keras MobileNetV3Small, its calib / eval samples and meta.json."""
    import keras
    import numpy as np

    from tests.corpus import data
    from tests.corpus.keras_models import keras_app

    x_tr, y_tr, x_te, y_te = data.digits_rgb(64, layout="nhwc")
    model = keras_app("MobileNetV3Small", 64, include_preprocessing=False)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.8
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_tr, y_tr, epochs=6, batch_size=64, verbose=0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / f"{TRAINED}.keras")
    data.save_npy(folder / "calib", x_tr[:64])
    data.save_npy(folder / "eval", x_te[:32])
    accuracy = float((np.argmax(model.predict(x_te, verbose=0), -1) == y_te).mean())
    (folder / "meta.json").write_text(json.dumps({"name": TRAINED, "file": f"{TRAINED}.keras", "input_shapes": {},
                                                  "static_shapes": {}, "source_metrics": {"accuracy": accuracy}}))


def patterns(model) -> dict[str, int]:
    """Hard-swish / hard-sigmoid gates and Conv-affine ops still spelt out in a graph (Clip nodes: in MobileNetV3 every
    one is a relu6 of a gate; affine ops whose input is a Conv's output, directly or through one Transpose, read only
    there)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    readers = Counter(i for n in model.graph.node for i in n.input)
    inits = {t.name for t in model.graph.initializer}
    gates = sum(1 for n in model.graph.node if n.op_type == "Clip")
    affine = 0
    for n in model.graph.node:
        if n.op_type not in ("Mul", "Add", "Div", "Sub") or not any(i in inits for i in n.input):
            continue
        src = producer.get(next(i for i in n.input if i not in inits), None)
        if src is not None and src.op_type == "Transpose" and readers[src.output[0]] == 1:
            src = producer.get(src.input[0])
        if src is not None and src.op_type == "Conv" and readers[src.output[0]] == 1:
            affine += 1
    return {"hardswish_gates": gates, "conv_affine": affine, "nodes": len(model.graph.node)}


def time_all(rows: list[dict], rounds: int = 7, runs: int = 20) -> None:
    """fp32 and int8 latency of every row, 1 thread, the sessions taking turns (round robin, best round of each), so
    that other load on the machine hits all of them alike."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = [(row, key, ort.InferenceSession(str(row.pop(f"_{key}")), options, providers=["CPUExecutionProvider"]))
                for row in rows for key in ("fp32", "int8")]
    for row, _, session in sessions:
        session.run(None, row["_feed"])
    best: dict[int, float] = {}
    for _ in range(rounds):
        for i, (row, _, session) in enumerate(sessions):
            t0 = time.perf_counter()
            for _ in range(runs):
                session.run(None, row["_feed"])
            best[i] = min(best.get(i, float("inf")), (time.perf_counter() - t0) / runs * 1000)
    for i, (row, key, _) in enumerate(sessions):
        row[f"{key}_ms"] = best[i]
    for row in rows:
        row.pop("_feed")
        row["latency_ratio"] = row["int8_ms"] / row["fp32_ms"]


def run(root: Path, model: str, without: bool, work: Path) -> dict:
    import numpy as np
    import onnx

    from tests.corpus import registry

    out = work / f"{model}-{'without' if without else 'with'}"
    cmd = [sys.executable, __file__, "--cell", "without" if without else "with", "--", "convert",
           *registry.cli_args(root, model), "-t", "cpu-int8", "-o", str(out), "--json", "--no-cache", "--keep-work",
           *OPEN_GATE]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    seconds = time.time() - t0
    doc = json.loads(proc.stdout)
    if proc.returncode:
        raise SystemExit(f"{model} ({'without' if without else 'with'}): exit {proc.returncode}: {doc.get('error')}")
    target = doc["targets"][0]
    float_path = next(out.glob(".work/*normalise*/model.onnx"))
    int8_path = out / target["artifacts"][0]["path"]
    sample = min((root / model / "eval").iterdir())
    session_inputs = [i.name for i in onnx.load(str(float_path), load_external_data=False).graph.input]
    feed = ({k: v for k, v in np.load(sample).items()} if sample.suffix == ".npz"
            else {session_inputs[0]: np.load(sample)})
    metrics = target["validation"]["metrics"]
    return {"model": model, "passes": not without, **patterns(onnx.load(str(float_path))),
            "snr_db": metrics["snr_db"], "top1": metrics["top1_agreement"],
            "size_ratio": int8_path.stat().st_size / float_path.stat().st_size, "seconds": seconds,
            "_fp32": float_path, "_int8": int8_path, "_feed": feed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=REPO / "bench" / "results" / "corpus")
    parser.add_argument("--models", default=f"{TRAINED},keras_mobilenetv3small,mobilenetv3")
    parser.add_argument("--cell", choices=["with", "without"])
    parser.add_argument("--build", type=Path)
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    if args.cell:
        return _cell(args.rest, args.cell == "without")
    if args.build:
        return build_trained(args.build)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models.split(",")
        root = args.root
        if TRAINED in models and not (root / TRAINED / "meta.json").exists():
            root = Path(tmp) / "corpus"
            for name in models:
                if name != TRAINED:
                    shutil.copytree(args.root / name, root / name)
            subprocess.run([sys.executable, __file__, "--build", str(root / TRAINED)], check=True, cwd=REPO,
                           capture_output=True)
        for model in models:
            for without in (True, False):
                rows.append(run(root, model, without, Path(tmp)))
        time_all(rows)
        for row in rows:
            print(json.dumps(row), file=sys.stderr)
    print("| model | passes | hard-swish gates / Conv-affine ops left | nodes | int8 SNR dB | top-1 | size vs fp32 "
          "| fp32 ms | int8 ms | int8 / fp32 latency |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {'on' if r['passes'] else 'off'} | {r['hardswish_gates']} / {r['conv_affine']} | "
              f"{r['nodes']} | {r['snr_db']:.2f} | {r['top1']:.3f} | {r['size_ratio']:.2f}× | {r['fp32_ms']:.2f} | "
              f"{r['int8_ms']:.2f} | {r['latency_ratio']:.2f}× |")


if __name__ == "__main__":
    main()
