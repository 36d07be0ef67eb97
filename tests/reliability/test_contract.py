"""The exit-code contract for user errors that used to end in exit 1 (a "bug") or the wrong code, and the CLI boundary
itself (issue 13, items 10-13): each case runs the real CLI through expect_failure (exit code, one clean error line, the
JSON error object, the whole sandbox unchanged, stage cache on and off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO, CliResult, run_cli
from tests.reliability.conftest import INT8_PROFILE, clean, expect_failure, no_traceback, sandbox_env, save_samples, tree


@pytest.fixture(scope="module")
def token_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedding lookup: input `ids` int64 [1, 4] → Gather from a [10, 3] table → `emb` float [1, 4, 3]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(30, dtype=np.float32).reshape(10, 3), "table")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["emb"])], "tokens",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
                              [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, 4, 3])], [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("tokens") / "tokens.onnx"
    onnx.save_model(model, str(path))
    return path


def convert(digits: Any, ws: Path, *extra: Any) -> list[Any]:
    return ["convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", ws / "out", *extra]


# ---------------------------------------------------------------- 10. user errors, not bugs
@pytest.mark.parametrize("shape, needle", [
    ("image=1x3x100000x100000", "elements per sample"),
    ("image=99999999999999999999999x1", "larger than"),
    ("image=1x1x8x" + "9" * 5000, "bad dims"),
    ("image=1x-1x8x8", "positive"),
    ("image=axb", "bad dims"),
])
def test_input_shape_too_large_or_malformed(digits, ws: Path, shape: str, needle: str) -> None:
    expect_failure(convert(digits, ws, "--input-shape", shape), 2, needle, workspace=ws)


def test_shape_range_too_large(digits, ws: Path) -> None:
    expect_failure(convert(digits, ws, "--shape-range", "image=1x1x8x8:1x1x8x8:1x3x100000x100000"), 2,
                   "elements per sample", workspace=ws)


def test_profile_shape_defaults_too_large(digits, ws: Path, inputs: Path) -> None:
    profile = inputs / "big.toml"
    profile.write_text('name = "big"\nextends = "onnx"\n[shapes]\ndefaults = { image = [1, 3, 100000, 100000] }\n')
    expect_failure(["convert", digits.onnx, "-t", profile, "-o", ws / "out"], 2, "elements per sample", str(profile),
                   workspace=ws)


@pytest.mark.parametrize("where", ["profile-array", "profile-table", "set-array"])
def test_toml_nested_very_deep(digits, ws: Path, inputs: Path, where: str) -> None:
    if where == "set-array":
        args = convert(digits, ws, "--set", "compiler.x=" + "[" * 5000 + "]" * 5000)
    else:
        profile = inputs / "deep.toml"
        value = "[" * 5000 + "]" * 5000 if where == "profile-array" else "{ a = " * 5000 + "1" + " }" * 5000
        profile.write_text(f'name = "deep"\nextends = "onnx"\n[compiler]\nx = {value}\n')
        args = ["convert", digits.onnx, "-t", profile, "-o", ws / "out"]
    expect_failure(args, 2, "nested", workspace=ws)


def test_toml_nested_below_the_parser_limit(digits, ws: Path, inputs: Path) -> None:
    """Deep enough for the profile code (copies, JSON) to recurse too far, shallow enough for tomllib: exit 2 too."""
    profile = inputs / "deep.toml"
    profile.write_text('name = "deep"\nextends = "onnx"\n[compiler]\nx = ' + "[" * 400 + "]" * 400 + "\n")
    expect_failure(["convert", digits.onnx, "-t", profile, "-o", ws / "out"], 2, "nested", workspace=ws)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "lots", "1e400"])
def test_stage_cache_size_not_a_number(digits, ws: Path, value: str) -> None:
    expect_failure(convert(digits, ws), 2, "EDGECONV_STAGE_CACHE_MB", workspace=ws,
                   env={"EDGECONV_STAGE_CACHE_MB": value, "EDGECONV_NO_CACHE": "0"})


def _png(path: Path, size: tuple[int, int], mode: str = "1") -> None:
    from PIL import Image

    Image.new(mode, size).save(path, optimize=True)


@pytest.fixture(scope="module")
def image_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("imgprofile") / "int8-test.toml"
    path.write_text(INT8_PROFILE.format(samples=4))
    return path


def test_decompression_bomb_in_calibration_folder(digits, ws: Path, inputs: Path, image_profile: Path) -> None:
    calib = inputs / "images"
    calib.mkdir()
    _png(calib / "a.png", (12000, 12000))  # 144 million pixels in a few kB of PNG
    assert (calib / "a.png").stat().st_size < 200_000
    expect_failure(["convert", digits.onnx, "-t", image_profile, "--calib", calib, "-o", ws / "out"], 3, "a.png",
                   "pixels", workspace=ws)


def test_preprocess_resize_too_large(digits, ws: Path, inputs: Path, image_profile: Path) -> None:
    calib = inputs / "images"
    calib.mkdir()
    for i in range(2):
        _png(calib / f"{i}.png", (8, 8), "L")
    expect_failure(["convert", digits.onnx, "-t", image_profile, "--calib", calib, "--preprocess", "resize=60000x60000",
                    "-o", ws / "out"], 2, "--preprocess", "pixels", workspace=ws)


def _npz_with_raw_member(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("image", b"not an npy array")


@pytest.mark.parametrize("case", ["npz-raw-member", "npz-text-member", "strings", "objects-refused", "complex",
                                  "float64-overflow", "float64-overflow-npz"])
def test_bad_eval_samples(digits, ws: Path, inputs: Path, case: str) -> None:
    folder = inputs / "eval"
    folder.mkdir()
    needle = "0000"
    if case == "npz-raw-member":
        _npz_with_raw_member(folder / "0000.npz")
        needle = "not a .npy array"
    elif case == "npz-text-member":
        with zipfile.ZipFile(folder / "0000.npz", "w") as z:
            z.writestr("image.txt", b"1 2 3")
        needle = "not a .npy array"
    elif case == "strings":
        np.save(folder / "0000.npy", np.full((1, 1, 8, 8), "a"))
        needle = "dtype"
    elif case == "objects-refused":
        np.save(folder / "0000.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        needle = "cannot read sample"
    elif case == "complex":
        np.save(folder / "0000.npy", np.ones((1, 1, 8, 8), np.complex64))
        needle = "dtype"
    elif case == "float64-overflow":
        np.save(folder / "0000.npy", np.full((1, 1, 8, 8), 1e300))
        needle = "beyond the range of float32"
    else:
        np.savez(folder / "0000.npz", image=np.full((1, 1, 8, 8), -1e300))
        needle = "beyond the range of float32"
    expect_failure(["convert", digits.onnx, "-t", "onnx", "--eval", folder, "-o", ws / "out"], 3, needle, workspace=ws)


@pytest.mark.parametrize("case", ["strings", "out-of-range-ids", "negative-out-of-range", "int-too-big", "float-ids"])
def test_bad_token_samples(token_model: Path, ws: Path, inputs: Path, case: str) -> None:
    folder = inputs / "eval"
    folder.mkdir()
    sample = {"strings": np.array([["1", "2", "3", "4"]]),
              "out-of-range-ids": np.array([[1, 2, 3, 50]], np.int64),
              "negative-out-of-range": np.array([[1, 2, 3, -50]], np.int64),
              "int-too-big": np.array([[1, 2, 3, 2**70]], dtype=object).astype(np.float64),
              "float-ids": np.array([[1.0, 2.0, 3.0, 4.0]])}[case]
    np.save(folder / "0000.npy", sample)
    needle = {"strings": "dtype", "out-of-range-ids": "validation sample 0", "negative-out-of-range": "validation sample 0",
              "int-too-big": "dtype", "float-ids": "dtype"}[case]
    expect_failure(["convert", token_model, "-t", "onnx", "--eval", folder, "-o", ws / "out"], 3, needle, workspace=ws)


@pytest.fixture(scope="module")
def token_matmul_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ids` int64 [1, 4] → Gather from a [10, 3] table → MatMul [3, 3] → `out` [1, 4, 3]: something to quantize."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.uniform(0, 1, (10, 3)).astype(np.float32), "table")
    weight = numpy_helper.from_array(rng.uniform(0, 1, (3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["emb"]),
                               helper.make_node("MatMul", ["emb", "w"], ["out"])], "tokens",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 3])], [table, weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("tokens-mm") / "tokens.onnx"
    onnx.save_model(model, str(path))
    return path


def test_out_of_range_token_ids_in_calibration_samples(token_matmul_model: Path, ws: Path, inputs: Path,
                                                       image_profile: Path) -> None:
    """Calibration (ORT's calibrator) on ids past the table: the data's fault (exit 3), not an unsupported graph (4)."""
    calib = save_samples(inputs / "calib", [np.array([[1, 2, 3, 50 + i]], np.int64) for i in range(4)])
    good = save_samples(inputs / "eval", [np.array([[1, 2, 3, i]], np.int64) for i in range(4)])
    expect_failure(["convert", token_matmul_model, "-t", image_profile, "--calib", calib, "--eval", good, "-o",
                    ws / "out"], 3, "calibration samples", "vocabulary", workspace=ws)


def test_good_token_samples_convert(token_model: Path, ws: Path, inputs: Path) -> None:
    """The control: the same model with ids inside the table converts."""
    folder = save_samples(inputs / "eval", [np.array([[1, 2, 3, 9]], np.int64)])
    result = run_cli("convert", token_model, "-t", "onnx", "--eval", folder, "-o", ws / "out", "--json")
    assert result.code == 0, result.stderr


# ---------------------------------------------------------------- 12. wrong codes
@pytest.mark.parametrize("override, needle", [
    ("opset=-7", "opset"),
    ("opset=0", "opset"),
    ("validate.gate.min_snr_db=nan", "finite"),
    ("validate.gate.min_snr_db=inf", "finite"),
    ("validate.gate.min_snr_db=-inf", "finite"),
    ("validate.gate.min_cosine=nan", "min_cosine"),
    ("validate.gate.min_cosine=2", "min_cosine"),
    ("validate.gate.max_abs=-1", "max_abs"),
    ("validate.gate.max_abs=nan", "max_abs"),
    ("validate.gate.min_top1_agreement=1.5", "min_top1_agreement"),
    ("validate.samples=-3", "samples"),
    ("validate.samples=0", "samples"),
    ("validate.samples=1e17", "samples"),
    ("validate.samples=100000000000000000", "samples"),
    ("quantize.calibration_samples=-1", "calibration_samples"),
    ("quantize.calibration_samples=100000000000", "calibration_samples"),
    ("quantize.max_fallback=-2", "max_fallback"),
])
def test_out_of_range_profile_numbers(digits, ws: Path, override: str, needle: str) -> None:
    expect_failure(convert(digits, ws, "--set", override), 2, needle, workspace=ws)


@pytest.mark.parametrize("line, needle", [
    ("samples = nan", "samples"),
    ("gate = { min_snr_db = nan }", "min_snr_db"),
    ("gate = { min_snr_db = inf }", "min_snr_db"),
    ("samples = -3", "samples"),
])
def test_out_of_range_numbers_in_a_profile_file(digits, ws: Path, inputs: Path, line: str, needle: str) -> None:
    profile = inputs / "mine.toml"
    profile.write_text(f'name = "mine"\nextends = "onnx"\n[validate]\n{line}\n')
    failure = expect_failure(["convert", digits.onnx, "-t", profile, "-o", ws / "out"], 2, needle, workspace=ws)
    assert f"{profile}:4" in failure.error["message"]  # the file and the line


# ---------------------------------------------------------------- 11. tracebacks at the boundary
COMMANDS = {
    "targets": ["targets"],
    "targets-json": ["targets", "--json"],
    "help": ["--help"],
    "version": ["--version"],
    "doctor": ["doctor"],
    "inspect": ["inspect", "{onnx}"],
    "convert": ["convert", "{onnx}", "-t", "onnx", "--eval", "{eval}", "-o", "{out}"],
    "convert-json": ["convert", "{onnx}", "-t", "onnx", "--eval", "{eval}", "-o", "{out}", "--json"],
    "convert-error": ["convert", "{missing}", "-t", "onnx", "-o", "{out}"],
    "convert-error-json": ["convert", "{missing}", "-t", "onnx", "-o", "{out}", "--json"],
    "bad-flag": ["convert", "--no-such-flag"],
    "validate": ["validate", "{onnx}", "{onnx}", "-t", "onnx", "--eval", "{eval}"],
    "bench": ["bench", "{onnx}", "-n", "3"],
    "quantize": ["quantize", "{onnx}", "-t", "onnx-int8-qdq", "--calib", "{calib}", "-o", "{out}"],
    "inspect-accuracy": ["inspect-accuracy", "{onnx}", "{onnx}", "--calib", "{calib}"],
}
EXPECTED = {"convert-error": 3, "convert-error-json": 3, "bad-flag": 2}


def _expected(name: str, digits: Any, tmp_path: Path) -> int:
    """The command's own exit code with stdout intact (`doctor` exits 4 on a machine whose backends clash)."""
    if name not in ("doctor", "inspect-accuracy", "bench"):
        return EXPECTED.get(name, 0)
    return run_cli(*_argv(name, digits, tmp_path)).code


def _argv(name: str, digits: Any, tmp_path: Path) -> list[str]:
    values = {"onnx": digits.onnx, "eval": digits.eval, "calib": digits.calib, "out": tmp_path / "ws" / "out",
              "missing": tmp_path / "missing.onnx"}
    return [a.format(**values) for a in COMMANDS[name]]


def _shell(command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **sandbox_env(tmp_path, False)}
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, cwd=tmp_path / "cwd",
                          timeout=300)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_stdout_closed_before_start(digits, tmp_path: Path, name: str) -> None:
    """`edgeconv ... >&-`: the command's own result, no traceback (stdout was None inside Python)."""
    argv = " ".join(f"'{a}'" for a in _argv(name, digits, tmp_path))
    proc = _shell(f"{sys.executable} -m edgeconv {argv} >&-", tmp_path)
    no_traceback(proc.stderr)
    assert proc.returncode == _expected(name, digits, tmp_path), proc.stderr[-2000:]
    if name == "convert-json":
        assert (tmp_path / "ws" / "out" / "manifest.json").exists()


