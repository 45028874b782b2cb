"""The attributes a query can match and return, per level, and where the index keeps them.

Each :class:`Key` names a DICOM attribute (tag, keyword, VR), the query level
it belongs to and how it is answered:

* ``INDEXED``: a column of the ``patient`` / ``study`` / ``series`` /
  ``instance`` tables (matched in SQL, returned from the row);
* ``COMPUTED``: the counts and lists of PS3.4 C.3 (Number of Study Related
  Instances, Modalities in Study, ...), computed per page of results with one
  grouped query each;
* ``SEQUENCE``: a sequence whose items the index keeps
  (:data:`archive.index.items.SEQUENCES`), matched per PS3.4 C.2.2.2.6 by
  :mod:`archive.query.sequences`;
* ``PROCEDURE``: our procedure attributes (spinal levels, side, technique,
  approach, procedure type) in the private block :data:`PRIVATE_CREATOR` of
  group :data:`PRIVATE_GROUP`. They belong to instances; at the study and
  series (and patient) levels an entity matches when *one of its instances*
  has all the requested values, and the values returned are those of all its
  instances (multi-valued, sorted).

Private block: ``(0011,0010) LO "USARCHIVE 1.0"`` reserves elements
``(0011,10xx)`` (or whichever block the identifier's creator element
reserves, as PS3.5 7.8.1 allows); the element offsets are
:data:`PROCEDURE_ELEMENTS`. Group 0x0011 is the first odd group free for
private use and is used by no attribute of the US IODs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydicom.datadict import add_private_dict_entries, tag_for_keyword

from archive.index import schema


class Level(enum.StrEnum):
    """Query/Retrieve levels, from the top of the hierarchy down."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def depth(self) -> int:
        """0 for PATIENT to 3 for IMAGE."""
        return list(Level).index(self)


class InformationModel(enum.StrEnum):
    """Query/Retrieve information models (PS3.4 C.6)."""

    PATIENT_ROOT = "patient-root"
    STUDY_ROOT = "study-root"

    @property
    def levels(self) -> tuple[Level, ...]:
        """The levels a query of this model may ask for."""
        if self is InformationModel.PATIENT_ROOT:
            return tuple(Level)
        return (Level.STUDY, Level.SERIES, Level.IMAGE)


class KeyKind(enum.Enum):
    """How a key is answered (see the module docstring)."""

    INDEXED = "indexed"
    COMPUTED = "computed"
    PROCEDURE = "procedure"
    SEQUENCE = "sequence"


#: Creator of our private block (PS3.5 7.8.1).
PRIVATE_CREATOR = "USARCHIVE 1.0"
#: Group of our private block.
PRIVATE_GROUP = 0x0011
#: Element offsets (the low byte) of the procedure attributes in the block; all LO.
PROCEDURE_ELEMENTS: dict[str, int] = {
    "levels": 0x01,
    "side": 0x02,
    "technique": 0x03,
    "approach": 0x04,
    "procedure_type": 0x05,
}
_PROCEDURE_NAMES = {
    "levels": ("USArchiveSpinalLevels", "Spinal levels (L3, L4, L5, C4, ...)", "1-n"),
    "side": ("USArchiveSide", "Side of the procedure (left, right, bilateral)", "1"),
    "technique": ("USArchiveTechnique", "Technique (TT, OT, other, unknown)", "1"),
    "approach": ("USArchiveApproach", "Needle approach (in-plane, out-of-plane, unknown)", "1"),
    "procedure_type": ("USArchiveProcedureType", "Procedure type (medial branch block, ...)", "1"),
}

# Tell pydicom the VR of our private elements, so an implicit VR identifier decodes them as LO.
add_private_dict_entries(
    PRIVATE_CREATOR,
    {
        (PRIVATE_GROUP << 16) | 0x1000 | element: ("LO", vm, description, keyword)
        for name, element in PROCEDURE_ELEMENTS.items()
        for keyword, description, vm in [_PROCEDURE_NAMES[name]]
    },
)


@dataclass(frozen=True)
class Key:
    """One attribute a query may carry.

    Attributes
    ----------
    keyword : str
        pydicom keyword (for procedure keys, the name in :data:`PROCEDURE_ELEMENTS`).
    vr : str
        Value representation, which decides the matching allowed (PS3.4 C.2.2.2).
    level : Level
        The level the attribute belongs to.
    kind : KeyKind
    table, column : str
        Where an ``INDEXED`` key is kept (``""`` for the others).
    """

    keyword: str
    vr: str
    level: Level
    kind: KeyKind = KeyKind.INDEXED
    table: str = ""
    column: str = ""

    @property
    def tag(self) -> int:
        """The DICOM tag (for procedure keys, the element in the block at ``(0011,10xx)``)."""
        if self.kind is KeyKind.PROCEDURE:
            return (PRIVATE_GROUP << 16) | 0x1000 | PROCEDURE_ELEMENTS[self.keyword]
        found = tag_for_keyword(self.keyword)
        assert found is not None, self.keyword
        return int(found)


def _indexed(level: Level, table: str, rows: list[tuple[str, str, str]]) -> list[Key]:
    return [Key(keyword, vr, level, KeyKind.INDEXED, table, column) for keyword, vr, column in rows]


