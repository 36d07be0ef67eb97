"""Where outputs go (issue 13, items 4-7): a profile's name is a folder name and nothing else; two targets of a run, or
two pairs of a batch, never share a folder; --force never deletes an input that lives inside OUTDIR. Every failure is
checked by expect_failure (exit code, one clean error line, JSON, the whole sandbox unchanged), every success by
`outputs_inside`: each path the manifest lists lies inside OUTDIR, and nothing else in the sandbox changed."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.reliability.conftest import expect_failure, sandbox_env, tree

BAD_NAMES = {
    "dotdot": "../../X",
    "dotdot-inside": "a..b",
    "absolute": "/tmp/edgeconv-X",
    "work-dir": ".work",
    "hidden": ".hidden",
    "manifest": "manifest.json",
    "manifest-upper": "MANIFEST.JSON",
    "batch-summary": "batch-summary.json",
    "logs": ".logs",
    "slash": "a/b",
    "backslash": "a\\\\b",
    "nul": "a\\u0000b",
    "space": "my target",
    "empty": "",
    "too-long": "x" * 65,
    "newline": "a\\nb",
}


def profile_text(name_line: str, extends: str = "onnx") -> str:
    return f'{name_line}\nextends = "{extends}"\ndescription = "a user profile"\n'


def outputs_inside(outdir: Path, manifest: dict[str, Any]) -> None:
    """Every artifact the manifest lists is a file inside OUTDIR (resolved, no symlink tricks)."""
    root = outdir.resolve()
    for target in manifest["targets"]:
        for art in target["artifacts"]:
            if art.get("sha256") is None:
                continue
            path = (outdir / art["path"]).resolve()
            assert root in path.parents, f"{art['path']} is outside {outdir}"
            assert path.exists(), path


@pytest.mark.parametrize("case", sorted(BAD_NAMES), ids=sorted(BAD_NAMES))
def test_bad_profile_name_in_file(digits, ws: Path, inputs: Path, case: str) -> None:
    profile = inputs / "mine.toml"
    profile.write_text(profile_text(f'name = "{BAD_NAMES[case]}"'))
    expect_failure(["convert", digits.onnx, "-t", profile, "--eval", digits.eval, "-o", ws / "out"], 2, "name",
                   str(profile), workspace=ws)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "work-dir", "manifest", "nul"])
def test_bad_profile_name_in_profiles_table(digits, ws: Path, inputs: Path, case: str) -> None:
    profile = inputs / "family.toml"
    profile.write_text(f'[profiles."{BAD_NAMES[case]}"]\nextends = "onnx"\ndescription = "x"\n')
    expect_failure(["convert", digits.onnx, "-t", profile, "--eval", digits.eval, "-o", ws / "out"], 2, "name",
                   workspace=ws)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "work-dir", "manifest"])
def test_bad_profile_name_in_table_name_key(digits, ws: Path, inputs: Path, case: str) -> None:
    """`name = ...` inside a [profiles.X] table overrides X: checked the same."""
    profile = inputs / "family.toml"
    profile.write_text(f'[profiles.ok]\nextends = "onnx"\nname = "{BAD_NAMES[case]}"\n')
    expect_failure(["convert", digits.onnx, "-t", profile, "--eval", digits.eval, "-o", ws / "out"], 2, "name",
                   workspace=ws)


@pytest.mark.parametrize("value", ["../../X", "/tmp/edgeconv-X", ".work", "manifest.json", "a/b", '""', "'..'"])
def test_bad_profile_name_in_set(digits, ws: Path, value: str) -> None:
    expect_failure(["convert", digits.onnx, "-t", "onnx", "--eval", digits.eval, "-o", ws / "out", "--set",
                    f"name={value}"], 2, "name", workspace=ws)


def test_good_custom_name_lands_inside_outdir(digits, ws: Path, inputs: Path, sandbox: Path) -> None:
    profile = inputs / "mine.toml"
    profile.write_text(profile_text('name = "My_target-2.0+fast"'))
    before = tree(sandbox, ("cache", "ws"))
    result = run_cli("convert", digits.onnx, "-t", profile, "--eval", digits.eval, "-o", ws / "out", "--json",
                     env=sandbox_env(sandbox, True), cwd=sandbox / "cwd")
    assert result.code == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["targets"][0]["target"] == "My_target-2.0+fast"
    outputs_inside(ws / "out", manifest)
    assert sorted(p.name for p in (ws / "out").iterdir()) == ["My_target-2.0+fast", "manifest.json"]
    assert sorted(p.name for p in ws.iterdir()) == ["out"]
    assert tree(sandbox, ("cache", "ws")) == before, "something was written outside OUTDIR"


# ---------------------------------------------------------------- 5. two targets, one name
def test_two_targets_with_one_name(digits, ws: Path, inputs: Path) -> None:
    copy = inputs / "my-onnx.toml"  # not extending: a user profile named like a built-in shadows it for `extends`
    copy.write_text('name = "onnx"\nproduces = ["onnx"]\ndescription = "my own onnx"\n')
    failure = expect_failure(["convert", digits.onnx, "-t", "onnx", "-t", copy, "--eval", digits.eval, "-o", ws / "out"],
                             2, "two targets are named 'onnx'", str(copy), workspace=ws)
    assert "targets" in failure.error["message"] and "onnx.toml" in failure.error["message"]  # both sources named


def test_set_name_on_two_targets(digits, ws: Path) -> None:
    expect_failure(["convert", digits.onnx, "-t", "onnx", "-t", "onnx-fp16", "--eval", digits.eval, "-o", ws / "out",
                    "--set", "name=same"], 2, "two targets are named 'same'", workspace=ws)


def test_two_profile_files_with_one_name(digits, ws: Path, inputs: Path) -> None:
    (inputs / "a").mkdir()
    (inputs / "b").mkdir()
    for folder, parent in (("a", "onnx"), ("b", "onnx-fp16")):
        (inputs / folder / "fast.toml").write_text(profile_text('name = "fast"', extends=parent))
    expect_failure(["convert", digits.onnx, "-t", inputs / "a" / "fast.toml", "-t", inputs / "b" / "fast.toml", "--eval",
                    digits.eval, "-o", ws / "out"], 2, "two targets are named 'fast'", "a/fast.toml", "b/fast.toml",
                   workspace=ws)


def test_two_targets_whose_names_differ_in_case(digits, ws: Path, inputs: Path) -> None:
    """`Fast` and `fast` are one folder on a case-insensitive file system (macOS, Windows, a mounted share)."""
    for name, parent in (("Fast", "onnx"), ("fast", "onnx-fp16")):
        (inputs / f"{name}-profile.toml").write_text(profile_text(f'name = "{name}"', extends=parent))
    expect_failure(["convert", digits.onnx, "-t", inputs / "Fast-profile.toml", "-t", inputs / "fast-profile.toml",
                    "--eval", digits.eval, "-o", ws / "out"], 2, "two targets are named", workspace=ws)


def test_set_name_clashing_with_another_target(digits, ws: Path) -> None:
    """--set applies to every -t: renaming one builtin into the other's name is the same clash."""
    expect_failure(["convert", digits.onnx, "-t", "onnx-fp16", "--eval", digits.eval, "-o", ws / "out", "--set",
                    "name=onnx", "-t", "onnx"], 2, "two targets are named 'onnx'", workspace=ws)


