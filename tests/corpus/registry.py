"""The corpus: real architectures (small, but with the features that break converters), each saved in its source form
into a folder of its own together with calibration and evaluation samples:

    ROOT/<name>/<file>        the model as a user would hand it over (.pt2, TorchScript .pt, .keras, .h5, SavedModel dir)
    ROOT/<name>/calib/        64 samples (.npy, or .npz keyed by input name for multi-input models)
    ROOT/<name>/eval/         32 held-out samples
    ROOT/<name>/meta.json     file, family, features, input shapes to pass (TorchScript records none; `static_shapes`
                              only for targets that need static shapes), and the corpus stamp it was built from

Build with `python -m tests.corpus.build --root ROOT [--models a,b]` (one process per framework, so PyTorch and
TensorFlow never share one); `ensure(root, names)` does that for callers (bench/matrix.py, tests/corpus tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    framework: str  # torch | keras (which build process makes it)
    source: str  # the source form, in words
    file: str  # the model's file (or folder) name inside its corpus folder
    features: str
    trained: str = ""  # what it was trained on, if anything
    convert_args: tuple[str, ...] = ()  # what a user passes to convert it besides the data (run from the repo root)


CORPUS: tuple[Entry, ...] = (
    Entry("resnet", "ResNet", "torch", "torch.export .pt2", "resnet.pt2",
          "BasicBlocks, BatchNorm, residual adds, x.mean(dim=(2,3)) global pooling", "digits 32x32 RGB"),
    Entry("mobilenetv2", "MobileNetV2", "torch", "torch.export .pt2", "mobilenetv2.pt2",
          "inverted residuals, depthwise conv, ReLU6, adaptive_avg_pool2d, dropout", "digits 32x32 RGB"),
    Entry("mobilenetv3", "MobileNetV3", "torch", "torch.export .pt2", "mobilenetv3.pt2",
          "hardswish, hardsigmoid squeeze-excite, 5x5 depthwise", "digits 32x32 RGB"),
    Entry("efficientnet", "EfficientNet-B0", "torch", "torch.export .pt2", "efficientnet.pt2",
          "MBConv, SiLU, sigmoid squeeze-excite, 5x5 depthwise", "digits 32x32 RGB"),
    Entry("convnext", "ConvNeXt", "torch", "torch.export .pt2", "convnext.pt2",
          "patchify stem, 7x7 depthwise, channels-last LayerNorm (permutes), GELU, layer scale", "digits 32x32 RGB"),
    Entry("yolo", "YOLO-style detector", "torch", "torch.export .pt2", "yolo.pt2",
          "2-scale head, in-graph grid decode (meshgrid, sigmoid, exp), concat of boxes and scores, topk + gather: "
          "outputs boxes, scores, int64 indices"),
    Entry("unet", "UNet", "torch", "torch.export .pt2", "unet.pt2",
          "encoder/decoder, skip concats, ConvTranspose2d, bilinear F.interpolate, BatchNorm"),
    Entry("crnn", "CRNN OCR", "torch", "torch.export .pt2", "crnn.pt2",
          "CNN collapsing height, squeeze/permute to T x N x C, bidirectional LSTM, CTC log_softmax head",
          "CTC on 4-digit strips"),
    Entry("audio_kws", "audio (STFT/mel + GRU)", "torch", "torch.export .pt2", "audio_kws.pt2",
          "raw waveform in; STFT as conv1d with a fixed DFT basis, power, mel matmul, log, BatchNorm1d, GRU"),
    Entry("audio_torchstft", "audio (STFT/mel + GRU)", "torch", "torch.export .pt2", "audio_torchstft.pt2",
          "as audio_kws but the front end is torch.stft (ONNX STFT op)"),
    Entry("mtcnn_rnet", "MTCNN R-Net", "torch", "torch.export .pt2", "mtcnn_rnet.pt2",
          "PReLU after conv and after Linear (rank-2), permute before flatten, softmax head + box head",
          "lfw_subset faces vs non-faces"),
    Entry("vit_tiny", "ViT/DeiT-tiny", "torch", "torch.export .pt2", "vit_tiny.pt2",
          "patch-embed conv, class token concat, position embedding, manual attention, GELU, LayerNorm",
          "digits 32x32 RGB"),
    Entry("bert_tiny", "BERT-tiny (transformers)", "torch", "torch.export .pt2", "bert_tiny.pt2",
          "transformers BertModel from BertConfig (random init), int64 input_ids + attention_mask, extended mask, "
          "pooler tanh"),
    Entry("whisper_enc", "Whisper-like encoder", "torch", "torch.export .pt2", "whisper_enc.pt2",
          "conv1d stem with GELU, stride-2 conv, sinusoidal positions buffer, pre-norm transformer blocks"),
    Entry("ts_traced_flatten", "TorchScript traced", "torch", "TorchScript (torch.jit.trace)", "ts_traced_flatten.pt",
          "traced shape arithmetic x.view(x.shape[0], -1), BatchNorm", "digits 32x32 RGB"),
    Entry("ts_scripted_control", "TorchScript scripted", "torch", "TorchScript (torch.jit.script)",
          "ts_scripted_control.pt", "loop whose trip count is int(tensor.item()) and an if on a tensor value "
          "(ONNX Loop/If)",
          "digits 32x32 RGB"),
    Entry("ts_scripted_while", "TorchScript scripted", "torch", "TorchScript (torch.jit.script)",
          "ts_scripted_while.pt", "while loop on a tensor condition (ONNX Loop, bool condition) and if on a tensor "
          "value (ONNX If)", "digits 32x32 RGB"),
    Entry("pt2_dynamic_batch", "dynamic-batch .pt2", "torch", "torch.export .pt2 with Dim('batch')",
          "pt2_dynamic_batch.pt2", "symbolic batch dim, depthwise + pointwise residual, adaptive pool, flatten",
          "digits 32x32 RGB"),
    Entry("keras_mobilenetv2", "MobileNetV2", "keras", "keras.applications .keras", "keras_mobilenetv2.keras",
          "keras.applications.MobileNetV2(alpha=0.35, weights=None) at 64x64, ReLU6, ZeroPadding2D, depthwise",
          "digits 64x64 RGB"),
    Entry("keras_mobilenetv3small", "MobileNetV3", "keras", "keras.applications .keras",
          "keras_mobilenetv3small.keras",
          "keras.applications.MobileNetV3Small(weights=None) at 64x64, Rescaling preprocessing, hard-swish, SE",
          "digits 64x64 RGB"),
    Entry("keras_efficientnetb0", "EfficientNet-B0", "keras", "keras.applications .keras", "keras_efficientnetb0.keras",
          "keras.applications.EfficientNetB0(weights=None) at 64x64, Rescaling + Normalization layers, swish, SE",
          "digits 64x64 RGB"),
    Entry("keras_h5_tfkeras", "Keras 2 .h5", "keras", "tf_keras .h5 (Keras 2 era)", "keras_h5_tfkeras.h5",
          "tf_keras Sequential, BatchNorm, Dropout, Flatten, softmax Dense", "digits 16x16"),
    Entry("keras_savedmodel", "SavedModel", "keras", "SavedModel dir (keras model.export, serving signature)",
          "keras_savedmodel", "separable convs, residual adds, GAP; serving signature `serve`", "digits 32x32 RGB"),
    Entry("keras_subclassed", "subclassed Keras", "keras", "subclassed keras.Model .keras (registered class)",
          "keras_subclassed.keras", "custom call(), keras.ops.relu residual, LayerNormalization head",
          "digits 32x32 RGB", convert_args=("--custom-objects", "tests.corpus.keras_custom")),
)
BY_NAME = {e.name: e for e in CORPUS}


def stamp(framework: str) -> str:
    """Hash of the sources a corpus model is built from (data, builders, the model zoo and its framework's model
    definitions): a folder built from other sources is rebuilt."""
    h = hashlib.sha256()
    for f in (HERE / "data.py", HERE / "build.py", *sorted(HERE.glob(f"{framework}_*.py")), REPO / "tests" / "model_zoo.py"):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def is_built(root: Path, name: str) -> bool:
    meta = read_meta(root / name)
    return (bool(meta) and meta.get("stamp") == stamp(BY_NAME[name].framework)
            and (root / name / meta["file"]).exists())


def ensure(root: Path, names: list[str] | None = None, timeout: float = 1800) -> dict[str, str]:
    """Build the missing corpus models under root (one subprocess per framework, the two at once). Returns
    {name: error} for those whose build failed (they are left out of root)."""
    import fcntl

    names = list(names or BY_NAME)
    root.mkdir(parents=True, exist_ok=True)
    errors: dict[str, str] = {}
    with open(root / ".lock", "w") as lock:  # concurrent callers (xdist workers) wait for one builder
        fcntl.flock(lock, fcntl.LOCK_EX)
        builds = {f: _start_build(root, names, f) for f in ("torch", "keras")}
        for framework, build in builds.items():
            if build is None:
                continue
            todo, proc = build
            try:
                _, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, stderr = proc.communicate()
            for n in todo:
                if not is_built(root, n):
                    err = root / f".{n}.error"
                    errors[n] = err.read_text() if err.exists() else (stderr[-2000:] or f"exit {proc.returncode}")
    return errors


def _start_build(root: Path, names: list[str], framework: str) -> tuple[list[str], subprocess.Popen] | None:
    todo = [n for n in names if BY_NAME[n].framework == framework and not is_built(root, n)]
    if not todo:
        return None
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.corpus.build", "--root", str(root), "--models", ",".join(todo)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return todo, proc


def cli_args(root: Path, name: str, static: bool = False) -> list[str]:
    """The `edgeconv convert` arguments for a corpus model: source, --calib, --eval, --input-shape where needed."""
    folder = root / name
    meta = read_meta(folder) or {}
    args = [str(folder / meta["file"]), "--calib", str(folder / "calib"), "--eval", str(folder / "eval")]
    shapes = dict(meta.get("input_shapes", {}))
    if static:
        shapes.update(meta.get("static_shapes", {}))
    for k, v in shapes.items():
        args += ["--input-shape", f"{k}={'x'.join(map(str, v))}"]
    return [*args, *BY_NAME[name].convert_args]


def entry_json(e: Entry) -> dict:
    return asdict(e)
