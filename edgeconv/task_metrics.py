"""Task-level accuracy: the number a user trained for, measured on the source and on every artifact.

Built-in metrics (`--metric NAME[:key=value,...]`; without --metric one is picked from the labels and the outputs):
- `top1`, `top5` (classification): labels are class ids; the scores are the first float output of shape [C] or [N, C]
  (`top1:output=NAME` names it). Both are reported, top-1 is the one gated (top-5 with `--metric top5`).
- `miou` (segmentation): labels are integer maps [H, W]; the prediction is the argmax over the class axis of the first
  float output that has one more axis than the map (NCHW [1, C, H, W] or NHWC [1, H, W, C]), or an integer output of the
  map's shape. Labels outside [0, C) (e.g. 255) are ignored. The mean IoU is over the classes present in labels or
  predictions.
- `detection` (mAP@0.5): boxes are a float output of shape [N, 4] (x1, y1, x2, y2; a leading batch dim of 1 is
  allowed), scores a float output of shape [N], classes an optional integer output of shape [N]; the first outputs of
  those shapes, or `detection:boxes=NAME,scores=NAME,classes=NAME`. Ground truth is the labels when the samples
  carry boxes ([M, 4], or [M, 5] with a class column), else the SOURCE model's own detections with score >= 0.5
  (`score=0.3`): then the source scores 100% by definition and the artifact's mAP says how many of them it finds.
- a plugin, `--metric pkg.module:function`, for what edgeconv cannot know: ``function(outputs, labels) -> float``
  where `outputs` is a list over samples of the list of that sample's output arrays (in the source's output order) and
  `labels` is a list over samples of labels (an int or an array), or None when the data carries none. It returns one
  number over all samples. Higher is better unless the function has an attribute `lower_is_better = True`; with
  `percent = True` its value is a fraction shown as a percentage and its drop is in percentage points, else the drop
  is in the metric's own units.

The drop (`validate.gate.max_task_drop`) is source minus artifact (artifact minus source for lower-is-better), in
percentage points for the built-in metrics.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeconv.errors import InvalidInputError, UsageError, first_line

Outputs = Sequence[Sequence[np.ndarray]]  # per sample, the outputs in source order
BUILTINS = {"top1": "top1", "top-1": "top1", "classification": "top1", "top5": "top5", "top-5": "top5",
            "miou": "miou", "segmentation": "miou", "detection": "detection", "map": "detection"}
_KEYS = {"top1": ("output",), "top5": ("output",), "miou": ("output",),
         "detection": ("boxes", "scores", "classes", "iou", "score")}
_EXAMPLE = "top1, top5, miou, detection:boxes=NAME,scores=NAME, or mypkg.metrics:accuracy"


@dataclass(frozen=True)
class MetricSpec:
    kind: str  # top1 | top5 | miou | detection | plugin
    options: dict[str, str] = field(default_factory=dict)
    plugin: str = ""  # pkg.module:function


def parse_metric_spec(text: str) -> MetricSpec:
    """`--metric` text → MetricSpec; a malformed one is a usage error (exit 2), found before any work."""
    head, sep, rest = text.strip().partition(":")
    kind = BUILTINS.get(head.lower())
    if kind is None:
        from edgeconv.sources.user_code import parse_factory_spec

        if not sep:
            raise UsageError(f"unknown --metric {text!r}", f"use {_EXAMPLE}")
        parse_factory_spec(text.strip(), "--metric", "mypkg.metrics:accuracy")
        return MetricSpec("plugin", plugin=text.strip())
    options: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in _KEYS[kind] or not value:
            raise UsageError(f"bad --metric {text!r}: {item!r}", f"{kind} takes {', '.join(k + '=...' for k in _KEYS[kind])}")
        options[key] = value
    for key in ("iou", "score"):
        if key in options:
            try:
                ok = 0.0 <= float(options[key]) <= 1.0
            except ValueError:
                ok = False
            if not ok:
                raise UsageError(f"bad --metric {text!r}: {key} must be a number between 0 and 1", f"e.g. {kind}:{key}=0.5")
    return MetricSpec(kind, options)


@dataclass(frozen=True)
class TaskMetric:
    """A chosen metric: `compute(outputs, labels, source_outputs)` → {display name: value}, the first one gated."""

    name: str
    compute: Callable[[Outputs, list[Any] | None, Outputs], dict[str, float]]
    percent: bool = True
    higher_is_better: bool = True
    reference: str = "labels"  # labels | source detections


# ---------------------------------------------------------------------------------------------------- pure metrics
def _batch(array: np.ndarray, ndim: int) -> np.ndarray:
    """Drop leading size-1 dims down to `ndim`."""
    while array.ndim > ndim and array.shape[0] == 1:
        array = array[0]
    return array


def topk_accuracy(scores: Sequence[np.ndarray], labels: Sequence[Any], k: int = 1) -> float:
    """Share of samples whose label is among the k highest scores. scores: per sample [C] or [N, C]; labels: per
    sample an int, or N ints."""
    hits, total = 0, 0
    for s, label in zip(scores, labels):
        s = np.asarray(s, dtype=np.float64)
        s = s.reshape(-1, s.shape[-1])
        lab = np.asarray(label).reshape(-1).astype(np.int64)
        if lab.size != s.shape[0]:
            raise InvalidInputError(f"a sample has {lab.size} label(s) for {s.shape[0]} row(s) of class scores",
                                    "give one class id per row of scores")
        top = np.argsort(-s, axis=-1, kind="stable")[:, :k]
        hits += int(np.sum(np.any(top == lab[:, None], axis=1)))
        total += lab.size
    return hits / total if total else 0.0


def mean_iou(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int) -> float:
    """Mean over classes of intersection / union, accumulated over all samples; labels outside [0, num_classes)
    are ignored (e.g. 255 for 'void'); classes absent from both labels and predictions do not count."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for pred, label in zip(predictions, labels):
        pred, label = np.asarray(pred).reshape(-1).astype(np.int64), np.asarray(label).reshape(-1).astype(np.int64)
        if pred.size != label.size:
            raise InvalidInputError(f"segmentation map of {pred.size} pixels against a label map of {label.size}",
                                    "labels must have the prediction's height and width")
        keep = (label >= 0) & (label < num_classes) & (pred >= 0) & (pred < num_classes)
        confusion += np.bincount(label[keep] * num_classes + pred[keep], minlength=num_classes**2).reshape(num_classes, -1)
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = union > 0
    return float(np.mean(inter[present] / union[present])) if present.any() else 1.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [N, 4] with every box in b [M, 4] (x1, y1, x2, y2) → [N, M]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    def area(x: np.ndarray) -> np.ndarray:
        return np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)

    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def detection_map(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray],
                  pred_classes: Sequence[np.ndarray] | None = None, gt_classes: Sequence[np.ndarray] | None = None,
                  iou_threshold: float = 0.5) -> float:
    """mAP at one IoU threshold (VOC all-point interpolation), per sample lists; class-agnostic without classes.
    A prediction matches the best-overlapping unmatched ground-truth box of its class in its sample. Classes with no
    ground truth do not count; with no ground truth at all: 1.0 when nothing is predicted either, else 0.0."""
    n = len(pred_boxes)
    pc = pred_classes if pred_classes is not None else [np.zeros(len(np.asarray(s).reshape(-1)), np.int64) for s in pred_scores]
    gc = gt_classes if gt_classes is not None else [np.zeros(len(np.asarray(g).reshape(-1, 4)), np.int64) for g in gt_boxes]
    classes = sorted({int(c) for g in gc for c in np.asarray(g).reshape(-1)})
    if not classes:
        return 1.0 if all(np.asarray(s).size == 0 for s in pred_scores) else 0.0
    aps = []
    for cls in classes:
        gts = [np.asarray(gt_boxes[i]).reshape(-1, 4)[np.asarray(gc[i]).reshape(-1) == cls] for i in range(n)]
        n_gt = sum(len(g) for g in gts)
        dets = [(float(score), i, box) for i in range(n)
                for box, score, c in zip(np.asarray(pred_boxes[i]).reshape(-1, 4), np.asarray(pred_scores[i]).reshape(-1),
                                         np.asarray(pc[i]).reshape(-1)) if int(c) == cls]
        dets.sort(key=lambda d: -d[0])
        used = [np.zeros(len(g), bool) for g in gts]
        tp = np.zeros(len(dets))
        for j, (_, i, box) in enumerate(dets):
            if len(gts[i]):
                ious = box_iou(box[None], gts[i])[0]
                ious[used[i]] = -1.0
                best = int(np.argmax(ious))
                if ious[best] >= iou_threshold:
                    used[i][best] = True
                    tp[j] = 1.0
        ctp = np.cumsum(tp)
        recall = ctp / n_gt
        precision = ctp / np.arange(1, len(dets) + 1)
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
        aps.append(float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1])))
    return float(np.mean(aps))


