"""Danger classes and target names by region and level, from archive/anatomy.toml."""

from __future__ import annotations

from archive.anatomy import anatomy_table, danger_classes_for, target_names_for
from archive.model import SpinalLevel

L3, L4, L5, C4, C5 = (SpinalLevel.L3, SpinalLevel.L4, SpinalLevel.L5, SpinalLevel.C4, SpinalLevel.C5)


def test_danger_classes_follow_the_region() -> None:
    assert danger_classes_for([L4, L5]) == ("nerve root", "vessel", "spinal canal")
    assert danger_classes_for([C4, C5]) == ("spinal cord", "vertebral artery", "nerve root")
    mixed = danger_classes_for([C5, L5])
    assert mixed == ("spinal cord", "vertebral artery", "nerve root", "vessel", "spinal canal")
    assert set(danger_classes_for([])) >= {"spinal cord", "spinal canal", "vertebral artery"}


def test_targets_are_named_by_level() -> None:
    assert target_names_for([L5, L4, L3]) == (
        "L4 SAP–TP junction",
        "L5 SAP–TP junction",
        "S1 SAP–sacral ala junction",
    )
    assert target_names_for([L4]) == ("L5 SAP–TP junction",)
    assert target_names_for([SpinalLevel.T6]) == ()
    assert all(names for names in anatomy_table().targets.values())
