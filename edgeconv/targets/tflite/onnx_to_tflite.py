"""ONNX → TFLite with onnx2tf (ONNX → TensorFlow SavedModel, NCHW turned into NHWC), then TFLiteConverter on that
SavedModel with the profile's precision (targets/tflite/_convert.py). PyTorch sources reach this edge through torch → onnx.

Layout: onnx2tf makes 3-D/4-D/5-D inputs channels-last (NHWC) and leaves rank ≥ 3 outputs channels-last, unless the
profile's `layout` is "source" / "nchw": then inputs stay as in the source (onnx2tf's
keep_ncw_or_nchw_or_ncdhw_input_names) and outputs are transposed back inside the model (transpose_outputs). The permutations are measured here and recorded in the manifest (notes.tflite_io), and
the LiteRT runtime applies them so validation compares like with like.

No network: onnx2tf fetches sample images from GitHub whenever every input is a 3-channel image (even with its own
-cind calibration data given). Its download function is replaced while it runs by one returning local samples, and
its flatc-based renaming (which curls a schema) is never asked for.
"""

from __future__ import annotations

import contextlib
import io as _io
import logging
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeconv.context import StepContext
from edgeconv.targets.tflite._convert import (FULL_INTEGER, SIGNATURE, apply_perm, channels_first_perm,
                                         channels_last_perm, check_precision, convert_saved_model, io_map)
from edgeconv.converters.base import Converter
from edgeconv.deps import require
from edgeconv.errors import InvalidInputError, UnsupportedError, first_line
from edgeconv.formats import Artifact, Format, IoMap, TensorLink, TensorSpec
from edgeconv.onnx_graph import read_io_specs
from edgeconv.targets.family_options import options_for
from edgeconv.quantizers.calibration import RANDOM, SampleSet, open_samples, preprocess_spec

log = logging.getLogger(__name__)
KEEP_SOURCE_LAYOUT = ("source", "nchw")
DUMMY_SAMPLES = 8


def _loose(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.replace(":", "__").lower())


def match_key(name: str, keys: list[str], position: int) -> str:
    """The signature key onnx2tf gave an ONNX tensor (it sanitises ':' and a leading '/')."""
    for candidate in (name, name.replace(":", "__"), re.sub("^/", "wa/", name)):
        if candidate in keys:
            return candidate
    loose = [k for k in keys if _loose(k) == _loose(name)]
    if len(loose) == 1:
        return loose[0]
    indexed = f"output_{position}"
    if indexed in keys:
        return indexed
    raise UnsupportedError(f"cannot match ONNX tensor '{name}' to the converted model's signature ({', '.join(keys)})",
                           "rename the model's inputs/outputs to plain identifiers and retry")


def calibration_samples(ctx: StepContext, onnx_inputs: list[TensorSpec], spec: str, count: int) -> SampleSet:
    """Up to `count` (and the profile's calibration_samples) feeds keyed by ONNX input name, unknown dims as 1."""
    source_specs = tuple(TensorSpec(o.name, tuple(d if isinstance(d, int) and d > 0 else 1 for d in o.shape), o.dtype)
                         for o in onnx_inputs)
    return open_samples(spec, source_specs, min(count, ctx.profile.quantize.calibration_samples), seed=ctx.options.seed,
                        purpose="calibration", preprocess=preprocess_spec(ctx))


def _sample_stack(ctx: StepContext, onnx_inputs: list[TensorSpec]) -> list[np.ndarray]:
    """A few samples per ONNX input ([n, ...] in source layout): calibration data when given (so onnx2tf's shape
    checks see realistic values), else seeded random ones."""
    samples = calibration_samples(ctx, onnx_inputs, ctx.options.calib or RANDOM, DUMMY_SAMPLES)
    stacks: list[list[np.ndarray]] = [[] for _ in onnx_inputs]
    for feeds in samples:
        for i, o in enumerate(onnx_inputs):
            stacks[i].append(feeds[o.name])
    return [np.concatenate(s, axis=0) for s in stacks]


@contextlib.contextmanager
def _offline_onnx2tf(images: np.ndarray) -> Iterator[None]:
    """Make onnx2tf's sample-image download return local data instead of fetching from the network."""
    import importlib

    module: Any = importlib.import_module("onnx2tf.onnx2tf")
    original = getattr(module, "download_test_image_data", None)
    if original is None:  # fail closed: an onnx2tf whose hook moved could reach the network
        raise UnsupportedError("this onnx2tf version has no download_test_image_data hook to keep it offline",
                               "install onnx2tf 1.26-1.28 (pip install 'edgeconv[tflite]')")
    module.download_test_image_data = lambda: images
    try:
        yield
    finally:
        module.download_test_image_data = original


