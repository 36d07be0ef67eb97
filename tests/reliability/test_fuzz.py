"""Fuzzing: mutated model bytes (ONNX, TorchScript zip, TFLite-like flatbuffer, HDF5) fed to format detection and to
source loading. Whatever the bytes, the only exception is an EdgeconvError (exit 2-7 with a message), and nothing
hangs (every example has a deadline)."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeconv.context import ConvertOptions
from edgeconv.errors import EdgeconvError
from edgeconv.formats import Format, detect
from edgeconv.sources import open_source

FUZZ = settings(max_examples=60, deadline=timedelta(seconds=15), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])


class Seeds(dict):
    def __repr__(self) -> str:  # failure reports show the mutation, not megabytes of seed
        return f"Seeds({', '.join(f'{k}: {len(v)} bytes' for k, v in self.items())})"


@pytest.fixture(scope="module")
def seeds(digits, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    import torch  # noqa: F401 - imported once here, so no example pays for it against its deadline

    folder = tmp_path_factory.mktemp("seeds")
    try:
        import h5py

        with h5py.File(folder / "m.h5", "w") as f:
            f["w"] = np.arange(64, dtype=np.float32)
            f.attrs["keras_version"] = "3.0"
    except ImportError:  # h5py comes with the tf extras: a bare superblock (v0, 8-byte offsets, EOF at 4096) instead
        superblock = b"\x89HDF\r\n\x1a\n" + bytes([0, 0, 0, 0, 0, 8, 8, 0]) + bytes(8) + bytes(8) + bytes(8)
        (folder / "m.h5").write_bytes(superblock + (4096).to_bytes(8, "little") + bytes(4096 - len(superblock) - 8))
    import onnx

    ext = folder / "ext"
    ext.mkdir()
    onnx.save_model(onnx.load_model(str(digits.onnx)), str(ext / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    tflite = (28).to_bytes(4, "little") + b"TFL3" + bytes(range(20)) + (8).to_bytes(4, "little", signed=True) + bytes(96)
    return Seeds({"onnx": digits.onnx.read_bytes(), "torchscript": digits.torchscript.read_bytes(),
            "tflite": tflite, "h5": (folder / "m.h5").read_bytes()[:4096],
            "onnx-external": (ext / "model.onnx").read_bytes(), "weights.bin": (ext / "weights.bin").read_bytes()})


@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple[str, int, bytes]]:
    """A few edits: truncate, flip a byte, overwrite a run, insert bytes (positions biased to the header)."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert"]))
        hi = max(1, size - 1)
        pos = draw(st.one_of(st.integers(0, min(64, hi)), st.integers(0, hi)))
        out.append((kind, pos, draw(st.binary(min_size=1, max_size=16))))
    return out


def mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, chunk in edits:
        pos = min(pos, len(buf))
        if kind == "truncate":
            del buf[pos:]
        elif kind == "flip" and pos < len(buf):
            buf[pos] ^= chunk[0] or 0xFF
        elif kind == "overwrite":
            buf[pos:pos + len(chunk)] = chunk
        else:
            buf[pos:pos] = chunk
    return bytes(buf)


def load_like_the_cli(path: Path, *, open_it: bool) -> None:
    """detect(); then open the source as `convert` would (Keras/HDF5 sources are not opened: that imports TF)."""
    try:
        artifact = detect(path)
        if open_it and artifact.format in (Format.ONNX, Format.TORCH):
            open_source(artifact, ConvertOptions())
    except EdgeconvError as e:
        assert 2 <= e.exit_code <= 7 and e.message and "\n" not in e.message.strip()


