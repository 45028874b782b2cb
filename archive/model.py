"""Coded values of the domain: spinal levels, sides, techniques, approaches, procedure types.

Coded values are enums, accepted as ``str | Enum`` at the boundary and
converted once with the ``parse`` class methods (the highdicom convention).
"""

from __future__ import annotations

import enum
from typing import TypeVar

_E = TypeVar("_E", bound="_CodedEnum")


class _CodedEnum(enum.StrEnum):
    """A string enum whose ``parse`` accepts the value or the member name."""

    @classmethod
    def parse(cls: type[_E], value: str | _E) -> _E:
        """Convert ``value`` (a member, its value or its name) to a member.

        Parameters
        ----------
        value : str or member
            For example ``"L5"``, ``"left"`` or ``Side.LEFT``.

        Returns
        -------
        member of this enum

        Raises
        ------
        ValueError
            If ``value`` names no member; the message lists the valid values.
        """
        if isinstance(value, cls):
            return value
        text = str(value).strip()
        for member in cls:
            if text == member.value or text.upper() == member.name:
                return member
        valid = ", ".join(m.value for m in cls)
        raise ValueError(f"{cls.__name__}: expected one of {valid}, but got {value!r}")


class SpinalLevel(_CodedEnum):
    """A vertebral level; a facet joint such as "L4/5" is the pair (L4, L5)."""

    C1 = "C1"
    C2 = "C2"
    C3 = "C3"
    C4 = "C4"
    C5 = "C5"
    C6 = "C6"
    C7 = "C7"
    T1 = "T1"
    T2 = "T2"
    T3 = "T3"
    T4 = "T4"
    T5 = "T5"
    T6 = "T6"
    T7 = "T7"
    T8 = "T8"
    T9 = "T9"
    T10 = "T10"
    T11 = "T11"
    T12 = "T12"
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"
    L5 = "L5"
    S1 = "S1"

    @property
    def region(self) -> str:
        """The spine region letter: ``"C"``, ``"T"``, ``"L"`` or ``"S"``."""
        return self.value[0]

    @property
    def ordinal(self) -> int:
        """Position from the skull down (C1 = 0); sorts levels anatomically."""
        return list(SpinalLevel).index(self)

    @classmethod
    def span(cls, first: SpinalLevel, last: SpinalLevel) -> tuple[SpinalLevel, ...]:
        """All levels from ``first`` to ``last`` inclusive, e.g. L3..L5."""
        lo, hi = sorted((first.ordinal, last.ordinal))
        return tuple(list(cls)[lo : hi + 1])


def sort_levels(levels: set[SpinalLevel] | list[SpinalLevel]) -> tuple[SpinalLevel, ...]:
    """Return ``levels`` without repeats, in anatomical order (C1 first)."""
    return tuple(sorted(set(levels), key=lambda lv: lv.ordinal))


class Side(_CodedEnum):
    """Side of the body a procedure was done on."""

    LEFT = "left"
    RIGHT = "right"
    BILATERAL = "bilateral"

    @property
    def laterality(self) -> str:
        """DICOM Image Laterality (0020,0062) code: ``L``, ``R`` or ``B``."""
        return {"left": "L", "right": "R", "bilateral": "B"}[self.value]


class Technique(_CodedEnum):
    """How the L4 and L5 targets are reached: one attribute per procedure side.

    ``TT`` ("two points via two punctures", conventional): L4 in-plane, then a
    second puncture for L5, out-of-plane. ``OT`` ("two points via one
    puncture", modified): after L4 the needle stays in the skin, the probe is
    rotated caudally to an oblique view and the needle is redirected to L5
    in-plane through the same puncture. How the needle is seen relative to the
    probe is the separate :class:`Approach` of each clip.
    """

    TT = "TT"
    OT = "OT"
    OTHER = "other"
    UNKNOWN = "unknown"


#: One sentence each, from the seed study, for README and ``--help``.
TECHNIQUE_DEFINITIONS = (
    "TT (two points via two punctures, conventional): L4 in-plane, then a second puncture for L5, "
    "out-of-plane.",
    "OT (two points via one puncture, modified): after L4 the needle stays in the skin, the probe is "
    "rotated caudally to an oblique view and the needle is redirected to L5 in-plane through the same "
    "puncture.",
)


class Approach(_CodedEnum):
    """How the needle is seen relative to the probe in a clip (one attribute per clip)."""

    IN_PLANE = "in-plane"
    OUT_OF_PLANE = "out-of-plane"
    UNKNOWN = "unknown"


class NeedleView(_CodedEnum):
    """Whether the whole shaft (in-plane) or only a dot (out-of-plane) is seen."""

    IN_PLANE = "in-plane"
    OUT_OF_PLANE = "out-of-plane"


class ProcedureType(_CodedEnum):
    """Kind of spinal injection."""

    MEDIAL_BRANCH_BLOCK = "medial branch block"
    RADIOFREQUENCY = "radiofrequency"
    EPIDURAL = "epidural"
    FACET_INJECTION = "facet injection"
    OTHER = "other"


class ReviewStatus(_CodedEnum):
    """Review workflow state of one reviewer's annotations of one clip."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    NEEDS_REWORK = "needs-rework"


class ClipEvent(_CodedEnum):
    """Key moments a reviewer marks on a clip, by frame index."""

    NEEDLE_VISIBLE = "needle visible"
    TARGET_REACHED = "target reached"
    INJECTION_START = "injection start"
    INJECTION_END = "injection end"
    ADVERSE_EVENT = "adverse event"
