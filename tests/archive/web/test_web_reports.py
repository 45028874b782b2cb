"""Approved annotations stored as SR (TID 1500) in their study and served by QIDO-RS and WADO-RS."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset

from archive.archive import Archive
from archive.ingest import Origin
from archive.model import ReviewStatus
from archive.phantom import GroundTruth
from archive.phantom.to_annotation import annotation_from_truth
from archive.settings import ArchiveSettings
from archive.web.reports import publish_measurement_reports, report_uids

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from ohif_served import SAMPLES, ViewerServer, viewer_server  # noqa: E402

CLIP = "l3_tt_inplane_jpeg"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"


def _approve(archive: Archive, reviewer: str) -> str:
    truth = GroundTruth.read(SAMPLES / f"{CLIP}.json")
    annotation = annotation_from_truth(truth, reviewer)
    archive.annotations.save(annotation, base_version=None)
    uid = annotation.sop_instance_uid
    archive.annotations.set_status(uid, reviewer, ReviewStatus.SUBMITTED, by=reviewer)
    archive.annotations.set_status(uid, reviewer, ReviewStatus.APPROVED, by="chief")
    return str(uid)


def _values(ds: Dataset) -> list[tuple[str, float]]:
    """Every numeric measurement (TID 300 NUM) anywhere in the SR's content tree."""
    found = []
    for item in ds.iterall():
        if item.keyword != "MeasuredValueSequence":
            continue
        for value in item.value:
            found.append((str(value.MeasurementUnitsCodeSequence[0].CodeValue), float(value.NumericValue)))
    return sorted(found)


def test_publishing_stores_one_report_per_approved_annotation_once(tmp_path: Path) -> None:
    with Archive.open(ArchiveSettings(tmp_path / "data", f"sqlite:///{tmp_path / 'i.sqlite'}")) as archive:
        path = SAMPLES / f"{CLIP}.dcm"
        assert archive.ingest(path, origin=Origin(kind="file", path=str(path))).path is not None
        clip = _approve(archive, "rev.a")
        (review,) = archive.annotations.list_reviews(status=ReviewStatus.APPROVED)
        first = publish_measurement_reports(archive)
        assert first.stored == [report_uids(clip, "rev.a", review.latest_version)[1]] and not first.skipped
        again = publish_measurement_reports(archive)
        assert again.stored == [] and again.already == first.stored


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    directory = tmp_path_factory.mktemp("reports")
    dist = directory / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html></html>")
    settings = ArchiveSettings(directory / "data", f"sqlite:///{directory / 'index.sqlite'}")
    with Archive.open(settings) as archive:
        path = SAMPLES / f"{CLIP}.dcm"
        archive.ingest(path, origin=Origin(kind="file", path=str(path)))
        _approve(archive, "rev.a")
    with viewer_server(directory, dist=dist) as running:  # --ohif publishes on start
        yield running


def test_the_report_is_in_the_clips_study_for_qido_and_wado(served: ViewerServer) -> None:
    header = dcmread(served.samples[CLIP], stop_before_pixels=True)
    client = DICOMwebClient(served.dicomweb, headers={"Authorization": f"Bearer {served.tokens['reader']}"})
    study = str(header.StudyInstanceUID)
    series = client.search_for_series(study_instance_uid=study)
    modalities = sorted(s["00080060"]["Value"][0] for s in series)
    assert modalities == ["SR", "US", "US", "US"]
    (review,) = served.archive.annotations.list_reviews(status=ReviewStatus.APPROVED)
    series_uid, instance_uid = report_uids(str(header.SOPInstanceUID), "rev.a", review.latest_version)
    (found,) = client.search_for_instances(study_instance_uid=study, series_instance_uid=series_uid)
    assert found["00080016"]["Value"][0] == SR_CLASS
    assert found["00080018"]["Value"][0] == instance_uid
    report = client.retrieve_instance(study, series_uid, instance_uid)
    evidence = report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == header.SOPInstanceUID
    # the same measurements as the export's builder gives for this annotation (mm, mm2, deg)
    values = _values(report)
    assert len(values) >= 2 and {unit for unit, _ in values} <= {"mm", "mm2", "deg"}
    assert all(value > 0 for _, value in values)
    truth = GroundTruth.read(SAMPLES / f"{CLIP}.json").metrics
    tip_to_target = truth.tip_to_target_at_injection_start_mm
    assert any(unit == "mm" and value == pytest.approx(tip_to_target, abs=0.5) for unit, value in values)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ViewerServer]:
    """A running server with the sample clips and no approval yet."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html></html>")
    with viewer_server(tmp_path, dist=dist) as running:
        yield running


def _report_series(client: DICOMwebClient, study: str) -> list[str]:
    return sorted(
        s["0020000E"]["Value"][0]
        for s in client.search_for_series(study_instance_uid=study)
        if s["00080060"]["Value"][0] == "SR"
    )


def test_an_approval_made_while_the_server_runs_is_listed_without_a_restart(live: ViewerServer) -> None:
    header = dcmread(live.samples[CLIP], stop_before_pixels=True)
    study, clip = str(header.StudyInstanceUID), str(header.SOPInstanceUID)
    client = DICOMwebClient(live.dicomweb, headers={"Authorization": f"Bearer {live.tokens['reader']}"})
    assert _report_series(client, study) == []
    # approved through a second connection to the archive, as `usarchive review approve` does
    with Archive.open(live.archive.settings) as other:
        _approve(other, "rev.b")
        (review,) = other.annotations.list_reviews(status=ReviewStatus.APPROVED)
    series, instance = report_uids(clip, "rev.b", review.latest_version)
    assert _report_series(client, study) == [series]
    (found,) = client.search_for_instances(study_instance_uid=study, series_instance_uid=series)
    assert found["00080018"]["Value"][0] == instance


def test_a_newly_approved_version_supersedes_the_earlier_report(live: ViewerServer) -> None:
    header = dcmread(live.samples[CLIP], stop_before_pixels=True)
    study, clip = str(header.StudyInstanceUID), str(header.SOPInstanceUID)
    client = DICOMwebClient(live.dicomweb, headers={"Authorization": f"Bearer {live.tokens['reader']}"})
    with Archive.open(live.archive.settings) as other:
        _approve(other, "rev.a")
        first = other.annotations.list_reviews(status=ReviewStatus.APPROVED)[0].latest_version
        (series,) = _report_series(client, study)
        other.annotations.set_status(clip, "rev.a", ReviewStatus.NEEDS_REWORK, by="chief", comment="recheck")
        other.annotations.set_status(clip, "rev.a", ReviewStatus.SUBMITTED, by="rev.a")
        other.annotations.set_status(clip, "rev.a", ReviewStatus.APPROVED, by="chief")
        second = other.annotations.list_reviews(status=ReviewStatus.APPROVED)[0].latest_version
    assert second > first
    assert _report_series(client, study) == [series]  # the same series: one per reviewer and clip
    found = client.search_for_instances(study_instance_uid=study, series_instance_uid=series)
    numbers = {int(f["00200013"]["Value"][0]): f["00080018"]["Value"][0] for f in found}
    old, new = report_uids(clip, "rev.a", first)[1], report_uids(clip, "rev.a", second)[1]
    assert numbers == {first: old, second: new}  # OHIF shows the highest Instance Number
    newer = client.retrieve_instance(study, series, new)
    (predecessor,) = newer.PredecessorDocumentsSequence
    named = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert named.ReferencedSOPInstanceUID == old
    assert "PredecessorDocumentsSequence" not in client.retrieve_instance(study, series, old)
