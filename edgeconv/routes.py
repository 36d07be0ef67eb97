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


def search_route(src: Format, dst: Format, artifact: Artifact, profile: "Profile", installed_only: bool = False,
                 avoid: frozenset[type[Converter]] = frozenset()) -> list[type[Converter]] | None:
    """Cheapest chain of converter edges from src to dst (Dijkstra) that takes `artifact` for `profile`, or None.

    By default unavailable edges cost a penalty, so an installed route wins but one is still found (and reported with
    its pip extra) when none is installed; with `installed_only` only installed edges usable here are walked. Edges in
    `avoid` are not walked (fallback_route)."""
    if src == dst:
        return []
    edges: dict[Format, list[type[Converter]]] = {}
    for conv in all_converters():
        if conv in avoid or (installed_only and (not conv.available() or conv.unsupported_reason)):
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


def fallback_route(src: Format, dst: Format, artifact: Artifact, profile: "Profile",
                   route: list[type[Converter]]) -> list[type[Converter]] | None:
    """The route a target tries when the first converter of `route` refuses the model (exit 4): the cheapest installed
    route that does not take that edge, e.g. Keras → ONNX → onnx2tf when TFLiteConverter leaves an op float. None when
    there is no other installed route."""
    if not route:
        return None
    other = search_route(src, dst, artifact, profile, installed_only=True, avoid=frozenset({route[0]}))
    return other or None
