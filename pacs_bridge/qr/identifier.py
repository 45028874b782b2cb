"""Read the identifier of a C-MOVE or C-GET request into :class:`~archive.index.retrieve.RetrieveKeys`.

Hierarchical retrieve only (PS3.4 C.4.2.2.1, C.4.3.2.1): the identifier holds
Query/Retrieve Level and the unique key of that level and of each level above
it (Patient ID only in the Patient Root model). The key of the retrieve level
may be a list of UIDs; the keys above it are single values. Anything else is
answered 0xA900 "Identifier does not match SOP Class" with an Error Comment
saying what was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from archive.index.retrieve import RetrieveKeys, RetrieveLevel


class InformationModel(StrEnum):
    """The two Query/Retrieve information models served, by the SOP Class UIDs of their MOVE and GET."""

    PATIENT_ROOT = "PATIENT"
    STUDY_ROOT = "STUDY"


#: SOP Class UID -> (information model, DIMSE service) for the retrieve classes served.
RETRIEVE_SOP_CLASSES: dict[str, tuple[InformationModel, str]] = {
    "1.2.840.10008.5.1.4.1.2.1.2": (InformationModel.PATIENT_ROOT, "move"),
    "1.2.840.10008.5.1.4.1.2.1.3": (InformationModel.PATIENT_ROOT, "get"),
    "1.2.840.10008.5.1.4.1.2.2.2": (InformationModel.STUDY_ROOT, "move"),
    "1.2.840.10008.5.1.4.1.2.2.3": (InformationModel.STUDY_ROOT, "get"),
}

_LEVELS: dict[InformationModel, tuple[RetrieveLevel, ...]] = {
    InformationModel.PATIENT_ROOT: tuple(RetrieveLevel),
    InformationModel.STUDY_ROOT: (RetrieveLevel.STUDY, RetrieveLevel.SERIES, RetrieveLevel.IMAGE),
}
_UID_KEYS = (
    (RetrieveLevel.STUDY, "StudyInstanceUID"),
    (RetrieveLevel.SERIES, "SeriesInstanceUID"),
    (RetrieveLevel.IMAGE, "SOPInstanceUID"),
)
_ORDER = tuple(RetrieveLevel)


class IdentifierError(ValueError):
    """The identifier is not a valid hierarchical retrieve (answered 0xA900 with this message)."""


def _values(ds: Dataset, keyword: str) -> list[str]:
    if keyword not in ds:
        return []
    value = ds[keyword].value
    if value is None or value == "":
        return []
    items: Sequence[object] = value if isinstance(value, (MultiValue, list, tuple)) else [value]
    return [str(item).strip() for item in items if str(item).strip()]


def retrieve_keys(ds: Dataset, model: InformationModel) -> RetrieveKeys:
    """The unique keys of a retrieve identifier.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The decoded identifier of the C-MOVE or C-GET request.
    model : InformationModel
        Patient Root or Study Root (from the request's SOP class).

    Returns
    -------
    RetrieveKeys

    Raises
    ------
    IdentifierError
        If the level is missing or not one of the model's, or a unique key of the
        level or above is missing, or a key above the level is a list.
    """
    text = str(ds.get("QueryRetrieveLevel", "") or "").strip().upper()
    allowed = _LEVELS[model]
    try:
        level = RetrieveLevel(text)
    except ValueError:
        level = None
    if level is None or level not in allowed:
        raise IdentifierError(
            f"Query/Retrieve Level: expected one of {', '.join(allowed)} for the "
            f"{model.value.title()} Root model, but got {text!r}"
        )
    depth = _ORDER.index(level)
    patient_ids = _values(ds, "PatientID")
    if model is InformationModel.PATIENT_ROOT and len(patient_ids) != 1:
        raise IdentifierError(
            f"Patient ID: expected one value (Patient Root, {level} level), but got {patient_ids or 'none'}"
        )
    uid_lists: dict[RetrieveLevel, tuple[str, ...]] = {}
    for key_level, keyword in _UID_KEYS:
        if _ORDER.index(key_level) > depth:
            continue
        values = _values(ds, keyword)
        if not values:
            raise IdentifierError(
                f"{keyword}: expected a unique key for a {level}-level retrieve, but it is empty"
            )
        if key_level is not level and len(values) != 1:
            raise IdentifierError(
                f"{keyword}: expected a single UID above the {level} level, but got {len(values)}"
            )
        uid_lists[key_level] = tuple(values)
    return RetrieveKeys(
        level=level,
        patient_id=patient_ids[0] if model is InformationModel.PATIENT_ROOT else None,
        study_uids=uid_lists.get(RetrieveLevel.STUDY, ()),
        series_uids=uid_lists.get(RetrieveLevel.SERIES, ()),
        sop_instance_uids=uid_lists.get(RetrieveLevel.IMAGE, ()),
    )
