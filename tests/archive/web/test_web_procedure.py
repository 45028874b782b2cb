"""WADO-RS ``/metadata`` carries our private procedure block, as C-FIND and QIDO-RS answer it."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import requests
from pydicom.uid import generate_uid
from web_served import Served, client

from archive.model import Side, SpinalLevel
from archive.query import PRIVATE_CREATOR, PROCEDURE_ELEMENTS
from archive.web.procedure import with_procedure

CREATOR = "00110010"
NAMES = {f"00111{element:03X}": name for name, element in PROCEDURE_ELEMENTS.items()}
QIDO_NAMES = {
    "levels": "USArchiveSpinalLevels",
    "side": "USArchiveSide",
    "technique": "USArchiveTechnique",
    "approach": "USArchiveApproach",
    "procedure_type": "USArchiveProcedureType",
}


def _qido_instance(served: Served, uid: str) -> dict[str, Any]:
    fields = ",".join(QIDO_NAMES.values())
    answer = requests.get(
        f"{served.url}/instances?SOPInstanceUID={uid}&includefield={fields}",
        headers={"Authorization": f"Bearer {served.tokens['reader']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()
    return dict(result)


def _uid(document: dict[str, Any]) -> str:
    return str(document["00080018"]["Value"][0])


def _block(document: dict[str, Any]) -> dict[str, Any]:
    return {tag: value for tag, value in document.items() if tag.startswith("0011")}


def test_every_level_of_metadata_has_the_block_qido_answers(served: Served) -> None:
    web = client(served)
    for name in served.samples:
        header = served.sample(name)
        study, series, uid = header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID
        qido = _qido_instance(served, uid)
        from_qido = {tag: qido[tag] for tag in NAMES if tag in qido}
        assert qido[CREATOR]["Value"] == [PRIVATE_CREATOR]
        instance = web.retrieve_instance_metadata(study, series, uid)
        (in_series,) = [d for d in web.retrieve_series_metadata(study, series) if _uid(d) == uid]
        (in_study,) = [d for d in web.retrieve_study_metadata(study) if _uid(d) == uid]
        for document in (instance, in_series, in_study):
            block = _block(document)
            assert block[CREATOR] == {"vr": "LO", "Value": [PRIVATE_CREATOR]}
            assert set(block) == {CREATOR, *NAMES}
            for tag in NAMES:
                assert block[tag]["vr"] == "LO"
                assert block[tag].get("Value") == from_qido.get(tag, {}).get("Value"), (name, NAMES[tag])
    levels = _block(web.retrieve_instance_metadata(study, series, uid))["00111001"]
    assert levels.get("Value"), "the samples' rules give every clip a spinal level"


def test_a_tag_change_is_in_the_next_metadata_though_the_file_is_the_same(served: Served) -> None:
    web = client(served)
    header = served.sample("l4_ot_inplane_jpeg")
    path = (header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID)
    before = web.retrieve_instance_metadata(*path)
    served.archive.index.tag(
        header.SOPInstanceUID, user="dr-test", levels=(SpinalLevel.L5, SpinalLevel.L3), side=Side.LEFT
    )
    after = web.retrieve_instance_metadata(*path)
    assert after["00111001"]["Value"] == ["L3", "L5"]  # anatomical order
    assert after["00111002"]["Value"] == ["left"]
    assert {k: v for k, v in after.items() if not k.startswith("0011")} == {
        k: v for k, v in before.items() if not k.startswith("0011")
    }
    assert _qido_instance(served, header.SOPInstanceUID)["00111001"]["Value"] == ["L3", "L5"]


def _stow(served: Served, ds: pydicom.Dataset) -> None:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    boundary = "procedure-test"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + buffer.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    answer = requests.post(
        served.url + "/studies",
        data=body,
        headers={
            "Authorization": f"Bearer {served.tokens['admin']}",
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


def test_a_file_with_its_own_group_0011_keeps_it_and_ours_comes_from_the_index(served: Served) -> None:
    ds = pydicom.dcmread(served.samples["l4_single_frame_rgb"])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    theirs = ds.private_block(0x0011, "ACME SCANNER 2", create=True)
    theirs.add_new(0x01, "LO", "probe 7")
    ours = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    ours.add_new(0x02, "LO", "stale side from the file")
    _stow(served, ds)
    document = client(served).retrieve_instance_metadata(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert document["00110010"]["Value"] == ["ACME SCANNER 2"]
    assert document["00111001"]["Value"] == ["probe 7"]
    assert document["00110011"]["Value"] == [PRIVATE_CREATOR]  # the block the file reserved for us
    qido = _qido_instance(served, ds.SOPInstanceUID)
    for name, element in PROCEDURE_ELEMENTS.items():
        assert document[f"001111{element:02X}"].get("Value") == qido.get(f"00111{element:03X}", {}).get(
            "Value"
        ), name
    assert document["00111102"].get("Value") != ["stale side from the file"]


def test_with_procedure_takes_the_first_free_block_and_leaves_the_input() -> None:
    document = {"00110010": {"vr": "LO", "Value": ["OTHER"]}, "00111001": {"vr": "LO", "Value": ["x"]}}
    copy = {tag: dict(value) for tag, value in document.items()}
    result = with_procedure(document, {"side": ["right"]})
    assert document == copy
    assert result["00110011"] == {"vr": "LO", "Value": [PRIVATE_CREATOR]}
    assert result["00111102"] == {"vr": "LO", "Value": ["right"]}
    assert result["00111101"] == {"vr": "LO"}  # no level: present, empty
    assert result["00111001"] == {"vr": "LO", "Value": ["x"]}
    assert list(result) == sorted(result)
