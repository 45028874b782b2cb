"""Migration 12 on an index that already holds instances and worklist entries (SQLite and PostgreSQL).

The index is brought to version 11 as an older usarchive left it: the
tables of migration 12 dropped and its version row removed, after an
instance with a Procedure Code Sequence and a worklist entry were stored.
Opening the archive again applies migration 12: the entry's codes are
written from its columns, the instance's items are read from its stored
header, and both match again.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ingest_helpers import part10_bytes, us_dataset
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from sqlalchemy import delete, select

from archive.archive import Archive
from archive.index import items, migrations, schema
from archive.index.engine import write_transaction
from archive.ingest import Origin
from archive.model import ProcedureType, Side, SpinalLevel, Technique
from archive.query import FindRequest, InformationModel, MatchSettings, find
from archive.settings import ArchiveSettings
from archive.worklist.model import ScheduledProcedure
from archive.worklist.query import WorklistQuery, find_entries
from archive.worklist.sql import worklist_item_value


def _code_query(tag_keyword: str, value: str) -> Dataset:
    code = Dataset()
    code.CodeValue = value
    ds = Dataset()
    setattr(ds, tag_keyword, DicomSequence([code]))
    return ds


def _studies_with_code(archive: Archive, value: str) -> list[str]:
    identifier = _code_query("ProcedureCodeSequence", value)
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    request = FindRequest.parse(identifier, InformationModel.STUDY_ROOT)
    return [str(ds.StudyInstanceUID) for ds in find(archive.engine, request, MatchSettings())]


def _entries_with_code(archive: Archive, value: str) -> list[str]:
    identifier = Dataset()
    identifier.AccessionNumber = ""
    step = _code_query("ScheduledProtocolCodeSequence", value)
    identifier.ScheduledProcedureStepSequence = DicomSequence([step])
    found = find_entries(
        archive.engine, WorklistQuery.parse(identifier), MatchSettings(), archive.worklist.settings
    )
    return [str(ds.AccessionNumber) for ds in found]


def test_migration_12_fills_items_of_what_was_stored_before(tmp_path: Path, db_url: str) -> None:
    settings = ArchiveSettings(tmp_path / "data", db_url)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "MBB", "99USARCH", "Medial branch block"
    with Archive.open(settings) as archive:
        ds = us_dataset(ProcedureCodeSequence=DicomSequence([code]))
        archive.ingest(part10_bytes(ds), origin=Origin("file"))
        archive.worklist.schedule(
            [
                ScheduledProcedure(
                    patient_id="P1",
                    patient_name="DOE^JANE",
                    birth_date=None,
                    sex="F",
                    accession_number="ACC9",
                    start=datetime.now().replace(microsecond=0),
                    station_aet="SCANNER",
                    modality="US",
                    procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK,
                    levels=(SpinalLevel.L5,),
                    side=Side.LEFT,
                    technique=Technique.TT,
                )
            ]
        )
        assert _studies_with_code(archive, "MBB") == [str(ds.StudyInstanceUID)]
        assert _entries_with_code(archive, "49668003") == ["ACC9"]
        with write_transaction(archive.engine) as connection:  # back to version 11
            for table in (worklist_item_value, *reversed(items.ITEM_TABLES)):
                table.drop(connection)
            connection.execute(delete(schema.schema_version).where(schema.schema_version.c.version == 12))
    with Archive.open(settings) as archive:
        assert _studies_with_code(archive, "MBB") == [str(ds.StudyInstanceUID)]
        assert _studies_with_code(archive, "RF") == []
        assert _entries_with_code(archive, "49668003") == ["ACC9"]
        with archive.engine.connect() as connection:
            assert connection.execute(select(items.sequence_item_pending)).all() == []
            version = migrations.current_version(connection)
        assert version == migrations.LATEST_VERSION == 12
