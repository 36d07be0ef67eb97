"""Stage reuse across runs (edgeconv/stage_cache.py), on real conversions of the digits CNN: a re-run takes every
export / normalise / quantize / compile step from the cache and writes the same bytes; a changed input or setting
redoes the steps that read it and only those; a damaged or unwritable cache is a miss, never a failure.

The session runs with the cache off (tests/conftest.py); these tests turn it on, each with a cache folder of its own
(a copy of one warm cache, filled once for the module)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from edgeconv.context import ConvertOptions, QuantizeResult, StepContext
from edgeconv.targets.tensorrt.onnx_to_tensorrt import OnnxToTensorRT
from edgeconv.converters.torch_to_onnx import TorchToOnnx
from edgeconv.formats import TORCH_FACTORY, Artifact, Format, IoMap, TensorLink, detect
from edgeconv.pipeline import build_plan
from edgeconv.stage_cache import ENTRY_NAME, FILES_DIR, STAGES_DIR, StageCache, cache_key
from edgeconv.targets import resolve
from tests.helpers import convert, target_record

pytestmark = pytest.mark.xdist_group("stage_cache")  # one worker fills the warm cache once for every test here
# onnx-int8-qdq at the tflite profiles' opset and fusions, so that the two targets share export and normalise:
# export → normalise → compile (onnx2tf) / → quantize (QDQ)
QDQ = "qdq-like-tflite"
PROFILE = Path(tempfile.gettempdir()) / "edgeconv-test-profiles" / f"{QDQ}.toml"
TARGETS = ["tflite-int8", str(PROFILE)]
NAMES = ["tflite-int8", QDQ]


def _write_profile() -> None:
    """Shared by xdist workers: written whole under a temp name, then renamed into place."""
    PROFILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = PROFILE.with_name(f".{PROFILE.name}.{os.getpid()}")
    tmp.write_text(f'name = "{QDQ}"\nextends = "onnx-int8-qdq"\nopset = 21\n\n[normalise]\nfuse = ["gelu"]\n'
                   'decompose = ["maxpool_ceil", "neg", "stft"]\n')
    os.replace(tmp, PROFILE)


_write_profile()
CACHED_KINDS = ("export", "normalise", "quantize", "compile")


def _cache_on(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    monkeypatch.delenv("EDGECONV_NO_CACHE", raising=False)
    monkeypatch.setenv("EDGECONV_CACHE_DIR", str(root))
    return root / STAGES_DIR


def _convert(digits: Any, out: Path, targets: list[str] = TARGETS, **options: Any) -> dict[str, Any]:
    options.setdefault("calib", str(digits.calib))
    return convert(digits.pt2, targets, out, eval=str(digits.eval), **options)


def _convert_cli(digits: Any, out: Path, *flags: str) -> dict[str, Any]:
    """The same conversion in a fresh process. Runs that compute the TFLite model compare bytes this way: a second
    onnx2tf + TFLiteConverter conversion inside one process writes a different (equivalent) .tflite than the first."""
    args = [a for t in TARGETS for a in ("-t", t)] + ["--calib", str(digits.calib), "--eval", str(digits.eval)]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run([sys.executable, "-m", "edgeconv", "convert", str(digits.pt2), *args, "-o", str(out), "--json",
                           *flags], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _steps(manifest: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["target"], s["kind"]): s for t in manifest["targets"] for s in t["steps"]}


def _cached(manifest: dict[str, Any]) -> set[tuple[str, str]]:
    return {key for key, step in _steps(manifest).items() if step["cached"]}


def _hashes(manifest: dict[str, Any]) -> dict[str, str]:
    return {a["path"]: a["sha256"] for t in manifest["targets"] for a in t["artifacts"]}


def _metrics(manifest: dict[str, Any]) -> dict[str, Any]:
    return {t["target"]: t["validation"]["metrics"] for t in manifest["targets"]}


def _entries(stages: Path) -> list[dict[str, Any]]:
    """entry.json of every entry of a cache, with its folder."""
    return [{**json.loads((entry / ENTRY_NAME).read_text()), "dir": entry} for entry in sorted(stages.iterdir())
            if (entry / ENTRY_NAME).is_file()]


def _by_step(stages: Path) -> dict[str, dict[str, Any]]:
    entries = _entries(stages)
    assert len({e["step"] for e in entries}) == len(entries)
    return {e["step"]: e for e in entries}


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture(scope="module")
def warm(digits: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A cache filled by one cold run (tflite-int8 + QDQ of the digits .pt2), and that run's manifest."""
    root = tmp_path_factory.mktemp("warm-cache")
    with pytest.MonkeyPatch.context() as mp:
        _cache_on(mp, root)
        manifest = _convert_cli(digits, tmp_path_factory.mktemp("cold") / "out")
    return root, manifest


