"""Static quantization (QDQ or QOperator) of normalised ONNX with ONNX Runtime's quantizer, driven by the profile's
[quantize] section, with checks after and accuracy-driven mixed precision.

[quantize] keys used: precision (int8 | int16), activations (uint8 | int8 | uint16 | int16), weights (int8 | uint8 |
int16), per_channel, symmetric_activations, symmetric_weights, method (minmax | entropy | percentile), format (qdq |
qoperator), calibration_samples, exclude_op_types, fallback (fp32 | fp16 | int16), max_fallback. In [quantize.options]:
lower-case keys are edgeconv's (`op_types`: a list, or "all" for every op type in the graph as ORT's QNN config does;
`extra_op_types`, `nodes_to_exclude`, `reduce_range`, `preprocess`, `fallback_candidates`); keys starting with a
capital letter go to ORT's `extra_options` unchanged (e.g. `CalibPercentile = 99.99`, `MinimumRealRange = 1e-4`,
`UseQDQContribOps = true`, `DedicatedQDQPair = true`).

Pitfalls handled (see docs/quantization.md): weights in Constant nodes (moved to initializers), per-channel on opset < 13
(upgraded: ORT would write an invalid DequantizeLinear), Entropy/Percentile calibrators printing to stdout, unbounded
calibration memory (fed in strides), and ORT's own MinMax `CalibMaxIntermediateOutputs` dropping data.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from edgeconv.context import QuantizeResult, StepContext
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format
from edgeconv.quantizers.base import Quantizer
from edgeconv.quantizers.calibration import SampleSet, samples_for
from edgeconv.targets.schema import ALL_OP_TYPES

log = logging.getLogger(__name__)
QUANT_TYPES = {"uint8": "QUInt8", "int8": "QInt8", "uint16": "QUInt16", "int16": "QInt16"}
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
BACKEND_RULES = ("qnn",)  # "qnn": ONNX Runtime's QNN compatibility overrides (see qnn_compat_overrides)
PER_CHANNEL_OPSET = 13
NEVER_QUANTIZED = frozenset({"Cast"})  # op_types = "all" leaves these out, as ORT's get_qnn_qdq_config does
MAX_STRIDE = 16


@dataclass(frozen=True)
class StaticSettings:
    """Everything quantize_static needs, from a profile's QuantScheme (plus overrides)."""

    activations: str = "uint8"
    weights: str = "int8"
    per_channel: bool = True
    symmetric_activations: bool = False
    symmetric_weights: bool = True
    method: str = "minmax"
    format: str = "qdq"
    reduce_range: bool = False
    op_types: tuple[str, ...] = ()
    all_op_types: bool = False  # op_types = "all": every op type in the graph (but NEVER_QUANTIZED)
    extra_op_types: tuple[str, ...] = ()  # quantized on top of ORT's defaults (or of op_types)
    nodes_to_exclude: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    placement: str = ""  # "tensorrt": Q/DQ where TensorRT fuses it (targets/tensorrt/qdq.py)
    backend_rules: str = ""  # "qnn": the encodings the QNN HTP fixes (qnn_compat_overrides)

    @classmethod
    def from_scheme(cls, scheme: Any) -> "StaticSettings":
        options = dict(scheme.options)
        every_op_type = options.get("op_types") == ALL_OP_TYPES  # any other value was checked by the profile schema
        # every lower-case key was checked when the profile loaded (targets/quantize_options.py)
        activations = scheme.activations
        if scheme.precision == "int16" and not activations.endswith("16"):
            activations = "uint16"
        for what, value in (("activations", activations), ("weights", scheme.weights)):
            if value not in QUANT_TYPES:
                raise UnsupportedError(f"quantize.{what} = {value!r} is not an integer type the ONNX quantizer knows",
                                       f"use one of {', '.join(QUANT_TYPES)}")
        return cls(
            activations=activations, weights=scheme.weights, per_channel=scheme.per_channel,
            symmetric_activations=scheme.symmetric_activations, symmetric_weights=scheme.symmetric_weights,
            method=scheme.method, format=scheme.format, reduce_range=bool(options.get("reduce_range", False)),
            op_types=() if every_op_type else tuple(options.get("op_types", ())),
            all_op_types=every_op_type, extra_op_types=tuple(options.get("extra_op_types", ())),
            nodes_to_exclude=tuple(options.get("nodes_to_exclude", ())),
            exclude_op_types=tuple(scheme.exclude_op_types),
            extra={k: v for k, v in options.items() if k[:1].isupper()},
            placement=_placement(options.get("placement", "")),
            backend_rules=_backend_rules(options.get("backend_rules", "")),
        )

    def describe(self) -> dict[str, Any]:
        return {"activations": self.activations, "weights": self.weights, "per_channel": self.per_channel,
                "symmetric_activations": self.symmetric_activations, "symmetric_weights": self.symmetric_weights,
                "method": self.method, "format": self.format, "reduce_range": self.reduce_range,
                "extra_options": self.extra, **({"op_types": ALL_OP_TYPES} if self.all_op_types else {}),
                **({"placement": self.placement} if self.placement else {}),
                **({"backend_rules": self.backend_rules} if self.backend_rules else {}),
                **({"extra_op_types": list(self.extra_op_types)} if self.extra_op_types else {})}


