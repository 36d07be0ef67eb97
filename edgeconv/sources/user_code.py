"""Python the user named on the command line: `--model pkg.mod:fn` factories, `--metric pkg.mod:fn` plugins, and
`--custom-objects pkg.mod` modules that register Keras classes. Naming it is the user's trust; its failures (a syntax
error, an exception or sys.exit() at import or call) are invalid input (exit 3) naming the module and line."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from edgeconv.errors import InvalidInputError, UsageError, first_line


def parse_factory_spec(spec: str, flag: str = "--model", example: str = "mypkg.models:build") -> tuple[str, str]:
    """`pkg.module:function` → (module, function); anything else is a usage error (exit 2). `flag` names the option in
    messages (--model, --metric)."""
    module_name, sep, fn_name = spec.partition(":")
    if not sep or not all(part.isidentifier() for part in module_name.split(".")) or not fn_name.isidentifier():
        raise UsageError(f"bad {flag} {spec!r}: expected package.module:function (a dotted module path, then a "
                         "function name)", f"use e.g. {flag} {example}")
    return module_name, fn_name


def where(e: BaseException, module_name: str) -> str:
    """' (FILE:LINE)': the deepest frame of the traceback in the factory's module, else the deepest one outside
    edgeconv and the standard library (importlib, _sitebuiltins for `builtins:exit`)."""
    if isinstance(e, SyntaxError) and e.filename:
        return f" ({e.filename}:{e.lineno})"
    import sysconfig

    suffixes = (module_name.replace(".", "/") + ".py", module_name.replace(".", "/") + "/__init__.py")
    skipped = (str(Path(__file__).parent), sysconfig.get_paths()["stdlib"], "<frozen ")
    tb, in_module, other = e.__traceback__, "", ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.replace("\\", "/").endswith(suffixes):
            in_module = f" ({filename}:{tb.tb_lineno})"
        elif not filename.startswith(skipped):
            other = f" ({filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    return in_module or other


def exit_error(e: BaseException, what: str, module_name: str) -> InvalidInputError:
    if isinstance(e, SystemExit):
        return InvalidInputError(f"{what} called exit({e.code!r}){where(e, module_name)}",
                                 "the module (or the function it names) must not exit the process")
    return InvalidInputError(f"{what} raised {type(e).__name__}: {first_line(e)}{where(e, module_name)}",
                             "fix that module (it is the user's code edgeconv was told to import)")


def import_factory(spec: str, flag: str = "--model", expects: str = "a function returning an nn.Module") -> Any:
    """`pkg.module:function` → the function. The current directory is importable, as with `python -m`."""
    module_name, fn_name = parse_factory_spec(spec, flag)
    module = import_user_module(module_name, f"{flag} {spec}")
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise InvalidInputError(f"{module_name} has no callable {fn_name!r}", f"{flag} must name {expects}")
    return fn


def parse_module_name(name: str, flag: str, example: str) -> str:
    """A dotted module path (`pkg.module`); anything else is a usage error (exit 2)."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise UsageError(f"bad {flag} {name!r}: expected a dotted module path", f"use e.g. {flag} {example}")
    return name


def import_user_module(module_name: str, what: str) -> Any:
    """Import the user's module `module_name` (named by the option `what`, e.g. "--model pkg.mod:fn"); the current
    directory is importable, as with `python -m`. Its failures are invalid input naming the module and line."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name) and (module_name == e.name or module_name[len(e.name)] == "."):
            raise InvalidInputError(f"cannot import {module_name} for {what}: {e}",
                                    "check the module path and PYTHONPATH") from e
        raise exit_error(e, f"importing {module_name} ({what})", module_name) from e
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SyntaxError, any exception at import, SystemExit: the user's code, not a bug here
        raise exit_error(e, f"importing {module_name} ({what})", module_name) from e
    return module