# ---------------------------------------------------------------------------------------------------- choosing one
def _named(names: Sequence[str], name: str | None, first: Sequence[np.ndarray], test: Callable[[np.ndarray], bool],
           what: str) -> int | None:
    """Index of the output called `name` (exit 2 when there is none), else of the first output passing `test`."""
    if name is not None:
        if name not in names:
            raise UsageError(f"--metric names output {name!r} as {what}; the outputs are {', '.join(names)}",
                             "name one of the source model's outputs")
        return list(names).index(name)
    return next((i for i, out in enumerate(first) if test(np.asarray(out))), None)


def _is_scores(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and 1 <= _batch(a, 2).ndim <= 2 and a.shape[-1] > 1


def _is_boxes(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and _batch(a, 2).ndim == 2 and a.shape[-1] == 4


def _vector_of(n: int, kinds: str) -> Callable[[np.ndarray], bool]:
    return lambda a: a.dtype.kind in kinds and _batch(a, 1).ndim == 1 and _batch(a, 1).shape[0] == n


def _classification(spec: MetricSpec, names: Sequence[str], first: Sequence[np.ndarray]) -> TaskMetric | None:
    index = _named(names, spec.options.get("output"), first, _is_scores, "class scores")
    if index is None:
        return None
    classes = int(np.asarray(first[index]).shape[-1])
    ks = [1, 5] if classes > 5 else [1]
    if spec.kind == "top5":
        ks = [5, 1]

    def compute(outputs: Outputs, labels: list[Any] | None, _: Outputs) -> dict[str, float]:
        assert labels is not None
        return {f"top-{k}": topk_accuracy([o[index] for o in outputs], labels, k) for k in ks}

    return TaskMetric(f"top-{ks[0]}", compute)


def _seg_prediction(out: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, int] | None:
    """(argmax map shaped like the label, class count) or None when `out` is no per-pixel class scores for it."""
    label = np.squeeze(np.asarray(label))
    out = np.asarray(out)
    if out.dtype.kind in "iu" and np.squeeze(out).shape == label.shape:
        pred = np.squeeze(out)
        return pred, int(max(pred.max(initial=0), label.max(initial=0))) + 1
    if out.dtype.kind != "f":
        return None
    for axis in dict.fromkeys((1 if out.ndim == 4 else 0, out.ndim - 1)):
        pred = np.argmax(out, axis=axis)
        if np.squeeze(pred).shape == label.shape and out.shape[axis] > 1:
            return np.squeeze(pred), int(out.shape[axis])
    return None


def _segmentation(spec: MetricSpec, names: Sequence[str], first: Sequence[np.ndarray], label: Any) -> TaskMetric | None:
    index = _named(names, spec.options.get("output"), first,
                   lambda a: _seg_prediction(a, np.asarray(label)) is not None, "segmentation scores")
    if index is None:
        return None

    def compute(outputs: Outputs, labels: list[Any] | None, _: Outputs) -> dict[str, float]:
        assert labels is not None
        preds, count = [], 2
        for o, lab in zip(outputs, labels):
            found = _seg_prediction(o[index], lab)
            if found is None:
                raise InvalidInputError(f"output {names[index]} of shape {np.asarray(o[index]).shape} is no per-pixel "
                                        f"class map for a label of shape {np.asarray(lab).shape}", "check the labels' shape")
            preds.append(found[0])
            count = max(count, found[1])
        return {"mIoU": mean_iou(preds, [np.squeeze(np.asarray(x)) for x in labels], count)}

    return TaskMetric("mIoU", compute)


def _detection(spec: MetricSpec, names: Sequence[str], first: Sequence[np.ndarray], labels: list[Any] | None,
               explicit: bool) -> TaskMetric | None:
    opts = spec.options
    b = _named(names, opts.get("boxes"), first, _is_boxes, "boxes")
    if b is None:
        return None
    n = _batch(np.asarray(first[b]), 2).shape[0]
    s = _named(names, opts.get("scores"), first, _vector_of(n, "f"), "scores")  # boxes [N, 4] never pass the test
    if s is None or s == b:
        if explicit:
            raise InvalidInputError(f"detection metric: no scores output of shape [{n}] beside the boxes {names[b]}",
                                    "name it: --metric detection:boxes=NAME,scores=NAME")
        return None
    c = _named(names, opts.get("classes"), first, _vector_of(n, "iu"), "classes") if "classes" in opts or any(
        _vector_of(n, "iu")(np.asarray(o)) for o in first) else None
    iou, score = float(opts.get("iou", 0.5)), float(opts.get("score", 0.5))
    boxes_labels = labels is not None and all(np.asarray(x).ndim == 2 and np.asarray(x).shape[-1] in (4, 5) for x in labels)

    def compute(outputs: Outputs, labs: list[Any] | None, source: Outputs) -> dict[str, float]:
        def col(outs: Outputs, i: int, ndim: int) -> list[np.ndarray]:
            return [_batch(np.asarray(o[i]), ndim) for o in outs]

        boxes, scores = col(outputs, b, 2), col(outputs, s, 1)
        classes = col(outputs, c, 1) if c is not None else None
        if boxes_labels:
            assert labs is not None
            gt = [np.asarray(x, np.float64) for x in labs]
            gt_boxes = [g[:, :4] for g in gt]
            gt_classes = [g[:, 4].astype(np.int64) for g in gt] if all(g.shape[1] == 5 for g in gt) and classes is not None else None
        else:  # agreement with the source's confident detections: the same score threshold on both sides (when
            # neither detects anything above it, they agree: 100%, not the 0% an empty ground truth would give)
            keep = [np.asarray(x).reshape(-1) >= score for x in col(source, s, 1)]
            gt_boxes = [x.reshape(-1, 4)[k] for x, k in zip(col(source, b, 2), keep)]
            gt_classes = [x.reshape(-1)[k] for x, k in zip(col(source, c, 1), keep)] if c is not None else None
            confident = [np.asarray(x).reshape(-1) >= score for x in scores]
            boxes = [x.reshape(-1, 4)[k] for x, k in zip(boxes, confident)]
            scores = [x.reshape(-1)[k] for x, k in zip(scores, confident)]
            classes = [x.reshape(-1)[k] for x, k in zip(classes, confident)] if classes is not None else None
        return {f"mAP@{iou:g}": detection_map(boxes, scores, gt_boxes, classes if gt_classes is not None else None,
                                               gt_classes, iou)}

    return TaskMetric(f"mAP@{iou:g}", compute, reference="labels" if boxes_labels else "source detections")


def _plugin(spec: MetricSpec, names: Sequence[str]) -> TaskMetric:
    from edgeconv.sources.user_code import import_factory, where

    fn = import_factory(spec.plugin, "--metric", "a function (outputs, labels) -> float")
    try:
        params = inspect.signature(fn).parameters
        pass_names = "output_names" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        pass_names = False
    module_name = spec.plugin.partition(":")[0]

    def compute(outputs: Outputs, labels: list[Any] | None, _: Outputs) -> dict[str, float]:
        args = ([list(map(np.asarray, o)) for o in outputs], labels)
        try:
            value = fn(*args, output_names=list(names)) if pass_names else fn(*args)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # the user's code: exit 3 naming the function, never a traceback of ours
            raise InvalidInputError(f"metric {spec.plugin} raised {type(e).__name__}: {first_line(e)}{where(e, module_name)}",
                                    "fix the metric function") from e
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(value)):
            raise InvalidInputError(f"metric {spec.plugin} returned {value!r}, not a finite number",
                                    "a metric function returns one number over all samples")
        return {spec.plugin: float(value)}

    return TaskMetric(spec.plugin, compute, percent=bool(getattr(fn, "percent", False)),
                      higher_is_better=not bool(getattr(fn, "lower_is_better", False)))


def choose_metric(spec: MetricSpec | None, names: Sequence[str], first: Sequence[np.ndarray],
                  labels: list[Any] | None) -> TaskMetric | None:
    """The metric to report: the one asked for (exit 3 when it cannot apply to these outputs / labels), else one that
    fits the labels and outputs, else None (no task metric: the agreement metrics still apply)."""
    if spec is not None and spec.kind == "plugin":
        return _plugin(spec, names)
    if spec is not None and spec.kind == "detection":
        found = _detection(spec, names, first, labels, True)
        if found is None:
            raise InvalidInputError("detection metric: no output of shape [N, 4] (boxes) beside one of shape [N] (scores)",
                                    "name them: --metric detection:boxes=NAME,scores=NAME")
        return found
    if spec is not None and labels is None:
        raise InvalidInputError(f"--metric {spec.kind} needs labelled evaluation data",
                                "pass --eval with a folder per class of images, or .npz samples with a 'label' key")
    if labels is None:
        return _detection(MetricSpec("detection"), names, first, None, False)
    label0 = np.asarray(labels[0])
    if spec is None:
        if label0.dtype.kind in "iu" and label0.ndim <= 1:
            return _classification(MetricSpec("top1"), names, first)
        boxes = all(np.asarray(x).ndim == 2 and np.asarray(x).shape[-1] in (4, 5) for x in labels)
        found = _detection(MetricSpec("detection"), names, first, labels, False) if boxes else None
        dense = label0.ndim >= 2 and label0.dtype.kind in "iu" and min(np.squeeze(label0).shape or (0,)) > 1
        if found is None and dense:
            found = _segmentation(MetricSpec("miou"), names, first, labels[0])
        return found
    found = _segmentation(spec, names, first, labels[0]) if spec.kind == "miou" else _classification(spec, names, first)
    if found is None:
        raise InvalidInputError(f"--metric {spec.kind}: no output fits ({', '.join(names)})",
                                "name the output: --metric top1:output=NAME (miou: output=NAME)")
    return found


# ---------------------------------------------------------------------------------------------------- results
def fmt(value: float | None, percent: bool) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.1f}%" if percent else f"{value:.4g}"


