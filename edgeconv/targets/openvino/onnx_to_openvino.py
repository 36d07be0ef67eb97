"""ONNX → OpenVINO IR (.xml + .bin) with `openvino.convert_model`, quantized by the profile's precision:

- fp32: the IR as converted; fp16: `save_model(compress_to_fp16=True)` (fp16 weights, decompressed by the CPU plugin);
- w8: `nncf.compress_weights` (int8 weights, per output channel; float activations, no calibration data);
- int8: `nncf.quantize` (full post-training quantization: FakeQuantize on weights and activations) calibrated on
  edgeconv's calibration data (quantizers/calibration.py). When the model misses its gate on the validation samples,
  NNCF's own options are tried in order (`[compiler] fallback`): preset MIXED (asymmetric activations), then
  `nncf.quantize_with_accuracy_control` (reverts the layers that lose most to float, at most `quantize.max_fallback`
  iterations). Every attempt's metrics are in the manifest (notes.openvino.attempts).

A model the CPU plugin compiles only with a static batch is saved with batch 1 (static_batch.py).

Reproducible bytes: OpenVINO names nodes it creates with a process-wide counter (`Constant_43418`), so the same model
converted after other work gets other names. Such names (not in the source ONNX) are renumbered by their position in
the graph, right after conversion (so NNCF's ignored scopes name the same nodes in every attempt) and again before the
IR is saved. The .bin is deterministic by itself.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeconv.context import StepContext
from edgeconv.converters.base import Converter
from edgeconv.deps import require, version_of
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.onnx_graph import stem_of
from edgeconv.targets.family_options import refuses_precision
from edgeconv.targets.schema import Profile
from edgeconv.targets.openvino._offline import no_telemetry
from edgeconv.targets.openvino.static_batch import compilable
from edgeconv.targets.openvino.options import OpenVinoOptions, parse
from edgeconv.targets.openvino.runtime import compile_model, core, exact_int8_needed, match_inputs, ov_message

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "w8", "int8")
SNR_CAP_DB = 60.0  # accuracy control's metric: SNR vs the float IR, capped (the float IR itself scores the cap)
_GENERATED = re.compile(r"(.*?)_(\d+)")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """NNCF prints progress bars and tables to stdout: library code never prints."""
    buffer = io.StringIO()
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield
    finally:
        nncf_log.setLevel(level)


def onnx_names(path: Path) -> set[str]:
    import onnx

    model = onnx.load_model(str(path), load_external_data=False)
    names = {n.name for n in model.graph.node}
    for node in model.graph.node:
        names.update(node.output)
    names.update(i.name for i in model.graph.input)
    names.update(i.name for i in model.graph.initializer)
    return names


def stable_names(model: Any, keep: set[str]) -> int:
    """Renumber the counter-named nodes OpenVINO / NNCF created by their position in the graph. Returns how many."""
    changed = 0
    for i, op in enumerate(model.get_ordered_ops()):
        name = op.get_friendly_name()
        match = _GENERATED.fullmatch(name)
        if name in keep or match is None:
            continue
        op.set_friendly_name(f"{match.group(1)}_g{i}")
        changed += 1
    return changed


def is_transformer(model: Any) -> bool:
    """Attention in the graph: MatMul with a Softmax, or the fused ScaledDotProductAttention (PyTorch's SDPA)."""
    types = {op.get_type_name() for op in model.get_ops()}
    return "ScaledDotProductAttention" in types or ("MatMul" in types and "Softmax" in types)


def count_ops(model: Any, op_type: str) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == op_type)


@dataclass
class Evaluation:
    """Float-IR references on the validation samples, to judge quantized IRs against the profile's gate."""

    items: list[tuple[int, dict[int, np.ndarray]]]
    references: list[list[np.ndarray]]
    names: tuple[str, ...]

    def run(self, compiled: Any, items: list[tuple[int, dict[int, np.ndarray]]] | None = None) -> list[list[np.ndarray]]:
        request = compiled.create_infer_request()
        return [[np.array(request.infer(feeds)[p]) for p in compiled.outputs] for _, feeds in (items or self.items)]

    def metrics(self, compiled: Any) -> Any:
        from edgeconv.validation import compare

        return compare(self.names, self.references, self.run(compiled))


