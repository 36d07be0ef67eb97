"""Typed profile options: a frozen dataclass per table (a family's `[compiler]` keys in targets/<family>/options.py,
the `[quantize.options]` keys in targets/quantize_options.py), and the one parser that turns a TOML table into it.

An unknown key, a value of the wrong type (`true` is no integer, `3` no boolean; an integer is a number), a number out
of its bounds or a string outside its choices is a usage error (exit 2) naming the key, the file and its line, with
the closest key. Bounds and choices ride on the dataclass field: `workspace_mib: int = option(1024, bounds=(1, 2**20))`.

Each family's options.py declares `FAMILY` (the profiles' `family` name, or a tuple of them) and `OPTIONS` (its class);
`options_class(family)` finds it by walking the family folders, so a new family registers by having the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import pkgutil
import types
import typing
from dataclasses import Field, dataclass, field, fields
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from edgeconv.errors import UsageError
from edgeconv.targets.schema import _bad_key, _key_line

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

_WANT = {bool: "bool", int: "int", float: "int or float", str: "str"}


def option(default: Any, *, bounds: tuple[float | None, float | None] | None = None,
           choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its bounds (inclusive, None: open) and / or its allowed string values."""
    return field(default=default, metadata={"bounds": bounds, "choices": choices})


@dataclass(frozen=True)
class Table:
    """Where a table came from, for messages: `section` as written in a key path ("compiler", "quantize.options")."""

    section: str
    profile: str
    source: str
    text: str = ""

    def at(self, key: str) -> str:
        line = _key_line(self.text, key) if self.text else None
        return f"{self.source}:{line}" if line else self.source

    def fail(self, key: str, value: Any, problem: str, hint: str = "see docs/profiles.md") -> UsageError:
        return UsageError(f"{self.at(key)}: {self.section}.{key} = {value!r} in profile '{self.profile}' {problem}", hint)


def _optional(kind: Any) -> tuple[Any, bool]:
    """`int | None` → (int, True)."""
    args = typing.get_args(kind)
    if (typing.get_origin(kind) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else kind), True
    return kind, False


def _convert(kind: Any, key: str, value: Any, table: Table) -> Any:
    """`value` as the field's type, or a usage error. Types not listed here (Any, object) take any TOML value."""
    base, optional = _optional(kind)
    if optional and value is None:
        return None
    if typing.get_origin(base) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise table.fail(key, value, "must be a list of strings")
        for item in value:
            _check_text(key, item, table)
        return tuple(value)
    if base not in _WANT:
        return value
    ok = isinstance(value, bool) if base is bool else (
        isinstance(value, (int, float) if base is float else base) and not isinstance(value, bool))
    if not ok:
        raise table.fail(key, value, f"must be {_WANT[base]}")
    if isinstance(value, str):
        _check_text(key, value, table)
    return float(value) if base is float else value


def _check_text(key: str, value: str, table: Table) -> None:
    if any((ord(c) < 32 and c not in "\n\t") or c == "\x7f" for c in value):
        raise table.fail(key, value, "holds control characters", "remove them")


def _check_value(spec: Field, value: Any, table: Table) -> None:
    bounds, choices = spec.metadata.get("bounds"), spec.metadata.get("choices")
    if isinstance(value, float) and not math.isfinite(value):
        raise table.fail(spec.name, value, "must be a finite number")
    if bounds and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = bounds
        if (low is not None and value < low) or (high is not None and value > high):
            span = (f"a number >= {low}" if high is None else f"a number <= {high}" if low is None else
                    f"between {low} and {high}")
            raise table.fail(spec.name, value, f"must be {span}")
    if choices is not None:
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None and item not in choices:
                raise UsageError(f"{table.at(spec.name)}: {spec.name} = {item!r} in [{table.section}] of "
                                 f"'{table.profile}' is not one of {', '.join(choices)}", "see docs/profiles.md")


def parse_options(cls: type, data: Any, table: Table) -> Any:
    """The TOML table `data` as an instance of the options dataclass `cls` (missing keys keep their defaults)."""
    if not isinstance(data, dict):
        raise UsageError(f"{table.source}: [{table.section}] of '{table.profile}' must be a table, not {data!r}",
                         "see docs/profiles.md")
    specs = {spec.name: spec for spec in fields(cls)}
    kinds = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in specs:
            raise _bad_key(table.source, table.text, f"[{table.section}] of '{table.profile}'", key, set(specs))
        kwargs[key] = _convert(kinds[key], key, value, table)
        _check_value(specs[key], kwargs[key], table)
    return cls(**kwargs)


@lru_cache(maxsize=1)
def family_classes() -> dict[str, type]:
    """family name → options class, from every targets/<family>/options.py (`FAMILY`, `OPTIONS`)."""
    import edgeconv.targets as package

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg or importlib.util.find_spec(f"{package.__name__}.{info.name}.options") is None:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}.options")
        names = module.FAMILY if isinstance(module.FAMILY, tuple) else (module.FAMILY,)
        for name in names:
            found[name] = module.OPTIONS
    return found


def options_class(family: str) -> type | None:
    """The `[compiler]` options class of a family, None for a family edgeconv does not know (a user's own)."""
    return family_classes().get(family)


def check_compiler(family: str, data: Any, table: Table) -> dict[str, Any]:
    """Check a profile's `[compiler]` table against its family's class when the profile loads; returns it unchanged
    (the profile keeps the table as written: manifests and cache keys record it so)."""
    cls = options_class(family)
    if cls is None:
        return dict(data) if isinstance(data, dict) else data
    if isinstance(data, dict) and data and not fields(cls):
        key = next(iter(data))
        raise UsageError(f"{table.at(key)}: [compiler] of '{table.profile}' has key '{key}', but {family} profiles take "
                         "no [compiler] keys", "remove the [compiler] section")
    parse_options(cls, data, table)
    return dict(data)


def options_for(profile: "Profile") -> Any:
    """The profile's `[compiler]` keys as its family's options object (defaults filled in)."""
    cls = options_class(profile.family)
    if cls is None:
        raise UsageError(f"profile '{profile.name}': family {profile.family!r} has no options class",
                         "see docs/profiles.md")
    return parse_options(cls, profile.compiler, Table("compiler", profile.name, profile.source_file or profile.name))


def refuses_precision(profile: "Profile", family: str, precisions: tuple[str, ...], label: str) -> str | None:
    """An edge that serves one family's profiles only at some precisions: the reason it refuses the others (None when
    it takes the profile). Shared by the converters' `refuses()`."""
    if profile.family == family and profile.quantize.precision not in precisions:
        return f"{label} profiles take precision {', '.join(precisions)}"
    return None
