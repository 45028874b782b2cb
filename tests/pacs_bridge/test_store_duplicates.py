"""A clip imported from disk and later sent by the scanner: Success, counted as a duplicate.

Real peers: dcmtk ``dcmsend`` for the same clip, pynetdicom for a different data
set under the stored SOP Instance UID (0x0111 with the whole reason in the log).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from bridge_helpers import US_MULTIFRAME, make_dataset, run, wait_for, write_clip
from pynetdicom import AE

from archive.archive import Archive
from archive.index.queries import Query
from archive.ingest import IngestOutcome, Origin
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network


def _summary(caplog: pytest.LogCaptureFixture) -> str:
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("association from") and " released: " in r.getMessage()
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_imported_clip_sent_again_by_dcmsend_is_a_duplicate_success(
    bridge: BridgeServer, archive: Archive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = write_clip(tmp_path / "IMG0001.dcm", seed=11, description="L4/5 MBB right OT")
    imported = archive.ingest(clip, origin=Origin("file", path=str(clip)))
    assert imported.outcome is IngestOutcome.STORED and imported.path is not None
    stored_bytes = imported.path.read_bytes()
    with caplog.at_level(logging.INFO, logger="pacs_bridge"):
        result = run(
            [
                "dcmsend",
                "-v",
                "-aet",
                "SCANNER",
                "-aec",
                "USARCHIVE",
                "127.0.0.1",
                str(bridge.port),
                str(clip),
            ]
        )
        wait_for(lambda: " released: " in caplog.text, what="association log line")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "with status SUCCESS" in result.stdout + result.stderr
    assert "released: 0 stored, 1 duplicate, 0 failed" in _summary(caplog)
    assert "only the File Meta Information differs" in caplog.text
    assert len(archive.index.find(Query(limit=10))) == 1
    assert imported.path.read_bytes() == stored_bytes, "the imported file is kept as it was"


def test_different_data_set_under_a_stored_uid_is_0111_with_the_whole_reason(
    bridge: BridgeServer, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    ds = make_dataset(seed=12, description="L4/5 MBB right OT")
    first = make_dataset(seed=12, description="L4/5 MBB right OT", sop_instance_uid=str(ds.SOPInstanceUID))
    first.StudyInstanceUID, first.SeriesInstanceUID = ds.StudyInstanceUID, ds.SeriesInstanceUID
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    ae.add_requested_context(US_MULTIFRAME)
    with caplog.at_level(logging.INFO, logger="pacs_bridge"):
        assoc = ae.associate("127.0.0.1", bridge.port, ae_title="USARCHIVE")
        assert assoc.is_established
        stored = assoc.send_c_store(first)
        again = assoc.send_c_store(first)
        ds.SeriesDescription = "L3/4 MBB left TT"
        conflict = assoc.send_c_store(ds)
        assoc.release()
        wait_for(lambda: " released: " in caplog.text, what="association log line")
    assert (stored.Status, again.Status, conflict.Status) == (0x0000, 0x0000, 0x0111)
    comment = str(conflict.ErrorComment)
    assert comment == "UID already stored with another data set; kept the first"
    assert len(comment) <= 64
    whole = (
        f"SOP Instance UID {ds.SOPInstanceUID} is already stored with a different data set "
        "(Series Description (0008,103E) differ); the archive keeps the first version "
        "(duplicate_policy = keep-first): give the new object its own SOP Instance UID, or set "
        "duplicate_policy = replace to replace it."
    )
    store_line = next(r.getMessage() for r in caplog.records if "status=0x0111" in r.getMessage())
    assert store_line.endswith(f"reason: {whole}")
    assert "released: 1 stored, 1 duplicate, 1 failed" in _summary(caplog)