def _feeds(samples: Any, ports: list[Any], ctx: StepContext) -> list[dict[int, np.ndarray]]:
    names = match_inputs(ports, ctx.source.inputs)
    return [{i: feeds[n] for i, n in enumerate(names)} for feeds in samples]


def quantize_int8(model_factory: Any, float_model: Any, ctx: StepContext, options: OpenVinoOptions,
                  notes: dict[str, Any]) -> Any:
    nncf = require("nncf", "openvino", purpose="OpenVINO int8 quantization")
    from edgeconv.quantizers.calibration import samples_for
    from edgeconv.validation import check_gate
    from edgeconv.validation_stage import validation_samples

    scheme, gate = ctx.profile.quantize, ctx.profile.validate.gate
    ports = list(float_model.inputs)
    calib = _feeds(samples_for(ctx), ports, ctx)
    compiled_float = compile_model(float_model, options)
    items = list(enumerate(_feeds(validation_samples(ctx), ports, ctx)))
    evaluation = Evaluation(items, [], tuple(ctx.source.output_names) or
                            tuple(f"output_{i}" for i in range(len(float_model.outputs))))
    evaluation.references = evaluation.run(compiled_float)
    transformer = options.model_type == "transformer" or (options.model_type == "auto" and is_transformer(float_model))
    model_type = nncf.ModelType.TRANSFORMER if transformer else None
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    common = dict(subset_size=len(calib), fast_bias_correction=options.fast_bias_correction, model_type=model_type)
    calibration = nncf.Dataset(calib)
    attempts: list[dict[str, Any]] = []
    best: tuple[float, Any, str] | None = None  # (score, model, preset)

    def judge(label: str, quantized: Any, preset: str) -> bool:
        nonlocal best
        metrics = evaluation.metrics(compile_model(quantized, options, exact_int8=True))
        result = check_gate(metrics, gate)
        attempts.append({"attempt": label, "snr_db": round(metrics.snr_db, 2), "cosine": round(metrics.cosine, 6),
                         "top1_agreement": metrics.top1_agreement, "fake_quantize": count_ops(quantized, "FakeQuantize"),
                         "passed": result.passed})
        log.info("OpenVINO int8 %s: %s", label, attempts[-1])
        score = metrics.snr_db + (1e6 if result.passed else 0.0)
        if best is None or score > best[0]:
            best = (score, quantized, preset)
        return result.passed

    tried = [options.preset]
    with quiet():
        passed = judge(f"quantize preset={options.preset}",
                       nncf.quantize(model_factory(), calibration, preset=presets[options.preset], **common),
                       options.preset)
    for step in options.fallback:
        if passed:
            break
        if step == "mixed" and "mixed" not in tried:
            tried.append("mixed")
            with quiet():
                passed = judge("quantize preset=mixed",
                               nncf.quantize(model_factory(), calibration, preset=presets["mixed"], **common), "mixed")
        elif step == "ignore_worst":
            assert best is not None
            preset = best[2]
            passed = _ignore_worst(nncf, model_factory, calibration, presets[preset], common, float_model, evaluation,
                                   options, scheme.max_fallback, judge, preset)
        elif step == "accuracy_control":
            assert best is not None
            preset = best[2]  # from the better plain attempt
            controlled = _accuracy_control(nncf, model_factory, calibration, evaluation, gate, scheme.max_fallback,
                                           presets[preset], common)
            if controlled is not None:
                passed = judge(f"quantize_with_accuracy_control preset={preset}", controlled, preset)
    notes["model_type"] = "transformer" if transformer else "default"
    notes["attempts"] = attempts
    assert best is not None
    if not passed:  # the validate stage fails the gate (exit 5); say what was tried, which its error cannot
        log.warning("OpenVINO int8: no attempt met the gate; tried %s",
                    "; ".join(f"{a['attempt']}: SNR {a['snr_db']} dB" for a in attempts))
    return best[1]


WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData", "GroupConvolutionBackpropData")
MAX_PROBES = 24  # sensitivity probes (one quantization each) of ignore_worst


def _ignore_worst(nncf: Any, model_factory: Any, calibration: Any, preset: Any, common: dict[str, Any],
                  float_model: Any, evaluation: Evaluation, options: OpenVinoOptions, budget: int, judge: Any,
                  preset_name: str) -> bool:
    """Keep the most sensitive layers float (nncf.IgnoredScope): each weighted layer is left out of quantization alone
    and the SNR vs the float IR measured; then the worst 1, 2, ... `budget` layers are left out together until the
    gate holds."""
    candidates = [op.get_friendly_name() for op in float_model.get_ordered_ops() if op.get_type_name() in WEIGHTED_OPS]
    candidates = candidates[:MAX_PROBES]
    gains = []
    with quiet():
        for name in candidates:
            quantized = nncf.quantize(model_factory(), calibration, preset=preset,
                                      ignored_scope=nncf.IgnoredScope(names=[name], validate=False), **common)
            gains.append((evaluation.metrics(compile_model(quantized, options, exact_int8=True)).snr_db, name))
    ranked = [name for _, name in sorted(gains, key=lambda g: -g[0])]
    for k in range(1, min(budget, len(ranked)) + 1):
        scope = ranked[:k]
        with quiet():
            quantized = nncf.quantize(model_factory(), calibration, preset=preset,
                                      ignored_scope=nncf.IgnoredScope(names=scope, validate=False), **common)
        if judge(f"quantize preset={preset_name} ignored_scope={scope}", quantized, preset_name):
            return True
    return False


def _accuracy_control(nncf: Any, model_factory: Any, calibration: Any, evaluation: Evaluation, gate: Any,
                      max_iterations: int, preset: Any, common: dict[str, Any]) -> Any:
    """nncf.quantize_with_accuracy_control on an SNR metric (vs the float IR, capped at SNR_CAP_DB): it reverts the
    layers whose quantization costs most until the drop is within the gate's SNR. None when the gate has no SNR bound."""
    from edgeconv.validation import snr_db

    if gate.min_snr_db is None or gate.min_snr_db >= SNR_CAP_DB:
        return None
    references = evaluation.references

    def validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
        items = list(items)
        outputs = evaluation.run(compiled, items)
        per_sample = [min(min(snr_db(r, a), SNR_CAP_DB) for r, a in zip(references[i], out))
                      for (i, _), out in zip(items, outputs)]
        total = min(min(snr_db(np.concatenate([references[i][k].ravel() for i, _ in items]),
                               np.concatenate([out[k].ravel() for out in outputs])), SNR_CAP_DB)
                    for k in range(len(references[0])))
        return float(total), per_sample

    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    validation = nncf.Dataset(evaluation.items, lambda item: item[1])
    try:
        with quiet():
            return nncf.quantize_with_accuracy_control(
                model_factory(), calibration, validation, validate, max_drop=SNR_CAP_DB - gate.min_snr_db,
                drop_type=nncf.DropType.ABSOLUTE, preset=preset,
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                    max_num_iterations=max(1, max_iterations)), **common)
    except Exception as e:  # noqa: BLE001 - a fallback that fails leaves the best plain attempt (its metrics recorded)
        log.warning("nncf.quantize_with_accuracy_control failed: %s", first_line(e))
        return None


def placement(model: Any, options: OpenVinoOptions) -> dict[str, Any]:
    """Which devices are here, and for the accelerators among them the share of ops their plugin takes."""
    devices = list(core().available_devices)
    ops = [op.get_friendly_name() for op in model.get_ops()
           if op.get_type_name() not in ("Parameter", "Result", "Constant")]
    out: dict[str, Any] = {"available_devices": devices}
    for device in (options.device, *options.placement):
        present = [d for d in devices if d.split(".")[0] == device]
        if not present:
            out[device] = (f"no {device} on this machine (core.available_devices = {devices}): its op coverage was "
                           "not checked")
            continue
        try:
            supported = core().query_model(model, present[0])
        except Exception as e:  # noqa: BLE001 - a plugin that cannot answer is reported, not guessed
            out[device] = f"{present[0]} could not be queried: {ov_message(e)}"
            continue
        missing = [n for n in ops if n not in supported]
        out[device] = {"device": present[0], "ops": len(ops), "supported": len(ops) - len(missing),
                       "unsupported": missing[:20]}
    return out


