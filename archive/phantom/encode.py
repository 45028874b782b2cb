"""DICOM encoding of a synthetic clip, coded the way a portable scanner codes it.

Ultrasound Multi-frame Image Storage (or Ultrasound Image Storage for one
frame), Sequence of Ultrasound Regions in cm, Frame Time with Frame Increment
Pointer, and the pixel data as Explicit VR Little Endian (MONOCHROME2 or RGB)
or JPEG Baseline (YBR_FULL_422, each frame a real JPEG made by Pillow,
encapsulated). UIDs are derived from the spec and seed, so output is
reproducible.
"""

from __future__ import annotations

import io
import uuid

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from archive.phantom.geometry import Layout
from archive.phantom.spec import ClipSpec, Encoding
from archive.worklist.dataset import copy_into

#: Implementation Class UID of the phantom writer (fixed, so files are reproducible).
#: Namespace of the name-based (version 5) UUIDs behind the phantom's ``2.25`` UIDs.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:usarchive:phantom")


def derived_uid(*parts: str) -> UID:
    """A ``2.25.<uuid>`` UID determined by ``parts`` (UUID version 5, PS3.5 B.2)."""
    return UID(f"2.25.{uuid.uuid5(_UID_NAMESPACE, '|'.join(parts)).int}")


IMPLEMENTATION_UID = derived_uid("implementation")
IMPLEMENTATION_VERSION = "USARCH_PHANTOM1"
MANUFACTURER = "SonoSite"
MODEL = "Edge II"
#: JPEG quality used for JPEG Baseline clips.
JPEG_QUALITY = 90


def clip_uids(spec: ClipSpec, seed: int) -> tuple[UID, UID, UID]:
    """Study, Series and SOP Instance UIDs of a clip (deterministic ``2.25`` UIDs).

    Clips with the same patient, accession and ``study_key`` share the study;
    the series adds the series number; the instance adds instance number and seed.
    A clip for a worklist entry belongs to the entry's study (its series and
    instance UIDs derive from it: a scanner makes new series in that study).
    """
    who = spec.identity
    study_src = ["usarchive-phantom", who.patient_id, who.accession, spec.study_key]
    if spec.worklist is not None:
        study_src.append(spec.worklist.study_instance_uid)
    study = derived_uid(*study_src, "study")
    series = derived_uid(*study_src, str(spec.series_number), "series")
    instance = derived_uid(
        *study_src, str(spec.series_number), str(spec.instance_number), str(seed), "instance"
    )
    return study, series, instance


def build_dataset(
    spec: ClipSpec,
    seed: int,
    layout: Layout,
    grey: npt.NDArray[np.uint8],
    overlay: npt.NDArray[np.uint8],
) -> Dataset:
    """Assemble the DICOM instance.

    Parameters
    ----------
    spec : ClipSpec
        Identity, descriptions, timing and encoding.
    seed : int
        Enters the SOP Instance UID.
    layout : Layout
        Region calibration.
    grey : ndarray of shape (T, rows, cols), uint8
        B-mode frames (region content; black elsewhere).
    overlay : ndarray of shape (rows, cols, 3), uint8
        Burned-in banner and scale (RGB; zero where nothing is drawn).

    Returns
    -------
    pydicom.dataset.Dataset
        With ``file_meta`` set; ready for ``save_as(..., enforce_file_format=True)``.
    """
    study_uid, series_uid, instance_uid = clip_uids(spec, seed)
    sop_class = UltrasoundImageStorage if spec.single_frame else UltrasoundMultiFrameImageStorage
    syntax = JPEGBaseline8Bit if spec.encoding is Encoding.JPEG_BASELINE else ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION

    ds = Dataset()
    ds.file_meta = meta
    _identity(ds, spec, study_uid, series_uid, instance_uid, sop_class)
    ds.SequenceOfUltrasoundRegions = Sequence([_region_item(layout)])
    _pixels(ds, spec, grey, overlay)
    return ds


