"""LiteRT / TFLite targets: size and LiteRT CPU latency of every tflite-* variant vs fp32, and edgeconv's conversion
time vs the bare converter call (TFLiteConverter, or onnx2tf + TFLiteConverter) with the same settings.

    .venv/bin/python bench/bench_tflite.py [--runs 200] [--threads 1]

Models (built here, no downloads): the digits CNN (Keras, direct route; PyTorch, through ONNX + onnx2tf) trained on
scikit-learn digits, and a MobileNet-like separable-conv net (96x96x3, trained 2 epochs on the digits upscaled 12x) for a latency
that means something.
Prints a markdown table. edgeconv time = its export/normalise/compile steps for that profile alone (SavedModel export or\nonnx2tf included, validation not); bare = the converter call(s) alone on an already loaded model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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

VARIANTS = ["tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "tflite-int16x8"]


def latency_ms(path: Path, record: dict, inputs: tuple, runs: int, threads: int) -> float:
    from edgeconv.formats import IoMap
    from edgeconv.targets.tflite.runtime import LiteRtSession, load_interpreter

    interpreter, runner, _ = load_interpreter(str(path), threads)
    session = LiteRtSession(interpreter, runner, IoMap.from_json(record["notes"]["tflite_io"]), inputs)
    rng = np.random.default_rng(0)
    feeds = {s.name: rng.uniform(0, 1, s.shape).astype(np.float32) for s in inputs}
    for _ in range(10):
        session.run(feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(feeds)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def bare_keras(model_path: Path, variant: str, calib: list[np.ndarray]) -> float:
    """TFLiteConverter.from_keras_model with the profile's settings, timed from the loaded model."""
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(model_path, compile=False)
    t = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    _configure(converter, variant, calib)
    converter.convert()
    return time.perf_counter() - t


def bare_onnx(onnx_path: Path, variant: str, calib: list[np.ndarray], work: Path) -> float:
    """onnx2tf.convert (SavedModel) + TFLiteConverter.from_saved_model, the way a user would call them by hand."""
    import onnx2tf
    import tensorflow as tf

    nhwc = np.concatenate(calib).transpose(0, 2, 3, 1)
    np.save(work / "calib.npy", nhwc)
    import onnx

    name = onnx.load(str(onnx_path)).graph.input[0].name
    t = time.perf_counter()
    onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(work / "sm"), non_verbose=True,
                    verbosity="error", custom_input_op_name_np_data_path=[[name, str(work / "calib.npy"), 0.0, 1.0]])
    converter = tf.lite.TFLiteConverter.from_saved_model(str(work / "sm"))
    _configure(converter, variant, [c.transpose(0, 2, 3, 1) for c in calib])
    converter.convert()
    return time.perf_counter() - t


def _configure(converter, variant: str, calib: list[np.ndarray]) -> None:
    import tensorflow as tf

    if variant == "tflite-fp32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "tflite-fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant in ("tflite-int8", "tflite-int16x8"):
        converter.representative_dataset = lambda: ([c] for c in calib)
        if variant == "tflite-int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]


def mobilenet_like(seed: int = 0):
    """A MobileNet-style net (stride-2 stem, 6 depthwise-separable blocks with residuals, 96x96x3 → 10 logits). It is
    trained (briefly) because a random-init net gives near-constant outputs: keras.applications.MobileNetV2 with random
    weights gives logits ~1e-10, which full-int8 rightly fails (exit 5)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((96, 96, 3), name="image")
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu6", kernel_initializer="he_normal")(inp)
    for filters, stride in [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1)]:
        y = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu6",
                                         depthwise_initializer="he_normal")(x)
        y = keras.layers.Conv2D(filters, 1, activation="relu6", kernel_initializer="he_normal")(y)
        x = keras.layers.Add()([x, y]) if stride == 1 and x.shape[-1] == filters else y
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="separable_net")


def build_models(root: Path) -> list[dict]:
    import conftest
    import keras

    digits = conftest.DigitsModels(conftest.cached("digits", conftest._build_digits), None)
    kmodels = conftest.cached("keras", conftest._build_keras)
    mobilenet = root / "mobilenet"
    if not (mobilenet / "separable_net.keras").exists():
        import model_zoo

        split = model_zoo.digits_split()
        up = lambda x: np.repeat(np.kron(x[:, 0], np.ones((12, 12), np.float32))[..., None], 3, axis=-1)  # noqa: E731
        model = mobilenet_like()
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(up(split.x_train), split.y_train, epochs=2, batch_size=32, verbose=0)
        mobilenet.mkdir(parents=True, exist_ok=True)
        model.save(mobilenet / "separable_net.keras")
        conftest.save_samples(mobilenet / "calib", up(split.x_train[:64]))
    return [
        {"name": "digits CNN (Keras)", "path": kmodels / "digits_keras.keras", "calib": kmodels / "calib", "kind": "keras"},
        {"name": "digits CNN (PyTorch→ONNX)", "path": digits.pt2, "calib": digits.calib, "kind": "onnx",
         "onnx": digits.onnx},
        {"name": "MobileNet-like 96px (Keras)", "path": mobilenet / "separable_net.keras", "calib": mobilenet / "calib",
         "kind": "keras"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from edgeconv.errors import EdgeconvError
    from edgeconv.formats import TensorSpec
    from helpers import convert, model_path, target_record

    root = Path(tempfile.gettempdir()) / "edgeconv-bench-tflite"
    root.mkdir(exist_ok=True)
    rows = []
    for m in build_models(root):
        calib = [np.load(p) for p in sorted(Path(m["calib"]).glob("*.npy"))[:64]]
        base = {}
        for v in VARIANTS:
            out = Path(tempfile.mkdtemp(dir=root)) / "out"
            try:
                manifest = convert(m["path"], [v], out, calib=str(m["calib"]))
            except EdgeconvError as e:  # e.g. a kernel refusing the quantized model (exit 4)
                rows.append(f"| {m['name']} | {v} | – | – | – | – | – | refused (exit {e.exit_code}): "
                            f"{e.message.split(': ', 1)[-1][:90]} | |")
                continue
            inputs = tuple(TensorSpec(s["name"], tuple(d if isinstance(d, int) and d > 0 else 1 for d in s["shape"]))
                           for s in manifest["source"]["inputs"])
            record = target_record(manifest, v)
            path = model_path(manifest, out, v)
            size = path.stat().st_size
            lat = latency_ms(path, record, inputs, args.runs, args.threads)
            steps = sum(s["seconds"] for s in record["steps"])
            with contextlib.redirect_stdout(io.StringIO()):  # the converters print "Saved artifact at ..."
                if m["kind"] == "keras":
                    bare = bare_keras(m["path"], v, calib)
                else:
                    bare = bare_onnx(m["onnx"], v, calib, Path(tempfile.mkdtemp(dir=root)))
            if v == "tflite-fp32":
                base = {"size": size, "lat": lat}
            snr = record["validation"]["metrics"]["snr_db"]
            rows.append(f"| {m['name']} | {v} | {size / 1024:.1f} | {size / base['size']:.2f}x | {lat:.3f} | "
                        f"{lat / base['lat']:.2f}x | {snr:.1f} | {steps:.2f} | {bare:.2f} |")
    print(f"LiteRT {args.threads} thread(s), median of {args.runs} runs; SNR vs the source on calibration samples "
          "(validation of each run).\n")
    print("| model | profile | size KiB | vs fp32 | latency ms | vs fp32 | SNR dB | edgeconv convert s | bare converter s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
