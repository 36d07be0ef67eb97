"""Qualcomm Hexagon targets: compile time, HTP-simulator agreement with the source, size vs fp32 and nodes on the HTP,
for every hexagon-* profile on each test model.

    .venv/bin/python bench/bench_hexagon.py [--soc "8 Gen 3"] [--runs 50]

Models (built here, no downloads): the digits CNN trained on scikit-learn digits (torch .pt2), the transformer encoder
block (torch .pt2, random init), the messy opset-11 ONNX graph (Constant weights, unfused BN, shape subgraph, dynamic
batch fixed with --input-shape) and the shape-subgraph graph of the tests. Each goes through the real pipeline
(export → normalise → quantize → compile → validate on the simulator); calibration and evaluation use separate sample
folders. Prints a markdown table.

Columns: compile s = the onnx_to_qnn step (legalise + placement check + HTP compile + reload check); DLC s = the
onnx_to_dlc step; ctx .bin / DLC = file sizes; ".bin vs fp32" = context binary size / the normalised fp32 ONNX size
(the binary holds ~50 KiB of fixed HTP scheduling metadata, so tiny models look large); "compiled ONNX vs fp32" = the
shipped QDQ / fp16 ONNX graph that was compiled, vs fp32; nodes on HTP = placement report;
SNR / top-1 = the validation against the source framework; sim ms = p50 latency of one inference on the x86 HTP
simulator (functional simulation speed, not device latency).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# stage times, not stage-cache hits (bench_stage_cache.py measures those)
os.environ["EDGECONV_NO_CACHE"] = "1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402

import model_zoo  # noqa: E402

TARGETS = ["hexagon-int8", "hexagon-int16", "hexagon-fp16"]


def save(folder: Path, arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        np.save(folder / f"{i:04d}.npy", a[None].astype(np.float32))
    return folder


def build_models(work: Path) -> list[dict]:
    import torch

    from converters.hexagon_models import shape_subgraph_model

    split = model_zoo.digits_split()
    digits = model_zoo.digits_cnn(split)
    x = torch.from_numpy(split.x_test[:1])
    torch.export.save(torch.export.export(digits, (x,)), str(work / "digits_cnn.pt2"))
    block = model_zoo.transformer_block()
    tokens = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    torch.export.save(torch.export.export(block, (tokens,)), str(work / "transformer.pt2"))
    model_zoo.messy_onnx(work / "messy.onnx")
    shape_subgraph_model(work / "shape_subgraph.onnx")
    rng = np.random.default_rng(1)
    return [
        {"name": "digits CNN (torch, trained)", "path": work / "digits_cnn.pt2", "shapes": {},
         "calib": save(work / "d_calib", split.x_train[:64]), "eval": save(work / "d_eval", split.x_test[:64])},
        {"name": "transformer block (torch)", "path": work / "transformer.pt2", "shapes": {},
         "calib": save(work / "t_calib", rng.standard_normal((32, 16, 32))), "eval": save(work / "t_eval", rng.standard_normal((16, 16, 32)))},
        {"name": "messy ONNX (opset 11)", "path": work / "messy.onnx", "shapes": {"input": (1, 3, 16, 16)},
         "calib": save(work / "m_calib", rng.uniform(0, 1, (32, 3, 16, 16))), "eval": save(work / "m_eval", rng.uniform(0, 1, (16, 3, 16, 16)))},
        {"name": "shape-subgraph ONNX", "path": work / "shape_subgraph.onnx", "shapes": {},
         "calib": save(work / "s_calib", rng.uniform(0, 1, (32, 1, 8, 8))), "eval": save(work / "s_eval", rng.uniform(0, 1, (16, 1, 8, 8)))},
    ]


def simulator_ms(ctx_model: Path, runs: int) -> float:
    from edgeconv.targets.qnn._ep import htp_options, qnn_session

    session = qnn_session(ctx_model, htp_options(None))
    feeds = {i.name: np.random.default_rng(0).uniform(0, 1, i.shape).astype(np.float32) for i in session.get_inputs()}
    for _ in range(3):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def fp32_size(model: dict, work: Path) -> int:
    """Size of the normalised fp32 ONNX (the `onnx` profile of the same source)."""
    from helpers import convert, model_path

    ref = work / f"ref-{abs(hash(model['name']))}"
    m = convert(model["path"], ["onnx"], ref, input_shapes=model["shapes"], eval=str(model["eval"]))
    return model_path(m, ref, "onnx").stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--soc", default="8 Gen 3")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    from helpers import convert, target_record

    from edgeconv.targets.qnn._placement import check_placement
    from edgeconv.targets.qnn.socs import resolve_soc

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-hexagon-") as tmp:
        work = Path(tmp)
        models = build_models(work)
        raw = check_placement(work / "shape_subgraph.onnx", resolve_soc(args.soc))
        raw_placement = f"{raw.on_htp}/{raw.total} nodes on the HTP; refused: " + ", ".join(f"{r.node} ({r.op_type})" for r in raw.refused)
        for model in models:
            out = work / f"out-{len(rows)}"
            manifest = convert(model["path"], TARGETS, out, input_shapes=model["shapes"], calib=str(model["calib"]),
                               eval=str(model["eval"]), soc=args.soc)
            fp32 = fp32_size(model, work)
            for target in TARGETS:
                record = target_record(manifest, target)
                steps = {s["name"]: s["seconds"] for s in record["steps"]}
                notes = record["notes"]["hexagon"]
                paths = {Path(a["path"]).name: out / a["path"] for a in record["artifacts"]}
                binary = sum(p.stat().st_size for n, p in paths.items() if n.endswith("_qnn.bin"))
                dlc = sum(p.stat().st_size for n, p in paths.items() if n.endswith(".dlc"))
                compiled = sum(p.stat().st_size for n, p in paths.items() if n.endswith(f".{record['profile']['precision']}.onnx"))
                ctx_model = next(p for n, p in paths.items() if n.endswith("_ctx.onnx"))
                metrics = record["validation"]["metrics"]
                top1 = metrics.get("top1_agreement")
                placement = notes["placement"]
                rows.append([model["name"], target, f"{steps['onnx_to_qnn']:.2f}", f"{steps['onnx_to_dlc']:.2f}",
                             f"{binary / 1024:.1f}", f"{dlc / 1024:.1f}", f"{fp32 / 1024:.1f}", f"{binary / fp32:.2f}×",
                             f"{compiled / fp32:.2f}×",
                             f"{placement['on_htp']}/{placement['total']} ({placement['percent']:.0f}%)",
                             f"{metrics['snr_db']:.1f}", f"{metrics['cosine']:.6f}", "—" if top1 is None else f"{top1:.3f}",
                             f"{simulator_ms(ctx_model, args.runs):.2f}"])
    print(f"HTP target: {resolve_soc(args.soc).label}\n")
    print("| model | target | compile s | DLC s | ctx .bin KiB | DLC KiB | fp32 ONNX KiB | .bin vs fp32 | compiled ONNX vs fp32 "
          "| nodes on HTP | SNR dB | cosine | top-1 | sim ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nshape-subgraph ONNX as written (before normalisation folds it): {raw_placement}")


if __name__ == "__main__":
    main()
