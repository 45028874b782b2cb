from __future__ import annotations

import pytest
from pydicom.datadict import tag_for_keyword

from archive.research.deid.profile import Action, ProfileRule, choose_action, load_basic_profile

A = Action


@pytest.mark.parametrize(
    ("keyword", "code"),
    [
        ("PatientName", "Z"),
        ("PatientID", "Z"),
        ("PatientBirthDate", "Z"),
        ("AccessionNumber", "Z"),
        ("InstitutionName", "X/Z/D"),
        ("InstitutionAddress", "X"),
        ("ReferringPhysicianName", "Z"),
        ("OperatorsName", "X/Z/D"),
        ("PerformingPhysicianName", "X"),
        ("StudyID", "Z"),
        ("StudyDate", "Z"),
        ("StudyTime", "Z"),
        ("SeriesDate", "X/D"),
        ("ContentDate", "Z/D"),
        ("ContentTime", "Z/D"),
        ("AcquisitionDateTime", "X/Z/D"),
        ("DeviceSerialNumber", "X/Z/D"),
        ("StationName", "X/Z/D"),
        ("StudyDescription", "X"),
        ("SeriesDescription", "X"),
        ("PerformedProcedureStepDescription", "X"),
        ("ProtocolName", "X/D"),
        ("RequestAttributesSequence", "X"),
        ("OtherPatientIDsSequence", "X"),
        ("PatientComments", "X"),
        ("ImageComments", "X"),
        ("StudyInstanceUID", "U"),
        ("SeriesInstanceUID", "U"),
        ("SOPInstanceUID", "U"),
        ("FrameOfReferenceUID", "U"),
        ("ReferencedSOPInstanceUID", "U"),
        ("MediaStorageSOPInstanceUID", "U"),
        ("ReferencedImageSequence", "X/Z/U*"),
        ("IconImageSequence", "X"),
    ],
)
def test_identifying_attributes_have_their_table_action(keyword: str, code: str) -> None:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    rule = load_basic_profile().rule_for(tag)
    assert rule is not None, f"{keyword} missing from the table"
    assert rule.keyword == keyword
    assert "/".join(a.value for a in rule.actions) == code


@pytest.mark.parametrize(
    ("keyword", "modified"),
    [
        ("StudyDate", True),
        ("ContentDate", True),
        ("AcquisitionDateTime", True),
        ("SeriesTime", True),
        ("PatientBirthDate", False),
        ("PatientName", False),
    ],
)
def test_modified_dates_option_column(keyword: str, modified: bool) -> None:
    rule = load_basic_profile().rule_for(tag_for_keyword(keyword) or 0)
    assert rule is not None
    assert rule.modified_dates is modified


def test_table_is_complete_and_consistent_with_the_dictionary() -> None:
    profile = load_basic_profile()
    assert len(profile.rules) >= 450
    assert "Table E.1-1" in profile.source
    for rule in profile.rules:
        assert rule.actions, rule
        if rule.keyword and "XX" not in rule.tag:
            tag = tag_for_keyword(rule.keyword)
            assert tag is not None, rule
            assert f"({tag >> 16:04X},{tag & 0xFFFF:04X})" == rule.tag


def test_repeating_groups_match_their_masks() -> None:
    profile = load_basic_profile()
    overlay = profile.rule_for(0x60023000)
    assert overlay is not None and overlay.keyword == "OverlayData"
    comments = profile.rule_for(0x601E4000)
    assert comments is not None and comments.keyword == "OverlayComments"
    curve = profile.rule_for(0x50041234)
    assert curve is not None and curve.name == "Curve Data"
    assert profile.rule_for(0x60013000) is None  # odd group: private, not an overlay
    assert profile.rule_for(tag_for_keyword("BodyPartExamined") or 0) is None


def _rule(code: str, keyword: str = "Anything") -> ProfileRule:
    return ProfileRule("(0000,0000)", keyword, keyword, tuple(Action(c) for c in code.split("/")), False)


@pytest.mark.parametrize(
    ("code", "iod_type", "expected"),
    [
        ("X", None, A.REMOVE),
        ("Z", 1, A.ZERO),
        ("X/Z/D", 3, A.REMOVE),
        ("X/Z/D", 2, A.ZERO),
        ("X/Z/D", 1, A.DUMMY),
        ("X/D", 2, A.REMOVE),
        ("X/D", 1, A.DUMMY),
        ("X/Z", 1, A.DUMMY),
        ("Z/D", 3, A.ZERO),
        ("X/Z/U*", 3, A.UID_ITEMS),
    ],
)
def test_compound_codes_resolve_by_iod_type(code: str, iod_type: int | None, expected: Action) -> None:
    assert choose_action(_rule(code), iod_type) is expected


def test_ultrasound_iod_types_drive_the_default_choice() -> None:
    assert choose_action(_rule("Z/D", "ContentDate")) is A.ZERO
    assert choose_action(_rule("X/Z/D", "OperatorsName")) is A.REMOVE