@contextlib.contextmanager
def _onnx2tf_numpy2_fixes() -> Iterator[None]:
    """onnx2tf 1.28's TopK reads its constant K with int(), which NumPy 2 refuses for the 1-element array ONNX specifies
    ("only 0-dimensional arrays can be converted to Python scalars": every detector with a top-k post-process failed).
    While onnx2tf converts, its TopK handler sees K as the 0-d array of the same value."""
    import importlib

    module: Any = importlib.import_module("onnx2tf.ops.TopK")
    original = module.make_node

    def make_node(*args: Any, **kwargs: Any) -> Any:
        node = kwargs.get("graph_node", args[0] if args else None)
        k = node.inputs[1] if node is not None and len(node.inputs) > 1 else None
        values = getattr(k, "values", None)
        if k is None or not (isinstance(values, np.ndarray) and values.size == 1 and values.ndim):
            return original(*args, **kwargs)
        k.values = values.reshape(())
        try:
            return original(*args, **kwargs)
        finally:
            k.values = values

    module.make_node = make_node
    try:
        yield
    finally:
        module.make_node = original


def _image_stand_in(stacks: list[np.ndarray], tf_layouts: list[bool], seed: int) -> np.ndarray:
    """[n, H, W, 3] float32 images for onnx2tf's test-data hook: the first input's samples when they are 3-channel."""
    if stacks and stacks[0].ndim == 4:
        nhwc = stacks[0].transpose(0, 2, 3, 1) if tf_layouts[0] else stacks[0]
        if nhwc.shape[-1] == 3:
            return nhwc.astype(np.float32)
    return np.random.default_rng(seed).uniform(0, 1, (DUMMY_SAMPLES, 32, 32, 3)).astype(np.float32)


def ops_onnx2tf_lacks(model_path: Path) -> list[str]:
    """The op types of the graph (and its If / Loop bodies) for which the installed onnx2tf has no converter module
    (onnx2tf.ops.<OpType>): it would fail mid-conversion with "No module named 'onnx2tf.ops.Loop'"."""
    import importlib.util

    import onnx

    from edgeconv.onnx_graph import all_nodes

    graph = onnx.load_model(str(model_path), load_external_data=False).graph
    return sorted(op for op in {n.op_type for n in all_nodes(graph)}
                  if importlib.util.find_spec(f"onnx2tf.ops.{op}") is None)


def run_onnx2tf(artifact: Artifact, ctx: StepContext, onnx_inputs: list[TensorSpec], keep_source: bool) -> tuple[Path, list[np.ndarray]]:
    onnx2tf = require("onnx2tf", "tflite", purpose="ONNX → TFLite")
    lacking = ops_onnx2tf_lacks(artifact.path)
    if lacking:
        control_flow = [op for op in lacking if op in ("Loop", "Scan")]
        raise UnsupportedError(
            f"onnx2tf (the ONNX → TFLite converter) has no converter for {', '.join(lacking)}",
            "a Loop comes from control flow in a scripted model: export a trace (torch.jit.trace, or torch.export, "
            "which unroll loops of a fixed count) or pick a target that runs control flow (onnx, cpu-int8, openvino-*)"
            if control_flow else "see docs/targets/tflite.md for the op coverage")
    out = ctx.work_dir / "onnx2tf"
    stacks = _sample_stack(ctx, onnx_inputs)
    transposed = [len(o.shape) >= 3 and not keep_source for o in onnx_inputs]
    cind = []
    for i, (o, stack) in enumerate(zip(onnx_inputs, stacks)):
        path = ctx.work_dir / f"onnx2tf_input_{i}.npy"
        np.save(path, stack.transpose(channels_last_perm(stack.ndim)) if transposed[i] else stack)
        cind.append([o.name, str(path), 0.0, 1.0])
    kwargs: dict[str, Any] = dict(
        input_onnx_file_path=str(artifact.path), output_folder_path=str(out), non_verbose=True, verbosity="error",
        custom_input_op_name_np_data_path=cind,
        # never copy_onnx_input_output_names_to_tflite: with flatc installed it downloads schema.fbs
        enable_rnn_unroll=options_for(ctx.profile).rnn_unroll,
    )
    if keep_source:
        kwargs["keep_ncw_or_nchw_or_ncdhw_input_names"] = [o.name for o in onnx_inputs if len(o.shape) >= 3]
    dynamic = [o for o in onnx_inputs if not all(isinstance(d, int) and d > 0 for d in o.shape)]
    if dynamic:  # a dynamic batch becomes 1 (static shapes are what edge delegates take); other dims stay
        fixed = [o for o in dynamic if all(isinstance(d, int) and d > 0 for d in o.shape[1:])]
        kwargs["overwrite_input_shape"] = [f"{o.name}:{','.join(['1', *map(str, o.shape[1:])])}" for o in fixed] or None
    import tf_keras  # onnx2tf builds a tf_keras model: its layer / graph name counters are global to the process

    tf_keras.backend.clear_session()  # else a second conversion in one run names ops model_5/..., and writes other bytes
    log_buffer = _io.StringIO()
    try:
        with _offline_onnx2tf(_image_stand_in(stacks, transposed, ctx.options.seed)), _onnx2tf_numpy2_fixes(), \
                contextlib.redirect_stdout(log_buffer), contextlib.redirect_stderr(log_buffer):
            onnx2tf.convert(**kwargs)
    except SystemExit as e:  # onnx2tf calls sys.exit(1) after logging an error
        tail = _last_error(log_buffer.getvalue())
        raise UnsupportedError(f"onnx2tf could not convert {artifact.path.name}: {tail}",
                               "the message names the op or option; see docs/targets/tflite.md") from e
    except Exception as e:
        raise UnsupportedError(f"onnx2tf could not convert {artifact.path.name}: {first_line(e)}",
                               "the message names the op; see docs/targets/tflite.md") from e
    finally:
        (ctx.work_dir / "onnx2tf.log").write_text(log_buffer.getvalue(), encoding="utf-8")
    if not (out / "saved_model.pb").exists():
        raise UnsupportedError(f"onnx2tf wrote no SavedModel for {artifact.path.name}: {_last_error(log_buffer.getvalue())}",
                               "see onnx2tf.log in the work dir (--keep-work)")
    return out, stacks