# ---------------------------------------------------------------- 6. --force and inputs inside OUTDIR
def test_force_never_deletes_a_profile_file_inside_outdir(digits, ws: Path) -> None:
    out = ws / "out"
    out.mkdir()
    profile = out / "mine.toml"
    profile.write_text(profile_text('name = "mine"'))
    expect_failure(["convert", digits.onnx, "-t", profile, "--eval", digits.eval, "-o", out, "--force"], 7,
                   "would delete it", "mine.toml", workspace=ws)
    assert profile.exists()


FACTORY = textwrap.dedent("""
    import pathlib
    pathlib.Path(__file__).with_name("RAN").write_text("the factory module was imported")
    def build():
        raise SystemExit("not reached")
""")


@pytest.mark.parametrize("layout", ["module", "package"])
def test_force_never_deletes_a_factory_module_inside_outdir(digits, ws: Path, layout: str) -> None:
    out = ws / "out"
    out.mkdir()
    if layout == "module":
        (out / "myfactory.py").write_text(FACTORY)
        spec = "myfactory:build"
    else:
        (out / "mypkg").mkdir()
        (out / "mypkg" / "__init__.py").write_text("")
        (out / "mypkg" / "nets.py").write_text(FACTORY)
        spec = "mypkg.nets:build"
    expect_failure(["convert", "--model", spec, "-t", "onnx", "-o", out, "--force"], 7, "would delete it",
                   workspace=ws, env={"PYTHONPATH": str(out)})
    assert not list(out.rglob("RAN")), "the factory module ran"


