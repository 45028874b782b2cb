"""STOW-RS on a live ``usarchive web``: dicomweb-client round trip, parts without preamble, failures."""

from __future__ import annotations

import io

import pydicom
import requests
from pydicom.uid import generate_uid
from web_served import Served, client

from archive.index import schema
from archive.web.media import new_boundary


def _new_instance(served: Served, name: str = "l4_tt_inplane_mono") -> pydicom.Dataset:
    ds = pydicom.dcmread(served.samples[name])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _part10(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _post(
    served: Served, parts: list[bytes], *, role: str = "admin", path: str = "/studies"
) -> requests.Response:
    boundary = new_boundary()
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
            for part in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    return requests.post(
        served.url + path,
        data=body,
        headers={
            "Authorization": f"Bearer {served.tokens[role]}",
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )


def _indexed(served: Served, uid: str) -> bool:
    with served.archive.engine.connect() as connection:
        row = connection.execute(
            schema.instance.select().where(schema.instance.c.sop_instance_uid == uid)
        ).first()
    return row is not None


def test_round_trip_through_dicomweb_client(served: Served) -> None:
    ds = _new_instance(served)
    web = client(served, "admin")
    answer = web.store_instances([ds])
    (stored,) = answer.ReferencedSOPSequence
    assert stored.ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert "FailedSOPSequence" not in answer
    assert _indexed(served, ds.SOPInstanceUID)  # durable and indexed before the 200
    back = web.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert back.PixelData == ds.PixelData
    assert stored.RetrieveURL.startswith(served.url)


def test_parts_without_preamble_and_without_file_meta(served: Served) -> None:
    with_meta = _new_instance(served, "l3_tt_inplane_jpeg")
    bare = _new_instance(served)
    no_preamble = _part10(with_meta)[128 + 4 :]  # starts at the file meta group
    assert no_preamble[:2] == b"\x02\x00"
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, bare, enforce_file_format=False, implicit_vr=False, little_endian=True)
    bare_bytes = buffer.getvalue()
    bare_bytes = bare_bytes[bare_bytes.index(b"\x08\x00") :] if bare_bytes[128:132] == b"DICM" else bare_bytes
    answer = _post(served, [no_preamble, bare_bytes])
    assert answer.status_code == 200, answer.text
    uids = {item["00081155"]["Value"][0] for item in answer.json()["00081199"]["Value"]}
    assert uids == {with_meta.SOPInstanceUID, bare.SOPInstanceUID}
    assert _indexed(served, with_meta.SOPInstanceUID) and _indexed(served, bare.SOPInstanceUID)


def test_failures_are_reported_per_instance(served: Served) -> None:
    good = _new_instance(served)
    broken = b"this is not DICOM at all" * 10
    answer = _post(served, [_part10(good), broken])
    assert answer.status_code == 202
    document = answer.json()
    (failed,) = document["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert failed["00000902"]["Value"][0]
    assert [i["00081155"]["Value"][0] for i in document["00081199"]["Value"]] == [good.SOPInstanceUID]
    only_bad = _post(served, [broken])
    assert only_bad.status_code == 409


def test_duplicates_follow_the_archive_policy(served: Served) -> None:
    ds = _new_instance(served)
    first = _post(served, [_part10(ds)])
    same = _post(served, [_part10(ds)])
    assert first.status_code == same.status_code == 200  # an identical copy is a success, as in C-STORE
    ds.PatientComments = "other bytes, same UID"
    conflicting = _post(served, [_part10(ds)])
    assert conflicting.status_code == 409
    (failed,) = conflicting.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0x0111]


def test_study_in_path_must_match(served: Served) -> None:
    ds = _new_instance(served)
    answer = _post(served, [_part10(ds)], path=f"/studies/{generate_uid()}")
    assert answer.status_code == 409
    (failed,) = answer.json()["00081198"]["Value"]
    assert "expected" in failed["00000902"]["Value"][0]
    assert not _indexed(served, ds.SOPInstanceUID)


def test_stow_needs_admin_and_a_multipart_body(served: Served) -> None:
    ds = _new_instance(served)
    refused = _post(served, [_part10(ds)], role="reviewer")
    assert refused.status_code == 403 and "admin" in refused.text
    assert not _indexed(served, ds.SOPInstanceUID)
    wrong_type = requests.post(
        served.url + "/studies",
        data=_part10(ds),
        headers={"Authorization": f"Bearer {served.tokens['admin']}", "Content-Type": "application/dicom"},
        timeout=30,
    )
    assert wrong_type.status_code == 415 and "multipart/related" in wrong_type.text
