"""The Orthanc fixture is a real Orthanc: it stores what dcmsend sends, restarts, serves DICOMweb."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
from support.orthanc import OrthancServer, dataset_bytes


def _dcmsend(pacs: OrthancServer, *files: Path) -> None:
    subprocess.run(
        ["dcmsend", "-aet", "SCANNER", "-aec", pacs.aet, pacs.host, str(pacs.dicom_port), *map(str, files)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_orthanc_stores_what_dcmsend_sends_and_restarts(orthanc: OrthancServer, sample_dir: Path) -> None:
    sample = sorted(sample_dir.glob("*.dcm"))[0]
    client = orthanc.client
    assert client.system()["DicomAet"] == "ORTHANC"
    assert client.system()["DicomPort"] == orthanc.dicom_port
    assert client.instances() == []
    _dcmsend(orthanc, sample)
    uid = str(pydicom.dcmread(sample, stop_before_pixels=True).SOPInstanceUID)
    found = client.find_instance(uid)
    assert found is not None
    assert client.find_instance("1.2.3.4.5.6.7.8.9") is None
    assert client.sop_instance_uids() == [uid]
    assert dataset_bytes(client.instance_file(found)) == dataset_bytes(sample.read_bytes())

    orthanc.stop()
    assert not orthanc.running
    orthanc.start()
    assert orthanc.client.find_instance(uid) == found  # same storage, same ports

    studies = orthanc.client.get_json("/dicom-web/studies")  # the DICOMweb plugin is loaded
    assert len(studies) == 1


def test_dataset_bytes_drops_exactly_the_file_meta(sample_dir: Path, tmp_path: Path) -> None:
    sample = sorted(sample_dir.glob("*.dcm"))[0]
    ds = pydicom.dcmread(sample)
    ds.file_meta.ImplementationVersionName = "OTHER_NAME"
    other = tmp_path / "other.dcm"
    ds.save_as(other)
    assert other.read_bytes() != sample.read_bytes()
    assert dataset_bytes(other.read_bytes()) == dataset_bytes(sample.read_bytes())
    body = dataset_bytes(sample.read_bytes())
    assert int.from_bytes(body[:2], "little") > 0x0002  # the first element after group 0002
    assert sample.read_bytes().endswith(body)
