"""Danger-structure classes and target names offered by spine region and level (data in ``anatomy.toml``).

A lumbar clip offers nerve root, vessel and spinal canal as danger classes; a
cervical one spinal cord, vertebral artery and nerve root (the cervical seed:
a spinal cord injury at C4/5). Targets are named by level, e.g. the L4 medial
branch at the "L5 SAP–TP junction". These are suggestions: any non-empty name
is still accepted by :mod:`archive.review`.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from archive.errors import ConfigError
from archive.model import SpinalLevel, sort_levels

_REGION_OF_LETTER = {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}


@dataclass(frozen=True)
class AnatomyTable:
    """Danger classes by region and target names by level."""

    danger: dict[str, tuple[str, ...]]
    targets: dict[SpinalLevel, tuple[str, ...]]


@functools.cache
def anatomy_table() -> AnatomyTable:
    """The shipped table (``archive/anatomy.toml``), read and checked once.

    Raises
    ------
    ConfigError
        If the shipped file names an unknown region or level (a packaging bug).
    """
    text = resources.files("archive").joinpath("anatomy.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    unknown = sorted(set(raw["danger"]) - set(_REGION_OF_LETTER.values()))
    if unknown:
        raise ConfigError(
            f"anatomy.toml: expected regions {sorted(_REGION_OF_LETTER.values())}, got {unknown}"
        )
    try:
        targets = {SpinalLevel.parse(level): tuple(names) for level, names in raw["targets"].items()}
    except ValueError as exc:
        raise ConfigError(f"anatomy.toml: {exc}") from exc
    return AnatomyTable({region: tuple(names) for region, names in raw["danger"].items()}, targets)


def danger_classes_for(levels: Iterable[SpinalLevel]) -> tuple[str, ...]:
    """Danger classes to offer for a clip of ``levels`` (union over their regions, table order).

    Parameters
    ----------
    levels : iterable of SpinalLevel
        The clip's levels; none gives every class of the table.

    Returns
    -------
    tuple of str
    """
    table = anatomy_table()
    regions = [_REGION_OF_LETTER[level.region] for level in sort_levels(list(levels))]
    chosen = regions or list(table.danger)
    return tuple(dict.fromkeys(name for region in chosen for name in table.danger.get(region, ())))


def target_names_for(levels: Iterable[SpinalLevel]) -> tuple[str, ...]:
    """Target names to offer for a clip of ``levels``, in anatomical order.

    Parameters
    ----------
    levels : iterable of SpinalLevel
        The clip's levels.

    Returns
    -------
    tuple of str
        Empty when the table names no target for these levels.
    """
    table = anatomy_table()
    return tuple(
        dict.fromkeys(name for level in sort_levels(list(levels)) for name in table.targets.get(level, ()))
    )
