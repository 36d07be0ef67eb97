"""Core ML compression with coremltools (applied on the converted mlprogram, not on ONNX: profiles say `stage =
"converter"`). No Quantizer subclass here on purpose: these are not ONNX quantizers, the Core ML converters call them.

- w8          linear symmetric int8 weights, per output channel   (coremltools.optimize.coreml.linear_quantize_weights)
- palettize4  4-bit k-means look-up table per tensor               (coremltools.optimize.coreml.palettize_weights)
- palettize6  6-bit k-means look-up table per tensor
              (either: where the gate fails, the weights that cost the most accuracy per byte get the next width's
              tables or stay float16, within a bits-per-weight budget: mixed_bits.py)
- w8a8        int8 weights + int8 activations from calibration data:
              * PyTorch sources: coremltools.optimize.torch LinearQuantizer, calibration only (no training), then the
                fake-quantized module is traced and converted (quantize/dequantize ops in the program). Runs on Linux.
              * other sources: coremltools' activation quantization passes on the converted program; the activation
                ranges come from Core ML on macOS (coremltools.optimize.coreml.experimental.linear_quantize_activations)
                and from edgeconv's NumPy MIL reference executor elsewhere (targets/coreml/_mil_reference.py).

Weights with at most `quantize.options.weight_threshold` elements stay float (coremltools' default is 2048; small
tensors gain nothing and lose accuracy).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterable, Iterator, Mapping

from edgeconv.deps import require
from edgeconv.errors import UnsupportedError, first_line
from edgeconv.targets.schema import QuantScheme

log = logging.getLogger(__name__)

WEIGHT_PRECISIONS = ("w8", "palettize4", "palettize6")
COREML_PRECISIONS = ("fp32", "fp16", *WEIGHT_PRECISIONS, "w8a8")
DEFAULT_WEIGHT_THRESHOLD = 2048
PALETTE_BITS = {"palettize4": 4, "palettize6": 6}


def weight_threshold(scheme: QuantScheme) -> int:
    return int(scheme.options.get("weight_threshold", DEFAULT_WEIGHT_THRESHOLD))


def check_precision(precision: str, target: str) -> None:
    if precision not in COREML_PRECISIONS:
        raise UnsupportedError(f"target {target}: Core ML has no '{precision}' scheme in edgeconv",
                               f"Core ML profiles use: {', '.join(COREML_PRECISIONS)}")


def _cto() -> Any:
    return require("coremltools.optimize.coreml", "coreml", purpose="Core ML compression")


def weight_config(scheme: QuantScheme, skip: Iterable[str] = (), raised: Mapping[str, str] | None = None,
                  nbits: int | None = None) -> Any:
    """The coremltools OptimizationConfig for a weight-only scheme (w8 / w8a8 weights / palettize4 / palettize6); the
    const ops named in `skip` keep their values. Palettes: `raised` maps const ops to "paletteN" (an N-bit table) or
    "float16" (kept float) for a mixed-bit model (mixed_bits.py); `nbits` overrides the profile's width."""
    cto = _cto()
    threshold = weight_threshold(scheme)
    overrides: dict[str, Any] = {name: None for name in skip}
    if scheme.precision in ("w8", "w8a8"):
        op = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric" if scheme.symmetric_weights else "linear",
            dtype="int8" if scheme.weights != "uint8" else "uint8",
            granularity="per_channel" if scheme.per_channel else "per_tensor",
            weight_threshold=threshold,
        )
    elif scheme.precision in PALETTE_BITS:
        def palette(bits: int) -> Any:
            return cto.OpPalettizerConfig(mode=str(scheme.options.get("palettize_mode", "kmeans")), nbits=bits,
                                          granularity="per_tensor", weight_threshold=threshold)

        op = palette(nbits or PALETTE_BITS[scheme.precision])
        for name, storage in (raised or {}).items():
            overrides.setdefault(name, palette(int(storage.removeprefix("palette"))) if storage != "float16" else None)
    else:
        raise UnsupportedError(f"'{scheme.precision}' is not a Core ML weight compression", "use w8, palettize4 or palettize6")
    return cto.OptimizationConfig(global_config=op, op_name_configs=overrides)


