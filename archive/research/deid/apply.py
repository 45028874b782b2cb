"""De-identify one DICOM instance: attributes (PS3.15 Annex E), UIDs, dates and pixels.

:func:`deidentify_dataset` returns a new dataset; the original is untouched.
Steps, in order:

1. Pixels (Clean Pixel Data, DCM 113101): every pixel outside the 2D
   ultrasound regions is zeroed on every frame and the frames are stored
   uncompressed. A clip without 2D regions is refused unless
   ``allow_uncalibrated`` is set; it then keeps its pixels and is reported as
   not pixel-cleaned.
2. Attributes, recursively into sequences: private attributes, curves (50xx)
   and overlays (60xx) are removed; every attribute listed in Table E.1-1 gets
   its Basic Profile action (see :mod:`archive.research.deid.profile`); dates are
   shifted per patient (DCM 113107) when retained. Attributes the table does
   not list are kept, with four safety rules: instance-like UIDs are
   replaced; dates and date-times are shifted (removed, with times, when
   dates are not retained); person names are emptied; free text (LT, ST, UT)
   and values of unknown VR (UN) are removed.
3. Identity: Patient's Name and Patient ID become the patient's keyed
   pseudonym (a Z action with a dummy value, which PS3.15 allows), so the
   research set keeps one stable pseudonymous key per patient; Study ID
   becomes the study's keyed pseudonym (``S-...``) in the same way.
4. Record: Patient Identity Removed = YES, De-identification Method and its
   Code Sequence (CID 7050), Longitudinal Temporal Information Modified,
   Burned In Annotation = NO only after pixel cleaning, new file meta.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from archive.calibration import UltrasoundRegion
from archive.errors import DeidentificationError
from archive.research.deid.dates import date_shift_days, shift_da, shift_dt
from archive.research.deid.options import DeidOptions
from archive.research.deid.pixels import clean_pixel_data, tissue_regions
from archive.research.deid.profile import Action, BasicProfile, choose_action, load_basic_profile
from archive.research.deid.uids import PseudonymKind, is_instance_uid, pseudonym, replace_uid

logger = logging.getLogger(__name__)

#: A function that blanks a dataset's pixels outside the given regions, in place.
PixelCleaner = Callable[[Dataset, Sequence[UltrasoundRegion]], None]

#: CID 7050 codes (De-identification Method), scheme DCM.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")
MODIFIED_DATES_CODE = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")

_DATE_VRS = ("DA", "DT")
_TEXT_DUMMY = "ANONYMOUS"
_DUMMY_BY_VR: dict[str, Any] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
}
_BINARY_VRS = ("OB", "OD", "OF", "OL", "OV", "OW", "UN")
#: Free text (LT, ST, UT) and uninterpretable values (UN) outside the table are removed.
_UNLISTED_REMOVED_VRS = ("LT", "ST", "UT", "UN")


@dataclass(frozen=True)
class DeidResult:
    """A de-identified instance and what was done to it.

    Parameters
    ----------
    dataset : pydicom.dataset.Dataset
        The de-identified instance, with new file meta; write it with
        ``dcmwrite(..., enforce_file_format=True)``.
    sop_instance_uid : str
        Its new SOP Instance UID.
    patient_pseudonym : str
        The pseudonym now in Patient ID, and in Patient's Name as the family
        name (``"P-...^"``).
    date_shift_days : int or None
        Days added to every date; ``None`` when dates were removed.
    pixels_cleaned : bool
        False when the pixels were left as they were (``clean_pixels=False``
        or an uncalibrated clip allowed through): such a clip may show
        burned-in identity and must be marked so.
    method_codes : tuple of str
        CID 7050 code values recorded, e.g. ``("113100", "113101", "113107")``.
    """

    dataset: Dataset
    sop_instance_uid: str
    patient_pseudonym: str
    date_shift_days: int | None
    pixels_cleaned: bool
    method_codes: tuple[str, ...]


@dataclass(frozen=True)
class _Context:
    options: DeidOptions
    profile: BasicProfile
    shift_days: int | None
    sop: str


def patient_key(ds: Dataset) -> str:
    """The original value that keys a patient's pseudonym and date shift.

    Patient ID, else Patient's Name, else Study Instance UID (each clip of an
    unidentified study then counts as one patient).

    Raises
    ------
    DeidentificationError
        If none of the three is present.
    """
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return value
    raise DeidentificationError(
        f"instance {ds.get('SOPInstanceUID', '<no SOPInstanceUID>')}: expected a Patient ID, Patient's "
        "Name or Study Instance UID to key the pseudonym and date shift, but all are empty; set the "
        "Patient ID before exporting"
    )


def deidentify_dataset(
    ds: Dataset,
    options: DeidOptions,
    *,
    pixel_cleaner: PixelCleaner = clean_pixel_data,
) -> DeidResult:
    """De-identify one instance (see the module docstring for the rules).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The original instance, with file meta and pixel data (when pixels are
        cleaned); not modified.
    options : DeidOptions
        Secret and options.
    pixel_cleaner : callable, optional
        ``(dataset, regions) -> None`` blanking pixels in place; the default
        decodes, blanks and stores them uncompressed.

    Returns
    -------
    DeidResult

    Raises
    ------
    DeidentificationError
        If the clip has no 2D region and uncalibrated clips are not allowed,
        its pixels cannot be decoded, no patient key exists, or a date cannot
        be parsed when dates are retained.
    """
    sop = str(ds.get("SOPInstanceUID", "<no SOPInstanceUID>"))
    key = patient_key(ds)
    study_uid = str(ds.get("StudyInstanceUID", "") or "").strip()
    regions: tuple[UltrasoundRegion, ...] = ()
    if options.clean_pixels:
        regions = tissue_regions(ds, allow_uncalibrated=options.allow_uncalibrated)
    out = copy.deepcopy(ds)
    pixels_cleaned = bool(regions)
    if pixels_cleaned:
        pixel_cleaner(out, regions)
    elif options.clean_pixels:
        logger.warning("instance %s: no 2D region, pixels left unchanged (allowed by option)", sop)
    shift = date_shift_days(options.secret, key) if options.retain_longitudinal_dates_modified else None
    context = _Context(options=options, profile=load_basic_profile(), shift_days=shift, sop=sop)
    _clean_dataset(out, context)

    patient = pseudonym(options.secret, key, PseudonymKind.PATIENT)
    out.PatientName = f"{patient}^"  # family name only; a caret-less PN reads as the retired form
    out.PatientID = patient
    if study_uid:
        out.StudyID = pseudonym(options.secret, study_uid, PseudonymKind.STUDY)
    codes = _record_method(out, pixels_cleaned=pixels_cleaned, dates_shifted=shift is not None)
    new_sop = str(out.get("SOPInstanceUID", ""))
    _rebuild_file_meta(out)
    logger.info("instance de-identified as %s (patient %s, methods %s)", new_sop, patient, "/".join(codes))
    return DeidResult(
        dataset=out,
        sop_instance_uid=new_sop,
        patient_pseudonym=patient,
        date_shift_days=shift,
        pixels_cleaned=pixels_cleaned,
        method_codes=codes,
    )


def _clean_dataset(ds: Dataset, context: _Context) -> None:
    for elem in list(ds):
        tag = elem.tag
        if tag.is_private or (tag.group & 0xFF00) in (0x5000, 0x6000):
            del ds[tag]
            continue
        action = _action_for(elem, context)
        _apply(ds, elem, action, context)


def _action_for(elem: DataElement, context: _Context) -> Action:
    rule = context.profile.rule_for(elem.tag)
    if rule is not None:
        if rule.modified_dates and context.shift_days is not None:
            return Action.CLEAN
        return choose_action(rule)
    if elem.VR == "UI":
        return Action.UID
    if elem.VR in _DATE_VRS:
        return Action.CLEAN if context.shift_days is not None else Action.REMOVE
    if elem.VR == "TM" and context.shift_days is None:
        return Action.REMOVE
    if elem.VR == "PN":
        return Action.ZERO
    if elem.VR in _UNLISTED_REMOVED_VRS:
        return Action.REMOVE
    return Action.KEEP


def _apply(ds: Dataset, elem: DataElement, action: Action, context: _Context) -> None:
    if action is Action.REMOVE:
        del ds[elem.tag]
    elif elem.VR == "SQ":
        if action is Action.ZERO:
            elem.value = DicomSequence([])
        else:
            for item in elem.value:
                _clean_dataset(item, context)
    elif action is Action.ZERO:
        elem.value = b"" if elem.VR in _BINARY_VRS else None
    elif action is Action.DUMMY:
        elem.value = _dummy(elem, context)
    elif action in (Action.UID, Action.UID_ITEMS):
        elem.value = _map_values(elem, lambda uid: _replace_if_instance(elem, uid, context))
    elif action is Action.CLEAN:
        _clean_value(ds, elem, context)


def _replace_if_instance(elem: DataElement, uid: str, context: _Context) -> str:
    if not uid or not is_instance_uid(elem.keyword, uid):
        return uid
    return replace_uid(context.options.secret, uid)


def _clean_value(ds: Dataset, elem: DataElement, context: _Context) -> None:
    days = context.shift_days
    if days is None or elem.VR not in _DATE_VRS:
        return  # times of day and time zones are kept with modified dates
    shift = shift_da if elem.VR == "DA" else shift_dt
    try:
        elem.value = _map_values(elem, lambda text: shift(text, days))
    except DeidentificationError as exc:
        logger.warning("instance %s: %s %s removed: %s", context.sop, elem.tag, elem.keyword, exc)
        del ds[elem.tag]


def _map_values(elem: DataElement, change: Callable[[str], str]) -> Any:
    if elem.VM > 1:
        return [change(str(value)) for value in elem.value]
    return change(str(elem.value)) if elem.value is not None else elem.value


def _dummy(elem: DataElement, context: _Context) -> Any:
    if elem.VR == "UI":
        return _map_values(elem, lambda uid: replace_uid(context.options.secret, uid) if uid else uid)
    if elem.VR in _BINARY_VRS:
        return b"\x00\x00"
    if elem.VR == "PN":
        return f"{_TEXT_DUMMY}^"
    return _DUMMY_BY_VR.get(elem.VR, _TEXT_DUMMY)


def _code_item(code: tuple[str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue = code[0]
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = code[1]
    return item


def _record_method(ds: Dataset, *, pixels_cleaned: bool, dates_shifted: bool) -> tuple[str, ...]:
    codes = [BASIC_PROFILE_CODE]
    if pixels_cleaned:
        codes.append(CLEAN_PIXEL_DATA_CODE)
        ds.BurnedInAnnotation = "NO"
    if dates_shifted:
        codes.append(MODIFIED_DATES_CODE)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [meaning for _, meaning in codes]
    ds.DeidentificationMethodCodeSequence = DicomSequence([_code_item(code) for code in codes])
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates_shifted else "REMOVED"
    return tuple(value for value, _ in codes)


def _rebuild_file_meta(out: Dataset) -> None:
    # New file meta: nothing of the source's (AE titles, private creator UIDs) is carried over.
    syntax = getattr(out, "file_meta", FileMetaDataset()).get("TransferSyntaxUID")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(str(out.get("SOPClassUID", "")))
    meta.MediaStorageSOPInstanceUID = UID(str(out.get("SOPInstanceUID", "")))
    if syntax is not None:
        meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out.file_meta = meta