def _placement(value: Any) -> str:
    from edgeconv.targets.tensorrt.qdq import PLACEMENTS

    if value and value not in PLACEMENTS:
        raise UnsupportedError(f"[quantize.options] placement = {value!r} is not known", f"use one of {', '.join(PLACEMENTS)}")
    return str(value or "")


def _backend_rules(value: Any) -> str:
    if value and value not in BACKEND_RULES:
        raise UnsupportedError(f"[quantize.options] backend_rules = {value!r} is not known",
                               f"use one of {', '.join(BACKEND_RULES)}")
    return str(value or "")


def qnn_compat_overrides(float_path: Path, settings: StaticSettings, overrides: dict[str, Any],
                         nodes_to_exclude: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """`overrides` plus what ONNX Runtime's QNN config (get_qnn_qdq_config) adds for the QNN EP, computed by ORT's own
    QnnCompatibilityOverrides: the HTP computes a 16-bit Tanh / Sigmoid with a fixed output encoding (1/32768 around
    32768; 1/65536 from 0) whatever the graph says, so a calibrated encoding there mis-scales every consumer (a
    BERT pooler's Tanh into the classifier Gemm: its bias lands 2.4x too large, 6.1 dB on the HTP where ONNX Runtime
    CPU gives 59 dB), and MatMul weights are per tensor. Nodes ORT would not quantize are skipped, as ORT does."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.execution_providers.qnn.quant_config import QnnCompatibilityOverrides
    from onnxruntime.quantization.tensor_quant_overrides import TensorQuantOverridesHelper

    model = onnx.load_model(str(float_path), load_external_data=False)
    helper = TensorQuantOverridesHelper(copy.deepcopy(overrides))
    compat = QnnCompatibilityOverrides(
        getattr(QuantType, QUANT_TYPES[settings.activations]), getattr(QuantType, QUANT_TYPES[settings.weights]),
        settings.symmetric_activations, settings.symmetric_weights, settings.per_channel, helper,
        {t.name: t for t in model.graph.initializer})
    quantized = set(op_types_to_quantize(settings, float_path) or ())
    excluded = set(nodes_to_exclude)
    for node in model.graph.node:
        if (quantized and node.op_type not in quantized) or node.name in excluded:
            continue
        compat.process_node(node)
    return helper.get_dict()


class StreamingReader:
    """An ORT CalibrationDataReader over a SampleSet: one sample at a time, advancing a progress task. Implements
    `__len__`/`set_range` so ORT calibrates in strides (bounded memory for histogram methods too)."""

    def __init__(self, samples: SampleSet, task: Any = None):
        self.samples = samples
        self.task = task
        self._it: Iterator[dict[str, Any]] | None = None
        self._index = 0
        self._end = len(samples)

    def get_next(self) -> dict[str, Any] | None:
        if self._it is None:
            self._it = iter(self.samples)
        if self._index >= self._end:
            return None
        feeds = next(self._it, None)
        if feeds is None:
            return None
        self._index += 1
        if self.task is not None:
            self.task.advance()
        return feeds

    def __iter__(self) -> "StreamingReader":
        return self

    def __next__(self) -> dict[str, Any]:
        feeds = self.get_next()
        if feeds is None:
            raise StopIteration
        return feeds

    def __len__(self) -> int:
        return len(self.samples)

    def set_range(self, start_index: int, end_index: int) -> None:
        if start_index != self._index:  # not sequential: restart the stream and skip ahead
            self._it, self._index = iter(self.samples), 0
            while self._index < start_index and next(self._it, None) is not None:
                self._index += 1
        self._end = end_index


def stride_for(count: int) -> int:
    """Largest divisor of `count` that is at most MAX_STRIDE (ORT wants count % stride == 0)."""
    return max(d for d in range(1, min(count, MAX_STRIDE) + 1) if count % d == 0)


def prepare_float(artifact: Artifact, work_dir: Path, per_channel: bool, activations: str = "") -> Path:
    """Guard for models that skipped normalisation: Constant weights → initializers, opset >= 13 for per-channel, and
    a unique name on every node (exclusion lists and reports refer to nodes by name)."""
    import onnx

    from edgeconv.normalise import constants_to_initializers, default_opset

    model = onnx.load_model(str(artifact.path))
    changed = constants_to_initializers(model) > 0
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name, changed = name, True
            taken.add(name)
    opset = default_opset(model)
    if per_channel and opset < PER_CHANNEL_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, PER_CHANNEL_OPSET)
        except Exception as e:
            raise UnsupportedError(f"per-channel quantization needs opset >= 13 and upgrading opset {opset} failed: "
                                   f"{first_line(e)}", "export with opset >= 13, or --set quantize.per_channel=false") from e
        changed = True
    if not changed:
        return artifact.path
    out = work_dir / "float.prepared.onnx"
    onnx.save_model(model, str(out))
    return out


def quantize_file(float_path: Path, out_path: Path, samples: SampleSet, settings: StaticSettings, *,
                  nodes_to_exclude: list[str] | tuple[str, ...] = (), tensor_overrides: dict[str, Any] | None = None,
                  cache_path: Path | None = None, task: Any = None, quant_format: str | None = None) -> None:
    """One quantize_static call. With `cache_path`, the first call calibrates and caches the ranges; later calls (other
    exclusions, other format) reuse them without running the model again."""
    from onnxruntime import quantization as q

    extra = {"ActivationSymmetric": settings.symmetric_activations, "WeightSymmetric": settings.symmetric_weights,
             **settings.extra}
    extra.pop("CalibMaxIntermediateOutputs", None)  # ORT 1.31 drops collected data with it; strides bound memory
    if len(samples) > 1 and "CalibStridedMinMax" not in extra:
        extra["CalibStridedMinMax"] = stride_for(len(samples))
    if tensor_overrides:
        extra["TensorQuantOverrides"] = {**extra.get("TensorQuantOverrides", {}), **tensor_overrides}
    if settings.backend_rules == "qnn":
        extra["TensorQuantOverrides"] = qnn_compat_overrides(float_path, settings, extra.get("TensorQuantOverrides", {}),
                                                             nodes_to_exclude)
    fmt = quant_format or settings.format
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):  # Entropy/Percentile calibrators print() progress
            q.quantize_static(
                str(float_path), str(out_path), StreamingReader(samples, task),
                quant_format=q.QuantFormat.QDQ if fmt == "qdq" else q.QuantFormat.QOperator,
                activation_type=getattr(q.QuantType, QUANT_TYPES[settings.activations]),
                weight_type=getattr(q.QuantType, QUANT_TYPES[settings.weights]),
                per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                calibrate_method=getattr(q.CalibrationMethod, METHODS[settings.method]),
                op_types_to_quantize=op_types_to_quantize(settings, float_path),
                nodes_to_exclude=list(nodes_to_exclude) or None,
                extra_options=extra,
                calibration_cache_path=str(cache_path) if cache_path else None,
            )
    except InvalidInputError:
        raise
    except (KeyError, ValueError, RuntimeError, TypeError, AssertionError) as e:
        log.debug("quantizer output:\n%s", buffer.getvalue())
        if "No data is collected" in str(e):
            raise InvalidInputError("no calibration samples reached the quantizer", "check the --calib folder") from e
        raise UnsupportedError(f"ONNX Runtime could not quantize the model: {first_line(e)}",
                               "try --set quantize.method=minmax, or keep the failing op types in float with "
                               "--set quantize.exclude_op_types=[...]") from e
    except Exception as e:  # onnxruntime's own exception types (Fail, InvalidGraph...)
        if type(e).__module__.startswith("onnxruntime") and "INVALID_ARGUMENT" in str(e):  # the samples, not the graph
            raise InvalidInputError(f"ONNX Runtime could not run the model on the calibration samples: {first_line(e)}",
                                    "check the samples' values against the model (e.g. token ids below the vocabulary "
                                    "size)") from e
        if type(e).__module__.startswith("onnxruntime"):
            raise UnsupportedError(f"ONNX Runtime could not run the model to calibrate: {first_line(e)}",
                                   "the graph has an op or type ORT's CPU provider lacks") from e
        raise
    log.debug("quantizer output:\n%s", buffer.getvalue())
    if settings.placement and fmt == "qdq":
        from edgeconv.targets.tensorrt import qdq as tensorrt_qdq

        tensorrt_qdq.apply(out_path)


LOG_DOMAIN_SAMPLES = 16  # calibration samples the range statistics are measured on


def _log_domain_float(float_path: Path, samples: SampleSet, settings: StaticSettings, scheme: Any) -> list[Any]:
    """quantizers/log_domain.py on the calibration samples, at the profile's activation width; [] when switched off
    (`quantize.options.log_domain_float = false`)."""
    if not scheme.options.get("log_domain_float", True):
        return []
    import itertools

    import onnx

    from edgeconv.quantizers.log_domain import log_domain_nodes

    model = onnx.load_model(str(float_path))
    return log_domain_nodes(model, itertools.islice(samples, LOG_DOMAIN_SAMPLES), 16 if "16" in settings.activations else 8)


def op_types_to_quantize(settings: StaticSettings, float_path: Path | None = None) -> list[str] | None:
    """`op_types` (None: ONNX Runtime's default, every op its quantizer registry knows) plus `extra_op_types`. An op the
    registry lacks gets a Q/DQ on its output only where a consumer quantizes its input; followed by a Reshape or
    Transpose it computes in float, an island in the integer graph (a Gelu, or the Sub / Pow / Sqrt / Div of an
    unfused norm: fp16 on an 8-series HTP, refused on parts without HTP fp16). `op_types = "all"`
    (settings.all_op_types) is what ORT's own QNN config (get_qnn_qdq_config) does for that reason: every op type
    present in `float_path`'s graph but NEVER_QUANTIZED; ORT's QDQ quantizer gives an op it has no rule for Q/DQ on
    all its float inputs and outputs."""
    if settings.all_op_types:
        assert float_path is not None, "op_types = 'all' reads the op types from the model"
        present = op_types_in(float_path)
        return [*present, *(t for t in settings.extra_op_types if t not in present)]
    if not settings.extra_op_types:
        return list(settings.op_types) or None
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    base = list(settings.op_types) or sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    return [*base, *(t for t in settings.extra_op_types if t not in base)]


def op_types_in(model_path: Path) -> list[str]:
    """The op types of `model_path`'s graph, sorted, but NEVER_QUANTIZED (what `op_types = "all"` quantizes)."""
    import onnx

    graph = onnx.load_model(str(model_path), load_external_data=False).graph
    return sorted({n.op_type for n in graph.node} - NEVER_QUANTIZED)


def excluded_by_op_type(float_path: Path, op_types: tuple[str, ...]) -> list[str]:
    if not op_types:
        return []
    import onnx

    model = onnx.load_model(str(float_path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in op_types and n.name]


class OnnxQdq(Quantizer):
    name = "onnx_qdq"
    precisions = frozenset({"int8", "int16"})
    requires = ("onnxruntime",)
    needs_calibration = True

    def quantize(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        require("onnxruntime", "all")
        from edgeconv.quantizers import fallback
        from edgeconv.quantizers.checks import check_quantized

        scheme = ctx.profile.quantize
        settings = StaticSettings.from_scheme(scheme)
        float_path = prepare_float(artifact, ctx.work_dir, settings.per_channel, settings.activations)
        samples = samples_for(ctx)
        cache = ctx.work_dir / "calibration.json"
        excluded = [*settings.nodes_to_exclude, *excluded_by_op_type(float_path, settings.exclude_op_types)]
        if settings.placement:  # e.g. bias Adds stay float for TensorRT
            from edgeconv.targets.tensorrt import qdq as tensorrt_qdq

            excluded += [n for n in tensorrt_qdq.nodes_to_exclude(float_path) if n not in excluded]
        log_domain = _log_domain_float(float_path, samples, settings, scheme)
        excluded += [n.node for n in log_domain if n.node not in excluded]
        qdq = ctx.work_dir / f"model.{scheme.precision}.qdq.onnx"
        with ctx.reporter.task("calibrating", total=len(samples)) as task:
            quantize_file(float_path, qdq, samples, settings, nodes_to_exclude=excluded, cache_path=cache, task=task,
                          quant_format="qdq")

        from edgeconv.quantizers import attention_op_set, bias_correction

        op_set = attention_op_set.choose(float_path, qdq, samples, settings, excluded, cache, ctx)
        if op_set is not None:
            settings, qdq = op_set.settings, op_set.path

        start = qdq  # what the fallback search starts from: a model in the profile's own format
        if settings.format == "qoperator":
            start = ctx.work_dir / f"model.{scheme.precision}.qop.onnx"
            quantize_file(float_path, start, samples, settings, nodes_to_exclude=excluded, cache_path=cache,
                          quant_format="qoperator")

        def requantize(items: list[str], out: Path, fmt: str = settings.format) -> Path:
            """Quantize again from the cached ranges with `items` (fallback tensors) kept in higher precision."""
            node_items = [i[len(fallback.NODES):] for i in items if i.startswith(fallback.NODES)]
            plain = [i for i in items if not i.startswith(fallback.NODES)]
            if settings.format == "qdq" and scheme.fallback != "int16" and items:
                # float activations, integer weights: quantize everything (Relu/Clip kept explicit, ORT would fold
                # them into the Q/DQ being dropped), then take the Q/DQ pairs off the chosen activations; "nodes:"
                # items exclude the tensor's nodes instead (float weights too)
                import onnx

                float_model = onnx.load_model(str(float_path), load_external_data=False)
                keep = {t for name in plain for t in fallback.tensors_chain(float_model, name)}
                nodes, _ = fallback.apply(float_path, node_items, "fp32", settings.activations)
                explicit = replace(settings, extra={**settings.extra, "QDQKeepRemovableActivations": True})
                quantize_file(float_path, out, samples, explicit, nodes_to_exclude=[*excluded, *nodes],
                              cache_path=cache, quant_format=fmt)
                if keep:
                    fallback.strip_qdq(out, keep)
                return out
            nodes, overrides = fallback.apply(float_path, [*plain, *node_items], scheme.fallback, settings.activations)
            quantize_file(float_path, out, samples, settings, nodes_to_exclude=[*excluded, *nodes],
                          tensor_overrides=overrides, cache_path=cache, quant_format=fmt)
            return out

        # candidates are ranked by per-layer error, which only a QDQ graph shows; every trial is judged in the
        # profile's format (a QOperator model can lose far more than its QDQ twin: fused integer kernels)
        result = fallback.search_for_target(float_path, start, requantize, ctx, rank_path=qdq)
        final = result.final_path if result and result.final_path else start
        bias = bias_correction.measure(float_path, final, samples, settings, ctx)
        if bias is not None and bias.kept:
            final = bias.path
        skip = set(excluded) | set(result.node_names() if result else [])
        from edgeconv.quantizers.checks import WEIGHT_OPS

        not_asked = set(WEIGHT_OPS) - set(settings.op_types) if settings.op_types else set()
        check = check_quantized(artifact.path, final, integer_weights=True, skip_nodes=skip, skip_op_types=not_asked)
        notes: dict[str, Any] = {"quantizer": self.name, "settings": settings.describe(), "check": check.to_json(),
                                 "excluded_nodes": excluded}
        if log_domain:
            notes["log_domain_float"] = [n.to_json() for n in log_domain]
            ctx.warn(f"kept {len(log_domain)} node(s) float that feed Log / Sqrt / Reciprocal with values "
                     f"{'16' if '16' in settings.activations else '8'}-bit activations cannot resolve (an in-graph "
                     f"power spectrum?): {', '.join(n.node for n in log_domain[:4])}"
                     + (" ..." if len(log_domain) > 4 else "") + "; notes.quantize.log_domain_float")
        search = result.to_json() if result is not None else None
        if search is not None:
            notes["fallback"] = search
        layers: list[dict[str, Any]] = []
        if ctx.options.report:  # per-layer table; a QOperator model is read through its QDQ twin
            twin = final if settings.format != "qoperator" else (
                requantize(result.tensors(), ctx.work_dir / "report.qdq.onnx", "qdq") if result and result.nodes else qdq)
            notes["layers"] = layers = fallback.layer_report(float_path, twin, ctx)
        if op_set is not None:
            notes["attention_op_set"] = op_set.to_json()
        if bias is not None:
            notes["bias_correction"] = bias.to_json()
        ctx.notes["quantize"] = notes
        ctx.quantized = QuantizeResult(tuple(layers), search)
        return Artifact(final, Format.ONNX)
