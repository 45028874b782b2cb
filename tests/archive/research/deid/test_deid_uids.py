from __future__ import annotations

import re
import uuid

import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage

from archive.errors import DeidentificationError
from archive.research.deid.uids import PseudonymKind, check_secret, is_instance_uid, pseudonym, replace_uid

SECRET = b"0123456789abcdef-uids"
OTHER = b"fedcba9876543210-uids"


def test_pseudonym_is_readable_stable_and_keyed() -> None:
    first = pseudonym(SECRET, "PH000001", PseudonymKind.PATIENT)
    assert re.fullmatch(r"P-[0-9A-F]{12}", first)
    assert pseudonym(SECRET, " PH000001 ", "patient") == first
    assert pseudonym(SECRET, "PH000001", "P") == first
    assert pseudonym(OTHER, "PH000001") != first
    assert pseudonym(SECRET, "PH000002") != first
    assert pseudonym(SECRET, "PH000001", PseudonymKind.STUDY).startswith("S-")
    assert pseudonym(SECRET, "PH000001", PseudonymKind.STUDY)[2:] != first[2:]


def test_unknown_pseudonym_kind_is_refused() -> None:
    with pytest.raises(DeidentificationError, match="expected one of patient"):
        pseudonym(SECRET, "x", "visit")


@pytest.mark.parametrize("secret", [b"", b"short", "a string secret, not bytes"])
def test_short_or_non_bytes_secret_is_refused(secret: object) -> None:
    with pytest.raises(DeidentificationError, match="at least 16 bytes"):
        check_secret(secret)  # type: ignore[arg-type]


def test_replacement_uid_is_a_valid_uuid_derived_uid() -> None:
    original = "1.2.826.0.1.3680043.8.498.4711.1.2.3"
    new = replace_uid(SECRET, original)
    assert UID(new).is_valid
    assert new.startswith("2.25.") and len(new) <= 64
    as_uuid = uuid.UUID(int=int(new[5:]))
    assert as_uuid.variant == uuid.RFC_4122
    assert as_uuid.version == 8


def test_replacement_uid_is_consistent_and_keyed() -> None:
    original = "1.2.826.0.1.3680043.8.498.4711.1"
    assert replace_uid(SECRET, original) == replace_uid(SECRET, original + "\x00")
    assert replace_uid(SECRET, original) != replace_uid(OTHER, original)
    assert replace_uid(SECRET, original) != replace_uid(SECRET, original + "0")


@pytest.mark.parametrize(
    ("keyword", "value", "instance"),
    [
        ("SOPInstanceUID", "1.2.3.4", True),
        ("ReferencedSOPInstanceUID", "1.2.3.4", True),
        ("", "1.2.3.4", True),
        ("SOPClassUID", UltrasoundMultiFrameImageStorage, False),
        ("ReferencedSOPClassUID", "1.2.3.4.5", False),
        ("TransferSyntaxUID", ExplicitVRLittleEndian, False),
        ("CodingSchemeUID", "2.16.840.1.113883.6.96", False),
        ("FrameOfReferenceUID", "1.2.840.10008.1.4.1.1", False),
    ],
)
def test_only_instance_like_uids_are_replaced(keyword: str, value: str, instance: bool) -> None:
    assert is_instance_uid(keyword, value) is instance
