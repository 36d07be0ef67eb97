"""Image preprocessing for calibration / validation folders of images.

Spec string (``--preprocess`` or ``preprocess = "..."`` in a profile's [quantize]); values after a key's ``=`` that
contain commas continue that key::

    resize=224x224,mean=0.485,0.456,0.406,std=0.229,0.224,0.225,layout=nchw,channels=rgb,scale=1/255

Keys: resize (HxW), fit (how an image of another aspect ratio meets HxW: stretch, the default; crop: aspect-
preserving resize to cover HxW, then a centre crop, as ImageNet-style evaluation does; pad: aspect-preserving resize to
fit inside HxW, black borders, i.e. letterbox), mean, std (one value or one per channel, applied after scale), layout
(nchw|nhwc), channels (rgb|bgr|gray), scale (number or fraction; default 1/255), dtype (float32|float16|uint8|int8).
Keys left out are taken from the model input's shape where possible (H, W, channel count, layout); an image folder
used without any spec gets a warning saying what was assumed (assumed_warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.errors import InvalidInputError, MissingBackendError, UsageError, first_line

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
KEYS = ("resize", "fit", "mean", "std", "layout", "channels", "scale", "dtype")
FITS = ("stretch", "crop", "pad")
MAX_PIXELS = 2**26  # 67 million: an image (or a resize) beyond it is a bomb or a typo
_EXAMPLE = "resize=224x224,mean=0.485,0.456,0.406,std=0.229,0.224,0.225,layout=nchw,channels=rgb,scale=1/255"


@dataclass(frozen=True)
class Preprocess:
    resize: tuple[int, int] | None = None  # (height, width)
    fit: str = "stretch"  # stretch | crop | pad (see the module docstring)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nchw"
    channels: str = "rgb"  # rgb | bgr | gray
    scale: float = 1.0 / 255.0
    dtype: str = "float32"
    explicit: frozenset[str] = field(default_factory=frozenset)  # keys the user gave

    def to_json(self) -> dict[str, Any]:
        return {"resize": list(self.resize) if self.resize else None, "fit": self.fit, "mean": list(self.mean),
                "std": list(self.std),
                "layout": self.layout, "channels": self.channels, "scale": self.scale, "dtype": self.dtype}


def _bad(message: str) -> UsageError:
    return UsageError(f"bad --preprocess: {message}", f"use e.g. --preprocess \"{_EXAMPLE}\"")


def _num(text: str) -> float:
    try:
        return float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError) as e:
        raise _bad(f"not a number: {text!r}") from e


def _split(spec: str) -> dict[str, list[str]]:
    items: dict[str, list[str]] = {}
    key = None
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            key, value = (s.strip() for s in part.split("=", 1))
            key = key.lower()
            if key not in KEYS:
                raise _bad(f"unknown key {key!r} (known: {', '.join(KEYS)})")
            items[key] = [value]
        elif key is None:
            raise _bad(f"value {part!r} has no key before it")
        else:
            items[key].append(part)
    return items


def parse_preprocess(spec: str | dict[str, Any] | None) -> Preprocess:
    """Parse the spec string, or a TOML table with the same keys (lists for mean/std)."""
    if not spec:
        return Preprocess()
    if isinstance(spec, dict):
        items = {str(k).lower(): [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])] for k, v in spec.items()}
        unknown = [k for k in items if k not in KEYS]
        if unknown:
            raise _bad(f"unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    else:
        items = _split(str(spec))
    kw: dict[str, Any] = {}
    if "resize" in items:
        v = items["resize"]
        dims = v[0].lower().split("x") if len(v) == 1 else v
        dims = dims * 2 if len(dims) == 1 else dims
        try:
            h, w = (int(d) for d in dims)
        except ValueError as e:
            raise _bad(f"resize wants HxW, got {','.join(v)!r}") from e
        if h <= 0 or w <= 0:
            raise _bad("resize dims must be positive")
        if h * w > MAX_PIXELS:  # refused before any image is decoded into h x w x 3 floats
            raise _bad(f"resize={h}x{w} is {h * w:,} pixels, more than edgeconv allows ({MAX_PIXELS:,})")
        kw["resize"] = (h, w)
    for k in ("mean", "std"):
        if k in items:
            kw[k] = tuple(_num(x) for x in items[k])
    if any(s == 0 for s in kw.get("std", ())):
        raise _bad("std must not be 0")
    if "scale" in items:
        kw["scale"] = _num(items["scale"][0])
    for k, allowed in (("fit", FITS), ("layout", ("nchw", "nhwc")), ("channels", ("rgb", "bgr", "gray")),
                       ("dtype", ("float32", "float16", "uint8", "int8"))):
        if k in items:
            value = items[k][0].lower()
            if value not in allowed:
                raise _bad(f"{k} must be one of {', '.join(allowed)}, got {value!r}")
            kw[k] = value
    return Preprocess(**kw, explicit=frozenset(items))


def fit_to_input(pp: Preprocess, shape: tuple[Any, ...] | None) -> Preprocess:
    """Fill what the spec leaves out (layout, size, gray vs colour) from a rank-4 model input shape."""
    if not shape or len(shape) != 4:
        return pp
    d = [x if isinstance(x, int) and x > 0 else None for x in shape]
    if "layout" in pp.explicit:
        layout = pp.layout
    elif d[1] in (1, 3, 4) and d[3] not in (1, 3, 4):
        layout = "nchw"
    elif d[3] in (1, 3, 4):
        layout = "nhwc"
    else:
        layout = pp.layout
    c, h, w = (d[1], d[2], d[3]) if layout == "nchw" else (d[3], d[1], d[2])
    changes: dict[str, Any] = {"layout": layout}
    if pp.resize is None and h and w:
        changes["resize"] = (h, w)
    if c == 1 and "channels" not in pp.explicit:
        changes["channels"] = "gray"
    return replace(pp, **changes)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _resized(im: Any, size: tuple[int, int], fit: str, path: Path) -> Any:
    """`im` brought to `size` (H, W): stretched, or aspect-preserving and centre-cropped / letterboxed."""
    from PIL import Image

    h, w = size
    if fit == "stretch" or im.width * h == im.height * w:
        return im.resize((w, h), Image.Resampling.BILINEAR)
    s = max(w / im.width, h / im.height) if fit == "crop" else min(w / im.width, h / im.height)
    nw, nh = max(1, round(im.width * s)), max(1, round(im.height * s))
    if fit == "crop":
        nw, nh = max(nw, w), max(nh, h)
    if nw * nh > MAX_PIXELS:  # a 1x100000 strip cropped to a square
        raise InvalidInputError(f"image {path} ({im.width}x{im.height}) would be {nw}x{nh} pixels before the crop",
                                "use --preprocess fit=stretch or fit=pad for images this elongated")
    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    if fit == "crop":
        left, top = (nw - w) // 2, (nh - h) // 2
        return im.crop((left, top, left + w, top + h))
    canvas = Image.new(im.mode, (w, h))
    canvas.paste(im, ((w - nw) // 2, (h - nh) // 2))
    return canvas


def assumed_warning(pp: Preprocess) -> str | None:
    """What edgeconv assumed for an image folder given without any preprocessing spec (no --preprocess, no profile
    quantize.options.preprocess), and how to say otherwise; None when the user gave a spec."""
    if pp.explicit:
        return None
    size = (f"each image resized to {pp.resize[0]}x{pp.resize[1]} (HxW) by stretching: aspect ratio not kept, no "
            "crop" if pp.resize else "no resize (the model input has no fixed size: every image must already have it)")
    channels = {"rgb": "RGB", "bgr": "BGR", "gray": "grayscale"}[pp.channels]
    mean = ",".join(f"{v:g}" for v in pp.mean)
    std = ",".join(f"{v:g}" for v in pp.std)
    norm = ("no mean/std normalisation (mean 0, std 1)" if (mean, std) == ("0", "1") else f"mean {mean}, std {std}")
    scale = "1/255 (pixels 0..1)" if abs(pp.scale - 1 / 255) < 1e-12 else f"{pp.scale:g}"
    return (f"image folder used without --preprocess: edgeconv assumed {size}; {channels}; pixels scaled by {scale}; "
            f"{norm}; {pp.layout.upper()} {pp.dtype}. If the model was trained on other inputs, calibration and the "
            "accuracy figures are wrong: say how, e.g. --preprocess \"fit=crop,mean=0.485,0.456,0.406,"
            "std=0.229,0.224,0.225\" (fit=crop: aspect-preserving resize and centre crop, for classifiers; fit=pad: "
            "letterbox, for detectors)")


def load_image(path: Path, pp: Preprocess) -> np.ndarray:
    """One image file → an array with a leading batch dim of 1, in the spec's layout and dtype."""
    try:
        from PIL import Image
    except ImportError as e:
        raise MissingBackendError("reading image folders needs Pillow", "pip install pillow") from e
    try:
        im: Image.Image  # Image.open gives an ImageFile, convert() a plain Image
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:  # a decompression bomb: a small file that decodes to gigabytes
                raise InvalidInputError(f"image {path} is {im.width}x{im.height} pixels, more than edgeconv decodes "
                                        f"({MAX_PIXELS:,})", "resize the image, or remove it from the folder")
            im = im.convert("L" if pp.channels == "gray" else "RGB")
            if pp.resize is not None:
                im = _resized(im, pp.resize, pp.fit, path)
            arr = np.asarray(im, dtype=np.float32)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidInputError(f"cannot read image {path}: {first_line(e)}", "remove or replace the unreadable file") from e
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if pp.channels == "bgr":
        arr = arr[:, :, ::-1]
    if pp.dtype == "uint8":
        out = arr.astype(np.uint8)
    elif pp.dtype == "int8":
        out = (arr - 128.0).astype(np.int8)
    else:
        c = arr.shape[2]
        for name, values in (("mean", pp.mean), ("std", pp.std)):
            if len(values) not in (1, c):
                raise UsageError(f"bad --preprocess: {name} has {len(values)} values for a {c}-channel image",
                                 f"give 1 or {c} values")
        mean = np.asarray(pp.mean, np.float32)
        std = np.asarray(pp.std, np.float32)
        out = ((arr * pp.scale - mean) / std).astype(pp.dtype)
    if pp.layout == "nchw":
        out = out.transpose(2, 0, 1)
    return np.ascontiguousarray(out[None])