def _fuzz(seed: bytes, edits: list[tuple[str, int, bytes]], suffix: str, open_it: bool = True,
          companions: dict[str, bytes] | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, content in (companions or {}).items():
            (Path(folder) / name).write_bytes(content)
        path = Path(folder) / f"model{suffix}"
        path.write_bytes(mutate(seed, edits))
        load_like_the_cli(path, open_it=open_it)


@FUZZ
@given(data=st.data())
def test_fuzz_onnx(seeds, data) -> None:
    _fuzz(seeds["onnx"], data.draw(mutations(len(seeds["onnx"]))), ".onnx")


@FUZZ
@given(data=st.data())
def test_fuzz_onnx_external_data(seeds, data) -> None:
    """The locations, offsets and lengths of external data entries get mangled too."""
    seed = seeds["onnx-external"]
    _fuzz(seed, data.draw(mutations(len(seed))), ".onnx", companions={"weights.bin": seeds["weights.bin"]})


@FUZZ
@given(data=st.data())
def test_fuzz_torchscript_zip(seeds, data) -> None:
    _fuzz(seeds["torchscript"], data.draw(mutations(len(seeds["torchscript"]))), ".pt")


@FUZZ
@given(data=st.data())
def test_fuzz_tflite_like(seeds, data) -> None:
    _fuzz(seeds["tflite"], data.draw(mutations(len(seeds["tflite"]))), ".tflite")


@FUZZ
@given(data=st.data())
def test_fuzz_hdf5_header(seeds, data) -> None:
    _fuzz(seeds["h5"], data.draw(mutations(len(seeds["h5"]))), ".h5", open_it=False)


@settings(max_examples=80, deadline=timedelta(seconds=15), derandomize=True, database=None)
@given(st.binary(max_size=512), st.sampled_from([b"", b"PK\x03\x04", b"\x89HDF\r\n\x1a\n", b"\x80\x04", b"\x08\x08\x12"]))
def test_fuzz_random_bytes_with_magic(blob: bytes, magic: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.bin"
        path.write_bytes(magic + blob)
        load_like_the_cli(path, open_it=True)


@settings(max_examples=80, deadline=timedelta(seconds=15), derandomize=True, database=None)
@given(data=st.data(), suffix=st.sampled_from([".npy", ".npz"]))
def test_fuzz_calibration_sample_files(data, suffix: str) -> None:
    """A damaged sample file is exit 3 naming it (InvalidInputError), never another exception."""
    import io

    from edgeconv.errors import InvalidInputError
    from edgeconv.formats import TensorSpec
    from edgeconv.quantizers.calibration import read_sample

    buf = io.BytesIO()
    sample = np.random.default_rng(0).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    if suffix == ".npy":
        np.save(buf, sample)
    else:
        np.savez(buf, image=sample)
    seed = buf.getvalue()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"0000{suffix}"
        path.write_bytes(mutate(seed, data.draw(mutations(len(seed)))))
        try:
            read_sample(path, (TensorSpec("image", (1, 1, 8, 8)),))
        except InvalidInputError as e:
            assert path.name in e.message


def _toml(value: object) -> str:
    """A TOML inline value (enough for fuzzing profile files)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\\\", "\\\\\\\\").replace('"', '\\\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"


PROFILE_KEYS = ["name", "extends", "family", "description", "produces", "opset", "layout", "compiler", "profiles",
                "quantize", "validate", "shapes", "doc"]
SECTION_KEYS = ["precision", "stage", "calibration_samples", "exclude_op_types", "per_channel", "options", "runtime",
                "samples", "gate", "static", "defaults", "min_snr_db", "max_fallback"]
NASTY_NAMES = ["../etc", "../../X", "/etc", "/tmp/x", ".work", ".logs", "manifest.json", "Manifest.JSON", "a/b", "a\\b",
               "a\0b", "..", ".", "", " ", "a b", "x" * 65, "-x", "ok-name", "a..b", "con", "\u00e9t\u00e9", "a\nb"]
scalars = st.one_of(st.integers(-5, 10**6), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["onnx", "int8", "fp32", "onnxruntime", "x", "", "onnx-fp16", *NASTY_NAMES]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.sampled_from(SECTION_KEYS), inner, max_size=3)),
                      max_leaves=6)


@settings(max_examples=150, deadline=timedelta(seconds=15), derandomize=True, database=None)
@given(st.dictionaries(st.sampled_from(PROFILE_KEYS), values, max_size=6))
def test_fuzz_profile_files(doc: dict) -> None:
    """Any TOML profile file, however wrong its keys, types and values: a UsageError (exit 2), or a profile whose name is
    a safe folder name and whose numbers are in range (so its outputs land inside OUTDIR)."""
    from edgeconv.errors import UsageError
    from edgeconv.targets import resolve

    text = "".join(f"{key} = {_toml(value)}\n" for key, value in doc.items())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.toml"
        path.write_text(text)
        try:
            profile = resolve(str(path))
        except UsageError:
            return
        assert_safe(profile)


def assert_safe(profile: object) -> None:
    """What a profile that resolved may hold: a name that is one plain folder inside OUTDIR and not one edgeconv writes
    itself, finite numbers, validation that runs (samples >= 1)."""
    import math
    import os

    from edgeconv.targets.schema import RESERVED_NAMES, name_problem

    name = profile.name  # type: ignore[attr-defined]
    assert name_problem(name) is None, name
    outdir = "/OUTDIR"
    dest = os.path.normpath(os.path.join(outdir, name))
    assert os.path.dirname(dest) == outdir and name.lower() not in RESERVED_NAMES and "\0" not in name, name
    validate = profile.validate  # type: ignore[attr-defined]
    assert validate.samples >= 1 and profile.quantize.calibration_samples >= 1  # type: ignore[attr-defined]
    for bound in vars(validate.gate).values():
        assert bound is None or math.isfinite(bound), validate.gate


@settings(max_examples=100, deadline=timedelta(seconds=15), derandomize=True, database=None)
@given(name=st.one_of(st.sampled_from(NASTY_NAMES), st.text(max_size=70)),
       where=st.sampled_from(["top", "table", "table-key", "set"]))
def test_fuzz_profile_names(name: str, where: str) -> None:
    """Whatever the name, wherever it is set: exit 2, or a safe folder name."""
    import json

    from edgeconv.errors import UsageError
    from edgeconv.targets import resolve
    from edgeconv.targets.schema import apply_overrides

    quoted = json.dumps(name)  # a TOML basic string (\uXXXX escapes for control characters)
    text = {"top": f'name = {quoted}\nextends = "onnx"\n',
            "table": f'[profiles.{quoted}]\nextends = "onnx"\n',
            "table-key": f'[profiles.ok]\nextends = "onnx"\nname = {quoted}\n',
            "set": 'name = "base"\nextends = "onnx"\n'}[where]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.toml"
        path.write_text(text)
        try:
            profile = resolve(str(path))
            if where == "set":
                profile = apply_overrides(profile, [f"name={quoted}"])
        except UsageError:
            return
        assert_safe(profile)


@settings(max_examples=40, deadline=timedelta(seconds=15), derandomize=True, database=None)
@given(depth=st.integers(1, 6000), kind=st.sampled_from(["array", "table"]),
       key=st.sampled_from(["compiler.x", "quantize.options", "validate.gate", "shapes.defaults", "description", "opset"]))
def test_fuzz_deep_nesting(depth: int, kind: str, key: str) -> None:
    """Arrays / inline tables nested 1 to 6000 deep, in a file and in --set: a UsageError or a profile, never a
    RecursionError (which would be exit 1)."""
    from edgeconv.errors import UsageError
    from edgeconv.targets import resolve
    from edgeconv.targets.schema import apply_overrides

    value = "[" * depth + "1" + "]" * depth if kind == "array" else "{ a = " * depth + "1" + " }" * depth
    section, _, leaf = key.rpartition(".")
    body = f"[{section}]\n{leaf} = {value}\n" if section else f"{leaf} = {value}\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "deep.toml"
        path.write_text('name = "deep"\nextends = "onnx"\n' + body)
        for attempt in ("file", "set"):
            try:
                profile = resolve(str(path)) if attempt == "file" else apply_overrides(resolve("onnx"), [f"{key}={value}"])
            except UsageError:
                continue
            assert_safe(profile)


@settings(max_examples=150, deadline=timedelta(seconds=15), derandomize=True, database=None)
@given(st.lists(st.tuples(st.sampled_from(PROFILE_KEYS + [f"{s}.{k}" for s in ("quantize", "validate", "shapes")
                                                          for k in SECTION_KEYS] + ["validate.gate.min_snr_db"]),
                          values), min_size=1, max_size=3))
def test_fuzz_set_overrides(items: list) -> None:
    """`--set KEY=VALUE` with any key and value: a UsageError (exit 2), or a profile."""
    from edgeconv.errors import UsageError
    from edgeconv.targets import resolve
    from edgeconv.targets.schema import apply_overrides

    try:
        profile = apply_overrides(resolve("onnx-int8-qdq"), [f"{key}={_toml(value)}" for key, value in items])
    except UsageError:
        return
    assert_safe(profile)


NUMBER_KEYS = ["validate.samples", "quantize.calibration_samples", "quantize.max_fallback", "validate.gate.min_snr_db",
               "validate.gate.min_cosine", "validate.gate.max_abs", "validate.gate.min_top1_agreement"]
numbers = st.one_of(st.integers(-10, 10), st.integers(-(10**20), 10**20), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 1e17, 10**17, float("nan"), float("inf"), -float("inf"), 1.5, -0.0]))


@settings(max_examples=150, deadline=timedelta(seconds=15), derandomize=True, database=None)
@given(key=st.sampled_from(NUMBER_KEYS), value=numbers, where=st.sampled_from(["set", "file"]))
def test_fuzz_profile_numbers(key: str, value: float, where: str) -> None:
    """Any number for a bounded key, in --set or a file: exit 2, or a profile whose gate and sample counts still mean
    something (NaN, infinity, samples <= 0 once turned validation off)."""
    from edgeconv.errors import UsageError
    from edgeconv.targets import resolve
    from edgeconv.targets.schema import apply_overrides

    text = _toml(value)
    section, _, leaf = key.rpartition(".")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "numbers.toml"
        path.write_text(f'name = "numbers"\nextends = "onnx"\n[{section}]\n{leaf} = {text}\n')
        try:
            profile = resolve(str(path)) if where == "file" else apply_overrides(resolve("onnx"), [f"{key}={text}"])
        except UsageError:
            return
        assert_safe(profile)
        gate = profile.validate.gate
        assert profile.quantize.max_fallback >= 0
        assert gate.min_cosine is None or -1 <= gate.min_cosine <= 1
        assert gate.max_abs is None or gate.max_abs >= 0
        assert gate.min_top1_agreement is None or 0 <= gate.min_top1_agreement <= 1
        assert profile.validate.samples <= 100_000
