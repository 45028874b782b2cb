"""pacs_bridge.fast_encode writes pydicom's bytes for what it takes and declines the rest."""

from __future__ import annotations

import random
import string
from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.dsutils import decode, encode

from pacs_bridge.fast_encode import encode_dataset, encode_elements

#: Keywords of every VR the encoder writes (a C-FIND identifier's, and a few others).
_KEYWORDS = {
    "AE": ["RetrieveAETitle"],
    "AS": ["PatientAge"],
    "CS": ["QueryRetrieveLevel", "ModalitiesInStudy", "Modality", "InstanceAvailability"],
    "DA": ["StudyDate", "PatientBirthDate"],
    "DT": ["AcquisitionDateTime"],
    "IS": ["NumberOfStudyRelatedInstances", "SeriesNumber", "InstanceNumber"],
    "LO": ["StudyDescription", "IssuerOfPatientID"],
    "LT": ["AdditionalPatientHistory"],
    "PN": ["PatientName", "ReferringPhysicianName"],
    "SH": ["AccessionNumber", "StudyID"],
    "ST": ["InstitutionAddress"],
    "TM": ["StudyTime"],
    "UI": ["StudyInstanceUID", "SeriesInstanceUID", "SOPClassesInStudy"],
    "US": ["Rows", "Columns"],
    "UL": ["SimpleFrameList"],
    "SS": ["TagAngleSecondAxis"],
    "SL": ["ReferencePixelX0"],
}


def _text(rng: random.Random, alphabet: str, longest: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, longest)))


def _value(rng: random.Random, vr: str) -> object:
    if rng.random() < 0.15:
        return None if vr in ("US", "UL", "SS", "SL") or rng.random() < 0.5 else ""
    many = rng.random() < 0.3
    count = rng.randint(2, 4) if many else 1
    makers = {
        "AE": lambda: _text(rng, string.ascii_uppercase + string.digits, 16),
        "AS": lambda: f"{rng.randint(0, 999):03d}Y",
        "CS": lambda: _text(rng, string.ascii_uppercase + string.digits + "_", 16),
        "DA": lambda: f"{rng.randint(1900, 2030)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        "DT": lambda: f"{rng.randint(1900, 2030)}0101120000.{rng.randint(0, 999999):06d}",
        "IS": lambda: rng.randint(-(2**31), 2**31 - 1),
        "LO": lambda: _text(rng, string.ascii_letters + string.digits + " ^-", 64),
        "LT": lambda: _text(rng, string.printable.strip() + " ", 200),
        "PN": lambda: "^".join(_text(rng, string.ascii_letters, 10) for _ in range(rng.randint(1, 3))),
        "SH": lambda: _text(rng, string.ascii_letters + string.digits, 16),
        "ST": lambda: _text(rng, string.ascii_letters + " ", 100),
        "TM": lambda: f"{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}",
        "UI": lambda: ".".join(str(rng.randint(1, 99999)) for _ in range(rng.randint(2, 10)))[:64].strip("."),
        "US": lambda: rng.randint(0, 0xFFFF),
        "UL": lambda: rng.randint(0, 0xFFFFFFFF),
        "SS": lambda: rng.randint(-0x8000, 0x7FFF),
        "SL": lambda: rng.randint(-(2**31), 2**31 - 1),
    }
    if vr in ("LT", "ST"):
        count = 1  # single-valued text: a backslash is a character
    values = [makers[vr]() for _ in range(count)]
    return values if many and count > 1 else values[0]


def _dataset(rng: random.Random) -> Dataset:
    ds = Dataset()
    for vr, keywords in _KEYWORDS.items():
        for keyword in keywords:
            if rng.random() < 0.6:
                setattr(ds, keyword, _value(rng, vr))
    if rng.random() < 0.3:
        block = ds.private_block(0x0011, "USARCHIVE 1.0", create=True)
        block.add_new(0x10, "LO", _value(rng, "LO"))
    return ds


@pytest.mark.parametrize("implicit_vr", [True, False], ids=["implicit", "explicit"])
def test_generated_flat_data_sets_encode_to_pydicoms_bytes(implicit_vr: bool) -> None:
    rng = random.Random(20261202)
    for _ in range(300):
        ds = _dataset(rng)
        assert encode_dataset(ds, implicit_vr, True) == encode(ds, implicit_vr, True), ds


@pytest.mark.parametrize("implicit_vr", [True, False], ids=["implicit", "explicit"])
def test_a_decoded_data_set_with_raw_elements_is_left_to_pydicom(implicit_vr: bool) -> None:
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.StudyInstanceUID = "1.2.3"
    received = encode(ds, implicit_vr, True)
    assert received is not None
    decoded = decode(BytesIO(received), implicit_vr, True)
    decoded.StudyDate = "20261202"  # one element set, the others still as received (raw)
    assert encode_dataset(decoded, implicit_vr, True) is None
    _ = decoded.PatientName, decoded.StudyInstanceUID  # converted now
    assert encode_dataset(decoded, implicit_vr, True) is None, "a decoded name keeps its received bytes"
    del decoded.PatientName
    assert encode_dataset(decoded, implicit_vr, True) == encode(decoded, implicit_vr, True)


def _declined() -> dict[str, Dataset]:
    sequence = Dataset()
    sequence.ReferencedStudySequence = Sequence([Dataset()])
    non_ascii = Dataset()
    non_ascii.SpecificCharacterSet = "ISO_IR 192"
    non_ascii.PatientName = "Müller^Anna"
    float_ds = Dataset()
    float_ds.PatientWeight = 70.5
    binary = Dataset()
    binary.add_new(0x00091010, "OB", b"\x01\x02")
    return {"sequence": sequence, "non-ASCII text": non_ascii, "DS": float_ds, "OB": binary}


@pytest.mark.parametrize("case", list(_declined()))
def test_what_it_does_not_write_is_left_to_pydicom(case: str) -> None:
    assert encode_dataset(_declined()[case], True, True) is None


def test_big_endian_and_deflated_are_left_to_pydicom() -> None:
    ds = Dataset()
    ds.PatientID = "P1"
    assert encode_dataset(ds, False, False) is None
    assert encode_dataset(ds, False, True, deflated=True) is None


def test_a_value_too_long_for_an_explicit_vr_length_is_declined() -> None:
    assert encode_elements([(0x00081030, "LO", "x" * 0x10000)], implicit_vr=False) is None
    assert encode_elements([(0x00081030, "LO", "x" * 0x10000)], implicit_vr=True) is not None


def test_a_number_out_of_its_vrs_range_is_declined() -> None:
    assert encode_elements([(0x00280010, "US", 0x10000)], implicit_vr=True) is None
