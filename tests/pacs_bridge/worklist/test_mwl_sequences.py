"""Sequence matching in the Modality Worklist with dcmtk ``findscu -W`` (the matcher C-FIND uses).

Entries: A (L5 right OT), B (L4 left TT), C (L4+L5 right OT, scheduled on
another station). The codes each entry carries are its procedure's
``protocol_codes`` (MBB, the SNOMED codes of its levels and side, its
technique); every expected set is written from those.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from worklist_peers import mwl_find

from archive.archive import Archive
from archive.model import ProcedureType, Side, SpinalLevel, Technique
from archive.worklist.model import LEVEL_CODES, ScheduledProcedure, WorklistEntry
from pacs_bridge.server import BridgeServer

NOW = datetime.now().replace(microsecond=0)
_STEP = "ScheduledProcedureStepSequence[0]"
_PROTOCOL = f"{_STEP}.ScheduledProtocolCodeSequence[0]"
L5 = LEVEL_CODES[SpinalLevel.L5].value


def _procedure(
    accession: str, levels: tuple[SpinalLevel, ...], side: Side, technique: Technique
) -> ScheduledProcedure:
    return ScheduledProcedure(
        patient_id=f"PID-{accession}",
        patient_name="DOE^JANE",
        birth_date=None,
        sex="F",
        accession_number=accession,
        start=NOW,
        station_aet="SCANNER1" if accession != "C" else "OTHER",
        modality="US",
        procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK,
        levels=levels,
        side=side,
        technique=technique,
    )


@pytest.fixture
def entries(archive: Archive) -> dict[str, WorklistEntry]:
    scheduled = archive.worklist.schedule(
        [
            _procedure("A", (SpinalLevel.L5,), Side.RIGHT, Technique.OT),
            _procedure("B", (SpinalLevel.L4,), Side.LEFT, Technique.TT),
            _procedure("C", (SpinalLevel.L4, SpinalLevel.L5), Side.RIGHT, Technique.OT),
        ]
    )
    return {entry.procedure.accession_number: entry for entry in scheduled}


@pytest.fixture
def server(entries: dict[str, WorklistEntry], scanner_server: BridgeServer) -> BridgeServer:
    """The scanner's receiver, ``entries`` scheduled before it starts."""
    return scanner_server


def _accessions(server: BridgeServer, tmp_path: Path, *keys: str) -> list[str]:
    result = mwl_find(server.port, ["AccessionNumber", *keys], tmp_path / "f")
    assert result.process.returncode == 0, result.process.stderr
    return result.accessions


def test_protocol_codes_match_and_only_matching_items_return(
    server: BridgeServer, entries: dict[str, WorklistEntry], tmp_path: Path
) -> None:
    assert _accessions(server, tmp_path, f"{_PROTOCOL}.CodeValue={L5}") == ["A", "C"]
    assert _accessions(server, tmp_path, f"{_PROTOCOL}.CodeValue=TT") == ["B"]
    assert (
        _accessions(server, tmp_path, f"{_PROTOCOL}.CodeValue=T?", f"{_PROTOCOL}.CodingSchemeDesignator=SCT")
        == []
    )
    result = mwl_find(
        server.port,
        ["AccessionNumber", f"{_PROTOCOL}.CodeValue={L5}", f"{_PROTOCOL}.CodeMeaning"],
        tmp_path / "f",
    )
    for ds in result.responses:
        (code,) = ds.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence  # the matching item only
        assert (code.CodeValue, code.CodeMeaning) == (L5, LEVEL_CODES[SpinalLevel.L5].meaning)
    # an empty sequence key still returns every code (what scanners ask)
    result = mwl_find(
        server.port, ["AccessionNumber=B", f"{_STEP}.ScheduledProtocolCodeSequence"], tmp_path / "f"
    )
    (ds,) = result.responses
    codes = [c.CodeValue for c in ds.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence]
    assert codes == [c.value for c in entries["B"].procedure.protocol_codes]


def test_requested_procedure_code_and_unsupported_sequences(
    server: BridgeServer, entries: dict[str, WorklistEntry], tmp_path: Path
) -> None:
    assert _accessions(server, tmp_path, "RequestedProcedureCodeSequence[0].CodeValue=MBB") == ["A", "B", "C"]
    assert _accessions(server, tmp_path, "RequestedProcedureCodeSequence[0].CodeValue=RF") == []
    refused = mwl_find(
        server.port,
        ["AccessionNumber", "ReferencedStudySequence[0].ReferencedSOPInstanceUID=1.2.3"],
        tmp_path / "f",
    )
    assert refused.responses == []
    assert "unabletoprocess" in (refused.process.stdout + refused.process.stderr).lower().replace(" ", "")