def non_finite_consts(mlmodel: Any) -> list[str]:
    """Const ops holding inf / NaN: not weights but fill values (an attention mask's float32 minimum, -inf in float16).
    k-means cannot palettize them ("Input X contains infinity", the corpus BERT-tiny) and a linear scale of them is
    meaningless, so they are not compressed."""
    import numpy as np

    from edgeconv.targets.coreml._mil_reference import program_of

    program = getattr(mlmodel, "_mil_program", None) or program_of(mlmodel)
    names = []
    for op in program.functions["main"].operations:
        value = op.outputs[0].val if op.op_type == "const" and op.outputs else None
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
            names.append(op.name)
    return names


def compress_weights(mlmodel: Any, scheme: QuantScheme, raised: Mapping[str, str] | None = None) -> Any:
    """int8 linear quantization or k-means palettization of the weights of an mlprogram (runs on any OS); `raised`:
    see weight_config."""
    cto = _cto()
    config = weight_config(scheme, non_finite_consts(mlmodel), raised)
    try:
        if scheme.precision in PALETTE_BITS:
            return cto.palettize_weights(mlmodel, config)
        return cto.linear_quantize_weights(mlmodel, config)
    except Exception as e:
        raise UnsupportedError(f"coremltools could not compress the weights ({scheme.precision}): {first_line(e)}",
                               "try another Core ML profile, or raise --set quantize.options.weight_threshold=...") from e


def activation_config(scheme: QuantScheme, keep_float: Iterable[str] = ()) -> Any:
    """int8 activations everywhere coremltools puts them, except before / after the ops named in `keep_float`."""
    cto = _cto()
    return cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric" if scheme.symmetric_activations else "linear",
                                                  dtype="int8"),
        op_name_configs={name: None for name in keep_float})


def log_domain_ops(mlmodel: Any, samples: list[dict[str, Any]]) -> tuple[list[Any], dict[str, Any] | None]:
    """The MIL ops whose activations int8 cannot resolve (an in-graph audio front end feeding a Log: quantizers/
    log_domain.py), measured with the NumPy reference executor on the calibration samples; and the activation ranges
    that run measured (quantize_activations_with_reference takes them), None when the program has nothing to measure."""
    from edgeconv.quantizers.log_domain import mil_graph_nodes, mil_log_domain_nodes, upstream
    from edgeconv.targets.coreml._mil_reference import activation_stats, program_of

    program = program_of(mlmodel)
    if not upstream(mil_graph_nodes(program)):  # no Log / Sqrt / divisor in the program: nothing to measure
        return [], None
    values: dict[str, Any] = {}
    ranges = activation_stats(mlmodel, samples, values)
    return mil_log_domain_nodes(program, values, 8), ranges


def quantize_activations(mlmodel: Any, samples: Iterable[dict[str, Any]], scheme: QuantScheme,
                         keep_float: Iterable[str] = ()) -> Any:
    """int8 activations calibrated by running the model with Core ML (coremltools' experimental API): macOS only."""
    experimental = require("coremltools.optimize.coreml.experimental", "coreml")
    config = activation_config(scheme, keep_float)
    data = [{k: v for k, v in feeds.items()} for feeds in samples]
    try:
        with suffix_pass_fixed():
            return experimental.linear_quantize_activations(mlmodel, config, data)
    except Exception as e:
        raise UnsupportedError(f"coremltools could not calibrate activations: {first_line(e)}",
                               "use a weight-only profile (coreml-w8, coreml-palettize4/6)") from e


def quantize_activations_with_reference(mlmodel: Any, samples: Iterable[dict[str, Any]], scheme: QuantScheme,
                                        keep_float: Iterable[str] = (), ranges: dict[str, Any] | None = None) -> Any:
    """int8 activations without the Core ML runtime: the activation ranges come from edgeconv's NumPy reference
    executor running the float program on the calibration samples (`ranges`, when that run was already made);
    coremltools' own passes then insert the quantize/dequantize pairs (the same passes linear_quantize_activations
    runs after its Core ML calibration)."""
    import collections
    from unittest import mock

    post = require("coremltools.optimize.coreml._post_training_quantization", "coreml")
    experimental = require("coremltools.optimize.coreml.experimental._post_training_quantization", "coreml")
    debugger = require("coremltools.optimize.coreml.experimental._model_debugger", "coreml")
    from edgeconv.targets.coreml._mil_reference import activation_stats

    try:
        stats = collections.defaultdict(dict, ranges if ranges is not None else activation_stats(mlmodel, list(samples)))
    except NotImplementedError as e:
        raise UnsupportedError(f"int8 activations are calibrated here with edgeconv's reference executor, which has no "
                               f"'{e}' op", "run this target on macOS (calibrated with Core ML), or use coreml-w8") from e
    # the concat adjustment coremltools applies after its own calibration (reads the spec only)
    experimental._adjust_concat_surrounding_activation_stats(debugger.ModelDebugger(mlmodel)._get_concat_op_info(), stats)
    config = activation_config(scheme, [*keep_float, *unmeasured_ops(mlmodel, stats)])
    try:
        with mock.patch.object(post, "_get_activation_calibration_stats", lambda *args, **kwargs: stats), \
                suffix_pass_fixed():
            return post.linear_quantize_activations(mlmodel, config, [])
    except Exception as e:
        raise UnsupportedError(f"coremltools could not insert activation quantization: {first_line(e)}",
                               "use a weight-only profile (coreml-w8, coreml-palettize4/6)") from e


