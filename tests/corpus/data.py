"""Offline sample data for the corpus (numpy only; nothing downloaded): scikit-learn's digits, scikit-image's bundled
photos, faces (lfw_subset) and text page, plus synthetic audio. Every helper is seeded and deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests import model_zoo


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of N x H x W (or N x H x W x C) float images."""
    from skimage.transform import resize

    out = [resize(im, size + im.shape[2:], order=1, anti_aliasing=False, preserve_range=True) for im in images]
    return np.stack(out).astype(np.float32)


def digits_rgb(size: int = 32, seed: int = 0, layout: str = "nchw"):
    """The 8x8 digits upsampled to size x size, 3 channels, normalised to about [-1, 1]: (x_tr, y_tr, x_te, y_te)."""
    split = model_zoo.digits_split(seed)

    def prep(x: np.ndarray) -> np.ndarray:
        up = _resize(x[:, 0], (size, size))  # N x size x size
        up = (up - 0.5) / 0.5
        rgb = np.stack([up, up * 0.9, up * 1.1], axis=1)  # N x 3 x H x W, channels not identical
        return rgb if layout == "nchw" else rgb.transpose(0, 2, 3, 1).copy()

    return prep(split.x_train), split.y_train, prep(split.x_test), split.y_test


def digits_gray(size: int, seed: int = 0):
    split = model_zoo.digits_split(seed)
    prep = lambda x: ((_resize(x[:, 0], (size, size)) - 0.5) / 0.5)[:, None]  # noqa: E731
    return prep(split.x_train), split.y_train, prep(split.x_test), split.y_test


_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "horse_rgb", "retina", "immunohistochemistry")


def photos(n: int, size: int = 64, seed: int = 0, layout: str = "nchw") -> np.ndarray:
    """n random crops (resized to size x size) of scikit-image's bundled colour photos, ImageNet-normalised."""
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = []
    for name in _PHOTOS:
        if name == "horse_rgb":
            continue
        fn = getattr(data, name, None)
        if fn is None:
            continue
        try:
            im = np.asarray(fn())
        except Exception:  # a photo that would need a download: skip it
            continue
        if im.ndim == 3 and im.shape[2] >= 3:
            sources.append(im[..., :3].astype(np.float32) / 255.0)
    crops = []
    for i in range(n):
        im = sources[i % len(sources)]
        h, w = im.shape[:2]
        c = int(rng.integers(min(h, w) // 4, min(h, w)))
        y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        crops.append(im[y : y + c, x : x + c])
    out = np.stack([_resize(c[None], (size, size))[0] for c in crops])  # N x H x W x 3
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    out = (out - mean) / std
    return out.transpose(0, 3, 1, 2).copy() if layout == "nchw" else out.astype(np.float32)


def faces(size: int = 24):
    """scikit-image's lfw_subset: 100 faces then 100 non-faces (25x25 grey) → N x 3 x size x size, labels 1/0."""
    from skimage import data

    x = np.asarray(data.lfw_subset(), dtype=np.float32)  # 200 x 25 x 25 in [0, 1]
    y = np.array([1] * 100 + [0] * 100, dtype=np.int64)
    x = (_resize(x, (size, size)) - 0.5) / 0.5
    x = np.repeat(x[:, None], 3, axis=1)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    return x[:150], y[:150], x[150:], y[150:]


def text_lines(n: int, height: int = 32, width: int = 128, seed: int = 0) -> np.ndarray:
    """n crops of scikit-image's scanned text page (data.page), resized to height x width: N x 1 x H x W."""
    from skimage import data

    page = np.asarray(data.page(), dtype=np.float32) / 255.0
    rng = np.random.default_rng(seed)
    h, w = page.shape
    out = []
    for _ in range(n):
        ch = int(rng.integers(20, 40))
        cw = ch * width // height
        y, x = int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw))
        out.append(page[y : y + ch, x : x + cw])
    lines = np.stack([_resize(c[None], (height, width))[0] for c in out])
    return ((lines - 0.5) / 0.5)[:, None].astype(np.float32)


def digit_strips(n: int, digits_per_strip: int = 4, height: int = 32, seed: int = 0):
    """Strips of `digits_per_strip` digits side by side (N x 1 x height x height*k) and their label sequences."""
    split = model_zoo.digits_split(seed)
    rng = np.random.default_rng(seed)
    imgs = _resize(split.x_train[:, 0], (height, height))
    idx = rng.integers(0, len(imgs), (n, digits_per_strip))
    strips = np.concatenate([imgs[idx[:, k]] for k in range(digits_per_strip)], axis=2)
    return ((strips - 0.5) / 0.5)[:, None].astype(np.float32), split.y_train[idx]


def audio(n: int, samples: int = 8000, rate: int = 8000, seed: int = 0) -> np.ndarray:
    """Synthetic speech-like clips: harmonic chirps with amplitude envelopes plus noise: N x samples float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / rate
    out = []
    for _ in range(n):
        f0 = rng.uniform(100, 300)
        sweep = rng.uniform(-80, 80)
        phase = 2 * np.pi * (f0 * t + 0.5 * sweep * t**2)
        sig = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * phase) for k in range(1, 6))
        env = np.exp(-((t - rng.uniform(0.2, 0.8)) ** 2) / (2 * rng.uniform(0.02, 0.1)))
        out.append(0.3 * sig * env + 0.01 * rng.standard_normal(samples))
    return np.stack(out).astype(np.float32)


def tokens(n: int, seq: int = 32, vocab: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (int64, [CLS]=101 first, [SEP]=102 last real token, 0 padding) and attention masks (int64)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, seq), np.int64)
    mask = np.zeros((n, seq), np.int64)
    for i in range(n):
        length = int(rng.integers(seq // 2, seq + 1))
        ids[i, :length] = rng.integers(200, vocab, length)
        ids[i, 0], ids[i, length - 1] = 101, 102
        mask[i, :length] = 1
    return ids, mask


def save_npy(folder: Path, arrays: np.ndarray, dtype=np.float32) -> Path:
    """One .npy per sample, with a leading batch dim of 1 (the model's input shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        np.save(folder / f"{i:04d}.npy", np.asarray(a[None], dtype=dtype))
    return folder


def save_npz(folder: Path, **inputs: np.ndarray) -> Path:
    """One .npz per sample with one key per input name (each with a leading batch dim of 1), dtypes kept."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(inputs.values())))
    for i in range(n):
        np.savez(folder / f"{i:04d}.npz", **{k: v[i][None] for k, v in inputs.items()})
    return folder