_INDEXED: list[Key] = [
    *_indexed(
        Level.PATIENT,
        schema.patient.name,
        [
            ("PatientName", "PN", "name"),
            ("PatientID", "LO", "patient_id"),
            ("IssuerOfPatientID", "LO", "issuer"),
            ("PatientBirthDate", "DA", "birth_date"),
            ("PatientSex", "CS", "sex"),
        ],
    ),
    *_indexed(
        Level.STUDY,
        schema.study.name,
        [
            ("StudyInstanceUID", "UI", "study_instance_uid"),
            ("StudyDate", "DA", "study_date"),
            ("StudyTime", "TM", "study_time"),
            ("AccessionNumber", "SH", "accession_number"),
            ("StudyID", "SH", "study_id"),
            ("StudyDescription", "LO", "description"),
        ],
    ),
    *_indexed(
        Level.SERIES,
        schema.series.name,
        [
            ("SeriesInstanceUID", "UI", "series_instance_uid"),
            ("Modality", "CS", "modality"),
            ("SeriesNumber", "IS", "series_number"),
            ("SeriesDescription", "LO", "description"),
            ("BodyPartExamined", "CS", "body_part"),
            ("Laterality", "CS", "laterality"),
            ("Manufacturer", "LO", "manufacturer"),
            ("ManufacturerModelName", "LO", "model"),
            ("ProtocolName", "LO", "protocol_name"),
        ],
    ),
    *_indexed(
        Level.IMAGE,
        schema.instance.name,
        [
            ("SOPInstanceUID", "UI", "sop_instance_uid"),
            ("SOPClassUID", "UI", "sop_class_uid"),
            ("InstanceNumber", "IS", "instance_number"),
            ("NumberOfFrames", "IS", "frames"),
            ("Rows", "US", "rows"),
            ("Columns", "US", "columns"),
            ("PhotometricInterpretation", "CS", "photometric"),
            ("ContentDate", "DA", "content_date"),
            ("ContentTime", "TM", "content_time"),
            ("ImageLaterality", "CS", "image_laterality"),
        ],
    ),
]

_COMPUTED: list[Key] = [
    Key("NumberOfPatientRelatedStudies", "IS", Level.PATIENT, KeyKind.COMPUTED),
    Key("NumberOfPatientRelatedSeries", "IS", Level.PATIENT, KeyKind.COMPUTED),
    Key("NumberOfPatientRelatedInstances", "IS", Level.PATIENT, KeyKind.COMPUTED),
    Key("ModalitiesInStudy", "CS", Level.STUDY, KeyKind.COMPUTED),
    Key("SOPClassesInStudy", "UI", Level.STUDY, KeyKind.COMPUTED),
    Key("NumberOfStudyRelatedSeries", "IS", Level.STUDY, KeyKind.COMPUTED),
    Key("NumberOfStudyRelatedInstances", "IS", Level.STUDY, KeyKind.COMPUTED),
    Key("NumberOfSeriesRelatedInstances", "IS", Level.SERIES, KeyKind.COMPUTED),
]

#: The computed keys of patients: a PATIENT-level key in the Patient Root model, a STUDY-level one in
#: the Study Root model, where patient attributes are attributes of the study (PS3.4 C.6.2.1).
PATIENT_COMPUTED = frozenset(
    {"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"}
)


def computed_level(key: Key, model: InformationModel) -> Level:
    """The one level at which ``model`` lists the computed ``key`` (PS3.4 Tables C.6-1 to C.6-6).

    Patient Root: the patient counts at PATIENT, the study counts and lists at STUDY,
    Number of Series Related Instances at SERIES. Study Root: the same, except that
    the patient counts are STUDY keys (of the study's patient). At any other level a
    computed key is not a key of the model and is returned empty.
    """
    if key.keyword in PATIENT_COMPUTED and model is InformationModel.STUDY_ROOT:
        return Level.STUDY
    return key.level


#: Procedure keys belong to instances but are matched and returned at every level.
PROCEDURE_KEYS: tuple[Key, ...] = tuple(
    Key(name, "LO", Level.IMAGE, KeyKind.PROCEDURE) for name in PROCEDURE_ELEMENTS
)

#: Every standard key by tag.
STANDARD_KEYS: dict[int, Key] = {key.tag: key for key in (*_INDEXED, *_COMPUTED)}

#: The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEYS: dict[Level, Key] = {
    Level.PATIENT: STANDARD_KEYS[0x00100020],
    Level.STUDY: STANDARD_KEYS[0x0020000D],
    Level.SERIES: STANDARD_KEYS[0x0020000E],
    Level.IMAGE: STANDARD_KEYS[0x00080018],
}

#: Attributes of the identifier that are not keys of any level (handled by the engine itself).
CONTROL_TAGS = frozenset(
    {
        0x00080005,  # Specific Character Set
        0x00080052,  # Query/Retrieve Level
        0x00080054,  # Retrieve AE Title (returned: ours)
        0x00080056,  # Instance Availability (returned: ONLINE)
        0x00080201,  # Timezone Offset From UTC
    }
)