@contextlib.contextmanager
def suffix_pass_fixed() -> Iterator[None]:
    """coremltools 9's insert_suffix_quantize_dequantize_pair recurses into an op's nested blocks (a scripted `if` /
    loop: cond, while_loop) without its config and visited-ops arguments, so any program with control flow failed
    w8a8 ("_insert_quantize_dequantize() missing 2 required positional arguments"). The recursion gets them."""
    from unittest import mock

    from coremltools.converters.mil.mil.passes.defs.optimize_activation_quantization import (
        insert_suffix_quantize_dequantize_pair as suffix_pass,
    )

    original = suffix_pass._insert_quantize_dequantize

    def with_arguments(self: Any, block: Any, config: Any = None, visited_ops: set | None = None) -> Any:
        if config is None:  # the nested call: its block's ops are new to it
            config, visited_ops = self._config, set()
        return original(self, block, config, visited_ops)

    with mock.patch.object(suffix_pass, "_insert_quantize_dequantize", with_arguments):
        yield


def unmeasured_ops(mlmodel: Any, stats: dict[str, Any]) -> list[str]:
    """The ops coremltools would quantize although the reference executor measured no float range for an input: an
    integer `add` (BERT's position-id arithmetic, a scripted loop's counter), which its pass would meet with a KeyError
    ('rmin'). They stay as they are (an integer op has nothing to quantize)."""
    from coremltools.optimize.coreml._quantization_passes import insert_prefix_quantize_dequantize_pair as prefix

    from edgeconv.targets.coreml._mil_reference import all_operations, program_of

    # the ops that pass puts a quantize / dequantize pair before, and the inputs it quantizes
    reads = {**{op: ("x",) for op in prefix.SUPPORTED_UNARY_OP_TYPES},
             **{op: ("x", "y") for op in prefix.SUPPORTED_BINARY_OP_TYPES}}

    skipped = []
    for op in all_operations(program_of(mlmodel).functions["main"]):
        for key in reads.get(op.op_type, ()):
            var = op.inputs.get(key)
            if var is not None and not (var.op is not None and var.op.op_type == "const") and "rmin" not in stats.get(var.name, {}):
                skipped.append(op.name)
                break
    return skipped


def torch_w8a8(module: Any, example_args: tuple, samples: Iterable[tuple], scheme: QuantScheme) -> Any:
    """Fake-quantize a PyTorch module for w8a8 with coremltools.optimize.torch.LinearQuantizer, calibrating observers on
    `samples` (tuples of input tensors) without training. The result traces into quantize/dequantize ops."""
    torch = require("torch", "torch")
    cq = require("coremltools.optimize.torch.quantization", "coreml", purpose="w8a8 for PyTorch sources")
    total = 10**9  # milestones: observers and fake quantization on from step 0; BN never frozen (no training)
    config = cq.LinearQuantizerConfig.from_dict({"global_config": {
        "quantization_scheme": "symmetric" if scheme.symmetric_activations else "affine",
        "milestones": [0, 0, total, total],
        "activation_observer": "min_max",  # the whole calibration set's range (the default moving average clips: no training)
    }})
    try:
        quantizer = cq.LinearQuantizer(module, config)
        prepared = quantizer.prepare(example_inputs=example_args, inplace=False)
        prepared.eval()
        with torch.no_grad():
            for args in samples:
                quantizer.step()
                prepared(*args)
        return quantizer.finalize(inplace=False)
    except Exception as e:
        raise UnsupportedError(f"coremltools.optimize.torch could not quantize this model for w8a8: {first_line(e)}",
                               "convert the .pt2 (torch.export.save) instead: its activations are calibrated on the "
                               "converted program; or use coreml-w8") from e
