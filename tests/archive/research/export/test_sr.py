"""DICOM measurement reports of phantom clips: dciodvfy, and a round trip back to the numbers.

Each clip is a phantom written as DICOM with its ground truth; a perfect
reviewer's annotation is built from the truth, its metrics are computed from
the clip's header, and the report is checked against both: values, units and
frames against the metrics, region coordinates against the annotation's marks.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from skimage import measure

from archive.analysis.geometry import needle_angle_deg
from archive.analysis.metrics import ClipMetrics, clip_metrics
from archive.calibration import Calibration
from archive.errors import MeasurementReportError
from archive.model import SpinalLevel, Technique
from archive.phantom import ClipSpec, GroundTruth, write_clip
from archive.phantom.to_annotation import annotation_from_truth
from archive.research.export.sr import (
    DANGER_BREACHED,
    NEEDLE_ANGLE,
    PROCEDURE_REPORTED,
    SPREAD_AREA,
    TIP_TO_DANGER,
    TIP_TO_TARGET,
    build_measurement_report,
    danger_code,
    points_from_scoord,
    scoord_from_points,
    spread_outline,
)
from archive.review import ClipAnnotation
from archive.timing import frame_times

SMALL = ClipSpec(rows=220, cols=300, frames=16, frame_time_ms=50.0)
SPECS = {
    "lumbar_in_plane": replace(SMALL, level=SpinalLevel.L4, needle_angle_deg=35.0),
    "cervical_danger": replace(
        SMALL,
        level=SpinalLevel.C4,
        danger=True,
        depth_mm=45.0,
        technique=Technique.UNKNOWN,
        tip_to_target_mm=1.0,
    ),
}
REVIEWER = "reviewer.a"


@dataclass(frozen=True)
class Reviewed:
    header: Dataset
    calibration: Calibration
    annotation: ClipAnnotation
    metrics: ClipMetrics


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reviewed]:
    out: Path = tmp_path_factory.mktemp("sr_phantom")
    result = {}
    for seed, (name, spec) in enumerate(SPECS.items(), start=301):
        dcm_path, json_path = write_clip(spec, out, seed, stem=name)
        header = dcmread(dcm_path, stop_before_pixels=True)
        calibration = Calibration.from_dataset(header)
        annotation = annotation_from_truth(GroundTruth.read(json_path), REVIEWER)
        metrics = clip_metrics(annotation, calibration, frame_times(header))
        result[name] = Reviewed(header, calibration, annotation, metrics)
    return result


def round_trip(report: Dataset) -> hd.sr.ComprehensiveSR:
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return hd.sr.ComprehensiveSR.from_dataset(dcmread(buffer))


Group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
Points = tuple[tuple[float, float], ...]


def content_of(sr: hd.sr.ComprehensiveSR) -> hd.sr.MeasurementReport:
    content = sr.content
    assert isinstance(content, hd.sr.MeasurementReport)
    return content


def groups_by_id(sr: hd.sr.ComprehensiveSR) -> dict[str, Group]:
    groups = content_of(sr).get_planar_roi_measurement_groups()
    by_id = {str(g.tracking_identifier): g for g in groups}
    assert len(by_id) == len(groups), "tracking identifiers must be unique"
    assert len({str(g.tracking_uid) for g in groups}) == len(groups)
    return by_id


def region_of(
    group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations,
) -> tuple[str, tuple[tuple[float, float], ...], int]:
    roi = group.roi
    assert isinstance(roi, hd.sr.ImageRegion)
    frame_number = int(roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber)
    return roi.graphic_type.value, points_from_scoord(roi.value), frame_number


def the_measurement(group: Group) -> hd.sr.Measurement:
    measurements = group.get_measurements()
    assert len(measurements) == 1
    measurement: hd.sr.Measurement = measurements[0]
    return measurement


def assert_points(actual: Points, expected: Points) -> None:
    np.testing.assert_allclose(np.array(actual), np.array(expected), atol=1e-3)


def run_dciodvfy(path: Path) -> str:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


@pytest.mark.parametrize("name", list(SPECS))
def test_report_passes_dciodvfy(reviewed: dict[str, Reviewed], name: str, tmp_path: Path) -> None:
    r = reviewed[name]
    path = tmp_path / "report.dcm"
    build_measurement_report(r.header, r.annotation, r.metrics).save_as(path, enforce_file_format=True)
    output = run_dciodvfy(path)
    assert "ComprehensiveSR" in output, output  # dciodvfy recognised the IOD it checked
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert errors == []


def test_a_report_superseding_an_earlier_one_names_it_and_passes_dciodvfy(
    reviewed: dict[str, Reviewed], tmp_path: Path
) -> None:
    r = next(iter(reviewed.values()))
    earlier = build_measurement_report(r.header, r.annotation, r.metrics, instance_number=1)
    later = build_measurement_report(
        r.header,
        r.annotation,
        r.metrics,
        series_instance_uid=earlier.SeriesInstanceUID,
        instance_number=2,
        previous_versions=[earlier],
    )
    (predecessor,) = later.PredecessorDocumentsSequence
    assert predecessor.StudyInstanceUID == r.header.StudyInstanceUID
    named = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert named.ReferencedSOPInstanceUID == earlier.SOPInstanceUID
    assert "PredecessorDocumentsSequence" not in earlier
    path = tmp_path / "later.dcm"
    later.save_as(path, enforce_file_format=True)
    output = run_dciodvfy(path)
    assert "ComprehensiveSR" in output, output
    assert [line for line in output.splitlines() if line.startswith("Error")] == []


@pytest.mark.parametrize("name", list(SPECS))
def test_round_trip_tip_to_target(reviewed: dict[str, Reviewed], name: str) -> None:
    r = reviewed[name]
    group = groups_by_id(round_trip(build_measurement_report(r.header, r.annotation, r.metrics)))[
        TIP_TO_TARGET
    ]
    measurement = the_measurement(group)
    assert measurement.name == codes.SCT.Length
    assert measurement.unit == codes.UCUM.Millimeter
    assert measurement.value == pytest.approx(r.metrics.tip_to_target_at_injection_start_mm, rel=1e-9)
    start = r.metrics.injection_start_frame
    assert start is not None
    tip, target = r.annotation.tip_at(start), r.annotation.target_at(start)
    assert tip is not None and target is not None
    graphic_type, points, frame_number = region_of(group)
    assert (graphic_type, frame_number) == ("POLYLINE", start + 1)
    assert_points(points, (tip, target.point))
    assert r.calibration.distance_mm(*points) == pytest.approx(measurement.value, abs=1e-3)


@pytest.mark.parametrize("name", list(SPECS))
def test_round_trip_needle_angle(reviewed: dict[str, Reviewed], name: str) -> None:
    r = reviewed[name]
    group = groups_by_id(round_trip(build_measurement_report(r.header, r.annotation, r.metrics)))[
        NEEDLE_ANGLE
    ]
    measurement = the_measurement(group)
    assert measurement.name == codes.SCT.Angle
    assert measurement.unit == codes.UCUM.Degree
    assert measurement.value == pytest.approx(r.metrics.needle_angle_deg, rel=1e-9)
    frame = r.metrics.needle_angle_frame
    assert frame is not None
    needle = r.annotation.needle_at(frame)
    assert needle is not None
    graphic_type, points, frame_number = region_of(group)
    assert (graphic_type, frame_number) == ("POLYLINE", frame + 1)
    assert_points(points, needle.points)
    angle = needle_angle_deg(r.calibration, points[0], points[-1])
    assert angle == pytest.approx(measurement.value, abs=0.01)


@pytest.mark.parametrize("name", list(SPECS))
def test_round_trip_spread_area_outline(reviewed: dict[str, Reviewed], name: str) -> None:
    r = reviewed[name]
    report = build_measurement_report(r.header, r.annotation, r.metrics)
    group = groups_by_id(round_trip(report))[SPREAD_AREA]
    measurement = the_measurement(group)
    assert measurement.name == codes.SCT.Area
    assert measurement.unit == codes.UCUM.SquareMillimeter
    assert measurement.value == pytest.approx(r.metrics.max_spread_area_mm2, rel=1e-9)
    frame = r.metrics.max_spread_frame
    assert frame is not None
    graphic_type, points, frame_number = region_of(group)
    assert (graphic_type, frame_number) == ("POLYLINE", frame + 1)
    assert points[0] == points[-1]  # closed: a polygon in 2D SCOORD
    mask = r.annotation.spread_at(frame)
    assert mask is not None
    assert np.array_equal(rasterise(points, mask.shape), mask)


def rasterise(polygon: Points, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """Pixels whose centre lies inside the polygon."""
    rows, cols = np.indices(shape[:2])
    centres = np.column_stack([rows.ravel(), cols.ravel()]).astype(float)
    inside = measure.points_in_poly(centres, np.array(polygon))  # type: ignore[no-untyped-call]
    return np.asarray(inside, dtype=bool).reshape(shape[:2])


def evaluations_of(group: Group) -> list[tuple[str, str, str]]:
    """(name code, value scheme, value code) of each qualitative evaluation."""
    evaluations = group.get_qualitative_evaluations()
    # highdicom types QualitativeEvaluation.value as a number: read the code item itself
    answers = [e[0].ConceptCodeSequence[0] for e in evaluations]
    return [
        (e.name.value, a.CodingSchemeDesignator, a.CodeValue)
        for e, a in zip(evaluations, answers, strict=True)
    ]


def test_round_trip_tip_to_danger_names_class_and_breach(reviewed: dict[str, Reviewed]) -> None:
    r = reviewed["cervical_danger"]
    sr = round_trip(build_measurement_report(r.header, r.annotation, r.metrics))
    group = groups_by_id(sr)[TIP_TO_DANGER]
    measurement = the_measurement(group)
    assert measurement.name == codes.SCT.Length
    assert measurement.value == pytest.approx(r.metrics.min_tip_to_danger_mm, rel=1e-9)
    assert measurement.derivation == codes.SCT.Minimum
    frame, danger_class = r.metrics.min_tip_to_danger_frame, r.metrics.min_tip_to_danger_class
    assert frame is not None and danger_class is not None
    assert group.finding_type == danger_code(danger_class)
    assert group.finding_type.meaning == danger_class
    graphic_type, points, frame_number = region_of(group)
    assert (graphic_type, frame_number) == ("POLYLINE", frame + 1)
    tip = r.annotation.tip_at(frame)
    assert tip is not None
    assert_points(points[:1], (tip,))
    mask = r.annotation.danger_at(frame)[danger_class]
    assert mask[round(points[1][0]), round(points[1][1])]
    assert r.calibration.distance_mm(*points) == pytest.approx(measurement.value, abs=1e-3)
    assert evaluations_of(group) == [(DANGER_BREACHED.value, "SCT", codes.SCT.No.value)]
    assert r.metrics.breach is False


def test_lumbar_clip_without_danger_has_three_groups(reviewed: dict[str, Reviewed]) -> None:
    r = reviewed["lumbar_in_plane"]
    sr = round_trip(build_measurement_report(r.header, r.annotation, r.metrics))
    assert set(groups_by_id(sr)) == {TIP_TO_TARGET, SPREAD_AREA, NEEDLE_ANGLE}


def test_tip_inside_a_vessel_is_a_point_region_and_a_breach(reviewed: dict[str, Reviewed]) -> None:
    r = reviewed["lumbar_in_plane"]
    start = r.metrics.injection_start_frame
    assert start is not None
    tip = r.annotation.tip_at(start)
    assert tip is not None
    rows, cols = np.indices(r.annotation.frame_shape)
    vessel = (rows - round(tip[0])) ** 2 + (cols - round(tip[1])) ** 2 <= 16
    annotation = dataclasses.replace(r.annotation, danger={start: {"vessel": vessel}})
    metrics = clip_metrics(annotation, r.calibration, frame_times(r.header))
    sr = round_trip(build_measurement_report(r.header, annotation, metrics))
    group = groups_by_id(sr)[TIP_TO_DANGER]
    assert the_measurement(group).value == 0.0
    graphic_type, points, frame_number = region_of(group)
    assert (graphic_type, frame_number) == ("POINT", start + 1)
    assert_points(points, (tip,))
    assert group.finding_type == codes.SCT.BloodVessel
    assert evaluations_of(group) == [(DANGER_BREACHED.value, "SCT", codes.SCT.Yes.value)]


def test_header_observers_procedure_and_evidence(reviewed: dict[str, Reviewed]) -> None:
    r = reviewed["cervical_danger"]
    report = build_measurement_report(
        r.header,
        r.annotation,
        r.metrics,
        series_number=77,
        instance_number=3,
        institution="Spine Clinic",
        series_instance_uid="1.2.3.4",
        sop_instance_uid="1.2.3.4.5",
    )
    sr = round_trip(report)
    assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == ("1.2.3.4", "1.2.3.4.5")
    assert (sr.SeriesNumber, sr.InstanceNumber, sr.InstitutionName) == (77, 3, "Spine Clinic")
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == r.header.StudyInstanceUID
    assert sr.PatientID == r.header.PatientID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == r.header.SOPInstanceUID
    person, device = content_of(sr).get_observer_contexts()
    assert person.observer_type == codes.cid270.Person
    identity = person.observer_identifying_attributes
    assert isinstance(identity, hd.sr.PersonObserverIdentifyingAttributes)
    assert identity.login_name == REVIEWER
    assert str(identity.name).rstrip("^") == REVIEWER
    assert device.observer_type == codes.cid270.Device
    assert device.observer_identifying_attributes.name == "usarchive"
    procedures = [
        item.ConceptCodeSequence[0] for item in sr.ContentSequence if item.get("ConceptCodeSequence")
    ]
    assert any(c.CodeValue == PROCEDURE_REPORTED.value for c in procedures)


def test_uncalibrated_clip_cannot_be_reported(reviewed: dict[str, Reviewed]) -> None:
    r = reviewed["cervical_danger"]
    header = Dataset()
    header.update(r.header)
    del header.SequenceOfUltrasoundRegions
    metrics = clip_metrics(r.annotation, None, frame_times(header))
    assert metrics.tip_to_target_at_injection_start_mm is None
    with pytest.raises(MeasurementReportError, match=r"none has a value.*uncalibrated"):
        build_measurement_report(header, r.annotation, metrics)


def test_groups_without_a_value_are_left_out(reviewed: dict[str, Reviewed]) -> None:
    r = reviewed["cervical_danger"]
    annotation = dataclasses.replace(r.annotation, spread={}, danger={})
    metrics = clip_metrics(annotation, r.calibration, frame_times(r.header))
    assert metrics.max_spread_area_mm2 is None and metrics.min_tip_to_danger_mm is None
    sr = round_trip(build_measurement_report(r.header, annotation, metrics))
    assert set(groups_by_id(sr)) == {TIP_TO_TARGET, NEEDLE_ANGLE}


def test_annotation_of_another_clip_is_refused(reviewed: dict[str, Reviewed]) -> None:
    lumbar, cervical = reviewed["lumbar_in_plane"], reviewed["cervical_danger"]
    with pytest.raises(MeasurementReportError, match="expected the annotation of that clip"):
        build_measurement_report(lumbar.header, cervical.annotation, cervical.metrics)
    other_reviewer = replace(cervical.metrics, reviewer="someone.else")
    with pytest.raises(MeasurementReportError, match=r"someone\.else"):
        build_measurement_report(cervical.header, cervical.annotation, other_reviewer)


def test_metrics_of_other_marks_are_refused(reviewed: dict[str, Reviewed]) -> None:
    r = reviewed["cervical_danger"]
    start = r.metrics.injection_start_frame
    assert start is not None
    without_target = dataclasses.replace(r.annotation, target={})
    with pytest.raises(MeasurementReportError, match=f"target on frame {start}"):
        build_measurement_report(r.header, without_target, r.metrics)


def test_scoord_puts_pixel_centres_at_half_pixels() -> None:
    data = scoord_from_points([(0.0, 0.0), (2.0, 5.0), (10.25, 3.5)])
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, [[0.5, 0.5], [5.5, 2.5], [4.0, 10.75]])
    assert points_from_scoord(data) == ((0.0, 0.0), (2.0, 5.0), (10.25, 3.5))


def test_spread_outline_is_the_largest_part_and_closed() -> None:
    mask = np.zeros((12, 14), dtype=bool)
    mask[1:4, 1:3] = True  # small part
    mask[5:11, 6:13] = True  # large part, touching the right edge
    mask[11, 13] = False
    mask[10, 13] = True
    outline = spread_outline(mask)
    assert outline[0] == outline[-1]
    large = mask.copy()
    large[:5] = False
    assert np.array_equal(rasterise(outline, mask.shape), large)
    with pytest.raises(ValueError, match="True pixel"):
        spread_outline(np.zeros((3, 3), dtype=bool))


def test_danger_codes_are_snomed_or_local() -> None:
    assert danger_code("spinal canal").scheme_designator == "SCT"
    unusual = danger_code("carotid sheath")
    assert (unusual.scheme_designator, unusual.meaning) == ("99USARCHIVE", "carotid sheath")
    assert len(unusual.value) <= 16
    assert danger_code("carotid sheath") == unusual != danger_code("jugular vein")


def test_annotation_with_another_frame_count_is_refused(reviewed: dict[str, Reviewed]) -> None:
    r = reviewed["lumbar_in_plane"]
    header = Dataset()
    header.update(r.header)
    header.NumberOfFrames = r.annotation.n_frames + 1
    with pytest.raises(MeasurementReportError, match=f"{r.annotation.n_frames + 1} frames"):
        build_measurement_report(header, r.annotation, r.metrics)
