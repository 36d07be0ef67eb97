"""Calibration data sources: .npy/.npz folders, image folders with a preprocessing spec, random only when asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import InvalidInputError, UsageError
from edgeconv.formats import TensorSpec
from edgeconv.quantizers.calibration import open_samples
from edgeconv.quantizers.onnx_qdq import StreamingReader
from edgeconv.quantizers.preprocess import fit_to_input, parse_preprocess

SPEC = "resize=24x20,mean=0.485,0.456,0.406,std=0.229,0.224,0.225,layout=nchw,channels=rgb,scale=1/255"


def write_images(folder: Path, count: int, size: tuple[int, int] = (30, 40)) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def test_parse_preprocess_spec() -> None:
    pp = parse_preprocess(SPEC)
    assert pp.resize == (24, 20) and pp.mean == (0.485, 0.456, 0.406) and pp.std == (0.229, 0.224, 0.225)
    assert pp.layout == "nchw" and pp.channels == "rgb" and pp.scale == pytest.approx(1 / 255)
    assert parse_preprocess({"resize": "8x8", "mean": [0.5], "scale": 1}).scale == 1.0
    for bad in ("resize=abc", "colour=rgb", "std=0", "layout=nhcw", "0.5,resize=8x8"):
        with pytest.raises(UsageError, match="preprocess"):
            parse_preprocess(bad)


def test_fit_to_input_fills_missing_keys() -> None:
    pp = fit_to_input(parse_preprocess("scale=1/255"), (1, 8, 8, 1))
    assert pp.layout == "nhwc" and pp.resize == (8, 8) and pp.channels == "gray"
    assert fit_to_input(parse_preprocess(""), ("N", 3, 32, 48)).resize == (32, 48)


def test_image_folder_streams_preprocessed_samples(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "imgs", 5)
    (folder / "notes.txt").write_text("not an image")
    spec = (TensorSpec("image", ("N", 3, 24, 20)),)
    samples = open_samples(str(folder), spec, 3, preprocess=SPEC)
    assert samples.kind == "images" and len(samples) == 3
    feeds = list(samples)
    assert len(feeds) == 3 and feeds[0]["image"].shape == (1, 3, 24, 20) and feeds[0]["image"].dtype == np.float32
    x = feeds[0]["image"]
    assert -2.2 < x.min() < 0 < x.max() < 2.7  # normalised with ImageNet mean/std
    assert samples.describe()["preprocess"]["resize"] == [24, 20]
    gray = open_samples(str(folder), (TensorSpec("image", (1, 8, 8, 1)),), 2)  # spec inferred from the input shape
    assert next(iter(gray))["image"].shape == (1, 8, 8, 1)
    with pytest.raises(InvalidInputError, match="shape"):
        open_samples(str(folder), (TensorSpec("image", (1, 3, 16, 16)),), 2, preprocess="resize=8x8")


def test_limit_random_and_empty(tmp_path: Path) -> None:
    folder = tmp_path / "npy"
    folder.mkdir()
    for i in range(10):
        np.save(folder / f"{i}.npy", np.full((1, 4), i, np.float32))
    spec = (TensorSpec("x", ("N", 4)),)
    assert len(open_samples(str(folder), spec, 4)) == 4
    assert len(open_samples(str(folder), spec, 0)) == 1  # at least one
    assert open_samples("random", spec, 3).kind == "random"
    with pytest.raises(InvalidInputError, match="calibration data") as err:
        open_samples(None, spec, 3)
    assert "--calib random" in err.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no .npy/.npz samples or images"):
        open_samples(str(tmp_path / "empty"), spec, 3)


def test_streaming_reader_strides_sequentially(tmp_path: Path) -> None:
    folder = tmp_path / "npy"
    folder.mkdir()
    for i in range(8):
        np.save(folder / f"{i}.npy", np.full((1, 2), i, np.float32))
    reader = StreamingReader(open_samples(str(folder), (TensorSpec("x", ("N", 2)),), 8))
    assert len(reader) == 8
    seen = []
    for start in range(0, 8, 4):
        reader.set_range(start, start + 4)
        seen += [int(f["x"][0, 0]) for f in reader]
    assert seen == list(range(8))


@pytest.mark.slow
def test_random_calibration_warns_and_is_recorded(digits, tmp_path: Path) -> None:
    from tests.helpers import convert, target_record

    manifest = convert(digits.onnx, ["cpu-int8"], tmp_path / "out", calib="random", eval=str(digits.eval))
    record = target_record(manifest, "cpu-int8")
    assert any("RANDOM" in w for w in record["warnings"])
    assert record["notes"]["calibration"]["kind"] == "random"
    assert "random" in record["notes"]["calibration_warning"]


@pytest.mark.slow
def test_image_calibration_end_to_end(cli, digits, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "digit_images"
    folder.mkdir()
    for i, img in enumerate(digits.split.x_train[:16]):
        Image.fromarray((img[0] * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    out = tmp_path / "q.onnx"
    result = cli("quantize", digits.onnx, "--mode", "int8", "--calib", folder, "--eval", digits.eval,
                 "--preprocess", "scale=1/255", "-o", out, "--json")
    assert result.code == 0, result.stderr
    import json

    record = json.loads(result.stdout)["targets"][0]
    assert record["notes"]["calibration"]["kind"] == "images" and record["notes"]["calibration"]["count"] == 16
    assert record["validation"]["metrics"]["top1_agreement"] >= 0.97


def _thirds(folder: Path) -> Path:
    """One 10x30 (HxW) image: left third red, middle green, right third blue."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    img = np.zeros((10, 30, 3), np.uint8)
    img[:, :10, 0] = img[:, 10:20, 1] = img[:, 20:, 2] = 255
    Image.fromarray(img).save(folder / "thirds.png")
    return folder