def _identity(ds: Dataset, spec: ClipSpec, study: UID, series: UID, instance: UID, sop_class: UID) -> None:
    who = spec.identity
    text = spec.descriptions
    date = spec.study_date.strftime("%Y%m%d")
    time = spec.content_time.strftime("%H%M%S")
    if spec.content_time.microsecond:
        time += f".{spec.content_time.microsecond:06d}"
    ds.SpecificCharacterSet = text.character_set
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance
    ds.StudyDate = date
    ds.SeriesDate = date
    ds.ContentDate = date
    ds.StudyTime = time
    ds.SeriesTime = time
    ds.ContentTime = time
    ds.AccessionNumber = who.accession
    ds.Modality = "US"
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = who.institution
    ds.ReferringPhysicianName = ""
    ds.StationName = "EDGE2-PAIN01"
    ds.StudyDescription = text.study
    ds.SeriesDescription = text.series
    ds.PerformedProcedureStepDescription = text.performed_step
    ds.OperatorsName = who.operator
    ds.ManufacturerModelName = MODEL
    ds.PatientName = who.patient_name
    ds.PatientID = who.patient_id
    ds.PatientBirthDate = who.birth_date.strftime("%Y%m%d")
    ds.PatientSex = who.sex
    ds.BodyPartExamined = text.body_part
    ds.DeviceSerialNumber = "03J1K7"
    ds.SoftwareVersions = "2.1.4"
    ds.ProtocolName = text.protocol
    ds.TransducerData = ["C60xp", "5-2MHz", ""]
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = who.accession[-8:]
    ds.SeriesNumber = spec.series_number
    ds.InstanceNumber = spec.instance_number
    ds.PatientOrientation = ""
    ds.ImageLaterality = spec.side.laterality
    ds.BurnedInAnnotation = "YES"
    if spec.worklist is not None:
        copy_into(ds, spec.worklist)
        if not spec.worklist.procedure.patient_name.isascii():
            ds.SpecificCharacterSet = "ISO_IR 192"
    if not spec.single_frame:
        ds.FrameTime = f"{spec.frame_time_ms:g}"
        ds.CineRate = round(1000.0 / spec.frame_time_ms)
        ds.EffectiveDuration = f"{spec.frames * spec.frame_time_ms / 1000.0:.3f}"
        ds.NumberOfFrames = spec.frames
        ds.FrameIncrementPointer = Tag("FrameTime")


def _region_item(layout: Layout) -> Dataset:
    item = Dataset()
    for keyword, value in layout.calibration_record().items():
        setattr(item, keyword, value)
    return item


def compose_rgb(grey: npt.NDArray[np.uint8], overlay: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Grey frames with the colour overlay burned in, shape (T, rows, cols, 3), uint8."""
    rgb = np.repeat(grey[..., np.newaxis], 3, axis=-1)
    drawn = overlay.any(axis=-1)
    rgb[:, drawn] = overlay[drawn]
    return rgb


def compose_grey(grey: npt.NDArray[np.uint8], overlay: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Grey frames with the overlay burned in as its brightest channel, shape (T, rows, cols)."""
    out = grey.copy()
    luminance = overlay.max(axis=-1)
    drawn = luminance > 0
    out[:, drawn] = luminance[drawn]
    return out


def _pixels(ds: Dataset, spec: ClipSpec, grey: npt.NDArray[np.uint8], overlay: npt.NDArray[np.uint8]) -> None:
    frames, rows, cols = grey.shape
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if spec.encoding is Encoding.EXPLICIT_MONO:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.LossyImageCompression = "00"
        ds.PixelData = compose_grey(grey, overlay).tobytes()
        ds["PixelData"].VR = "OB"
        return
    rgb = compose_rgb(grey, overlay)
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    if spec.encoding is Encoding.EXPLICIT_RGB:
        ds.PhotometricInterpretation = "RGB"
        ds.LossyImageCompression = "00"
        ds.PixelData = rgb.tobytes()
        ds["PixelData"].VR = "OB"
        return
    encoded = [_jpeg(frame) for frame in rgb]
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ratio = (frames * rows * cols * 3) / sum(len(e) for e in encoded)
    ds.LossyImageCompressionRatio = f"{ratio:.2f}"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate(encoded, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def _jpeg(frame: npt.NDArray[np.uint8]) -> bytes:
    """One RGB frame as a baseline JPEG with 4:2:2 chroma subsampling (YCbCr)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=1)
    return buffer.getvalue()
