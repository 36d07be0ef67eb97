"""The target registry: every built-in profile (the TOML files of the family folders, targets/<family>/*.toml) plus
users' own profile files."""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

from edgeconv.errors import UsageError
from edgeconv.targets.schema import Profile, RawProfile, build_profile, read_profile_file

BUILTIN_DIR = Path(__file__).parent


@lru_cache(maxsize=1)
def _builtin_raw() -> dict[str, RawProfile]:
    raws: dict[str, RawProfile] = {}
    files = [read_profile_file(path) for path in sorted(BUILTIN_DIR.glob("*/*.toml"))]
    for file in sorted(files, key=lambda file: file[0].family if file else ""):  # listed by family name
        for raw in file:
            if raw.name in raws:
                raise UsageError(f"profile '{raw.name}' is defined in {raws[raw.name].source} and {raw.source}", "rename one")
            raws[raw.name] = raw
    return raws


def builtin_profiles() -> list[Profile]:
    raws = _builtin_raw()
    return [build_profile(raw, raws) for raw in raws.values()]


def profile_names() -> list[str]:
    return list(_builtin_raw())


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".toml") or "/" in spec or spec.startswith(".")


def resolve(spec: str) -> Profile:
    """A built-in profile by name, or a user's profile file (`./my-target.toml`). Unknown names: exit 2 with the
    closest names and the list."""
    raws = _builtin_raw()
    if _looks_like_path(spec):
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"profile file {spec} not found", "pass a TOML file path or a built-in target name")
        user = read_profile_file(path)
        known = {**raws, **{r.name: r for r in user}}
        return build_profile(user[0], known)
    if spec in raws:
        return build_profile(raws[spec], raws)
    folded = [name for name in raws if name.lower() == spec.lower()]
    if len(folded) == 1:  # TFLite-INT8 is tflite-int8
        return build_profile(raws[folded[0]], raws)
    names = list(raws)
    close = difflib.get_close_matches(spec.lower(), names, n=3, cutoff=0.5)
    close += [n for n in names if n.startswith(spec.lower().split("-")[0][:4]) and n not in close][: 3 - len(close)]
    did_you_mean = f"did you mean {' or '.join(close)}? " if close else ""
    raise UsageError(f"unknown target '{spec}'", f"{did_you_mean}known targets: {', '.join(sorted(names))}")