def _last_error(text: str) -> str:
    clean = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [line.strip() for line in clean.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line.upper()]
    return (errors or lines or ["no message"])[-1][:300]


def build_io_map(saved_model: Path, artifact: Artifact, ctx: StepContext, onnx_inputs: list[TensorSpec],
                 onnx_outputs: list[TensorSpec], stacks: list[np.ndarray], keep_source: bool) -> IoMap:
    """Match signature keys to source inputs/outputs and measure the layout permutation of each: run the ONNX model
    (ONNX Runtime) and the SavedModel on the same sample and keep, per output, the permutation that agrees."""
    tf = require("tensorflow", "tf")
    from edgeconv.runtimes.ort import cpu_session

    loaded = tf.saved_model.load(str(saved_model))
    signature = loaded.signatures[SIGNATURE]
    in_specs = signature.structured_input_signature[1]
    in_keys = list(in_specs)
    out_keys = list(signature.structured_outputs)
    source_names = [s.name for s in ctx.source.inputs]
    inputs = []
    tf_feeds = {}
    onnx_feeds = {}
    for i, o in enumerate(onnx_inputs):
        key = match_key(o.name, in_keys, i)
        tf_shape = tuple(in_specs[key].shape.as_list())
        sample = stacks[i][:1]
        perm = None
        rank = len(o.shape)
        if rank >= 3:  # onnx2tf decides per input (e.g. a 3-D token input may stay as is): read it from the shapes
            last = list(channels_last_perm(rank))
            same, moved = _fits(sample.shape, tf_shape), _fits(np.transpose(sample, last).shape, tf_shape)
            if moved and (not same or not keep_source):
                perm = last
            elif not same:
                raise UnsupportedError(f"onnx2tf input '{o.name}' has shape {tf_shape}, the ONNX model's is {sample.shape}",
                                       "fix the input's dims with --input-shape")
        source = source_names[i] if o.name not in source_names and i < len(source_names) else o.name
        inputs.append(TensorLink(source, key, None if perm is None else tuple(perm)))
        onnx_feeds[o.name] = sample
        tf_feeds[key] = tf.constant(apply_perm(sample, perm))
    reference = cpu_session(str(artifact.path)).run(None, onnx_feeds)
    result = signature(**tf_feeds)
    outputs = []
    out_names = list(ctx.source.output_names) or [o.name for o in onnx_outputs]
    for i, o in enumerate(onnx_outputs):
        key = match_key(o.name, out_keys, i)
        got = np.asarray(result[key])
        want = np.asarray(reference[i])
        out_perm = _output_perm(got, want)
        if out_perm is False:
            raise UnsupportedError(f"onnx2tf output '{o.name}' has shape {got.shape}, the ONNX model's is {want.shape}",
                                   "onnx2tf changed the output's shape; report the model to edgeconv")
        outputs.append(TensorLink(out_names[i] if i < len(out_names) else o.name, key, tuple(out_perm) if isinstance(out_perm, list) else None))
    return io_map(inputs, outputs, "source" if keep_source else "nhwc")


def _fits(shape: tuple[int, ...], tf_shape: tuple[Any, ...]) -> bool:
    return len(shape) == len(tf_shape) and all(t is None or t == s for s, t in zip(shape, tf_shape))