class OnnxToOpenvino(Converter):
    name = "onnx_to_openvino"
    source = Format.ONNX
    target = Format.OPENVINO
    extra = "openvino"
    requires = ("openvino", "nncf")
    cost = 10
    stage = "compile"
    # int8 reads the gate and the validation samples too (its fallback aims for the gate): the whole profile is keyed
    cache_profile_keys = tuple(f.name for f in fields(Profile) if f.name != "source_file")

    def refuses(self, artifact: Artifact, profile: Any) -> str | None:
        return refuses_precision(profile, "openvino", PRECISIONS, "OpenVINO")  # [compiler] keys were checked on load

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        no_telemetry()  # before openvino.tools.ovc and nncf are imported
        ov = require("openvino", "openvino", purpose="ONNX → OpenVINO IR")
        options = parse(ctx.profile)
        precision = ctx.profile.quantize.precision
        if precision not in PRECISIONS:
            raise UnsupportedError(f"OpenVINO profiles take precision {', '.join(PRECISIONS)}, not {precision}",
                                   "see docs/targets/openvino.md")

        keep = onnx_names(artifact.path)

        def fresh() -> Any:  # a new IR for each NNCF attempt (they transform their input), with stable node names
            try:
                converted = ov.convert_model(str(artifact.path))
            except Exception as e:
                raise UnsupportedError(f"openvino.convert_model cannot convert {artifact.path.name}: {ov_message(e)}",
                                       "the message names the op; see docs/targets/openvino.md") from e
            stable_names(converted, keep)
            return converted

        model = fresh()
        notes: dict[str, Any] = {"route": f"ONNX → openvino.convert_model {version_of('openvino')}",
                                 "precision": precision, "inference_precision": options.inference_precision}
        if precision == "w8":
            nncf = require("nncf", "openvino", purpose="OpenVINO weight compression")
            mode = {"int8_asym": nncf.CompressWeightsMode.INT8_ASYM, "int8_sym": nncf.CompressWeightsMode.INT8_SYM}
            with quiet():
                model = nncf.compress_weights(model, mode=mode[options.weight_mode])
            notes["nncf"] = {"version": version_of("nncf"), "compress_weights": options.weight_mode}
        elif precision == "int8":
            quant: dict[str, Any] = {"version": version_of("nncf")}
            model = quantize_int8(fresh, model, ctx, options, quant)
            notes["nncf"] = quant
            if exact_int8_needed(options):
                notes["int8_arithmetic"] = "emulated (this host's int8 kernels saturate: x86-64 without VNNI)"
                ctx.warn("this CPU has no VNNI: OpenVINO's int8 kernels saturate on it, so the int8 search and "
                         "validation computed the int8 model exactly instead (as VNNI/AMX CPUs, GPUs and NPUs do); "
                         "deployed on a CPU like this one it loses accuracy (docs/targets/openvino.md)")
        stable_names(model, keep)  # and the nodes NNCF added
        model = compilable(model, options, ctx, notes)  # batch 1 where only that compiles (static_batch.py)
        notes["placement"] = placement(model, options)
        out = ctx.work_dir / f"{stem_of(ctx.source.artifact.path)}.xml"  # the write step's name: the .bin must share it
        try:
            ov.save_model(model, str(out), compress_to_fp16=precision == "fp16")
        except Exception as e:
            raise UnsupportedError(f"openvino.save_model failed: {ov_message(e)}", "see docs/targets/openvino.md") from e
        ctx.notes["openvino"] = notes
        return Artifact(out, Format.OPENVINO, companions=(out.with_suffix(".bin"),))
