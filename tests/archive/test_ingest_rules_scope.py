"""Ingest classifies by the rules only instances in their modality scope (US, or a US study)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import part10_bytes, us_dataset

from archive.archive import Archive
from archive.index.queries import Query
from archive.ingest import IngestOutcome, Origin
from archive.model import SpinalLevel
from archive.settings import ArchiveSettings

FILE = Origin("file", path="import")


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


def test_rules_apply_to_ultrasound_studies_only(archive: Archive) -> None:
    mr = us_dataset(description="t1_vibe_fs_tra_bh_dyn", Modality="MR", ProtocolName="t1_vibe_fs_tra_bh_dyn")
    ct = us_dataset(description="T/S/C RF FAST PILOT L4/5", Modality="CT")
    clip = us_dataset(description="L4/5 MBB right OT")
    report = us_dataset(description="L4/5 MBB right OT", Modality="SR", study_uid=clip.StudyInstanceUID)
    for ds in (mr, ct, clip, report):
        assert archive.ingest(part10_bytes(ds), origin=FILE).outcome is IngestOutcome.STORED
    assert archive.index.find(Query(levels=(SpinalLevel.T1,))) == []
    found = {row.sop_instance_uid for row in archive.index.find(Query(levels=(SpinalLevel.L4,)))}
    assert found == {clip.SOPInstanceUID, report.SOPInstanceUID}
    by_type = archive.index.stats()["by_procedure_type"]
    assert by_type["medial branch block"] == 2 and "radiofrequency" not in by_type