def _output_perm(got: np.ndarray, want: np.ndarray) -> list[int] | None | bool:
    candidates: list[list[int] | None] = []
    if got.shape == want.shape:
        candidates.append(None)
    if got.ndim >= 3:
        perm = list(channels_first_perm(got.ndim))
        if np.transpose(got, perm).shape == want.shape:
            candidates.append(perm)
    if not candidates:
        return False
    if len(candidates) == 1:
        return candidates[0]
    errors = [float(np.abs(apply_perm(got, p).astype(np.float64) - want).mean()) for p in candidates]
    return candidates[int(np.argmin(errors))]


def transpose_outputs(saved_model: Path, io: IoMap, folder: Path) -> tuple[Path, IoMap]:
    """layout = "source": put the outputs back in the source's layout inside the model (TRANSPOSE ops at the end), by
    re-saving onnx2tf's SavedModel behind a signature that transposes them. Returns it and the I/O map without output
    perms."""
    tf = require("tensorflow", "tf")
    loaded = tf.saved_model.load(str(saved_model))
    signature = loaded.signatures[SIGNATURE]
    specs = signature.structured_input_signature[1]
    keys = list(specs)
    perms = {m.key: m.perm for m in io.outputs}
    module = tf.Module()
    module.loaded = loaded  # tracks the variables

    @tf.function(input_signature=[tf.TensorSpec(specs[k].shape, specs[k].dtype, name=k) for k in keys])
    def serve(*args: Any) -> dict[str, Any]:
        result = signature(**dict(zip(keys, args)))
        return {k: tf.transpose(v, perms[k]) if perms.get(k) else v for k, v in result.items()}

    tf.saved_model.save(module, str(folder), signatures={SIGNATURE: serve.get_concrete_function()})
    return folder, replace(io, outputs=tuple(replace(m, perm=None) for m in io.outputs))


def private_copy(artifact: Artifact, folder: Path) -> Artifact:
    """The input ONNX (and its external data) copied into this step's work folder, names kept. onnx2tf rewrites the
    model it is given in place (its onnxsim pass): on the hub ONNX itself that changed what later steps of the run
    read (another target's quantizer, an extra ONNX artifact) and what the stage cache had recorded as this run's."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in artifact.all_paths():
        copies.append(folder / path.name)
        shutil.copyfile(path, copies[-1])
    return replace(artifact, path=copies[0], companions=tuple(copies[1:]))


class OnnxToTflite(Converter):
    name = "onnx_to_tflite"
    source = Format.ONNX
    target = Format.TFLITE
    extra = "tflite"
    requires = ("onnx2tf", "tensorflow", "ai_edge_litert", "onnxruntime")
    cost = 10
    stage = "compile"

    def convert(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        require("tensorflow", "tf", purpose="ONNX → TFLite")
        artifact = private_copy(artifact, ctx.work_dir / "onnx2tf_input")
        specs = read_io_specs(artifact.path, keep_dim_values=True, numpy_dtype_names=True)  # dims as written (0 stays 0)
        onnx_inputs, onnx_outputs = list(specs.inputs), list(specs.outputs)
        bad = [o for o in onnx_inputs if not all(isinstance(d, int) and d > 0 for d in o.shape[1:])]
        if bad:
            raise InvalidInputError(
                "onnx2tf needs fixed non-batch dims; dynamic input(s): " + ", ".join(f"{o.name} {o.shape}" for o in bad),
                " ".join(f"--input-shape {o.name}=1x..." for o in bad) + " (your real sizes)")
        precision = check_precision(ctx)
        if precision in FULL_INTEGER and ctx.options.calib:  # before onnx2tf: known from the ONNX graph
            from edgeconv.quantizers.onnx_qdq import LOG_DOMAIN_SAMPLES
            from edgeconv.targets.tflite.log_domain_check import refuse_unresolvable_front_end

            samples = calibration_samples(ctx, onnx_inputs, ctx.options.calib, LOG_DOMAIN_SAMPLES)
            refuse_unresolvable_front_end(artifact.path, ctx, samples, 16 if precision == "int16x8" else 8)
        keep_source = ctx.profile.layout in KEEP_SOURCE_LAYOUT
        saved_model, stacks = run_onnx2tf(artifact, ctx, onnx_inputs, keep_source)
        io = build_io_map(saved_model, artifact, ctx, onnx_inputs, onnx_outputs, stacks, keep_source)
        if keep_source and any(m.perm for m in io.outputs):
            saved_model, io = transpose_outputs(saved_model, io, ctx.work_dir / "saved_model_source_layout")
        version = getattr(sys.modules.get("onnx2tf"), "__version__", "?")
        ctx.notes["tflite_route"] = f"ONNX → onnx2tf {version} SavedModel → TFLiteConverter"
        return convert_saved_model(saved_model, io, ctx, ctx.work_dir / "model.tflite")
