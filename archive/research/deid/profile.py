"""The Basic Application Level Confidentiality Profile (PS3.15 Table E.1-1) as data.

The table ships as ``basic_profile.json`` beside this module: one row per
attribute with its Basic Profile action code and whether the *Retain
Longitudinal Temporal Information with Modified Dates Option* applies to it.
This module reads the table and decides, for one attribute, which single
action to take.

Action codes (PS3.15 E.1.1):

- ``D`` replace with a non-zero length dummy value of the same VR;
- ``Z`` replace with a zero length value (or a dummy);
- ``X`` remove;
- ``K`` keep (sequences are still cleaned);
- ``C`` clean (here: shift dates, see :mod:`archive.research.deid.dates`);
- ``U`` replace a UID by a consistent non-identifying one;
- ``U*`` keep a sequence of references, replacing the UIDs inside it.

A compound code (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) leaves the
choice to the attribute's Type in the IOD: remove it when the IOD allows
(Type 3), empty it when it is Type 2, give it a dummy value when it is Type 1.
:func:`choose_action` makes that choice with :data:`US_IOD_TYPES`, the Types of
the attributes with compound codes in the ultrasound IODs the archive holds
(PS3.3 A.6 Ultrasound Image, A.7 Ultrasound Multi-frame Image). Sequences with
``U*`` are kept so that references between de-identified instances survive.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from pydicom.tag import BaseTag

from archive.errors import DeidentificationError

logger = logging.getLogger(__name__)

#: Name of the table file shipped in this package.
PROFILE_RESOURCE = "basic_profile.json"

#: Types (1, 2) of the attributes with a compound action code that the
#: Ultrasound Image and Ultrasound Multi-frame Image IODs require; any other
#: attribute counts as Type 3 (may be removed). PS3.3 C.7.6.1 (General Image:
#: Content Date/Time, Type 2C, required for temporally related images such as
#: cine clips) and C.7.6.4 (Contrast/Bolus: agent, Type 2).
US_IOD_TYPES: Mapping[str, int] = {
    "ContentDate": 2,
    "ContentTime": 2,
    "ContrastBolusAgent": 2,
}


_TAG = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)")
_MASK = re.compile(r"\(([0-9A-F]{2})XX,([0-9A-F]{4}|XXXX)\)")


class Action(enum.StrEnum):
    """One action of PS3.15 Table E.1-1."""

    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"
    UID_ITEMS = "U*"

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class ProfileRule:
    """One row of Table E.1-1.

    Parameters
    ----------
    tag : str
        As printed in the table, e.g. ``"(0010,0010)"`` or ``"(60XX,3000)"``.
    keyword : str
        DICOM keyword; empty for masks (curves, private attributes).
    name : str
        Attribute name.
    actions : tuple of Action
        The Basic Profile code split at ``/``, e.g. ``(REMOVE, ZERO, DUMMY)``.
    modified_dates : bool
        True when the Retain Longitudinal Temporal Information with Modified
        Dates Option (DCM 113107) cleans this attribute instead.
    """

    tag: str
    keyword: str
    name: str
    actions: tuple[Action, ...]
    modified_dates: bool


@dataclass(frozen=True)
class BasicProfile:
    """The whole table, indexed for lookup.

    Parameters
    ----------
    rules : tuple of ProfileRule
        Every row, in the file's order.
    source : str
        Where the table came from (standard edition and extraction).
    """

    rules: tuple[ProfileRule, ...]
    source: str

    @functools.cached_property
    def _by_tag(self) -> dict[int, ProfileRule]:
        found = ((_TAG.fullmatch(rule.tag), rule) for rule in self.rules)
        return {int(m[1] + m[2], 16): rule for m, rule in found if m}

    @functools.cached_property
    def _by_mask(self) -> dict[tuple[int, int], ProfileRule]:
        # (60XX,3000) -> (0x60, 0x3000); (50XX,XXXX) -> (0x50, -1): any element of the groups.
        found = ((_MASK.fullmatch(rule.tag), rule) for rule in self.rules)
        return {(int(m[1], 16), -1 if m[2] == "XXXX" else int(m[2], 16)): rule for m, rule in found if m}

    def rule_for(self, tag: BaseTag | int) -> ProfileRule | None:
        """The row that applies to ``tag``, or ``None`` when the table does not list it.

        Repeating groups (curves 50xx, overlays 60xx) match their masks.
        Private tags are not looked up here: they are removed wholesale.
        """
        value = int(tag)
        rule = self._by_tag.get(value)
        if rule is not None:
            return rule
        group, element = value >> 16, value & 0xFFFF
        if group & 1 == 0 and (group >> 8) in (0x50, 0x60):
            return self._by_mask.get((group >> 8, element)) or self._by_mask.get((group >> 8, -1))
        return None

    def keywords(self) -> frozenset[str]:
        """Keywords of every attribute the table lists by its own tag."""
        return frozenset(rule.keyword for rule in self.rules if rule.keyword)


def _parse_actions(code: str, tag: str) -> tuple[Action, ...]:
    try:
        return tuple(Action(part) for part in code.split("/"))
    except ValueError as exc:
        raise DeidentificationError(
            f"{PROFILE_RESOURCE}: expected action codes D, Z, X, K, C, U or U* joined by '/', "
            f"but {tag} has {code!r}; restore the table file shipped with usarchive"
        ) from exc


@functools.cache
def load_basic_profile() -> BasicProfile:
    """Read the Basic Profile table shipped with the package (cached).

    Returns
    -------
    BasicProfile

    Raises
    ------
    DeidentificationError
        If the table file holds an unknown action code.
    """
    text = resources.files("archive.research.deid").joinpath(PROFILE_RESOURCE).read_text(encoding="utf-8")
    data = json.loads(text)
    rules = tuple(
        ProfileRule(
            tag=row["tag"],
            keyword=row["keyword"],
            name=row["name"],
            actions=_parse_actions(row["basic"], row["tag"]),
            modified_dates=row["modified_dates"] == "C",
        )
        for row in data["rows"]
    )
    logger.debug("loaded %d rows of PS3.15 Table E.1-1", len(rules))
    return BasicProfile(rules=rules, source=str(data["source"]))


def choose_action(rule: ProfileRule, iod_type: int | None = None) -> Action:
    """Resolve a row's (possibly compound) code to the one action to take.

    Parameters
    ----------
    rule : ProfileRule
        The table row.
    iod_type : int or None
        The attribute's Type (1, 2 or 3) in the IOD; ``None`` looks the
        keyword up in :data:`US_IOD_TYPES` and otherwise means Type 3.

    Returns
    -------
    Action
        ``U*`` when offered (keep the references, replace their UIDs); else
        ``D`` for Type 1, ``Z`` for Type 2 and ``X`` for Type 3 when the code
        offers them, falling back to the first code listed.
    """
    actions = rule.actions
    if len(actions) == 1:
        return actions[0]
    if Action.UID_ITEMS in actions:
        return Action.UID_ITEMS
    kind = iod_type if iod_type is not None else US_IOD_TYPES.get(rule.keyword, 3)
    preferred = {1: Action.DUMMY, 2: Action.ZERO}.get(kind, Action.REMOVE)
    if preferred in actions:
        return preferred
    if kind == 1 and Action.ZERO in actions:
        # Z's definition allows a dummy value: a Type 1 attribute gets one.
        return Action.DUMMY
    return actions[0]
