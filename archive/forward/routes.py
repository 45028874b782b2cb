"""Which routes an instance matches: pure, from its header facts, classification and origin.

The same :class:`RouteFacts` are built at ingest (from the header, the rules'
classification and the sending AE) and by ``usarchive verify`` (from the index
columns), so both judge an instance alike. A route's empty match set matches
everything; ``level`` matches when any of the instance's levels is in the set.
One task per instance per destination: of several routes to one destination,
the first that matches is the one recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archive.forward.config import Route

if TYPE_CHECKING:
    from archive.dicom_header import InstanceHeader
    from archive.ingest import Origin
    from archive.rules import Classification


@dataclass(frozen=True)
class RouteFacts:
    """What routes match on, of one instance.

    Attributes
    ----------
    calling_ae : str or None
        The sender's AE title (``None`` for a file import).
    modality : str or None
        Modality (0008,0060), upper case.
    sop_class_uid : str
    levels : frozenset of str
        Spinal level values (``"L4"``).
    side, technique, procedure_type : str or None
        Enum values (``"left"``, ``"TT"``, ``"medial branch block"``).
    """

    calling_ae: str | None
    modality: str | None
    sop_class_uid: str
    levels: frozenset[str] = frozenset()
    side: str | None = None
    technique: str | None = None
    procedure_type: str | None = None

    @classmethod
    def of_ingest(
        cls, header: InstanceHeader, classification: Classification | None, origin: Origin
    ) -> RouteFacts:
        """The facts of an instance being ingested."""
        modality = str(header.dataset.get("Modality", "") or "").strip().upper() or None
        if classification is None:
            return cls(origin.calling_ae, modality, header.sop_class_uid)
        return cls(
            calling_ae=origin.calling_ae,
            modality=modality,
            sop_class_uid=header.sop_class_uid,
            levels=frozenset(level.value for level in classification.levels),
            side=classification.side.value if classification.side is not None else None,
            technique=classification.technique.value,
            procedure_type=(
                classification.procedure_type.value if classification.procedure_type is not None else None
            ),
        )


def _accepts(allowed: frozenset[str], value: str | None) -> bool:
    return not allowed or (value is not None and value in allowed)


def route_matches(route: Route, facts: RouteFacts) -> bool:
    """Whether ``route`` selects the instance described by ``facts``."""
    return (
        _accepts(route.calling_ae, facts.calling_ae)
        and _accepts(route.modality, facts.modality)
        and _accepts(route.sop_class, facts.sop_class_uid)
        and (not route.level or bool(route.level & facts.levels))
        and _accepts(route.side, facts.side)
        and _accepts(route.technique, facts.technique)
        and _accepts(route.procedure_type, facts.procedure_type)
    )


def matching_routes(routes: Sequence[Route], facts: RouteFacts) -> list[tuple[int, Route]]:
    """``(index, route)`` of the first matching route of each destination, in configuration order."""
    chosen: list[tuple[int, Route]] = []
    seen: set[str] = set()
    for index, route in enumerate(routes):
        if route.destination not in seen and route_matches(route, facts):
            seen.add(route.destination)
            chosen.append((index, route))
    return chosen


def routed_destinations(routes: Iterable[Route], facts: RouteFacts) -> set[str]:
    """Names of the destinations the instance goes to."""
    return {route.destination for _, route in matching_routes(list(routes), facts)}
