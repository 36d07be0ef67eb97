"""Shared fixtures: real models trained on real offline data, built once per test session (and shared between
xdist workers through an on-disk cache keyed by the model zoo's source, so `-n 2` does not train twice)."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The stage cache (edgeconv/stage_cache.py) is off for the whole session, in this process and in the CLI subprocesses
# that inherit the environment: a test that converts twice must convert twice. Its own tests (tests/test_stage_cache.py)
# turn it on, each with a cache folder of its own; anything else (TensorRT timing caches) lands in a folder of this
# session, never in ~/.cache.
os.environ["EDGECONV_NO_CACHE"] = "1"
os.environ["EDGECONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgeconv-test-cache-")
atexit.register(shutil.rmtree, os.environ["EDGECONV_CACHE_DIR"], True)
sys.path.insert(0, str(Path(__file__).parent))

import model_zoo  # noqa: E402

# TensorFlow imported after the QNN execution provider loaded Qualcomm's libraries crashes the process (SIGSEGV, see
# edgeconv/native_libs.py). A CLI run orders them itself; a test process runs many conversions, so it imports
# TensorFlow first whenever both are installed, whatever order the tests come in.
from edgeconv.deps import is_installed  # noqa: E402
from edgeconv.native_libs import QNN_MODULES  # noqa: E402

if is_installed("tensorflow") and any(is_installed(m) for m in QNN_MODULES):
    import tensorflow  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[1]
ZOO_HASH = hashlib.sha256(Path(model_zoo.__file__).read_bytes()).hexdigest()[:12]
CACHE = Path(tempfile.gettempdir()) / f"edgeconv-test-models-{ZOO_HASH}"


def cached(name: str, build: Callable[[Path], None]) -> Path:
    """Build `name` (a folder) once; concurrent builders race harmlessly (atomic rename, first one wins)."""
    final = CACHE / name
    if final.exists():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE))
    build(tmp)
    try:
        os.rename(tmp, final)
    except OSError:  # another worker won
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def save_samples(folder: Path, arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        np.save(folder / f"{i:04d}.npy", a[None].astype(np.float32))
    return folder


@dataclass(frozen=True)
class DigitsModels:
    """The digits CNN in every PyTorch form, its data split and sample folders (NCHW [1, 1, 8, 8])."""

    root: Path
    split: model_zoo.DigitsSplit

    pt2 = property(lambda self: self.root / "digits_cnn.pt2")
    torchscript = property(lambda self: self.root / "digits_cnn.ts.pt")
    state_dict = property(lambda self: self.root / "digits_cnn.state.pt")
    onnx = property(lambda self: self.root / "digits_cnn.onnx")
    calib = property(lambda self: self.root / "calib")  # 64 training samples
    eval = property(lambda self: self.root / "eval")  # 128 held-out samples
    eval_labels = property(lambda self: self.split.y_test[:128])


def _build_digits(folder: Path) -> None:
    import torch

    split = model_zoo.digits_split()
    model = model_zoo.digits_cnn(split)
    x = torch.from_numpy(split.x_test[:1])
    torch.export.save(torch.export.export(model, (x,)), str(folder / "digits_cnn.pt2"))
    torch.jit.save(torch.jit.trace(model, x), str(folder / "digits_cnn.ts.pt"))
    torch.save(model.state_dict(), str(folder / "digits_cnn.state.pt"))
    torch.onnx.export(model, (x,), str(folder / "digits_cnn.onnx"), input_names=["image"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    save_samples(folder / "calib", split.x_train[:64])
    save_samples(folder / "eval", split.x_test[:128])


@pytest.fixture(scope="session")
def digits() -> DigitsModels:
    return DigitsModels(cached("digits", _build_digits), model_zoo.digits_split())


def _build_transformer(folder: Path) -> None:
    import torch

    block = model_zoo.transformer_block()
    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    torch.export.save(torch.export.export(block, (x,)), str(folder / "transformer.pt2"))
    rng = np.random.default_rng(1)
    save_samples(folder / "calib", rng.standard_normal((32, 16, 32)))
    save_samples(folder / "eval", rng.standard_normal((16, 16, 32)))


@pytest.fixture(scope="session")
def transformer() -> Path:
    """Folder with transformer.pt2 (input `tokens` [1, 16, 32]) and calib/eval sample folders."""
    return cached("transformer", _build_transformer)


def _build_gelu_transformer(folder: Path) -> None:
    import torch

    block = model_zoo.transformer_block(activation="gelu")
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # trained LayerNorms are not the identity (onnxslim would fold a 1 / 0 affine away)
        for norm in (block.layer.norm1, block.layer.norm2):
            norm.weight.uniform_(0.5, 1.5, generator=generator)
            norm.bias.normal_(0.0, 0.1, generator=generator)

    class TokenScores(torch.nn.Module):  # [16, 8]: per-token class scores, so validation measures top-1 agreement
        def __init__(self) -> None:
            super().__init__()
            self.block = block

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.block(tokens)[0]

    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    for opset in (17, 14):  # 14: LayerNorm too is decomposed (ReduceMean → Sub → Pow → ... → Div → Mul → Add)
        torch.onnx.export(TokenScores().eval(), (x,), str(folder / f"gelu_block_opset{opset}.onnx"),
                          input_names=["tokens"], output_names=["scores"], opset_version=opset, dynamo=False)
    rng = np.random.default_rng(4)
    save_samples(folder / "calib", rng.standard_normal((32, 16, 32)))
    save_samples(folder / "eval", rng.standard_normal((16, 16, 32)))


@pytest.fixture(scope="session")
def gelu_transformer() -> Path:
    """Folder with the transformer block with nn.GELU exported by PyTorch's TorchScript exporter (as Hugging Face
    exports are) at opset 17 (gelu_block_opset17.onnx: GELU is its Erf decomposition) and opset 14
    (gelu_block_opset14.onnx: LayerNorm decomposed too); input `tokens` [1, 16, 32], output `scores` [16, 8];
    calib/ (32) and eval/ (16) sample folders."""
    return cached("gelu-transformer", _build_gelu_transformer)


def _build_keras(folder: Path) -> None:
    split = model_zoo.digits_split()
    model = model_zoo.keras_digits_cnn(split)
    model.save(folder / "digits_keras.keras")
    model.save(folder / "digits_keras.h5")
    model_zoo.keras_depthwise_residual().save(folder / "dw_residual.keras")
    save_samples(folder / "calib", split.x_train[:64].transpose(0, 2, 3, 1))
    save_samples(folder / "eval", split.x_test[:128].transpose(0, 2, 3, 1))
    rng = np.random.default_rng(2)
    save_samples(folder / "dw_calib", rng.uniform(0, 1, (32, 16, 16, 3)))


@pytest.fixture(scope="session")
def keras_models() -> Path:
    """Folder with digits_keras.keras/.h5 (input `image` [N, 8, 8, 1] NHWC), dw_residual.keras ([N,16,16,3]),
    calib/eval (digits, NHWC) and dw_calib sample folders."""
    return cached("keras", _build_keras)


@pytest.fixture(scope="session")
def messy_onnx() -> Path:
    """An opset-11 ONNX graph with Constant weights, unfused BN, a shape subgraph and dynamic batch (input `input`
    [N, 3, 16, 16]); calib/ has 32 samples [1, 3, 16, 16]."""

    def build(folder: Path) -> None:
        model_zoo.messy_onnx(folder / "messy.onnx")
        save_samples(folder / "calib", np.random.default_rng(3).uniform(0, 1, (32, 3, 16, 16)))

    return cached("messy", build) / "messy.onnx"


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None) -> CliResult:
    """Run the real `edgeconv` command in a subprocess (the way CI scripts and Makefiles call it)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # xdist workers set COLUMNS=80
    full_env.update({"TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "edgeconv", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=full_env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_cli
