"""DICOM measurement reports (SR TID 1500) of one reviewer's audit of one clip.

:func:`build_measurement_report` turns a reviewer's :class:`ClipAnnotation`
and the :class:`ClipMetrics` computed from it into a Comprehensive SR
document (highdicom ``MeasurementReport``), one measurement group (TID 1410)
per metric that has a value:

=====================  ====================  =====  ==========================================
group                  concept               unit   image region (on the referenced frame)
=====================  ====================  =====  ==========================================
tip-to-target          SCT 410668003 Length  mm     POLYLINE tip -> target, injection start
tip-to-danger          SCT 410668003 Length  mm     POLYLINE tip -> nearest danger pixel
spread area            SCT 42798000 Area     mm2    closed POLYLINE outline of the spread
needle angle           SCT 1483009 Angle     deg    POLYLINE along the needle (entry -> tip)
=====================  ====================  =====  ==========================================

Regions are SCOORD in the pixel space of the referenced frame of the clip,
which needs no Frame of Reference. 2D SCOORD has no POLYGON graphic type: a
closed POLYLINE (first vertex repeated at the end) is the polygon. DICOM pixel
coordinates put the top-left *corner* of the top-left pixel at ``(0, 0)`` and
list ``(column, row)``; the archive's points are ``(row, col)`` with pixel
``k`` centred on ``k``, so ``x = col + 0.5`` and ``y = row + 0.5``
(:func:`scoord_from_points`). Frame numbers in the report are 1-based (frame
index + 1). See docs/measurement-reports.md for the codes and their choice.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID, generate_uid
from skimage import measure

from archive.analysis.geometry import nearest_mask_point
from archive.analysis.metrics import ClipMetrics
from archive.calibration import Calibration, Point
from archive.errors import CalibrationError, MeasurementReportError
from archive.review import ClipAnnotation

logger = logging.getLogger(__name__)

#: Coding scheme of the archive's own concepts (a private "99" scheme, PS3.16 8.2).
LOCAL_SCHEME = "99USARCHIVE"

#: Procedure reported: SCT 61593002 "Ultrasonic guidance procedure" (CIDs 6058/6060).
PROCEDURE_REPORTED = Code("61593002", "SCT", "Ultrasonic guidance procedure")
#: Concept of the two distances (TID 300 measurement name).
LENGTH = codes.SCT.Length
#: Concept of the spread area.
AREA = codes.SCT.Area
#: Concept of the needle angle to the skin line.
ANGLE = codes.SCT.Angle
MILLIMETRE = codes.UCUM.Millimeter
SQUARE_MILLIMETRE = codes.UCUM.SquareMillimeter
DEGREE = codes.UCUM.Degree
#: Finding type of the needle groups (tip-to-target, needle angle).
NEEDLE = codes.SCT.Needle
#: Finding type of the spread group.
INJECTATE_SPREAD = Code("SPREAD", LOCAL_SCHEME, "Injectate spread")
#: Qualitative evaluation: whether any danger structure was breached (tip or spread, any frame).
DANGER_BREACHED = Code("BREACH", LOCAL_SCHEME, "Danger structure breached")

#: Danger classes with a SNOMED CT concept; other classes get a local code.
DANGER_CODES: dict[str, Code] = {
    "spinal canal": Code("61853006", "SCT", "Vertebral canal"),
    "spinal cord": Code("2748008", "SCT", "Spinal cord"),
    "vessel": Code("59820001", "SCT", "Blood vessel"),
    "laminar gap": Code("LAMINARGAP", LOCAL_SCHEME, "laminar gap"),
    "nerve root": Code("NERVEROOT", LOCAL_SCHEME, "nerve root"),
    "foramen": Code("FORAMEN", LOCAL_SCHEME, "foramen"),
}

#: Tracking identifiers (free text, unique per group) of the four groups.
TIP_TO_TARGET = "tip-to-target distance at injection start"
TIP_TO_DANGER = "minimum tip-to-danger distance"
SPREAD_AREA = "maximum spread area"
NEEDLE_ANGLE = "needle angle to skin"

_DEVICE_UID = generate_uid(entropy_srcs=["usarchive measurement report device"])


@dataclass(frozen=True)
class ReportedMeasurement:
    """One measurement group of a report, before it becomes SR content.

    Parameters
    ----------
    tracking_id : str
        Tracking identifier text, unique in the report (e.g. :data:`TIP_TO_TARGET`).
    name : pydicom.sr.coding.Code
        Measurement concept (Length, Area or Angle).
    value : float
        Value in ``unit``.
    unit : pydicom.sr.coding.Code
        UCUM unit (mm, mm2 or deg).
    frame : int
        0-based frame of the clip the region is drawn on.
    graphic_type : str
        ``"POLYLINE"`` or ``"POINT"`` (SCOORD graphic types).
    points : tuple of (row, col) float
        Region vertices in the archive's pixel convention (pixel ``k`` centred
        on ``k``); a closed outline repeats its first vertex at the end.
    finding_type : pydicom.sr.coding.Code
        What was measured (needle, spread, or the danger structure).
    evaluations : tuple of (Code, Code)
        Qualitative evaluations as (name, value) pairs.
    derivation : pydicom.sr.coding.Code or None
        SCT Minimum / Maximum when the value is an extreme over frames.
    """

    tracking_id: str
    name: Code
    value: float
    unit: Code
    frame: int
    graphic_type: str
    points: tuple[Point, ...]
    finding_type: Code
    evaluations: tuple[tuple[Code, Code], ...] = ()
    derivation: Code | None = None


def scoord_from_points(points: Sequence[Point]) -> NDArray[np.float32]:
    """DICOM SCOORD graphic data of ``(row, col)`` pixel points.

    Parameters
    ----------
    points : sequence of (row, col) float
        Points with pixel ``k`` centred on ``k``.

    Returns
    -------
    ndarray of shape (N, 2), float32
        ``(column + 0.5, row + 0.5)``: DICOM puts the top-left corner of the
        top-left pixel at (0, 0).
    """
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (array[:, ::-1] + 0.5).astype(np.float32)


def points_from_scoord(graphic_data: NDArray[np.floating]) -> tuple[Point, ...]:
    """Inverse of :func:`scoord_from_points`.

    Parameters
    ----------
    graphic_data : ndarray of shape (N, 2), float
        SCOORD ``(column, row)`` pairs.

    Returns
    -------
    tuple of (row, col) float
    """
    array = np.asarray(graphic_data, dtype=np.float64).reshape(-1, 2) - 0.5
    return tuple((float(r), float(c)) for c, r in array)


def danger_code(danger_class: str) -> Code:
    """The coded concept of a danger-structure class.

    Parameters
    ----------
    danger_class : str
        Class name as stored in annotations (stripped, lower case).

    Returns
    -------
    pydicom.sr.coding.Code
        SNOMED CT where one fits (:data:`DANGER_CODES`), else a code of
        :data:`LOCAL_SCHEME` whose meaning is the class name.
    """
    known = DANGER_CODES.get(danger_class)
    if known is not None:
        return known
    digest = hashlib.sha256(danger_class.encode()).hexdigest()[:12].upper()
    return Code(f"D{digest}", LOCAL_SCHEME, danger_class[:64])


def reported_measurements(
    source: Dataset, annotation: ClipAnnotation, metrics: ClipMetrics
) -> tuple[ReportedMeasurement, ...]:
    """The measurement groups a report of these metrics holds.

    A group exists for each metric that has a value; metrics that are
    ``None`` (uncalibrated clip, event or mark missing) are left out.

    Parameters
    ----------
    source : pydicom.dataset.Dataset
        The clip's header (calibration for the nearest danger pixel).
    annotation : ClipAnnotation
        The reviewer's marks the metrics were computed from.
    metrics : ClipMetrics
        The metrics of ``annotation``.

    Returns
    -------
    tuple of ReportedMeasurement
        In the order tip-to-target, tip-to-danger, spread area, needle angle.

    Raises
    ------
    MeasurementReportError
        If a metric's marks are not in the annotation (metrics computed from
        another annotation).
    """
    groups = [
        _tip_to_target(annotation, metrics),
        _tip_to_danger(source, annotation, metrics),
        _spread_area(annotation, metrics),
        _needle_angle(annotation, metrics),
    ]
    return tuple(g for g in groups if g is not None)


def _segment(start: Point, end: Point) -> tuple[str, tuple[Point, ...]]:
    """A POLYLINE between two points, or a POINT when they coincide."""
    if start == end:
        return "POINT", (start,)
    return "POLYLINE", (start, end)


def _mismatch(metric: str, frame: int, missing: str) -> MeasurementReportError:
    return MeasurementReportError(
        f"{metric}: expected {missing} on frame {frame} of the annotation the metrics were "
        f"computed from, but there is none; compute the metrics from this annotation again"
    )


def _tip_to_target(annotation: ClipAnnotation, metrics: ClipMetrics) -> ReportedMeasurement | None:
    value, frame = metrics.tip_to_target_at_injection_start_mm, metrics.injection_start_frame
    if value is None or frame is None:
        return None
    tip, target = annotation.tip_at(frame), annotation.target_at(frame)
    if tip is None or target is None:
        raise _mismatch(TIP_TO_TARGET, frame, "a needle tip and a target")
    graphic_type, points = _segment(tip, target.point)
    return ReportedMeasurement(TIP_TO_TARGET, LENGTH, value, MILLIMETRE, frame, graphic_type, points, NEEDLE)


def _tip_to_danger(
    source: Dataset, annotation: ClipAnnotation, metrics: ClipMetrics
) -> ReportedMeasurement | None:
    value, frame = metrics.min_tip_to_danger_mm, metrics.min_tip_to_danger_frame
    danger_class = metrics.min_tip_to_danger_class
    if value is None or frame is None or danger_class is None:
        return None
    tip = annotation.tip_at(frame)
    mask = annotation.danger_at(frame).get(danger_class)
    if tip is None or mask is None:
        raise _mismatch(TIP_TO_DANGER, frame, f"a needle tip and a {danger_class!r} mask")
    try:
        nearest = nearest_mask_point(Calibration.from_dataset(source), tip, mask)
    except CalibrationError as exc:
        raise MeasurementReportError(
            f"{TIP_TO_DANGER}: expected the clip's calibration to place the nearest "
            f"{danger_class!r} pixel on frame {frame}, but: {exc}; pass the header of the clip "
            "the metrics were computed from"
        ) from exc
    graphic_type, points = _segment(tip, nearest)
    evaluations: tuple[tuple[Code, Code], ...] = ()
    if metrics.breach is not None:
        evaluations = ((DANGER_BREACHED, codes.SCT.Yes if metrics.breach else codes.SCT.No),)
    return ReportedMeasurement(
        TIP_TO_DANGER,
        LENGTH,
        value,
        MILLIMETRE,
        frame,
        graphic_type,
        points,
        danger_code(danger_class),
        evaluations,
        codes.SCT.Minimum,
    )


def spread_outline(mask: NDArray[np.bool_]) -> tuple[Point, ...]:
    """Closed outline of the largest connected part of a mask.

    The contour at level 0.5 (:func:`skimage.measure.find_contours`), which
    runs half-way between the centres of mask and background pixels.

    Parameters
    ----------
    mask : ndarray of shape (H, W), bool
        Must have a True pixel.

    Returns
    -------
    tuple of (row, col) float
        Vertices; the first and last are equal.

    Raises
    ------
    ValueError
        If the mask is empty.
    """
    array = np.asarray(mask, dtype=bool)
    if not array.any():
        raise ValueError(f"mask: expected a True pixel to outline, but all {array.size} are False")
    # Padding closes contours that touch the frame's edge.
    padded = np.pad(array, 1).astype(np.float64)
    contours = measure.find_contours(padded, 0.5)  # type: ignore[no-untyped-call]

    def enclosed_px(contour: NDArray[np.float64]) -> float:
        rows, cols = contour[:, 0], contour[:, 1]
        return abs(float(np.dot(rows, np.roll(cols, 1)) - np.dot(cols, np.roll(rows, 1)))) / 2.0

    largest = max(contours, key=enclosed_px) - 1.0
    return tuple((float(r), float(c)) for r, c in largest)


def _spread_area(annotation: ClipAnnotation, metrics: ClipMetrics) -> ReportedMeasurement | None:
    value, frame = metrics.max_spread_area_mm2, metrics.max_spread_frame
    if value is None or frame is None:
        return None
    mask = annotation.spread_at(frame)
    if mask is None or not mask.any():
        raise _mismatch(SPREAD_AREA, frame, "a non-empty spread mask")
    return ReportedMeasurement(
        SPREAD_AREA,
        AREA,
        value,
        SQUARE_MILLIMETRE,
        frame,
        "POLYLINE",
        spread_outline(mask),
        INJECTATE_SPREAD,
        derivation=codes.SCT.Maximum,
    )


def _needle_angle(annotation: ClipAnnotation, metrics: ClipMetrics) -> ReportedMeasurement | None:
    value, frame = metrics.needle_angle_deg, metrics.needle_angle_frame
    if value is None or frame is None:
        return None
    needle = annotation.needle_at(frame)
    if needle is None or len(needle.points) < 2:
        raise _mismatch(NEEDLE_ANGLE, frame, "an in-plane needle")
    return ReportedMeasurement(NEEDLE_ANGLE, ANGLE, value, DEGREE, frame, "POLYLINE", needle.points, NEEDLE)


def _check_inputs(source: Dataset, annotation: ClipAnnotation, metrics: ClipMetrics) -> None:
    sop = str(source.get("SOPInstanceUID", ""))
    if not sop:
        raise MeasurementReportError(
            "measurement report: expected the clip's header with a SOPInstanceUID, but it has none; "
            "read the clip with pydicom.dcmread(path, stop_before_pixels=True)"
        )
    for what, uid in (("annotation", annotation.sop_instance_uid), ("metrics", metrics.sop_instance_uid)):
        if uid != sop:
            raise MeasurementReportError(
                f"measurement report of clip {sop}: expected the {what} of that clip, but it is of "
                f"{uid}; pass the annotation, metrics and header of one clip"
            )
    if metrics.reviewer != annotation.reviewer:
        raise MeasurementReportError(
            f"measurement report of clip {sop}: expected metrics of {annotation.reviewer!r}'s "
            f"annotation, but they are of {metrics.reviewer!r}'s; compute them from this annotation"
        )
    n_frames = int(source.get("NumberOfFrames", 1) or 1)
    if n_frames != annotation.n_frames:
        raise MeasurementReportError(
            f"measurement report of clip {sop}: expected an annotation of the clip's {n_frames} "
            f"frames, but it has {annotation.n_frames}"
        )


def _group(
    source: Dataset, measurement: ReportedMeasurement
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues(measurement.graphic_type),
        graphic_data=scoord_from_points(measurement.points),
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=source.SOPInstanceUID,
            # Referenced Frame Number only for a multi-frame image (PS3.3 C.18.3.1): dciodvfy
            # flags it in a reference to a single-frame SOP class such as Ultrasound Image Storage.
            referenced_frame_numbers=[measurement.frame + 1] if "NumberOfFrames" in source else None,
        ),
    )
    value = hd.sr.Measurement(
        name=measurement.name,
        value=measurement.value,
        unit=measurement.unit,
        derivation=measurement.derivation,
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=measurement.tracking_id),
        referenced_region=region,
        finding_type=measurement.finding_type,
        measurements=[value],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=name, value=answer) for name, answer in measurement.evaluations
        ]
        or None,
    )


def _observation_context(reviewer: str, manufacturer: str) -> hd.sr.ObservationContext:
    person = hd.sr.ObserverContext(
        observer_type=codes.cid270.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=reviewer if "^" in reviewer else f"{reviewer}^", login_name=reviewer
        ),
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_DEVICE_UID, name="usarchive", manufacturer_name=manufacturer
        ),
    )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _local_scheme_item() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = LOCAL_SCHEME
    item.CodingSchemeName = "usarchive local concepts"
    item.CodingSchemeResponsibleOrganization = "usarchive"
    return item


def build_measurement_report(
    source: Dataset,
    annotation: ClipAnnotation,
    metrics: ClipMetrics,
    *,
    series_number: int = 900,
    instance_number: int = 1,
    manufacturer: str = "usarchive",
    institution: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    previous_versions: Sequence[Dataset] = (),
) -> hd.sr.ComprehensiveSR:
    """A DICOM SR measurement report (TID 1500) of one reviewer's audit of one clip.

    Observers are the reviewer (person, name and login = ``annotation.reviewer``)
    and usarchive (device); the procedure reported is :data:`PROCEDURE_REPORTED`.
    Patient and study come from ``source``, which is also listed as evidence.

    Parameters
    ----------
    source : pydicom.dataset.Dataset
        The clip's header (``dcmread(path, stop_before_pixels=True)``).
    annotation : ClipAnnotation
        The reviewer's marks of that clip.
    metrics : ClipMetrics
        :func:`~archive.analysis.metrics.clip_metrics` of ``annotation``.
    series_number, instance_number : int
        Series and Instance Number of the report.
    manufacturer : str
        Manufacturer of the report (and of the device observer).
    institution : str, optional
        Institution Name of the report.
    series_instance_uid, sop_instance_uid : str, optional
        UIDs of the report; new ones by default.
    previous_versions : sequence of pydicom.dataset.Dataset
        Earlier reports this one supersedes (a reviewer's earlier approved
        version); listed in the Predecessor Documents Sequence.

    Returns
    -------
    highdicom.sr.ComprehensiveSR
        A pydicom dataset; ``save_as`` writes it.

    Raises
    ------
    MeasurementReportError
        If the header, annotation and metrics are not of one clip and one
        reviewer, if the marks a metric refers to are missing, or if no metric
        has a value (e.g. an uncalibrated clip).
    """
    _check_inputs(source, annotation, metrics)
    measurements = reported_measurements(source, annotation, metrics)
    if not measurements:
        reasons = "; ".join(metrics.notes) or "no metric has a value"
        raise MeasurementReportError(
            f"measurement report of clip {source.SOPInstanceUID} by {annotation.reviewer!r}: expected "
            f"at least one of tip-to-target, tip-to-danger, spread area or needle angle, but none "
            f"has a value ({reasons}); mark the missing events and structures, or calibrate the clip"
        )
    evidence = _evidence(source)  # highdicom looks the referenced IOD up: not for retired classes
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(annotation.reviewer, manufacturer),
        procedure_reported=PROCEDURE_REPORTED,
        imaging_measurements=[_group(evidence, m) for m in measurements],
    )
    document = hd.sr.ComprehensiveSR(
        evidence=[evidence],
        content=report[0],
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        institution_name=institution,
        is_complete=True,
        series_description=f"usarchive measurements by {annotation.reviewer}"[:64],
        previous_versions=list(previous_versions) or None,
    )
    document.CodingSchemeIdentificationSequence = [_local_scheme_item()]
    if evidence is not source:
        _restore_sop_class(document, str(source.SOPInstanceUID), str(source.SOPClassUID))
    logger.debug(
        "measurement report %s of clip %s by %s: %s",
        document.SOPInstanceUID,
        source.SOPInstanceUID,
        annotation.reviewer,
        [m.tracking_id for m in measurements],
    )
    return document


#: Retired ultrasound storage classes highdicom has no IOD for, and the current class with the
#: same Patient, Study and Series modules (PS3.3 A.6, A.7).
_RETIRED_EQUIVALENT = {
    "1.2.840.10008.5.1.4.1.1.3": "1.2.840.10008.5.1.4.1.1.3.1",
    "1.2.840.10008.5.1.4.1.1.6": "1.2.840.10008.5.1.4.1.1.6.1",
}


def _evidence(source: Dataset) -> Dataset:
    """``source``, or for a retired ultrasound class a copy under its current class for highdicom."""
    current = _RETIRED_EQUIVALENT.get(str(source.get("SOPClassUID", "")))
    if current is None:
        return source
    evidence = copy.deepcopy(source)
    evidence.SOPClassUID = UID(current)
    return evidence


def _restore_sop_class(document: Dataset, instance_uid: str, sop_class_uid: str) -> None:
    """Every reference to ``instance_uid`` in ``document`` names its real (retired) SOP class again."""
    for elem in document.iterall():
        if elem.VR != "SQ":
            continue
        for item in elem.value:
            if (
                str(item.get("ReferencedSOPInstanceUID", "")) == instance_uid
                and "ReferencedSOPClassUID" in item
            ):
                item.ReferencedSOPClassUID = UID(sop_class_uid)