@pytest.mark.parametrize("name", ["targets", "convert", "convert-error"])
def test_stdout_and_stderr_closed_before_start(digits, tmp_path: Path, name: str) -> None:
    argv = " ".join(f"'{a}'" for a in _argv(name, digits, tmp_path))
    proc = _shell(f"{sys.executable} -m edgeconv {argv} >&- 2>&-; echo \"rc=$?\"", tmp_path)
    assert proc.stdout.strip().endswith(f"rc={EXPECTED.get(name, 0)}"), proc.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_stdout_on_a_full_disk(digits, tmp_path: Path, name: str) -> None:
    """`edgeconv ... > /dev/full`: a command that succeeded exits 6 (its output was lost) with one error line; a
    failing command keeps its own code; never a traceback."""
    argv = " ".join(f"'{a}'" for a in _argv(name, digits, tmp_path))
    proc = _shell(f"{sys.executable} -m edgeconv {argv} > /dev/full", tmp_path)
    no_traceback(proc.stderr)
    expected = _expected(name, digits, tmp_path) or 6
    assert proc.returncode == expected, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    clean(errors[0])
    if expected == 6:
        assert "stdout" in errors[0]


def test_paths_that_are_not_utf8(digits, tmp_path: Path) -> None:
    """A model path and an OUTDIR whose names are not valid UTF-8 (Linux allows any bytes): converted, printed as
    their bytes; a missing one is exit 3 with one line, as text and as JSON."""
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    raw = os.fsencode(ws) + b"/model\xff.onnx"
    with open(raw, "wb") as f:
        f.write(digits.onnx.read_bytes())
    source, out, missing = os.fsdecode(raw), os.fsdecode(os.fsencode(ws) + b"/out\xfe"), os.fsdecode(raw + b"x")
    for extra in ([], ["--json"]):
        result = bytes_cli("convert", source, "-t", "onnx", "--eval", digits.eval, "-o", out, "--force", *extra)
        no_traceback(result.stderr)
        assert result.code == 0, result.stderr[-2000:]
        if extra:
            assert json.loads(result.stdout)["targets"][0]["target"] == "onnx"
        else:
            assert "out\udcfe" in result.stdout  # the table names OUTDIR as the bytes it is
    assert os.path.exists(os.fsencode(out) + b"/manifest.json")
    before = tree(ws)
    failure = expect_failure(["convert", missing, "-t", "onnx", "-o", os.fsdecode(os.fsencode(ws) + b"/o\xfd")], 3,
                             "does not exist", workspace=ws, runner=bytes_cli)
    assert "model" in failure.error["message"]
    assert tree(ws) == before


