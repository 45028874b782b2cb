"""Sequence matching through dcmtk ``findscu`` (PS3.4 C.2.2.2.6), on clips that carry worklist entries.

Two procedures are scheduled in the archive's worklist (L5 right OT, L4 left
TT); a clip of each is made the way a scanner makes it from the MWL response
(``copy_into``: Request Attributes Sequence with the Requested Procedure ID,
the Scheduled Procedure Step ID and the Scheduled Protocol Code Sequence),
and the L5 clip's study also gets a Procedure Code Sequence. The expected
matches are written from the entries themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from bridge_helpers import make_dataset
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from qr_peers import findscu
from qr_samples import procedure_codes, schedule_examples

from archive.archive import Archive
from archive.ingest import Origin
from archive.model import ProcedureType, SpinalLevel
from archive.worklist.dataset import copy_into
from archive.worklist.model import LEVEL_CODES, WorklistEntry
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission
from pacs_bridge.server import BridgeServer

FINDER = PeerPermissions(AllowedPeer("FINDER"), frozenset({Permission.ECHO, Permission.FIND}))
_RAS = "0040,0275[0]"
_PROTOCOL = f"{_RAS}.0040,0008[0]"


@pytest.fixture
def entries(archive: Archive, tmp_path: Path) -> dict[str, tuple[WorklistEntry, str]]:
    """``L5`` / ``L4`` → (the entry, the Series Instance UID of its clip)."""
    found: dict[str, tuple[WorklistEntry, str]] = {}
    for name, entry in schedule_examples(archive).items():
        ds = make_dataset(seed=len(found))
        copy_into(ds, entry)
        ds.SeriesInstanceUID = generate_uid()
        if name == "L5":
            ds.ProcedureCodeSequence = procedure_codes(ProcedureType.MEDIAL_BRANCH_BLOCK)
        path = tmp_path / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        archive.ingest(path, origin=Origin("file"))
        found[name] = (entry, str(ds.SeriesInstanceUID))
    return found


@pytest.fixture
def find_server(start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings) -> BridgeServer:
    return start_bridge(bridge_settings, permissions=(FINDER,))


def _series(server: BridgeServer, tmp_path: Path, *keys: str) -> list[Dataset]:
    result = findscu(server.port, ["0008,0052=SERIES", "0020,000E", *keys], tmp_path / "f")
    assert result.ok, result.output
    return result.responses


def test_request_attributes_and_protocol_codes_match_per_item(
    find_server: BridgeServer, entries: dict[str, tuple[WorklistEntry, str]], tmp_path: Path
) -> None:
    l5, l5_series = entries["L5"]
    l4, l4_series = entries["L4"]
    found = _series(find_server, tmp_path, f"{_RAS}.0040,1001={l5.requested_procedure_id}")
    assert [str(ds.SeriesInstanceUID) for ds in found] == [l5_series]
    found = _series(find_server, tmp_path, f"{_RAS}.0040,0009={l4.step_id}", f"{_RAS}.0040,1001")
    assert [str(ds.SeriesInstanceUID) for ds in found] == [l4_series]
    (item,) = found[0].RequestAttributesSequence
    assert (item.ScheduledProcedureStepID, item.RequestedProcedureID) == (
        l4.step_id,
        l4.requested_procedure_id,
    )
    # the SNOMED code of L5 in the Scheduled Protocol Code Sequence: only the L5 clip
    l5_code = LEVEL_CODES[SpinalLevel.L5].value
    found = _series(find_server, tmp_path, f"{_PROTOCOL}.0008,0100={l5_code}", f"{_PROTOCOL}.0008,0102")
    assert [str(ds.SeriesInstanceUID) for ds in found] == [l5_series]
    codes = [
        (c.CodeValue, c.CodingSchemeDesignator)
        for c in found[0].RequestAttributesSequence[0].ScheduledProtocolCodeSequence
    ]
    assert codes == [(l5_code, LEVEL_CODES[SpinalLevel.L5].scheme)]  # narrowed to the matching code
    # OT and TT are local codes of the two entries: a list matches both
    both = _series(find_server, tmp_path, f"{_PROTOCOL}.0008,0100=OT\\TT")
    assert sorted(str(ds.SeriesInstanceUID) for ds in both) == sorted([l5_series, l4_series])
    # the item's keys hold together: L4's step with L5's level code matches nothing
    none = _series(
        find_server, tmp_path, f"{_RAS}.0040,0009={l4.step_id}", f"{_PROTOCOL}.0008,0100={l5_code}"
    )
    assert none == []


def test_nested_protocol_codes_are_narrowed_to_the_matching_ones(
    find_server: BridgeServer, entries: dict[str, tuple[WorklistEntry, str]], tmp_path: Path
) -> None:
    l5, l5_series = entries["L5"]
    written = [(c.value, c.scheme) for c in l5.procedure.protocol_codes]
    assert len(written) >= 3  # procedure, level, side (and technique): one item, several codes
    side = l5.procedure.protocol_codes[2]
    found = _series(
        find_server,
        tmp_path,
        f"{_RAS}.0040,1001",
        f"{_PROTOCOL}.0008,0100={side.value}",
        f"{_PROTOCOL}.0008,0102",
    )
    assert [str(ds.SeriesInstanceUID) for ds in found] == [l5_series]
    (item,) = found[0].RequestAttributesSequence
    assert item.RequestedProcedureID == l5.requested_procedure_id
    (code,) = item.ScheduledProtocolCodeSequence  # that code only, with the requested attributes only
    assert (code.CodeValue, code.CodingSchemeDesignator) == (side.value, side.scheme)
    assert "CodeMeaning" not in code
    # a list names two of the codes: both, in the order the clip has them
    first, last = l5.procedure.protocol_codes[0], l5.procedure.protocol_codes[-1]
    found = _series(find_server, tmp_path, f"{_PROTOCOL}.0008,0100={last.value}\\{first.value}")
    nested = found[0].RequestAttributesSequence[0].ScheduledProtocolCodeSequence
    assert [c.CodeValue for c in nested] == [first.value, last.value]
    # an empty nested key (universal) still returns every code of the item
    found = _series(
        find_server, tmp_path, f"{_RAS}.0040,1001={l5.requested_procedure_id}", f"{_PROTOCOL}.0008,0100"
    )
    nested = found[0].RequestAttributesSequence[0].ScheduledProtocolCodeSequence
    assert [c.CodeValue for c in nested] == [value for value, _ in written]


def test_procedure_code_sequence_at_study_level_and_refusals(
    find_server: BridgeServer, entries: dict[str, tuple[WorklistEntry, str]], tmp_path: Path
) -> None:
    l5, _ = entries["L5"]
    result = findscu(
        find_server.port,
        ["0008,0052=STUDY", "0020,000D", "0008,1032[0].0008,0100=MB?", "0008,1032[0].0008,0104"],
        tmp_path / "f",
    )
    assert result.ok, result.output
    (ds,) = result.responses
    assert ds.StudyInstanceUID == l5.study_instance_uid
    assert ds.ProcedureCodeSequence[0].CodeMeaning == "Medial branch block"
    # a sequence the index does not keep: refused (0xC000), not silently universal
    refused = findscu(
        find_server.port, ["0008,0052=STUDY", "0020,000D", "0010,1002[0].0010,0020=P-ACC-L5"], tmp_path / "f"
    )
    assert refused.responses == []
    assert "unabletoprocess" in refused.output.lower().replace(" ", ""), refused.output
