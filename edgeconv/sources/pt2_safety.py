"""torch.export `.pt2` archives whose loading runs code: found in the zip before torch.export.load opens it.

Where torch 2.13's `torch.export.load` (torch/export/pt2_archive/_package.py, torch/_export/serde/serialize.py)
unpickles or runs something from the archive:

- `data/weights/*config*.json` / `data/constants/*config*.json` entries with `use_pickle: true`: the payload is read
  with `torch.load(weights_only=False)`;
- constants `custom_obj_*` (torchbind `_pickle_load_obj`) and `opaque_obj_*` (plain `pickle.loads`);
- `data/sample_inputs/*.pt`, legacy `data/weights/<model>.pt` / `data/constants/<model>.pt`, and the 2.7-era
  `serialized_{state_dict,constants,example_inputs}.json` members: `deserialize_torch_artifact` tries
  `weights_only=True` and falls back to `weights_only=False`;
- `data/aotinductor/`: AOTInductor shared libraries, loaded (native code) by `load_pt2`.

A pickle that loads with `weights_only=True` (torch's restricted unpickler, which runs nothing) is accepted; any other,
and every custom / opaque object or AOTInductor package, is refused (exit 7) unless --trust-code.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from edgeconv.errors import EdgeconvError, InvalidInputError, SafetyError, first_line

LEGACY_PICKLES = ("serialized_state_dict.json", "serialized_constants.json", "serialized_example_inputs.json")
MAX_PICKLE_BYTES = 4 << 30


def _rel(name: str) -> str:
    """Member name inside the archive's root folder (torch's reader drops the first component)."""
    return name.split("/", 1)[1] if "/" in name else name


def _pickle_error(zf: zipfile.ZipFile, name: str) -> str | None:
    """None when the member loads with torch.load(weights_only=True); else why not."""
    import torch

    from edgeconv.sources.archive_safety import read_member

    data = read_member(zf, name, MAX_PICKLE_BYTES)
    if not data:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError naming the forbidden global, or a damaged payload
        names = _pickle_globals(data)
        if names:
            return f"a pickle calling {', '.join(names[:3])}"
        match = re.search(r"(Unsupported global: GLOBAL [\w.]+|WeightsUnpickler error:\s*[^\n]+)", str(e))
        return f"a pickle torch refuses with weights_only=True{': ' + match.group(1).strip() if match else ''}"
    return None


def _pickle_globals(data: bytes) -> list[str]:
    """module.name of every global a bare pickle imports (pickletools only parses; nothing is imported or run)."""
    import pickletools

    found: list[str] = []
    strings: list[str] = []
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif opcode.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # not a bare pickle (a torch zip), or damaged: torch's own message is used
        return found
    return list(dict.fromkeys(found))


def _payload_config(zf: zipfile.ZipFile, name: str) -> dict[str, Any]:
    from edgeconv.sources.archive_safety import read_member

    try:
        config = json.loads(read_member(zf, name)).get("config", {})
    except (ValueError, AttributeError) as e:
        raise InvalidInputError(f"{zf.filename}: {_rel(name)} is not a payload config ({first_line(e)})",
                                "the archive is damaged; save it again with torch.export.save") from e
    return config if isinstance(config, dict) else {}


def pickle_findings(path: Path) -> list[str]:
    """Every place in the archive that torch.export.load would unpickle unsafely or run."""
    found: list[str] = []
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        by_rel = {_rel(n): n for n in names}
        if any(r.startswith("data/aotinductor/") for r in by_rel):
            found.append("data/aotinductor/ (AOTInductor shared libraries, native code)")
        for rel, name in sorted(by_rel.items()):
            legacy = rel.startswith(("data/weights/", "data/constants/")) and rel.endswith(".pt")
            if legacy or rel.startswith("data/sample_inputs/") or name in LEGACY_PICKLES or rel in LEGACY_PICKLES:
                why = _pickle_error(zf, name)
                if why:
                    found.append(f"{rel} ({why})")
        for rel, name in sorted(by_rel.items()):
            folder = "data/weights/" if rel.startswith("data/weights/") else "data/constants/" \
                if rel.startswith("data/constants/") else None
            if folder is None or not rel.endswith(".json") or "config" not in rel:
                continue
            root = name[: len(name) - len(rel)]
            for fqn, meta in sorted(_payload_config(zf, name).items()):
                if not isinstance(meta, dict):
                    continue
                path_name = str(meta.get("path_name", ""))
                if folder == "data/constants/" and path_name.startswith(("custom_obj_", "opaque_obj_")):
                    kind = "a torchbind object" if path_name.startswith("custom_obj_") else "a pickled Python object"
                    found.append(f"constant {fqn!r} ({folder}{path_name}: {kind})")
                elif meta.get("use_pickle"):
                    member = root + folder + path_name
                    if member not in names:
                        found.append(f"{fqn!r} ({folder}{path_name}: use_pickle, member missing)")
                        continue
                    why = _pickle_error(zf, member)
                    if why:
                        found.append(f"{'weight' if folder == 'data/weights/' else 'constant'} {fqn!r} "
                                     f"({folder}{path_name}: use_pickle, {why})")
    return list(dict.fromkeys(found))


def check_exported_program(path: Path, trust_code: bool) -> None:
    """Refuse (exit 7) a .pt2 whose loading would run code from the file, unless trusted."""
    if trust_code:
        return
    try:
        found = pickle_findings(path)
    except EdgeconvError:
        raise
    except Exception as e:  # zlib.error, BadZipFile (CRC), NotImplementedError (compression): a damaged archive
        raise InvalidInputError(f"cannot read the torch.export archive {path}: {first_line(e)}",
                                "the archive is damaged; save it again with torch.export.save") from e
    if found:
        shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
        raise SafetyError(
            f"{path} holds pickled payloads that would run code when torch.export.load reads them: {shown}",
            "save the program again with torch.export.save from plain tensors, or pass --trust-code if you trust "
            "its origin",
            details={"pickles": found},
        )
