"""Labels of evaluation data, for task metrics (task_metrics.py).

Two labelled layouts:
- a folder per class of images (ImageNet layout: `eval/<class_name>/*.png`). Class ids are the sorted folder names,
  or, when `eval/labels.txt` exists, the line numbers (0-based) of the folder names in it, one name a line.
- `.npz` samples with a `label` key beside the input(s): a class id (an integer, or an integer array for a batch), or
  an array for dense tasks (an integer segmentation map, or ground-truth boxes [M, 4] / [M, 5] with a class column).
`.npy` samples and a flat folder of images carry no labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeconv.errors import InvalidInputError, first_line

if TYPE_CHECKING:
    from edgeconv.quantizers.calibration import SampleSet

LABEL_KEY = "label"
LABELS_FILE = "labels.txt"


def class_names(folder: Path) -> list[str] | None:
    """The class names of a folder-per-class layout, in class-id order; None when `folder` is not one (no sub-folder
    holding images)."""
    from edgeconv.quantizers.preprocess import image_files

    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    with_images = [p.name for p in subdirs if image_files(p)]
    if not with_images:
        return None
    mapping = folder / LABELS_FILE
    if not mapping.is_file():
        return with_images
    try:
        names = [line.strip() for line in mapping.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"cannot read {mapping}: {first_line(e)}", "one class name a line, UTF-8") from e
    names = [n for n in names if n and not n.startswith("#")]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"{mapping} names a class twice", "one class name a line; its line number is its id")
    unknown = [n for n in with_images if n not in names]
    if unknown:
        raise InvalidInputError(f"{mapping} does not list the class folder(s) {', '.join(unknown[:5])}",
                                "list every class folder in labels.txt (one name a line; the line number is the id)")
    return names


def class_images(folder: Path, classes: list[str]) -> list[Path]:
    """Every image of every class folder, round-robin over the classes (the first image of each class, then the second,
    ...; sorted by name within a class): the first N samples cover every class, not only the first ones."""
    from edgeconv.quantizers.preprocess import image_files

    per_class = [image_files(folder / name) for name in classes if (folder / name).is_dir()]
    longest = max((len(files) for files in per_class), default=0)
    return [files[i] for i in range(longest) for files in per_class if i < len(files)]


def sample_labels(samples: SampleSet) -> list[Any] | None:
    """One label per sample (an int, or an array), or None when the samples carry none. A folder where some `.npz`
    files have a label and some do not is invalid input (exit 3)."""
    if samples.kind == "images" and samples.classes:
        ids = {name: i for i, name in enumerate(samples.classes)}
        return [ids[f.parent.name] for f in samples.files[: samples.count]]
    if samples.kind != "files":
        return None
    files = samples.files[: samples.count]
    if not files or files[0].suffix.lower() != ".npz":
        return None
    labels: list[Any] = []
    for file in files:
        labels.append(_npz_label(file))
    missing = [f for f, lab in zip(files, labels) if lab is None]
    if len(missing) == len(files):
        return None
    if missing:
        raise InvalidInputError(f"{len(missing)} of {len(files)} samples have no {LABEL_KEY!r} key (e.g. {missing[0]})",
                                f"save every sample with numpy.savez(path, <input>=..., {LABEL_KEY}=...), or none")
    return labels


def has_labels(spec: str | None) -> bool:
    """Cheap look at a --eval folder: class folders, or a first `.npz` sample with a `label` key."""
    if not spec:
        return False
    folder = Path(spec)
    if not folder.is_dir():
        return False
    from edgeconv.quantizers.calibration import sample_files

    files = sample_files(folder)
    if files:
        return files[0].suffix.lower() == ".npz" and _npz_label(files[0]) is not None
    from edgeconv.quantizers.preprocess import image_files

    return not image_files(folder) and class_names(folder) is not None


def _npz_label(file: Path) -> Any:
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return None
        with loaded:
            if LABEL_KEY not in loaded.files:
                return None
            label = loaded[LABEL_KEY]
    except Exception as e:
        raise InvalidInputError(f"cannot read the label of {file}: {type(e).__name__}: {first_line(e, 200)}",
                                "save samples with numpy.savez") from e
    if label.dtype.kind not in "biuf":
        raise InvalidInputError(f"sample {file}: label has dtype {label.dtype}", "save labels as integers (class ids) or numbers")
    return int(label) if label.ndim == 0 and label.dtype.kind in "biu" else label
