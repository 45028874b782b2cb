"""QIDO-RS (PS3.18 10.6): query parameters → one :class:`~archive.query.FindRequest` → DICOM JSON.

There is one matcher (:mod:`archive.query`, shared with C-FIND): this module
only turns the URL into an identifier. Each query parameter names an
attribute by keyword (``PatientName``), by tag (``00100010``) or, for our
procedure attributes, by the keywords of the private block
(``USArchiveSpinalLevels``, ``USArchiveSide``, ``USArchiveTechnique``,
``USArchiveApproach``, ``USArchiveProcedureType``) or their tags
``0011100x``. ``includefield`` (repeatable, comma-separated, or ``all``)
adds return keys (an attribute the index does not hold, such as Referring
Physician's Name, is read from one stored header per result, so it is not
among the defaults: ask for it); ``limit`` / ``offset`` page (a limit above ``[web]
max_results`` is cut to it, and a ``Warning: 299`` header says more matched);
``fuzzymatching=true`` matches Person Names by prefix of each component
(``doe^j`` finds ``DOE^JOHN``), case-insensitively as always.

Unknown attributes with a value, sequence paths (``00400275.00401001``) and
values the matcher refuses are answered 400 with the matcher's message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from sqlalchemy import Engine

from archive.query import (
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    PROCEDURE_ELEMENTS,
    FindRequest,
    InformationModel,
    Level,
    MatchSettings,
    QueryError,
    count_matches,
    find,
)
from archive.web.errors import WebRequestError

_PRIVATE_KEYWORDS = {
    "USArchiveSpinalLevels": "levels",
    "USArchiveSide": "side",
    "USArchiveTechnique": "technique",
    "USArchiveApproach": "approach",
    "USArchiveProcedureType": "procedure_type",
}
_RETRIEVE_URL = 0x00081190
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}

#: Attributes returned by default (PS3.18 Tables 10.6.3-3 to -5), in order, by level.
DEFAULT_KEYS: dict[Level, tuple[str, ...]] = {
    Level.STUDY: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "InstanceAvailability",
        "ModalitiesInStudy",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "StudyInstanceUID",
        "Modality",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
    ),
    Level.IMAGE: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceAvailability",
        "InstanceNumber",
        "Rows",
        "Columns",
        "NumberOfFrames",
    ),
}

#: Upper-level attributes added to ``/series`` and ``/instances`` searches not scoped by the path
#: (PS3.18 10.6.3.3: the response carries the study's, and for instances the series', attributes).
UPPER_KEYS: dict[Level, tuple[str, ...]] = {
    Level.SERIES: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyID",
    ),
    Level.IMAGE: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyID",
        "Modality",
        "SeriesDescription",
        "SeriesNumber",
    ),
}

#: ``includefield=all``: everything the index answers at or above the level.
ALL_KEYS: dict[Level, tuple[str, ...]] = {
    Level.STUDY: (
        *DEFAULT_KEYS[Level.STUDY],
        "IssuerOfPatientID",
        "SOPClassesInStudy",
        "ReferringPhysicianName",
    ),
    Level.SERIES: (
        *DEFAULT_KEYS[Level.SERIES],
        "BodyPartExamined",
        "Laterality",
        "Manufacturer",
        "ManufacturerModelName",
        "ProtocolName",
    ),
    Level.IMAGE: (
        *DEFAULT_KEYS[Level.IMAGE],
        "PhotometricInterpretation",
        "ContentDate",
        "ContentTime",
        "ImageLaterality",
    ),
}


@dataclass(frozen=True)
class QidoQuery:
    """A QIDO-RS request read from its path and parameters."""

    request: FindRequest
    offset: int
    limit: int
    fuzzy: bool


def _tag_of(name: str) -> int:
    if name in _PRIVATE_KEYWORDS:
        return (PRIVATE_GROUP << 16) | 0x1000 | PROCEDURE_ELEMENTS[_PRIVATE_KEYWORDS[name]]
    if "." in name:
        raise WebRequestError(
            400,
            f"query parameter {name!r}: sequence attribute paths are not supported; match on a top-level key",
        )
    if len(name) == 8:
        try:
            return int(name, 16)
        except ValueError:
            pass
    tag = tag_for_keyword(name)
    if tag is None:
        raise WebRequestError(
            400,
            f"query parameter {name!r}: expected a DICOM keyword (PatientName), a tag (00100010), one of "
            f"{sorted(_PRIVATE_KEYWORDS)} or one of {sorted(_CONTROL)}",
        )
    return int(tag)


def _vr_of(tag: int) -> str:
    if tag >> 16 == PRIVATE_GROUP:
        return "LO"
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        raise WebRequestError(
            400, f"attribute {tag:08X}: not in the DICOM dictionary; name a standard attribute"
        ) from None


def _integer(params: Mapping[str, Sequence[str]], name: str, default: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        value = -1
    if value < 0:
        raise WebRequestError(400, f"{name}: expected a whole number of at least 0, but got {values[-1]!r}")
    return value


def _fuzzy(value: str) -> str:
    if not value or "*" in value or "?" in value:
        return value
    return "^".join(part + "*" if part else part for part in value.split("^"))


def parse_qido(
    level: Level,
    params: Mapping[str, Sequence[str]],
    *,
    max_results: int,
    study: str | None = None,
    series: str | None = None,
) -> QidoQuery:
    """Read a QIDO-RS request at ``level`` (``study`` / ``series`` from the path).

    Raises
    ------
    WebRequestError
        400 for an unknown parameter, a bad limit or offset, or a query the matcher refuses.
    """
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level.value
    fuzzy = (params.get("fuzzymatching") or ["false"])[-1].strip().lower() == "true"
    keys: dict[int, str] = {}
    fields: list[str] = [*DEFAULT_KEYS[level]]
    if study is None:
        fields += UPPER_KEYS.get(level, ())
    elif series is None and level is Level.IMAGE:
        fields += UPPER_KEYS[Level.IMAGE][-3:]
    for value in params.get("includefield", []):
        for name in value.split(","):
            name = name.strip()
            if name == "all":
                fields += ALL_KEYS[level]
            elif name:
                fields.append(name)
    for name in fields:
        keys.setdefault(_tag_of(name), "")
    for name, values in params.items():
        if name in _CONTROL:
            continue
        tag = _tag_of(name)
        keys[tag] = "\\".join(values)
    if study is not None:
        keys[0x0020000D] = study
    if series is not None:
        keys[0x0020000E] = series
    if any(tag >> 16 == PRIVATE_GROUP for tag in keys):
        identifier.add_new((PRIVATE_GROUP << 16) | 0x0010, "LO", PRIVATE_CREATOR)
    for tag, value in sorted(keys.items()):
        if tag == _RETRIEVE_URL:
            continue  # answered by the server (PS3.18 10.6.3), not a key of the matcher
        vr = _vr_of(tag)
        if vr == "PN" and fuzzy:
            value = _fuzzy(value)
        if vr == "SQ":
            if value:
                raise WebRequestError(
                    400, f"{keyword_for_tag(tag) or hex(tag)}: sequence matching is not supported"
                )
            identifier.add_new(tag, "SQ", [])
        else:
            identifier.add_new(tag, vr, value or None)
    try:
        request = FindRequest.parse(identifier, InformationModel.STUDY_ROOT)
    except QueryError as exc:
        raise WebRequestError(400, str(exc)) from None
    limit = min(_integer(params, "limit", max_results), max_results)
    return QidoQuery(request, _integer(params, "offset", 0), limit, fuzzy)


@dataclass(frozen=True)
class QidoAnswer:
    """The matches of a page and whether more matched."""

    results: list[dict[str, Any]]
    more: bool


def retrieve_url(base: str, dataset: Dataset, level: Level) -> str:
    """The WADO-RS URL of a result (PS3.18 10.6.3, Retrieve URL)."""
    url = f"{base}/studies/{dataset.get('StudyInstanceUID', '')}"
    if level in (Level.SERIES, Level.IMAGE):
        url += f"/series/{dataset.get('SeriesInstanceUID', '')}"
    if level is Level.IMAGE:
        url += f"/instances/{dataset.get('SOPInstanceUID', '')}"
    return url


def run_qido(
    engine: Engine,
    query: QidoQuery,
    settings: MatchSettings,
    *,
    resolve_path: Any,
    base_url: str,
) -> QidoAnswer:
    """The DICOM JSON of one page of matches.

    Raises
    ------
    WebRequestError
        400 for a value the matcher refuses.
    """
    window = replace(settings, max_results=max(query.offset + query.limit, 1), header_keys=True)
    try:
        results = [
            _json(dataset, query.request.level, base_url)
            for dataset in _found(engine, query, window, resolve_path)
        ]
        more = count_matches(engine, query.request, window) > query.offset + query.limit
    except QueryError as exc:
        raise WebRequestError(400, str(exc)) from None
    return QidoAnswer(results, more)


def _found(engine: Engine, query: QidoQuery, settings: MatchSettings, resolve_path: Any) -> Iterator[Dataset]:
    if query.limit == 0:
        return iter(())
    return find(
        engine,
        query.request,
        settings,
        resolve_path=resolve_path,
        window=(query.offset, query.limit),
    )


def _json(dataset: Dataset, level: Level, base_url: str) -> dict[str, Any]:
    del dataset.QueryRetrieveLevel
    dataset.add_new(_RETRIEVE_URL, "UR", retrieve_url(base_url, dataset, level))
    return dicom_json(dataset)


def null_empty_values(document: dict[str, Any]) -> dict[str, Any]:
    """Empty values of a multi-valued string as ``null`` (PS3.18 F.2.5), in place, nested too."""
    for attribute in document.values():
        values = attribute.get("Value")
        if not isinstance(values, list):
            continue
        if attribute.get("vr") == "SQ":
            for item in values:
                null_empty_values(item)
        elif len(values) > 1:
            attribute["Value"] = [None if value == "" else value for value in values]
    return document


def dicom_json(dataset: Dataset, **options: Any) -> dict[str, Any]:
    """The DICOM JSON of ``dataset`` (pydicom's), empty values of multi-valued strings ``null``, sorted."""
    document: dict[str, Any] = dataset.to_json_dict(**options)
    return dict(sorted(null_empty_values(document).items()))


def store_resolver(root: Path) -> Any:
    """Relative stored path → absolute (for header keys)."""
    return lambda relative: root / relative