# ---------------------------------------------------------------- 7. batch: one folder per pair, inside OUTPUT
def write_batch(folder: Path, digits: Any, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "edgeconv.toml"
    config.write_text(f'output = "{folder / "OUTPUT"}"\n' + textwrap.dedent(body).replace("@ONNX@", str(digits.onnx))
                      .replace("@EVAL@", str(digits.eval)))
    return config


@pytest.mark.parametrize("stems", [("fast", "fast"), ("Fast", "fast")], ids=["same", "case"])
def test_batch_two_profile_files_with_one_stem(digits, ws: Path, stems: tuple[str, str]) -> None:
    for sub, stem in zip(("a", "b"), stems):
        (ws / "proj" / sub).mkdir(parents=True)
        (ws / "proj" / sub / f"{stem}.toml").write_text(profile_text(f'name = "fast-{sub}"'))
    config = write_batch(ws / "proj", digits, f"""
        [models.m]
        source = "@ONNX@"
        eval = "@EVAL@"
        targets = ["a/{stems[0]}.toml", "b/{stems[1]}.toml"]
    """)
    expect_failure(["batch", config], 2, f"a/{stems[0]}.toml", f"b/{stems[1]}.toml", "would both write", workspace=ws)
    assert not (ws / "proj" / "OUTPUT").exists()


@pytest.mark.parametrize("target", ["sub/.hidden.toml", "sub/my target.toml", "sub/..toml", "sub/manifest.json.toml"])
def test_batch_target_file_whose_name_is_not_a_folder_name(digits, ws: Path, target: str) -> None:
    """The profile file's name (without .toml) names the pair's folder and log: it must be one plain name."""
    (ws / "proj" / "sub").mkdir(parents=True)
    (ws / "proj" / target).write_text(profile_text('name = "fine"'))
    config = write_batch(ws / "proj", digits, f"""
        [models.m]
        source = "@ONNX@"
        eval = "@EVAL@"
        targets = ["{target}"]
    """)
    expect_failure(["batch", config], 2, "cannot name an output folder", workspace=ws)
    assert not (ws / "proj" / "OUTPUT").exists()


def test_batch_dotdot_target_stays_inside_output(digits, ws: Path, sandbox: Path) -> None:
    """A profile file outside the project (`../fast.toml`) is fine: its folder and log are OUTPUT/m/fast, .logs/m--fast.log."""
    (ws / "fast.toml").write_text(profile_text('name = "fast"'))
    config = write_batch(ws / "proj", digits, """
        [models.m]
        source = "@ONNX@"
        eval = "@EVAL@"
        targets = ["../fast.toml"]
    """)
    before = tree(sandbox, ("cache", "ws"))
    result = run_cli("batch", config, "--json", env=sandbox_env(sandbox, False), cwd=sandbox / "cwd")
    assert result.code == 0, result.stderr
    output = ws / "proj" / "OUTPUT"
    assert sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_file() and output not in p.parents) == \
        ["fast.toml", "proj/edgeconv.toml"], "the batch wrote outside OUTPUT"
    assert (output / "m" / "fast" / "manifest.json").exists() and (output / ".logs" / "m--fast.log").exists()
    outputs_inside(output / "m" / "fast", json.loads((output / "m" / "fast" / "manifest.json").read_text()))
    assert tree(sandbox, ("cache", "ws")) == before


