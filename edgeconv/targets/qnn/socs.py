"""Snapdragon parts the Hexagon profiles compile for: name → QNN `soc_model` id and `htp_arch`.

Data, not logic (docs/targets/hexagon.md is checked against it by a test). `soc_model` values are Qualcomm's
Qnn_SocModel_t ids (QnnTypes.h), passed to the QNN EP as numbers: the EP's own name lookup knows only some chips and
silently ignores the others. `htp_arch` was read back from context binaries compiled with each soc_model alone (the
backend writes `soc_type=...;arch=NN` into them). `fp16` says whether the HTP validates float16 ops for that part
(measured on the QNN 2.51 simulator: the 7-series and 8s Gen 3 reject every fp16 op).

Spellings accepted by `--soc` (case-insensitive, spaces / dashes / underscores ignored): the marketing name with or
without "Snapdragon" ("8 Gen 3", "Snapdragon 8 Gen 3", "8gen3"; "plus" for "+"), the chip id ("sm8650"), the aliases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeconv.errors import UsageError

DEFAULT_SOC = "8 Gen 3"


@dataclass(frozen=True)
class Soc:
    name: str  # marketing name without "Snapdragon"
    chip: str  # Qualcomm chip id
    soc_model: int  # Qnn_SocModel_t
    htp_arch: int  # Hexagon HTP version (v69, v73, ...)
    fp16: bool  # HTP float16 support
    vtcm_mb: int
    aliases: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"Snapdragon {self.name} ({self.chip}, HTP v{self.htp_arch})"

    def to_json(self) -> dict[str, object]:
        return {"name": f"Snapdragon {self.name}", "chip": self.chip, "soc_model": self.soc_model,
                "htp_arch": self.htp_arch, "fp16": self.fp16}


SOCS: tuple[Soc, ...] = (
    Soc("8 Gen 1", "SM8450", 36, 69, True, 8),
    Soc("8+ Gen 1", "SM8475", 42, 69, True, 8),
    Soc("8 Gen 2", "SM8550", 43, 73, True, 8),
    Soc("8 Gen 3", "SM8650", 57, 75, True, 8),
    Soc("8s Gen 3", "SM8635", 68, 73, False, 4),
    Soc("8 Elite", "SM8750", 69, 79, True, 8),
    Soc("8 Elite Gen 5", "SM8850", 87, 81, True, 8),
    Soc("X Elite", "SC8380XP", 60, 73, True, 8, ("x1e",)),
    Soc("7+ Gen 2", "SM7475", 54, 69, False, 4),
    Soc("7 Gen 3", "SM7550", 64, 73, False, 2),
    Soc("7+ Gen 3", "SM7675", 70, 73, False, 4),
)


def _key(text: str) -> str:
    text = text.lower().replace("snapdragon", "").replace("plus", "+")
    return re.sub(r"[^a-z0-9+]", "", text)


def _index() -> dict[str, Soc]:
    out: dict[str, Soc] = {}
    for soc in SOCS:
        for spelling in (soc.name, soc.chip, *soc.aliases):
            out[_key(spelling)] = soc
    return out


def known_parts() -> str:
    return "; ".join(f"{s.name} ({s.chip.lower()})" for s in SOCS)


def resolve_soc(spec: str) -> Soc:
    """`--soc` value → Soc. Unknown → UsageError (exit 2) listing the known parts."""
    soc = _index().get(_key(spec))
    if soc is None:
        raise UsageError(f"unknown Snapdragon part '{spec}' for --soc",
                         f"known parts: {known_parts()} (any case; e.g. --soc \"8 Gen 3\", --soc sm8650, --soc 8gen3)")
    return soc
