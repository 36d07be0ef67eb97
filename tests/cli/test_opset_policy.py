"""Per-profile opset ranges (issue 16): a ResNet-style PyTorch model exported by torch.onnx's dynamo exporter (opset 18)
converts to every ONNX Runtime and TensorRT profile, from a `.pt2` and from a `--model` factory; an exact-opset user
profile that the graph cannot be down-converted to is refused with a hint a user can follow."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cached

RESNET_SOURCE = textwrap.dedent('''
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

        def forward(self, x):
            return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


    class TinyResNet(nn.Module):
        """BatchNorm, residual adds, global average pooling as x.mean(dim=(2, 3)), a Linear head."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.blocks = nn.Sequential(Block(16), Block(16))
            self.fc = nn.Linear(16, 10)

        def forward(self, image):
            return self.fc(self.blocks(self.stem(image)).mean(dim=(2, 3)))


    def build():
        torch.manual_seed(0)
        model = TinyResNet()
        for m in model.modules():  # BatchNorm statistics as after training: not the identity
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        return model.eval()
''')


def _build(folder: Path) -> None:
    import importlib.util

    import torch

    (folder / "tiny_resnet.py").write_text(RESNET_SOURCE)
    spec = importlib.util.spec_from_file_location("tiny_resnet", folder / "tiny_resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build()
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 32, 32),)), str(folder / "resnet.pt2"))
    rng = np.random.default_rng(0)
    for name, count in (("calib", 32), ("eval", 16)):
        (folder / name).mkdir()
        for i in range(count):
            np.save(folder / name / f"{i:03d}.npy", rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32))


@pytest.fixture(scope="module")
def resnet() -> Path:
    return cached("tiny-resnet", _build)


def _targets(stdout: str) -> dict[str, dict]:
    return {t["target"]: t for t in json.loads(stdout)["targets"]}


@pytest.mark.slow
def test_resnet_pt2_converts_to_onnx_runtime_and_tensorrt_profiles(cli, resnet: Path, tmp_path: Path) -> None:
    targets = ["onnx", "onnx-fp16", "cpu-int8", "tensorrt-fp16"]
    result = cli("convert", resnet / "resnet.pt2", *[a for t in targets for a in ("-t", t)], "--calib", resnet / "calib",
                 "--eval", resnet / "eval", "-o", tmp_path / "out", "--json")
    assert result.code == 0, result.stderr[-2000:]
    by_name = _targets(result.stdout)
    for name in targets:
        record = by_name[name]
        norm = record["notes"]["normalise"]
        assert norm["opset_before"] == 18 and norm["opset_after"] == 18, norm  # kept: inside every range
        assert record["validation"]["passed"], record["validation"]
    assert by_name["onnx"]["validation"]["metrics"]["snr_db"] > 100
    assert by_name["onnx-fp16"]["validation"]["metrics"]["snr_db"] > 40
    assert by_name["cpu-int8"]["validation"]["metrics"]["snr_db"] > 25


@pytest.mark.slow
def test_resnet_factory_converts_to_onnx(cli, resnet: Path, tmp_path: Path) -> None:
    result = cli("convert", "--model", "tiny_resnet:build", "--input-shape", "image=1x3x32x32", "-t", "onnx",
                 "--eval", resnet / "eval", "-o", tmp_path / "out", "--json", cwd=resnet)
    assert result.code == 0, result.stderr[-2000:]
    record = _targets(result.stdout)["onnx"]
    assert record["validation"]["metrics"]["snr_db"] > 100


def test_exact_old_opset_profile_names_the_real_fix(cli, resnet: Path, tmp_path: Path) -> None:
    """A user's profile that takes exactly opset 17: ReduceMean (opset 18 form) cannot be down-converted; exit 4 says
    which opsets are involved and how to get there (re-export or widen the range), nothing is written."""
    profile = tmp_path / "ort17.toml"
    profile.write_text('name = "ort17"\nextends = "onnx"\nopset = 17\n')
    result = cli("convert", resnet / "resnet.pt2", "-t", profile, "-o", tmp_path / "out")
    assert result.code == 4, result.stderr[-2000:]
    assert "uses opset 18, the target takes opset 17, and down-converting to 17 failed" in result.stderr
    assert "--set opset.max=18" in result.stderr and "export with opset 17 or lower" not in result.stderr  # the old hint
    assert not (tmp_path / "out").exists()