BATCH_BAD = {
    "targets-int": ('targets = [123]', "targets"),
    "targets-table": ('targets = { a = 1 }', "targets"),
    "input-shapes-str-dim": ('input_shapes = { image = [1, "a"] }', "input_shapes"),
    "input-shapes-neg": ('input_shapes = { image = [1, -1, 8, 8] }', "input_shapes"),
    "input-shapes-list": ('input_shapes = [1, 1, 8, 8]', "input_shapes"),
    "set-int": ('set = 5', "set"),
    "set-mixed": ('set = ["validate.samples=8", 3]', "set"),
    "keep-work-str": ('keep_work = "yes"', "keep_work"),
    "max-fallback-str": ('max_fallback = "8"', "max_fallback"),
    "source-nul": ('source = "a\\u0000b.onnx"', "NUL"),
    "preprocess-list": ('preprocess = [1]', "preprocess"),
    "set-bad-name": ('set = ["name=../../X"]', "name"),
}


@pytest.mark.parametrize("case", sorted(BATCH_BAD), ids=sorted(BATCH_BAD))
def test_batch_config_values_of_the_wrong_type(digits, ws: Path, case: str) -> None:
    line, needle = BATCH_BAD[case]
    source = "" if line.startswith("source") else 'source = "@ONNX@"\n'
    targets = "" if line.startswith("targets") else 'targets = ["onnx"]\n'
    config = write_batch(ws / "proj", digits, f"[models.m]\n{source}{targets}{line}\n")
    code = 2
    if case == "set-bad-name":  # the pair's own convert run refuses it (exit 2), the batch exits with it
        result = run_cli("batch", config, "--json")
        assert result.code == code, result.stderr
        summary = json.loads(result.stdout)
        run = summary["runs"][0]
        assert run["exit_code"] == 2 and "name" in run["error"]["message"]
        assert not (ws / "proj" / "OUTPUT" / "m" / "onnx").exists()
        assert not (ws / "X").exists() and not (ws.parent / "X").exists()
        return
    expect_failure(["batch", config], code, needle, workspace=ws)


@pytest.mark.parametrize("name", ["a\\u0000b", "../m", ".work", "manifest.json", "a b"])
def test_batch_bad_model_name(digits, ws: Path, name: str) -> None:
    config = write_batch(ws / "proj", digits, f"""
        [models."{name}"]
        source = "@ONNX@"
        targets = ["onnx"]
    """)
    expect_failure(["batch", config], 2, "model name", workspace=ws)


def test_batch_config_nested_too_deep(digits, ws: Path) -> None:
    config = write_batch(ws / "proj", digits, "[models.m]\nsource = \"@ONNX@\"\nset = " + "[" * 5000 + "]" * 5000 + "\n")
    expect_failure(["batch", config], 2, "nested", workspace=ws)


def test_env_is_inside_the_sandbox(sandbox: Path) -> None:
    """The harness itself: the runs' HOME and TMPDIR are inside the sandbox, never the machine's."""
    env = sandbox_env(sandbox, True)
    assert all(Path(env[k]).is_relative_to(sandbox) for k in ("HOME", "TMPDIR", "EDGECONV_CACHE_DIR"))
    assert os.environ.get("HOME") != env["HOME"]


def test_batch_cache_key_never_imports_a_factory(digits, ws: Path) -> None:
    """The batch hashes a `--model pkg.module:function` factory's file for its cache key: found on disk, never imported
    (importlib's find_spec imported `pkg`, running its __init__.py in the batch process, before any run could refuse)."""
    project = ws / "proj"
    (project / "evilpkg").mkdir(parents=True)
    (project / "evilpkg" / "__init__.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('RAN').write_text('imported')\n")
    (project / "evilpkg" / "nets.py").write_text("def build():\n    raise SystemExit('not reached')\n")
    config = write_batch(project, digits, """
        [models.m]
        model = "evilpkg.nets:build"
        targets = ["onnx"]
    """)
    result = run_cli("batch", config, "--dry-run", "--json", cwd=project)
    assert result.code == 0, result.stderr
    assert not (project / "evilpkg" / "RAN").exists(), "the factory's package was imported by the batch"
    key = json.loads(result.stdout)["runs"][0]["key"]
    (project / "evilpkg" / "nets.py").write_text("def build():\n    raise SystemExit('changed')\n")
    again = json.loads(run_cli("batch", config, "--dry-run", "--json", cwd=project).stdout)["runs"][0]["key"]
    assert again != key, "the factory's file is part of the cache key"