def bytes_cli(*args: Any, cwd: Path | None = None, env: dict[str, str] | None = None) -> CliResult:
    """run_cli, reading output that is not valid UTF-8 back as the bytes it was (surrogateescape)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    full_env.update({"TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "edgeconv", *map(str, args)], capture_output=True, text=True,
                          errors="surrogateescape", cwd=cwd, timeout=600, env=full_env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


NOISY_RUNNER = textwrap.dedent("""
    # A toolchain whose error text carries terminal colours and native log lines (absl / glog, ORT), as real ones do.
    import sys
    import edgeconv.formats as formats
    from edgeconv.errors import InvalidInputError, first_line
    NOISE = ("\\x1b[1;31mE1201 12:34:56.789012  4242 converter.cc:42] native noise\\x1b[0m\\n"
             "2026-12-01 12:34:56.789 [E:onnxruntime:, sequential_executor.cc:514] more noise\\n"
             "\\x1b[31mthe real problem\\x1b[0m: op Foo\\r\\x07 is broken\\n")
    def detect(path):
        if sys.argv[-1] == "bug":
            raise RuntimeError(NOISE)
        if sys.argv[-1] == "wrapped":
            raise InvalidInputError(f"cannot read {path}: {first_line(RuntimeError(NOISE))}", "\\x1b[2mtry again\\x1b[0m")
        raise InvalidInputError(NOISE, "hint with \\x1b[1mcolour\\x1b[0m\\nand a second line")
    formats.detect = detect
    from edgeconv.cli.app import main
    args = sys.argv[1:]
    main([a for a in args if a not in ("bug", "wrapped", "raw")])
