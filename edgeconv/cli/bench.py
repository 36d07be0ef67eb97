"""`edgeconv bench ARTIFACT`: latency (p50/p90/p99) and throughput on the runtime available here."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeconv.cli.ui import UI


def register(app: typer.Typer) -> None:
    app.command("bench", help="Measure ARTIFACT's latency (p50/p90/p99) and throughput on the runtime available here, "
                              "after a warm-up, on random inputs of the model's shapes. -j keeps several inferences "
                              "in flight (OpenVINO AsyncInferQueue, ONNX Runtime threads); --streams / --mode set "
                              "OpenVINO's NUM_STREAMS / PERFORMANCE_HINT.")(bench)


def bench(
    artifact: Path = typer.Argument(..., help="A converted model (.onnx, .tflite, ...), e.g. OUTDIR/onnx/model.onnx."),
    runs: int = typer.Option(50, "--runs", "-n", help="Timed runs."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed runs first (caches, lazy init, JIT)."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Dims for dynamic inputs: NAME=1x3x224x224 (default: 1 for each dynamic dim)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="Runtime to use (default: the first that runs this format here)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Profile whose runtime options apply (default: from the manifest beside the artifact)."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="Stop timing after this long, even if fewer than --runs ran."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Inferences kept in flight: OpenVINO infer requests of an AsyncInferQueue, ONNX Runtime threads calling run() on one session (other runtimes: 1). Default 1; with --streams / --mode, the plugin's OPTIMAL_NUMBER_OF_INFER_REQUESTS."),
    streams: Optional[str] = typer.Option(None, "--streams", help="OpenVINO CPU NUM_STREAMS: a count, or auto (the plugin picks, as the throughput hint does)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="OpenVINO PERFORMANCE_HINT: latency (what validation uses) or throughput."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    from edgeconv.benchmark import benchmark
    from edgeconv.context import parse_input_shapes

    result = benchmark(artifact, runs=runs, warmup=warmup, input_shapes=parse_input_shapes(input_shape),
                       runtime=runtime, target=target, reporter=UI.reporter(), max_seconds=max_seconds,
                       jobs=jobs, streams=streams, mode=mode)
    if UI.json_mode:
        UI.emit_json(result.to_json())
        return
    from rich.table import Table

    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in result.inputs.items())
    table = Table(title=f"{Path(result.artifact).name} on {result.runtime} ({shapes})", title_justify="left")
    openvino = result.mode is not None or result.streams is not None
    cols = ["runs", "jobs"] + (["mode", "streams"] if openvino else []) + [
        "p50 ms", "p90 ms", "p99 ms", "mean ms", "min ms", "throughput/s", "load s"]
    for col in cols:
        table.add_column(col, justify="right")
    lat = result.latency_ms
    table.add_row(str(result.runs), str(result.jobs),
                  *([result.mode or "–", str(result.streams) if result.streams is not None else "–"] if openvino else []),
                  f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}", f"{lat['mean']:.3f}",
                  f"{lat['min']:.3f}", f"{result.throughput_per_s:,.1f}", f"{result.load_s:.3f}")
    UI.out.print(table)
    UI.out.print(f"[dim]{result.driver}" + (f"; latency per request with {result.jobs} in flight" if result.jobs > 1 else "")
                 + "[/dim]")
    if result.note:
        UI.out.print(f"[yellow]note:[/yellow] {result.note}")
