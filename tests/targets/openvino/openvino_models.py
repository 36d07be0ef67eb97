"""Small models for the OpenVINO and ExecuTorch tests that the shared fixtures lack: a detector-shaped CNN (a strided backbone and
two heads: per-anchor box regression and class scores, as SSD / YOLO heads are)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_detector(seed: int = 0):
    import torch

    torch.manual_seed(seed)

    class Detector(torch.nn.Module):
        def __init__(self, anchors: int = 3, classes: int = 4) -> None:
            super().__init__()
            self.anchors, self.classes = anchors, classes
            self.backbone = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
                torch.nn.Conv2d(32, 32, 3, padding=1, groups=32), torch.nn.Conv2d(32, 32, 1), torch.nn.ReLU())
            self.boxes = torch.nn.Conv2d(32, anchors * 4, 1)
            self.scores = torch.nn.Conv2d(32, anchors * classes, 1)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.backbone(image)
            n = image.shape[0]
            boxes = self.boxes(features).permute(0, 2, 3, 1).reshape(n, -1, 4)
            scores = self.scores(features).permute(0, 2, 3, 1).reshape(n, -1, self.classes)
            return boxes, torch.sigmoid(scores)

    model = Detector()
    with torch.no_grad():  # BN statistics that are not the identity (BN fusion must do real work)
        for bn in (model.backbone[1], model.backbone[4]):
            bn.running_mean.normal_(0.0, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


def build_detector(folder: Path) -> Path:
    """detector.onnx (input `image` [1, 3, 32, 32], outputs `boxes` [1, 192, 4] and `scores` [1, 192, 4]) and calib/
    (48) + eval/ (16) folders of smooth random images in [0, 1]."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.onnx.export(tiny_detector(), (x,), str(folder / "detector.onnx"), input_names=["image"],
                      output_names=["boxes", "scores"], opset_version=17, dynamo=False)
    rng = np.random.default_rng(7)
    for name, count in (("calib", 48), ("eval", 16)):
        (folder / name).mkdir(exist_ok=True)
        coarse = rng.uniform(0, 1, (count, 3, 8, 8))
        images = coarse.repeat(4, axis=2).repeat(4, axis=3) + rng.normal(0, 0.05, (count, 3, 32, 32))
        for i, image in enumerate(images):
            np.save(folder / name / f"{i:04d}.npy", np.clip(image, 0, 1)[None].astype(np.float32))
    return folder / "detector.onnx"


def build_detector_pt2(folder: Path) -> Path:
    """The same detector as a torch.export program (detector.pt2, input `image` [1, 3, 32, 32]) beside its ONNX."""
    import torch

    onnx = build_detector(folder)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.export.save(torch.export.export(tiny_detector(), (x,)), str(folder / "detector.pt2"))
    return onnx.with_suffix(".pt2")