""")


@pytest.mark.parametrize("mode", ["raw", "wrapped"])
def test_colour_codes_and_native_lines_never_reach_the_error(digits, ws: Path, tmp_path: Path, mode: str) -> None:
    script = tmp_path / "cwd" / "noisy_edgeconv.py"
    script.write_text(NOISY_RUNNER)

    def runner(*args: Any, **kwargs: Any) -> CliResult:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), **kwargs.get("env", {})}
        proc = subprocess.run([sys.executable, str(script), *map(str, args), mode], capture_output=True, text=True,
                              env=env, cwd=kwargs.get("cwd", REPO), timeout=300)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    failure = expect_failure(["convert", digits.onnx, "-t", "onnx", "-o", ws / "out"], 3, "the real problem",
                             workspace=ws, runner=runner)
    assert "native noise" not in failure.error["message"] and "more noise" not in failure.error["message"]


# ---------------------------------------------------------------- 13. nothing left in $TMPDIR
@pytest.mark.parametrize("source", ["onnx", "pt2"])
def test_no_temporary_files_left_after_a_run(digits, tmp_path: Path, source: str) -> None:
    """A successful run (torch export, ONNX Runtime) leaves nothing in $TMPDIR (no .ses, no torchinductor_root) and
    nothing in $HOME (no telemetry device id)."""
    env = sandbox_env(tmp_path, False)
    result = run_cli("convert", getattr(digits, source), "-t", "onnx", "--eval", digits.eval, "-o", tmp_path / "ws" / "out",
                     env=env, cwd=tmp_path / "cwd")
    assert result.code == 0, result.stderr[-2000:]
    assert tree(tmp_path / "tmp") == {} and tree(tmp_path / "home") == {} and tree(tmp_path / "cwd") == {}


def test_json_error_object_for_every_failure_kind(digits, ws: Path) -> None:
    """--json: one object on stdout for a usage error raised by click itself (bad flag), too."""
    failure = expect_failure(["convert", digits.onnx, "-t", "onnx", "-o", ws / "out", "--no-such-flag"], 2,
                             "no such option", workspace=ws)
    assert failure.error["kind"] == "usage"
    json.dumps(failure.error)


@pytest.mark.parametrize("line", ['description = "\\u001b[31mred\\u001b[0m"', 'description = "a\\u0000b"',
                                  'layout = "nchw\\u0007"'])
def test_control_characters_in_profile_strings(digits, ws: Path, inputs: Path, line: str) -> None:
    """A description with terminal escape codes (or NUL) would reach `edgeconv targets`, tables and logs: exit 2."""
    profile = inputs / "mine.toml"
    profile.write_text(f'name = "mine"\nextends = "onnx"\n{line}\n')
    expect_failure(["convert", digits.onnx, "-t", profile, "-o", ws / "out"], 2, "control characters", workspace=ws)
    expect_failure(["convert", digits.onnx, "-t", "onnx", "-o", ws / "out", "--set", line.replace(" = ", "=")], 2,
                   "control characters", workspace=ws)


def test_stale_private_tmpdirs_removed(tmp_path: Path) -> None:
    """A SIGKILLed (or natively crashed) run leaves its $TMPDIR/edgeconv-run-PID-* folder: the next run removes it once
    its process is gone and it is an hour old; a live run's folder, or a fresh one, stays."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    tmp = tmp_path / "tmp"
    stale, fresh, alive = (tmp / f"edgeconv-run-{dead_pid}-stale", tmp / f"edgeconv-run-{dead_pid}-fresh",
                           tmp / f"edgeconv-run-{os.getpid()}-alive")
    for folder in (stale, fresh, alive):
        (folder / "torchinductor_root").mkdir(parents=True)
    for folder in (stale, alive):
        os.utime(folder, (0, 0))
    result = run_cli("targets", env=sandbox_env(tmp_path, False), cwd=tmp_path / "cwd")
    assert result.code == 0, result.stderr
    assert not stale.exists() and fresh.exists() and alive.exists()
    assert sorted(p.name for p in tmp.iterdir()) == sorted([fresh.name, alive.name])  # and its own folder went too