@pytest.fixture
def cache(warm: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This test's own copy of the warm cache, switched on; returns its stages/ folder."""
    root = tmp_path / "cache"
    shutil.copytree(warm[0], root)
    return _cache_on(monkeypatch, root)


@pytest.mark.slow
def test_cold_run_stores_one_entry_per_step(warm: tuple[Path, dict[str, Any]]) -> None:
    root, cold = warm
    assert _cached(cold) == set()
    shared = _steps(cold)
    assert shared[(QDQ, "export")]["reused"] and shared[(QDQ, "normalise")]["reused"]
    entries = _by_step(root / STAGES_DIR)
    assert sorted(entries) == ["compile onnx_to_tflite", "export torch_to_onnx",
                               "normalise normalise + fuse gelu + decompose maxpool_ceil, neg, stft", "quantize quantize int8"]
    assert entries["export torch_to_onnx"]["notes"]["exporter"].startswith("torch.onnx (dynamo)")
    assert set(entries["compile onnx_to_tflite"]["notes"]) >= {"tflite_route", "calibration", "tflite_io", "tflite_ops"}
    tflite = entries["compile onnx_to_tflite"]  # the artifact's I/O map (what LiteRT feeds) is stored with it
    assert tflite["io"] == tflite["notes"]["tflite_io"] and tflite["io"]["inputs"]
    assert entries["quantize quantize int8"]["quantized"] is not None


@pytest.mark.slow
def test_rerun_takes_every_stage_from_the_cache_and_writes_the_same_bytes(digits: Any, warm: tuple[Path, dict[str, Any]],
                                                                          cache: Path, tmp_path: Path) -> None:
    cold = warm[1]
    hot = _convert(digits, tmp_path / "hot")
    assert _cached(hot) == set(_steps(hot)) and len(_steps(hot)) == 6  # 3 steps per target, every one from the cache
    assert all(step["reused"] for step in _steps(hot).values())
    assert _hashes(hot) == _hashes(cold) and len(_hashes(hot)) == 2
    assert _metrics(hot) == _metrics(cold)
    snr = {name: m["snr_db"] for name, m in _metrics(hot).items()}
    assert snr["tflite-int8"] > 35 and snr[QDQ] > 35
    for name in NAMES:  # what the steps had noted and warned is replayed
        assert target_record(hot, name)["notes"] == target_record(cold, name)["notes"]
        assert target_record(hot, name)["warnings"] == target_record(cold, name)["warnings"]
    assert len(_entries(cache)) == 4  # nothing new stored
    before = _listing(cache)
    uncached = _convert_cli(digits, tmp_path / "uncached", "--no-cache")  # edgeconv convert ... --no-cache
    assert _cached(uncached) == set() and _hashes(uncached) == _hashes(cold) and _metrics(uncached) == _metrics(cold)
    assert _listing(cache) == before  # no entry read (no LRU touch), none written


@pytest.mark.slow
def test_new_calibration_data_redoes_what_reads_it(digits: Any, warm: tuple[Path, dict[str, Any]], cache: Path,
                                                   tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for sample in sorted(digits.calib.iterdir())[:40]:  # other content, same format
        shutil.copy(sample, calib / sample.name)
    manifest = _convert(digits, tmp_path / "out", calib=str(calib))
    assert _cached(manifest) == {("tflite-int8", "export"), ("tflite-int8", "normalise"),
                                 (QDQ, "export"), (QDQ, "normalise")}
    # quantize (QDQ) and compile (onnx2tf + TFLiteConverter's int8 calibration) read the calibration data: redone
    assert target_record(manifest, QDQ)["notes"]["calibration"]["count"] == 40
    assert _hashes(manifest) != _hashes(warm[1])
    assert sorted(e["step"] for e in _entries(cache)) == [  # the new quantize and compile outputs beside the old ones
        "compile onnx_to_tflite", "compile onnx_to_tflite", "export torch_to_onnx",
        "normalise normalise + fuse gelu + decompose maxpool_ceil, neg, stft", "quantize quantize int8", "quantize quantize int8"]
    again = _convert(digits, tmp_path / "again")  # the original data again: all from the cache
    assert _cached(again) == set(_steps(again)) and _hashes(again) == _hashes(warm[1])


@pytest.mark.slow
def test_gate_change_redoes_only_the_quantize_step(digits: Any, warm: tuple[Path, dict[str, Any]], cache: Path,
                                                   tmp_path: Path) -> None:
    """A [validate] setting changes how a result is checked, not how it is built: export, normalise and compile are
    reused. Quantize is not: its accuracy-driven fallback searches for the gate on the validation samples."""
    manifest = _convert(digits, tmp_path / "out", overrides=("validate.gate.min_snr_db=30",))
    assert set(_steps(manifest)) - _cached(manifest) == {(QDQ, "quantize")}
    assert target_record(manifest, QDQ)["validation"]["gate"]["min_snr_db"] == 30
    assert _hashes(manifest) == _hashes(warm[1])  # the gate was met without fallback: the same model
    assert _metrics(manifest) == _metrics(warm[1])


@pytest.mark.slow
def test_damaged_entries_are_misses_and_are_replaced(digits: Any, warm: tuple[Path, dict[str, Any]], cache: Path,
                                                     tmp_path: Path) -> None:
    entries = _by_step(cache)
    quantized = entries["quantize quantize int8"]
    model = quantized["dir"] / FILES_DIR / quantized["path"]
    model.write_bytes(model.read_bytes()[:1000])  # truncated
    (entries["export torch_to_onnx"]["dir"] / ENTRY_NAME).write_text("{")  # half-written
    manifest = _convert(digits, tmp_path / "out")
    assert set(_steps(manifest)) - _cached(manifest) == {("tflite-int8", "export"), (QDQ, "export"),
                                                         (QDQ, "quantize")}
    assert _hashes(manifest) == _hashes(warm[1])  # the re-export is byte-identical: normalise still hit
    assert len(_entries(cache)) == 4  # both replaced by good entries
    again = _convert(digits, tmp_path / "again")
    assert _cached(again) == set(_steps(again))


def test_unwritable_cache_only_stops_storing(digits: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("")
    _cache_on(monkeypatch, not_a_folder)  # CACHE_ROOT/stages cannot be created (root runs ignore chmod)
    for out in ("a", "b"):
        manifest = convert(digits.onnx, ["onnx-int8-qdq"], tmp_path / out, calib=str(digits.calib))
        assert _cached(manifest) == set() and target_record(manifest, "onnx-int8-qdq")["validation"]["passed"]


def test_cache_stays_under_its_limit_least_recently_used_first(tmp_path: Path) -> None:
    limit = 100_000
    stages = StageCache(tmp_path / "stages", limit)
    root = tmp_path / "stages"

    def store(key: str, size: int, last_used: float) -> None:
        folder = tmp_path / "work" / key
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(os.urandom(size))
        stages.store(key, Artifact(folder / "model.onnx", Format.ONNX), folder, {"n": key}, [], step=key)
        if (root / key).exists():
            os.utime(root / key / ENTRY_NAME, (last_used, last_used))

    def cache_bytes() -> int:
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())

    store("a", 30_000, 1000.0)
    store("b", 30_000, 2000.0)
    store("c", 30_000, 3000.0)
    assert stages.restore("a", tmp_path / "restored") is not None  # a is now the most recently used
    assert (tmp_path / "restored" / "model.onnx").stat().st_size == 30_000
    store("d", 30_000, 4000.0)  # 4 x 30 kB > 100 kB: the least recently used entry (b) goes, and only it
    assert sorted(p.name for p in root.iterdir()) == ["a", "c", "d"] and cache_bytes() <= limit
    store("e", 200_000, 5000.0)  # larger than the whole cache: not stored, nothing evicted for it
    assert sorted(p.name for p in root.iterdir()) == ["a", "c", "d"] and cache_bytes() <= limit


def test_restore_gives_back_the_io_map_and_the_quantize_result(tmp_path: Path) -> None:
    """What later stages read from a step (Artifact.io for the runtime, ctx.quantized for pipeline and validation)
    comes back from a hit exactly as the step produced it."""
    stages = StageCache(tmp_path / "stages", limit=10**6)
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(b"tflite")
    io = IoMap("serving_default", (TensorLink("x", "x", (0, 2, 3, 1)),), (TensorLink("y", "output_0"),), "nhwc")
    quantized = QuantizeResult(({"node": "conv", "snr_db": 12.5},), {"precision": "int16", "nodes": []})
    stages.store("k", Artifact(folder / "model.tflite", Format.TFLITE, "int8", io=io), folder, {"n": 1}, ["w"],
                 quantized=quantized)
    hit = stages.restore("k", tmp_path / "restored")
    assert hit is not None and hit.artifact.io == io and hit.quantized == quantized
    assert hit.artifact.path == tmp_path / "restored" / "model.tflite" and hit.notes == {"n": 1} and hit.warnings == ["w"]
    stages.store("plain", Artifact(folder / "model.tflite", Format.TFLITE), folder, {}, [])
    plain = stages.restore("plain", tmp_path / "restored-plain")
    assert plain is not None and plain.artifact.io is None and plain.quantized is None


def test_restore_refuses_paths_outside_the_work_folder(tmp_path: Path) -> None:
    stages = StageCache(tmp_path / "stages", limit=10**6)
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx")
    stages.store("k", Artifact(folder / "model.onnx", Format.ONNX), folder, {}, [])
    meta = json.loads((tmp_path / "stages" / "k" / ENTRY_NAME).read_text())
    meta["files"] = {"../escaped": meta["files"]["model.onnx"]}
    (tmp_path / "stages" / "k" / ENTRY_NAME).write_text(json.dumps(meta))
    assert stages.restore("k", tmp_path / "fresh" / "work") is None
    assert not (tmp_path / "fresh" / "escaped").exists() and not (tmp_path / "stages" / "k").exists()


def test_engine_builds_and_code_outside_the_file_exports_are_never_keyed(digits: Any, tmp_path: Path) -> None:
    options = ConvertOptions(calib=str(digits.calib))
    plan = build_plan(detect(digits.pt2), [resolve("tensorrt-fp16")], options)
    target = plan.targets[0]
    ctx = StepContext(tmp_path, target.profile, options, target.source)
    stages = StageCache(tmp_path / "stages", limit=10**9)
    assert stages.key("export", "torch_to_onnx", TorchToOnnx, target.source.artifact, ctx) is not None
    assert stages.key("compile", "onnx_to_tensorrt", OnnxToTensorRT, Artifact(digits.onnx, Format.ONNX), ctx) is None
    factory = dataclasses.replace(target.source, artifact=Artifact(digits.state_dict, Format.TORCH, TORCH_FACTORY))
    factory_ctx = dataclasses.replace(ctx, source=factory)
    assert stages.key("export", "torch_to_onnx", TorchToOnnx, factory.artifact, factory_ctx) is None
    custom = dataclasses.replace(ctx, options=dataclasses.replace(options, custom_objects=("mypkg.layers",)))
    assert stages.key("export", "torch_to_onnx", TorchToOnnx, target.source.artifact, custom) is None  # code outside


def test_one_cache_key_function() -> None:
    """cache_key: sha256 over canonical JSON (key order never matters, paths hash as their text)."""
    key = cache_key({"step": ["quantize", "onnx_qdq"], "input": Path("a/model.onnx"), "settings": {"b": 1, "a": 2}})
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == cache_key({"settings": {"a": 2, "b": 1}, "input": "a/model.onnx", "step": ["quantize", "onnx_qdq"]})
    assert key != cache_key({"step": ["quantize", "onnx_qdq"], "input": "a/model.onnx", "settings": {"b": 1, "a": 3}})


def test_no_cache_runs_no_cache_code(cli: Any, digits: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stages = _cache_on(monkeypatch, tmp_path / "cache")
    result = cli("convert", digits.onnx, "-t", "onnx-fp16", "-o", tmp_path / "cli", "--no-cache", "--json")
    assert result.code == 0 and _cached(json.loads(result.stdout)) == set() and not stages.exists()
    result = cli("convert", digits.onnx, "-t", "onnx-fp16", "-o", tmp_path / "env", "--json", env={"EDGECONV_NO_CACHE": "1"})
    assert result.code == 0 and _cached(json.loads(result.stdout)) == set() and not stages.exists()

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("stage cache code ran under --no-cache")

    for name in ("key", "restore", "store", "evict"):  # in-process: not one call into the cache
        monkeypatch.setattr(StageCache, name, forbidden)
    manifest = convert(digits.onnx, ["onnx-int8-qdq"], tmp_path / "inproc", calib=str(digits.calib), no_cache=True)
    assert _cached(manifest) == set() and not stages.exists()


def test_batch_no_cache_passes_it_to_every_conversion(cli: Any, digits: Any, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    stages = _cache_on(monkeypatch, tmp_path / "cache")
    (tmp_path / "edgeconv.toml").write_text(f'output = "out"\n[models.digits]\nsource = "{digits.onnx}"\n'
                                            'targets = ["onnx"]\n')
    result = cli("batch", tmp_path / "edgeconv.toml", "--no-cache", "--json")
    assert result.code == 0, result.stdout + result.stderr[-2000:]
    assert json.loads(result.stdout)["counts"]["ok"] == 1 and not stages.exists()
    result = cli("batch", tmp_path / "edgeconv.toml", "--force", "--json")  # without it, the cache fills
    assert result.code == 0 and stages.is_dir() and len(list(stages.iterdir())) == 1  # the normalise step
