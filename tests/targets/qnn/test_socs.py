"""`--soc` spellings → QNN soc_model / htp_arch, and the table in docs/targets/hexagon.md is the table in the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeconv.errors import UsageError
from edgeconv.targets import resolve
from edgeconv.targets.qnn.socs import DEFAULT_SOC, SOCS, resolve_soc

DOC = Path(__file__).resolve().parents[3] / "docs" / "targets" / "hexagon.md"


@pytest.mark.parametrize("spelling", ["8 Gen 3", "Snapdragon 8 Gen 3", "8gen3", "8GEN3", "sm8650", "SM8650", " 8-gen-3 "])
def test_spellings_of_8_gen_3(spelling: str) -> None:
    soc = resolve_soc(spelling)
    assert (soc.chip, soc.soc_model, soc.htp_arch) == ("SM8650", 57, 75)


@pytest.mark.parametrize("spelling, chip, soc_model, arch", [
    ("8 Gen 1", "SM8450", 36, 69), ("8+ Gen 1", "SM8475", 42, 69), ("8 plus gen 1", "SM8475", 42, 69),
    ("8 gen 2", "SM8550", 43, 73), ("8 Elite", "SM8750", 69, 79), ("snapdragon 8 elite", "SM8750", 69, 79),
    ("X Elite", "SC8380XP", 60, 73), ("sc8380xp", "SC8380XP", 60, 73), ("7+ Gen 2", "SM7475", 54, 69),
    ("7 Gen 3", "SM7550", 64, 73), ("sm7675", "SM7675", 70, 73),
])
def test_named_parts(spelling: str, chip: str, soc_model: int, arch: int) -> None:
    soc = resolve_soc(spelling)
    assert (soc.chip, soc.soc_model, soc.htp_arch) == (chip, soc_model, arch)


def test_unknown_part_is_a_usage_error_listing_the_parts() -> None:
    with pytest.raises(UsageError) as err:
        resolve_soc("8 Gen 9")
    assert err.value.exit_code == 2 and "8 Gen 9" in err.value.message
    for soc in SOCS:
        assert soc.chip.lower() in err.value.hint


def test_spellings_are_unambiguous() -> None:
    from edgeconv.targets.qnn.socs import _key

    owner: dict[str, str] = {}
    for soc in SOCS:
        for spelling in (soc.name, soc.chip, *soc.aliases):
            assert owner.setdefault(_key(spelling), soc.chip) == soc.chip, spelling


def test_profiles_default_to_a_known_part() -> None:
    for name in ("hexagon-int8", "hexagon-int16", "hexagon-fp16"):
        profile = resolve(name)
        assert resolve_soc(profile.compiler.get("soc", DEFAULT_SOC)).chip == "SM8650"
        assert profile.shapes.static and profile.validate.runtime == "qnn_htp"
        assert [f.value for f in profile.produces] == ["qnn-context", "dlc"]
    assert resolve("hexagon-int8").quantize.activations == "uint8" and resolve("hexagon-int8").quantize.weights == "int8"
    assert resolve("hexagon-int16").quantize.activations == "uint16" and resolve("hexagon-int16").quantize.weights == "int8"
    assert resolve("hexagon-fp16").quantize.precision == "fp16"


def test_docs_table_matches_the_code() -> None:
    rows = re.findall(r"^\| Snapdragon ([^|]+?) \| (\w+) \| (\d+) \| (\d+) \| (\d+) MB \| (yes|no) \|$", DOC.read_text(), re.M)
    documented = {(name, chip, int(sm), int(arch), int(vtcm), fp16 == "yes") for name, chip, sm, arch, vtcm, fp16 in rows}
    assert documented == {(s.name, s.chip, s.soc_model, s.htp_arch, s.vtcm_mb, s.fp16) for s in SOCS}
