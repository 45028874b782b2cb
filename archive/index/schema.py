"""The index schema (SQLAlchemy 2 Core), identical on SQLite and PostgreSQL.

Tables
------
``patient``  → ``study`` → ``series`` → ``instance``: the DICOM hierarchy with
the attributes queries and listings need. ``instance`` also holds where and how
the file is stored (relative path, size, sha256, transfer syntax, received
time, origin) and image facts (frames, rows, columns, photometric, frame time,
mm per pixel, calibrated).

Procedure attributes, each with provenance (``source`` is ``"rule"`` or
``"user:<name>"``; ``detail`` says which attribute and rule set it, or is the
user's note; ``set_at`` is when):

- ``instance_level``: several spinal levels per instance (with a copy of the
  instance's technique, for level + technique searches);
- ``instance_procedure``: side, technique (TT, OT, other, unknown), approach
  (in-plane, out-of-plane, unknown; schema version 6) and procedure type, one
  row per instance.

``tag_history`` keeps every change of a procedure attribute (who, when,
old → new); ``instance_history`` every replaced file (where the old bytes were
kept). ``schema_version`` is written by :mod:`archive.index.migrations`.

``sort_date`` (in ``instance`` and ``instance_level``) is the study date copied
down, or :data:`SORT_DATE_UNKNOWN` when the study has none: it is never
``NULL``, so one index orders listings newest first on SQLite and PostgreSQL
alike, and the indexes ``(sort_date, id)`` and ``(level, sort_date,
instance_pk)`` answer date-range and level queries without sorting.

Times are timezone-aware UTC. Study and content dates are SQL ``DATE`` (``NULL``
when absent or not a valid DA value).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: ``sort_date`` of instances whose study has no (valid) Study Date.
SORT_DATE_UNKNOWN = date(1, 1, 1)

_UID = 64

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

patient = Table(
    "patient",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_id", String(64), nullable=False),  # "" when absent
    Column("issuer", String(64), nullable=False),  # "" when absent
    Column("name", String(324)),
    Column("birth_date", Date),
    Column("sex", String(16)),
    UniqueConstraint("patient_id", "issuer", name="uq_patient_id_issuer"),
    Index("ix_patient_name", "name"),
)

study = Table(
    "study",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_instance_uid", String(_UID), nullable=False, unique=True),
    Column("patient_pk", Integer, ForeignKey("patient.id"), nullable=False),
    Column("study_date", Date),
    Column("study_time", String(32)),
    Column("accession_number", String(64)),
    Column("study_id", String(64)),
    Column("description", String(256)),
    Index("ix_study_patient", "patient_pk"),
    Index("ix_study_date", "study_date", "id"),
)

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("series_instance_uid", String(_UID), nullable=False, unique=True),
    Column("study_pk", Integer, ForeignKey("study.id"), nullable=False),
    Column("modality", String(16)),
    Column("series_number", Integer),
    Column("description", String(256)),
    Column("body_part", String(64)),
    Column("laterality", String(16)),
    Column("manufacturer", String(64)),
    Column("model", String(64)),
    Column("protocol_name", String(256)),
    Index("ix_series_study", "study_pk"),
    Index("ix_series_modality", "modality"),
)

instance = Table(
    "instance",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_instance_uid", String(_UID), nullable=False, unique=True),
    Column("sop_class_uid", String(_UID), nullable=False),
    Column("series_pk", Integer, ForeignKey("series.id"), nullable=False),
    Column("instance_number", Integer),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("transfer_syntax", String(_UID), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("source_kind", String(16), nullable=False),
    Column("source_path", Text),
    Column("calling_ae", String(16)),
    Column("called_ae", String(16)),
    Column("source_address", String(128)),
    Column("frames", Integer),
    Column("rows", Integer),
    Column("columns", Integer),
    Column("photometric", String(32)),
    Column("frame_time_ms", Float),
    Column("row_spacing_mm", Float),
    Column("column_spacing_mm", Float),
    Column("calibrated", Boolean, nullable=False),
    Column("content_date", Date),
    Column("content_time", String(32)),
    Column("image_laterality", String(16)),
    Column("sort_date", Date, nullable=False),
    # The instance's own Patient ID and Name as received (schema version 5); the
    # patient row of its study is the first one seen (see archive.index.patients).
    Column("patient_id", String(64)),
    Column("patient_name", String(324)),
    Index("ix_instance_series", "series_pk"),
    Index("ix_instance_sort", "sort_date", "id"),
)

instance_level = Table(
    "instance_level",
    metadata,
    Column("instance_pk", Integer, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True),
    Column("level", String(8), primary_key=True),
    Column("source", String(80), nullable=False),
    Column("detail", Text),
    Column("set_at", DateTime(timezone=True), nullable=False),
    Column("sort_date", Date, nullable=False),
    # A copy of instance_procedure.technique (schema version 4), kept equal by
    # archive.index.writes.sync_level_technique: a level + technique search then
    # reads one index range in date order instead of probing every level row.
    Column("technique", String(16)),
    Index("ix_instance_level_sort", "level", "sort_date", "instance_pk"),
    Index("ix_instance_level_technique", "level", "technique", "sort_date", "instance_pk"),
)

instance_procedure = Table(
    "instance_procedure",
    metadata,
    Column("instance_pk", Integer, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True),
    Column("side", String(16)),
    Column("side_source", String(80)),
    Column("side_detail", Text),
    Column("technique", String(16)),
    Column("technique_source", String(80)),
    Column("technique_detail", Text),
    # Schema version 6: the needle approach, apart from the technique.
    Column("approach", String(16)),
    Column("approach_source", String(80)),
    Column("approach_detail", Text),
    Column("procedure_type", String(32)),
    Column("procedure_type_source", String(80)),
    Column("procedure_type_detail", Text),
    Column("levels_source", String(80)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_procedure_technique", "technique", "instance_pk"),
    Index("ix_procedure_approach", "approach", "instance_pk"),
    Index("ix_procedure_side", "side", "instance_pk"),
    Index("ix_procedure_type", "procedure_type", "instance_pk"),
)

tag_history = Table(
    "tag_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("instance_pk", Integer, ForeignKey("instance.id", ondelete="CASCADE"), nullable=False),
    Column("attribute", String(32), nullable=False),
    Column("old_value", Text),
    Column("new_value", Text),
    Column("changed_by", String(80), nullable=False),
    # Schema version 6: the note given with the change (``tag --note``, a clear, a migration).
    Column("note", Text),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Index("ix_tag_history_instance", "instance_pk", "id"),
)

instance_history = Table(
    "instance_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_instance_uid", String(_UID), nullable=False),
    Column("event", String(16), nullable=False),
    Column("old_path", Text),
    Column("kept_path", Text),
    Column("old_sha256", String(64)),
    Column("new_sha256", String(64)),
    Column("origin", Text),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_instance_history_sop", "sop_instance_uid"),
)
