"""End to end: schedule → ``findscu -W`` (the scanner) → a clip carrying the entry → ``dcmsend`` → indexed.

The clip is a phantom that writes the worklist attributes as a scanner does
(Request Attributes Sequence, Accession Number, Study Instance UID); its
level, side and technique come from the entry with provenance
``worklist:<entry>``, over what the operator typed; ``usarchive show`` lists
the worklist values and what the rules and the free text said. SQLite and
PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from datetime import datetime
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from worklist_peers import mwl_find, with_value
from worklist_peers import scheduled as scheduled_procedure

from archive.archive import Archive
from archive.cli.main import main
from archive.index import schema
from archive.model import Side, SpinalLevel
from archive.phantom.generate import write_clip
from archive.phantom.spec import ClipSpec, Descriptions
from archive.settings import ArchiveSettings
from archive.worklist.model import WorklistEntry
from pacs_bridge.server import BridgeServer

NOW = datetime.now().replace(microsecond=0)
#: What the operator typed, against the worklist entry: L3, left, two punctures.
TYPED = Descriptions(study="US Lumbar MBB", series="L3 MBB left TT", performed_step="L3 MBB left TT")


@pytest.fixture
def entry(archive: Archive) -> WorklistEntry:
    (scheduled,) = archive.worklist.schedule(
        [
            scheduled_procedure(
                patient_id="PW0001", patient_name="WORK^LIST", sex="M", accession_number="ACCW01", start=NOW
            )
        ]
    )
    return scheduled


@pytest.fixture
def server(scanner_server: BridgeServer) -> BridgeServer:
    return scanner_server


def _scanner_picks(server: BridgeServer, tmp_path: Path) -> pydicom.Dataset:
    keys = [
        f"{k}=SCANNER" if k.endswith("ScheduledStationAETitle") else
        f"{k}={NOW:%Y%m%d}" if k.endswith("ScheduledProcedureStepStartDate") else k
        for k in with_value("", "")
    ]  # fmt: skip
    result = mwl_find(server.port, keys, tmp_path / "mwl")
    assert result.accessions == ["ACCW01"]
    return result.responses[0]


def _clip(
    entry: WorklistEntry, tmp_path: Path, *, seed: int, descriptions: Descriptions | None = None
) -> Path:
    """A small L4 right phantom clip carrying ``entry`` as a scanner writes it (in ``tmp_path / "clips"``)."""
    spec = ClipSpec(level=SpinalLevel.L4, side=Side.RIGHT, frames=8, rows=160, cols=200, worklist=entry)
    if descriptions is not None:
        spec = dataclasses.replace(spec, descriptions=descriptions)
    clip, _ = write_clip(spec, tmp_path / "clips", seed=seed)
    return clip


def _send(server: BridgeServer, path: Path) -> None:
    sent = subprocess.run(
        ["dcmsend", "-aet", "SCANNER", "-aec", "USARCHIVE", "127.0.0.1", str(server.port), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr


def _procedure_row(archive: Archive, sop_instance_uid: str) -> object:
    i, p = schema.instance, schema.instance_procedure
    with archive.engine.connect() as connection:
        return connection.execute(
            select(p).join(i, i.c.id == p.c.instance_pk).where(i.c.sop_instance_uid == sop_instance_uid)
        ).one()


def _levels(archive: Archive, sop_instance_uid: str) -> list[tuple[str, str]]:
    i, lv = schema.instance, schema.instance_level
    with archive.engine.connect() as connection:
        rows = connection.execute(
            select(lv.c.level, lv.c.source)
            .join(i, i.c.id == lv.c.instance_pk)
            .where(i.c.sop_instance_uid == sop_instance_uid)
        ).all()
    return sorted((str(a), str(b)) for a, b in rows)


def _show(settings: ArchiveSettings, uid: str) -> dict[str, object]:
    result = CliRunner().invoke(
        main, ["--data-dir", str(settings.data_dir), "--db", settings.resolved_db_url, "--json", "show", uid]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert isinstance(document, dict)
    return document


def test_a_scheduled_clip_is_indexed_from_its_worklist_entry_over_contradicting_free_text(
    archive: Archive,
    archive_settings: ArchiveSettings,
    entry: WorklistEntry,
    server: BridgeServer,
    tmp_path: Path,
) -> None:
    picked = _scanner_picks(server, tmp_path)
    assert picked.StudyInstanceUID == entry.study_instance_uid
    step = picked.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepID == entry.step_id
    # The operator typed something else (TYPED).
    clip = _clip(entry, tmp_path, seed=5, descriptions=TYPED)
    written = pydicom.dcmread(clip)
    assert written.RequestAttributesSequence[0].ScheduledProcedureStepID == entry.step_id
    assert written.AccessionNumber == "ACCW01" and written.StudyInstanceUID == entry.study_instance_uid
    _send(server, clip)
    uid = str(written.SOPInstanceUID)
    row = _procedure_row(archive, uid)
    source = f"worklist:{entry.pk}"
    assert (row.side, row.side_source) == ("right", source)
    assert (row.technique, row.technique_source) == ("OT", source)
    assert (row.procedure_type, row.procedure_type_source) == ("medial branch block", source)
    assert row.levels_source == source
    assert _levels(archive, uid) == [("L4", source), ("L5", source)]
    assert "matched by Scheduled Procedure Step ID" in row.side_detail
    # show lists both: the worklist's values, and what the rules and the typed text said.
    shown = json.dumps(_show(archive_settings, uid), ensure_ascii=False)
    assert source in shown and "L4+L5 MBB right, OT (one puncture)" in shown
    assert "said left" in shown and "said TT" in shown


def test_a_scanner_copying_only_the_accession_is_matched_and_the_free_text_rules_overridden(
    archive: Archive,
    archive_settings: ArchiveSettings,
    entry: WorklistEntry,
    server: BridgeServer,
    tmp_path: Path,
) -> None:
    _scanner_picks(server, tmp_path)
    clip = _clip(entry, tmp_path, seed=6, descriptions=TYPED)
    ds = pydicom.dcmread(clip)
    del ds.RequestAttributesSequence  # this scanner copies Accession Number and Study Instance UID only
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.77"  # ... and even makes its own study
    ds.save_as(clip, enforce_file_format=True)
    _send(server, clip)
    uid = str(ds.SOPInstanceUID)
    row = _procedure_row(archive, uid)
    source = f"worklist:{entry.pk}"
    assert (row.side, row.technique, row.side_source) == ("right", "OT", source)
    assert _levels(archive, uid) == [("L4", source), ("L5", source)]
    assert "matched by Accession Number ACCW01" in row.side_detail
    assert "the rules said left" in row.side_detail and "the rules said TT" in row.technique_detail
    assert "the rules said L3" in str(_show(archive_settings, uid))


def test_a_person_s_tag_still_wins_over_the_worklist(
    archive: Archive,
    archive_settings: ArchiveSettings,
    entry: WorklistEntry,
    server: BridgeServer,
    tmp_path: Path,
) -> None:
    clip = _clip(entry, tmp_path, seed=7)
    uid = str(pydicom.dcmread(clip).SOPInstanceUID)
    _send(server, clip)
    root = ["--data-dir", str(archive_settings.data_dir), "--db", archive_settings.resolved_db_url]
    tagged = CliRunner().invoke(main, [*root, "tag", uid, "--side", "left", "--by", "dr"])
    assert tagged.exit_code == 0, tagged.output
    assert (_procedure_row(archive, uid).side, _procedure_row(archive, uid).side_source) == (
        "left",
        "user:dr",
    )
    cleared = CliRunner().invoke(main, [*root, "tag", uid, "--clear", "side", "--by", "dr"])
    assert cleared.exit_code == 0, cleared.output
    row = _procedure_row(archive, uid)
    assert (row.side, row.side_source) == ("right", f"worklist:{entry.pk}")  # cleared: back to the worklist
