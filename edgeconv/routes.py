"""The one route search over the converter graph: `convert` and `--dry-run` (pipeline.find_route) and `edgeconv
targets` (availability.py) ask it, so they agree on which edges a profile may take (each edge's `refuses()`)."""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import TYPE_CHECKING

from edgeconv.converters import all_converters
from edgeconv.converters.base import Converter
from edgeconv.formats import Artifact, Format

if TYPE_CHECKING:
    from edgeconv.targets.schema import Profile

UNAVAILABLE_PENALTY = 1000


def search_route(src: Format, dst: Format, artifact: Artifact, profile: "Profile",
                 installed_only: bool = False) -> list[type[Converter]] | None:
    """Cheapest chain of converter edges from src to dst (Dijkstra) that takes `artifact` for `profile`, or None.

    By default unavailable edges cost a penalty, so an installed route wins but one is still found (and reported with
    its pip extra) when none is installed; with `installed_only` only installed edges usable here are walked."""
    if src == dst:
        return []
    edges: dict[Format, list[type[Converter]]] = {}
    for conv in all_converters():
        if installed_only and (not conv.available() or conv.unsupported_reason):
            continue
        if conv().refuses(artifact, profile) is None:
            edges.setdefault(conv.source, []).append(conv)
    frontier: list[tuple[int, int, Format, list[type[Converter]]]] = [(0, 0, src, [])]
    seen: set[Format] = set()
    tie = 0
    while frontier:
        cost, _, fmt, path = heapq.heappop(frontier)
        if fmt == dst:
            return path
        if fmt in seen:
            continue
        seen.add(fmt)
        for conv in edges.get(fmt, []):
            tie += 1
            extra = 0 if conv.available() else UNAVAILABLE_PENALTY
            heapq.heappush(frontier, (cost + conv.cost + extra, tie, conv.target, [*path, conv]))
    return None


def installed_route(src: Format, dst: Format, profile: "Profile") -> list[type[Converter]] | None:
    """An installed route for a model of format `src` (no file at hand: `edgeconv targets`), or None."""
    return search_route(src, dst, Artifact(Path("model"), src), profile, installed_only=True)
