"""Index tables of the worklist and the performed procedure steps (created by migration 10).

Tables
------
``worklist_entry``
    One row per scheduled procedure: patient, accession, generated Study
    Instance UID, Requested Procedure ID and Scheduled Procedure Step ID
    (each unique), start date and time, station AE title, modality,
    procedure type, levels (``"L4,L5"``), side, technique, approach,
    physician, status, note. The MWL SCP matches on its columns
    (:mod:`archive.worklist.query`); an arriving instance is matched to it by
    any of the four identifiers (:meth:`archive.worklist.store.WorklistStore.entry_for`).
``mpps_step``
    One row per MPPS SOP instance: status, the entry it refers to (if any),
    the scheduled step / study / accession it named, start and end date/time,
    the discontinuation reason code, who sent it.
``mpps_instance``
    The instances an MPPS lists (Performed Series Sequence > Referenced Image
    Sequence), one row each.
``worklist_item_value`` (migration 12)
    The codes of each entry's Requested Procedure Code Sequence and Scheduled
    Protocol Code Sequence, one row per value, in the shape of
    :data:`archive.index.items.sequence_item_value`, for sequence matching
    (:mod:`archive.query.sequences`).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from archive.index import schema
from archive.index.items import make_item_value_table

_UID = 64

worklist_entry = Table(
    "worklist_entry",
    schema.metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("patient_name", String(324), nullable=False),
    Column("birth_date", Date),
    Column("sex", String(16), nullable=False, default=""),
    Column("accession_number", String(16), nullable=False),
    Column("study_instance_uid", String(_UID), nullable=False, unique=True),
    Column("requested_procedure_id", String(16), nullable=False, unique=True),
    Column("step_id", String(16), nullable=False, unique=True),
    Column("start_date", Date, nullable=False),
    Column("start_time", String(16), nullable=False),
    Column("station_aet", String(16), nullable=False),
    Column("modality", String(16), nullable=False),
    Column("procedure_type", String(32), nullable=False),
    Column("levels", String(64), nullable=False),
    Column("side", String(16), nullable=False),
    Column("technique", String(16), nullable=False),
    Column("approach", String(16), nullable=False),
    Column("physician", String(324), nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("note", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_worklist_status_start", "status", "start_date", "id"),
    Index("ix_worklist_accession", "accession_number"),
    Index("ix_worklist_station", "station_aet", "start_date"),
)

mpps_step = Table(
    "mpps_step",
    schema.metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_instance_uid", String(_UID), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("entry_pk", Integer, ForeignKey("worklist_entry.id", ondelete="SET NULL")),
    Column("step_id", String(16)),
    Column("study_instance_uid", String(_UID)),
    Column("accession_number", String(16)),
    Column("patient_id", String(64)),
    Column("station_aet", String(16)),
    Column("start_date", Date),
    Column("start_time", String(16)),
    Column("end_date", Date),
    Column("end_time", String(16)),
    Column("reason_code", String(16)),
    Column("reason_scheme", String(16)),
    Column("reason_meaning", String(64)),
    Column("calling_ae", String(16)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_mpps_entry", "entry_pk"),
    Index("ix_mpps_study", "study_instance_uid"),
)

mpps_instance = Table(
    "mpps_instance",
    schema.metadata,
    Column("id", Integer, primary_key=True),
    Column("mpps_pk", Integer, ForeignKey("mpps_step.id", ondelete="CASCADE"), nullable=False),
    Column("series_instance_uid", String(_UID), nullable=False),
    Column("sop_class_uid", String(_UID), nullable=False),
    Column("sop_instance_uid", String(_UID), nullable=False),
    UniqueConstraint("mpps_pk", "sop_instance_uid", name="uq_mpps_instance"),
    Index("ix_mpps_instance_uid", "sop_instance_uid"),
)

#: Created by migration 10, in this order.
WORKLIST_TABLES = (worklist_entry, mpps_step, mpps_instance)

worklist_item_value = make_item_value_table("worklist_item_value", "entry_pk", "worklist_entry.id")