def test_fit_stretch_crop_pad(tmp_path: Path) -> None:
    folder = _thirds(tmp_path / "imgs")
    spec = (TensorSpec("image", (1, 3, 10, 10)),)

    def image(fit: str) -> np.ndarray:
        samples = open_samples(str(folder), spec, 1, preprocess=f"fit={fit}" if fit else None)
        return next(iter(samples))["image"][0]

    stretched = image("")  # the default: all three thirds squeezed into 10 columns
    assert stretched[0, :, 0].max() == 1.0 and stretched[2, :, -1].max() == 1.0
    cropped = image("crop")  # aspect kept, centre crop: only the green middle third is left
    assert np.allclose(cropped[1], 1.0) and cropped[0].max() < 0.05 and cropped[2].max() < 0.05
    padded = image("pad")  # aspect kept, letterboxed: a 10x3 band in the middle rows, black above and below
    assert padded[:, :3].max() == 0.0 and padded[:, -3:].max() == 0.0
    band = padded[:, 4:6]
    assert band[0, :, :3].mean() > 0.5 and band[1, :, 4:6].mean() > 0.5 and band[2, :, -3:].mean() > 0.5
    assert parse_preprocess("fit=crop").to_json()["fit"] == "crop"
    with pytest.raises(UsageError, match="fit must be one of"):
        parse_preprocess("fit=zoom")


def test_assumed_preprocess_warning_text() -> None:
    from edgeconv.quantizers.preprocess import assumed_warning

    pp = fit_to_input(parse_preprocess(None), ("N", 3, 224, 160))
    text = assumed_warning(pp)
    assert text is not None
    for needle in ("224x160 (HxW) by stretching", "aspect ratio not kept", "RGB", "1/255", "mean 0, std 1", "NCHW",
                   "fit=crop", "--preprocess"):
        assert needle in text, needle
    assert assumed_warning(fit_to_input(parse_preprocess("scale=1/255"), ("N", 3, 224, 160))) is None


@pytest.mark.slow
def test_image_folders_without_preprocess_warn_once(cli, digits, tmp_path: Path) -> None:
    """Digits as PNG (calib and eval folders) without --preprocess, two targets: one warning on screen naming every
    assumption, in both targets' manifest warnings; with --preprocess given, none."""
    import json

    from PIL import Image

    for name, images in (("calib", digits.split.x_train[:16]), ("eval", digits.split.x_test[:16])):
        (tmp_path / name).mkdir()
        for i, img in enumerate(images):
            Image.fromarray((img[0] * 255).astype(np.uint8)).save(tmp_path / name / f"{i:02d}.png")
    args = ["convert", digits.onnx, "-t", "cpu-int8", "-t", "onnx", "--calib", tmp_path / "calib", "--eval",
            tmp_path / "eval"]
    result = cli(*args, "-o", tmp_path / "out")
    assert result.code == 0, result.stderr
    shown = [line for line in result.stderr.splitlines() if "used without --preprocess" in line]
    assert len(shown) == 1, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for record in manifest["targets"]:
        texts = [w for w in record["warnings"] if "used without --preprocess" in w]
        assert len(texts) == 1, record["warnings"]
        for needle in ("8x8", "grayscale", "1/255", "NCHW", "fit=crop"):
            assert needle in texts[0], needle
    quiet = cli(*args, "--preprocess", "scale=1/255", "-o", tmp_path / "out2")
    assert quiet.code == 0, quiet.stderr
    assert "used without --preprocess" not in quiet.stderr