def measure(metric: TaskMetric, source: Outputs, artifact: Outputs, labels: list[Any] | None,
            source_values: dict[str, float] | None = None) -> dict[str, Any]:
    """The manifest's `task` record: the metric on the source and on the artifact, and the drop (points for
    percentages, else the metric's units; positive = worse)."""
    src = source_values if source_values is not None else metric.compute(source, labels, source)
    art = metric.compute(artifact, labels, source)
    s, a = src[metric.name], art[metric.name]
    drop = (s - a) if metric.higher_is_better else (a - s)
    if metric.percent:
        drop *= 100.0
    return {"metric": metric.name, "source": s, "artifact": a, "drop": round(drop, 6),
            "unit": "points" if metric.percent else "metric units", "percent": metric.percent,
            "higher_is_better": metric.higher_is_better, "reference": metric.reference, "samples": len(artifact),
            "also": {k: {"source": src[k], "artifact": art[k]} for k in art if k != metric.name}}


def summary(task: dict[str, Any]) -> str:
    """'top-1 97.8% → 97.6%'"""
    percent = bool(task.get("percent"))
    return f"{task['metric']} {fmt(task.get('source'), percent)} → {fmt(task.get('artifact'), percent)}"


def check_task_gate(task: dict[str, Any] | None, max_drop: float | None) -> list[str]:
    if task is None or max_drop is None or task["drop"] <= max_drop + 1e-9:
        return []
    unit = "points" if task.get("percent") else ""
    return [f"{summary(task)}: dropped {task['drop']:.3g} {unit} > max_task_drop {max_drop:g}".replace("  ", " ")]


def check_metric_option(text: str, data: str | None = None) -> MetricSpec:
    """The CLI's early check of --metric: exit 2 when malformed; a plugin is imported (exit 3 when it cannot be); a
    metric that needs labels with evaluation `data` (the --eval, else --calib folder) that has none is exit 3."""
    spec = parse_metric_spec(text)
    if spec.kind in ("top1", "top5", "miou"):
        from edgeconv.eval_data import has_labels

        if not has_labels(data):
            raise InvalidInputError(f"--metric {spec.kind} needs labelled evaluation data; {data or 'no --eval'} has no labels",
                                    "pass --eval with a folder per class of images, or .npz samples with a 'label' key")
    if spec.kind == "plugin":
        from edgeconv.sources.user_code import import_factory

        import_factory(spec.plugin, "--metric", "a function (outputs, labels) -> float")
    return spec
