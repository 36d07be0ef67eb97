"""Task metrics (edgeconv/task_metrics.py) and the labels of evaluation data (edgeconv/eval_data.py), on hand-made
arrays: each expected value is worked out in the comment beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import InvalidInputError, UsageError
from edgeconv.eval_data import class_images, class_names, sample_labels
from edgeconv.formats import TensorSpec
from edgeconv.quantizers.calibration import open_samples
from edgeconv.task_metrics import (
    MetricSpec,
    check_metric_option,
    check_task_gate,
    choose_metric,
    detection_map,
    mean_iou,
    measure,
    parse_metric_spec,
    topk_accuracy,
)


def test_topk_accuracy_counts_rows_and_batches() -> None:
    scores = [np.array([[0.1, 0.7, 0.2]]), np.array([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])]
    labels = [1, np.array([1, 2])]  # hits at k=1: sample 0 yes, row (0.5, 0.3, 0.2) vs 1 no, last yes → 2 / 3
    assert topk_accuracy(scores, labels, 1) == pytest.approx(2 / 3)
    assert topk_accuracy(scores, labels, 2) == 1.0  # class 1 is second in the middle row
    with pytest.raises(InvalidInputError, match="label"):
        topk_accuracy([np.zeros((2, 3))], [1], 1)


def test_mean_iou_by_hand_and_ignores_void_labels() -> None:
    label = np.array([[0, 0, 1, 1]] * 4)  # left half class 0, right half class 1
    pred = np.array([[0, 1, 1, 1]] * 4)  # one column of class 0 predicted as 1
    # class 0: inter 4, union 8 → 0.5; class 1: inter 8, union 12 → 2/3
    assert mean_iou([pred], [label], 2) == pytest.approx((0.5 + 2 / 3) / 2)
    void = label.copy()
    void[:, 1] = 255  # the mistaken column is 'void': both classes perfect
    assert mean_iou([pred], [void], 2) == pytest.approx(1.0)
    assert mean_iou([label], [label], 3) == 1.0  # class 2 absent from both: not counted


def test_detection_map_by_hand() -> None:
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    boxes = [np.array([[0, 0, 10, 10], [50, 50, 60, 60], [21, 21, 30, 30]], np.float32)]
    scores = [np.array([0.9, 0.8, 0.7], np.float32)]
    # ranked: TP (recall .5, precision 1), FP (.5, .5), TP (IoU 81/100 ≥ .5; recall 1, precision 2/3)
    # AP = 0.5 * 1 + 0.5 * 2/3
    assert detection_map(boxes, scores, gt) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert detection_map(boxes, scores, gt, iou_threshold=0.9) == pytest.approx(0.5)  # the shifted box no longer counts
    # class-aware: the second ground-truth box is class 1, the box predicted on it class 0 → class 1 has AP 0
    assert detection_map(boxes, scores, gt, [np.array([0, 0, 0])], [np.array([0, 1])]) == pytest.approx(0.5)
    assert detection_map([np.zeros((0, 4))], [np.zeros(0)], [np.zeros((0, 4))]) == 1.0


def test_detection_against_the_source_detections() -> None:
    source = [[np.array([[[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 6, 6]]], np.float32), np.array([[0.9, 0.8, 0.1]], np.float32)]]
    moved = [[np.array([[[0, 0, 10, 10], [40, 40, 50, 50], [5, 5, 6, 6]]], np.float32), np.array([[0.9, 0.8, 0.1]], np.float32)]]
    metric = choose_metric(None, ["boxes", "scores"], source[0], None)  # no labels: boxes [1, N, 4] + scores [1, N]
    assert metric is not None and metric.name == "mAP@0.5" and metric.reference == "source detections"
    task = measure(metric, source, moved, None)
    # ground truth = the 2 source boxes with score >= 0.5; the artifact finds one of them first → AP 0.5
    assert task["source"] == 1.0 and task["artifact"] == pytest.approx(0.5) and task["drop"] == pytest.approx(50.0)
    named = choose_metric(parse_metric_spec("detection:boxes=boxes,scores=scores,iou=0.5,score=0.05"), ["boxes", "scores"],
                          source[0], None)
    assert named is not None and measure(named, source, moved, None)["artifact"] == pytest.approx(1 / 3 + 1 / 3 * 2 / 3)  # 3 truths:
    # TP (recall 1/3, precision 1), FP, TP (recall 2/3, precision 2/3)


def test_classification_and_segmentation_are_picked_from_labels() -> None:
    rng = np.random.default_rng(0)
    logits = [[rng.standard_normal((1, 10)).astype(np.float32)] for _ in range(4)]
    labels = [int(np.argmax(o[0])) for o in logits]
    metric = choose_metric(None, ["logits"], logits[0], labels)
    assert metric is not None and metric.name == "top-1"
    task = measure(metric, logits, logits, labels)
    assert task["source"] == task["artifact"] == 1.0 and task["also"]["top-5"]["artifact"] == 1.0
    scores = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)  # NCHW per-pixel scores, label maps [4, 4]
    seg_labels = [np.argmax(scores[0], axis=0).astype(np.int64)]
    seg = choose_metric(None, ["out"], [scores], seg_labels)
    assert seg is not None and seg.name == "mIoU" and measure(seg, [[scores]], [[scores]], seg_labels)["artifact"] == 1.0
    with pytest.raises(InvalidInputError, match="needs labelled"):
        choose_metric(MetricSpec("top1"), ["logits"], logits[0], None)
    assert choose_metric(None, ["logits"], logits[0], None) is None  # no labels, no boxes: no task metric


def test_metric_spec_is_checked_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_metric_spec("top5").kind == "top5" and parse_metric_spec("mypkg.m:acc").plugin == "mypkg.m:acc"
    for bad in ("bogus", "detection:foo=1", "detection:iou=2", "my pkg:fn", "mod:not-a-name"):
        with pytest.raises(UsageError) as e:
            parse_metric_spec(bad)
        assert e.value.exit_code == 2 and "--metric" in e.value.message + e.value.hint
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError, match="cannot import nothere"):
        check_metric_option("nothere.mod:fn")
    (tmp_path / "badmetric.py").write_text("def boom(outputs, labels):\n    raise ValueError('no luck')\n"
                                           "def text(outputs, labels):\n    return 'high'\n")
    for name, message in (("boom", r"metric badmetric:boom raised ValueError: no luck \(.*badmetric.py:2\)"),
                          ("text", "returned 'high', not a finite number")):
        metric = choose_metric(check_metric_option(f"badmetric:{name}"), ["y"], [np.zeros(2)], None)
        assert metric is not None
        with pytest.raises(InvalidInputError, match=message) as e:
            measure(metric, [[np.zeros(2)]], [[np.zeros(2)]], None)
        assert e.value.exit_code == 3


def test_task_gate_direction_and_units() -> None:
    task = {"metric": "top-1", "source": 0.98, "artifact": 0.95, "drop": 3.0, "percent": True}
    assert check_task_gate(task, None) == [] and check_task_gate(task, 3.0) == []
    assert check_task_gate(task, 1.0) == ["top-1 98.0% → 95.0%: dropped 3 points > max_task_drop 1"]
    assert check_task_gate({**task, "drop": -3.0}, 0.0) == []  # an improvement never fails


def _png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((5, 5), value, np.uint8), mode="L").save(path)


def test_class_folders_sorted_or_from_labels_txt_round_robin(tmp_path: Path) -> None:
    for cls, n in (("cat", 2), ("ant", 3)):
        for i in range(n):
            _png(tmp_path / cls / f"{i}.png", 10 * i + 1)
    assert class_names(tmp_path) == ["ant", "cat"]  # sorted folder names
    assert [p.parent.name for p in class_images(tmp_path, ["ant", "cat"])] == ["ant", "cat", "ant", "cat", "ant"]
    spec = (TensorSpec("image", (1, 1, 5, 5), "float32"),)
    samples = open_samples(str(tmp_path), spec, 4, purpose="validation")
    assert samples.kind == "images" and samples.classes == ("ant", "cat") and sample_labels(samples) == [0, 1, 0, 1]
    (tmp_path / "labels.txt").write_text("# ids by line\ncat\nant\n")
    mapped = open_samples(str(tmp_path), spec, 4, purpose="validation")
    assert mapped.classes == ("cat", "ant") and [f.parent.name for f in mapped.files] == ["cat", "ant", "cat", "ant"]
    assert sample_labels(mapped) == [0, 1, 0, 1]  # cat is line 0, ant line 1
    (tmp_path / "labels.txt").write_text("cat\n")
    with pytest.raises(InvalidInputError, match="does not list the class folder"):
        class_names(tmp_path)


def test_npz_labels_all_or_none(tmp_path: Path) -> None:
    spec = (TensorSpec("x", (1, 2), "float32"),)
    np.savez(tmp_path / "0.npz", x=np.zeros((1, 2), np.float32), label=np.int64(3))
    np.savez(tmp_path / "1.npz", x=np.zeros((1, 2), np.float32), label=np.array([[1, 2], [0, 1]]))
    assert [np.asarray(x).tolist() for x in sample_labels(open_samples(str(tmp_path), spec, 8))] == [3, [[1, 2], [0, 1]]]
    np.savez(tmp_path / "2.npz", x=np.zeros((1, 2), np.float32))
    with pytest.raises(InvalidInputError, match="1 of 3 samples have no 'label' key"):
        sample_labels(open_samples(str(tmp_path), spec, 8))


def test_max_task_drop_is_range_checked(tmp_path: Path) -> None:
    from edgeconv.targets import resolve

    profile = tmp_path / "p.toml"
    profile.write_text('[profiles.mine]\nextends = "cpu-int8"\n[profiles.mine.validate]\ngate = { max_task_drop = -1.0 }\n')
    with pytest.raises(UsageError, match="max_task_drop = -1.0 .* must be a number >= 0"):
        resolve(str(profile))


def test_ground_truth_boxes_from_labels_and_calibration_reuse(tmp_path: Path) -> None:
    from edgeconv.context import ConvertOptions
    from edgeconv.validation_stage import reuses_calibration

    outs = [[np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0.9, 0.6], np.float32)]]
    labels = [np.array([[0, 0, 10, 10, 0]], np.float32)]  # one true box: the second detection is a false positive
    metric = choose_metric(None, ["boxes", "scores"], outs[0], labels)
    assert metric is not None and metric.reference == "labels"
    assert measure(metric, outs, outs, labels)["artifact"] == 1.0  # the true box ranks first: AP 1
    (tmp_path / "c").mkdir()
    assert reuses_calibration(ConvertOptions(calib=str(tmp_path / "c")))
    assert reuses_calibration(ConvertOptions(calib=str(tmp_path / "c"), eval=str(tmp_path / "." / "c")))
    assert not reuses_calibration(ConvertOptions(calib=str(tmp_path / "c"), eval=str(tmp_path / "e")))
    assert not reuses_calibration(ConvertOptions(calib="random"))


def test_detection_against_the_source_agrees_when_nothing_is_confident() -> None:
    """An untrained detector: no score reaches 0.5. Source and artifact agree (100%), not 0% for an empty ground truth."""
    from edgeconv.task_metrics import choose_metric, parse_metric_spec

    rng = np.random.default_rng(0)
    outs = [[rng.uniform(0, 32, (16, 4)).astype(np.float32), rng.uniform(0, 0.3, 16).astype(np.float32)] for _ in range(4)]
    metric = choose_metric(parse_metric_spec("detection"), ["boxes", "scores"], outs[0], None)
    assert metric is not None
    assert list(metric.compute(outs, None, outs).values()) == [1.0]
