"""`edgeconv inspect-accuracy FLOAT.onnx QUANT.onnx --calib D`: where a quantized model loses accuracy, layer by layer.

Runs both models on the same samples with every layer output exposed and lists the layers by SNR (worst first): the
layer's SNR against float, its worst channel, and how much error the layer itself adds (drop). Table, or --json.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer

from edgeconv.cli.ui import UI
from edgeconv.errors import InvalidInputError, UsageError


def register(app: typer.Typer) -> None:
    app.command("inspect-accuracy", help="Compare a quantized ONNX model with its float model layer by layer and list "
                                         "the layers by SNR (worst first).")(inspect_accuracy)


def inspect_accuracy(
    float_model: Path = typer.Argument(..., help="The float ONNX model (normalised or not)."),
    quant_model: Path = typer.Argument(..., help="The quantized QDQ ONNX model made from it."),
    calib: Optional[str] = typer.Option(None, "--calib", help="Samples: folder of .npy/.npz or images, or 'random'."),
    preprocess: Optional[str] = typer.Option(None, "--preprocess", help="Image preprocessing spec (image folders)."),
    samples: int = typer.Option(8, "--samples", help="How many samples to compare on."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Fix an input's dims: NAME=1x3x224x224 (repeatable)."),
    top: int = typer.Option(25, "--top", help="Rows shown in the table (JSON has them all)."),
    sort: str = typer.Option("snr", "--sort", help="snr (worst layers first) or drop (layers adding most error first)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    report = build_report(float_model, quant_model, calib, preprocess, samples, input_shape, sort)
    if UI.json_mode:
        UI.emit_json(report)
        return
    _render(report, top)


def build_report(float_model: Path, quant_model: Path, calib: str | None, preprocess: str | None, count: int,
                 input_shape: list[str], sort: str = "snr") -> dict[str, Any]:
    import onnx

    from edgeconv.context import parse_input_shapes
    from edgeconv.formats import Format, detect
    from edgeconv.quantizers.calibration import RANDOM, open_samples
    from edgeconv.quantizers.fallback import Evaluator
    from edgeconv.quantizers.layer_errors import layer_errors
    from edgeconv.onnx_graph import io_specs

    if sort not in ("snr", "drop"):
        raise UsageError(f"unknown --sort {sort!r}", "use snr or drop")
    if count < 1:
        raise UsageError("--samples must be at least 1", "e.g. --samples 8")
    for path in (float_model, quant_model):
        if detect(path).format != Format.ONNX:
            raise UsageError(f"{path} is not an ONNX model", "inspect-accuracy compares two ONNX models")
    if calib is None:
        raise UsageError("no --calib samples given", "pass --calib DIR (.npy/.npz or images), or --calib random")
    qm = onnx.load_model(str(quant_model), load_external_data=False)
    integer_ops = sorted({n.op_type for n in qm.graph.node if n.op_type.startswith("QLinear") or n.op_type.endswith("Integer")})
    if integer_ops:
        raise InvalidInputError(f"{quant_model} is a QOperator / dynamic model ({', '.join(integer_ops)}): its layers "
                                "cannot be matched with the float model's",
                                "compare the QDQ form of the same quantization (edgeconv quantize writes QDQ by default)")
    fm = onnx.load_model(str(float_model), load_external_data=False)
    specs = io_specs(fm).inputs
    shapes = parse_input_shapes(input_shape)
    if shapes:
        from dataclasses import replace

        specs = tuple(replace(s, shape=shapes[s.name]) if s.name in shapes else s for s in specs)
    sample_set = open_samples(calib, specs, count, purpose="calibration", preprocess=preprocess)
    feeds = list(sample_set)
    try:
        rows = layer_errors(float_model, quant_model, feeds)
    except ValueError as e:
        raise InvalidInputError(f"cannot compare the layers: {e}",
                                "QUANT must be a QDQ model made from FLOAT (QOperator models rename every tensor)") from e
    metrics = Evaluator(float_model, feeds)(quant_model)
    if sort == "drop":
        rows.sort(key=lambda r: -r.cost_db)
    out: dict[str, Any] = {
        "float": str(float_model), "quantized": str(quant_model), "samples": sample_set.describe(),
        "outputs": metrics.to_json(), "layers": [r.to_json() for r in rows],
    }
    if calib == RANDOM:
        out["warning"] = "compared on random inputs (--calib random): real data can rank layers differently"
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "exact" if value >= 299 else f"{value:.1f}" if math.isfinite(value) else str(value)
    return str(value)


def _render(report: dict[str, Any], top: int) -> None:
    from rich.table import Table

    out = report["outputs"]
    top1 = out.get("top1_agreement")
    UI.out.print(f"model outputs: SNR {out['snr_db']:.1f} dB, cosine {out['cosine']:.6f}"
                 + (f", top-1 agreement {top1:.3f}" if top1 is not None else "")
                 + f" on {report['samples']['count']} samples")
    if report.get("warning"):
        UI.err.print(f"[yellow]warning:[/yellow] {report['warning']}")
    table = Table(title="layers by SNR vs float (worst first)", title_justify="left")
    for col, justify in (("#", "right"), ("layer (node)", "left"), ("op", "left"), ("output tensor", "left"),
                         ("SNR dB", "right"), ("worst ch. dB", "right"), ("adds dB", "right"), ("quantized", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]  # "left" / "right": rich JustifyMethod literals
    for i, row in enumerate(report["layers"][:top], 1):
        snr = row["snr_db"]
        style = "red" if snr is not None and snr < 20 else "yellow" if snr is not None and snr < 30 else ""
        table.add_row(str(i), row["node"], row["op_type"], row["tensor"],
                      f"[{style}]{_fmt(snr)}[/{style}]" if style else _fmt(snr), _fmt(row["worst_channel_snr_db"]),
                      _fmt(row["cost_db"]), "yes" if row["quantized"] else "float")
    UI.out.print(table)
    hidden = len(report["layers"]) - top
    if hidden > 0:
        UI.out.print(f"[dim]{hidden} more layer(s): --top N or --json[/dim]")
