"""C-GET SCP against real peers: dcmtk getscu, pynetdicom as a C-GET SCU with SCP/SCU role selection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import US_MULTIFRAME, dataset_bytes, run
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet  # type: ignore[attr-defined]
from qr_helpers import failed_uids, ingest, study_identifier, write_study

from archive.archive import Archive
from archive.index.queries import Query
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer, PeerPermissions
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network

WS = "WS1"


@pytest.fixture
def server(archive: Archive) -> Iterator[BridgeServer]:
    settings = BridgeSettings(
        host="127.0.0.1",
        port=0,
        allow=(AllowedPeer("NOGET"),),
        permissions=(PeerPermissions.parse(WS, ["echo", "get"]),),
        dimse_timeout_s=20.0,
    )
    with BridgeServer(settings, archive) as running:
        yield running


def _get(
    port: int,
    identifier: Dataset,
    *,
    syntaxes: list[list[str]],
    calling: str = WS,
    on_store: Any = None,
) -> tuple[list[tuple[int, Dataset, Dataset | None]], dict[str, Dataset]]:
    """One C-GET from a pynetdicom SCU offering US Multi-frame storage, one context per list (SCP role)."""
    stored: dict[str, Dataset] = {}

    def handle_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        stored[str(ds.SOPInstanceUID)] = ds
        if on_store is not None:
            on_store(event)
        return 0x0000

    ae = AE(ae_title=calling)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for offered in syntaxes:
        ae.add_requested_context(US_MULTIFRAME, offered)
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="USARCHIVE",
        ext_neg=[build_role(US_MULTIFRAME, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, handle_store)],
    )
    assert assoc.is_established
    try:
        responses = [
            (int(s.Status), s, i)
            for s, i in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet, msg_id=3)
        ]
    finally:
        assoc.release()
    return responses, stored


def test_getscu_receives_the_study_byte_identical(
    archive: Archive, server: BridgeServer, tmp_path: Path
) -> None:
    files = write_study(
        tmp_path / "in", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRLittleEndian]
    )
    ingest(archive, files)
    ingest(archive, write_study(tmp_path / "other", [ExplicitVRLittleEndian]))
    uid = str(dcmread(files[0]).StudyInstanceUID)
    out = tmp_path / "out"
    out.mkdir()
    result = run(
        [
            "getscu",
            "-v",
            "-S",
            "-aet",
            WS,
            "-aec",
            "USARCHIVE",
            "-od",
            str(out),
            "+B",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={uid}",
            "127.0.0.1",
            str(server.port),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    received = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in out.iterdir()}
    originals = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}
    assert set(received) == set(originals)
    for sop_uid, path in originals.items():
        original, got = dcmread(path), dcmread(received[sop_uid])
        if original.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian:
            assert dataset_bytes(received[sop_uid]) == dataset_bytes(path)
        else:  # getscu's context for the class accepted Explicit VR Little Endian first
            assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert got == original


def test_get_counts_and_the_requesters_contexts_decide_the_syntax(
    archive: Archive, server: BridgeServer, tmp_path: Path
) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless])
    ingest(archive, files)
    originals = {str(dcmread(p).SOPInstanceUID): dcmread(p) for p in files}
    by_syntax = {str(ds.file_meta.TransferSyntaxUID): uid for uid, ds in originals.items()}
    uid = str(dcmread(files[0]).StudyInstanceUID)
    # one context per syntax, so that each is accepted: JPEG Baseline and Explicit VR Little Endian
    responses, stored = _get(
        server.port, study_identifier(uid), syntaxes=[[JPEGBaseline8Bit], [ExplicitVRLittleEndian]]
    )
    pending = [s for status, s, _ in responses if status == 0xFF00]
    assert [s.NumberOfRemainingSuboperations for s in pending] == [2, 1]
    assert [s.NumberOfCompletedSuboperations for s in pending] == [1, 2]
    status, final, _ = responses[-1]
    assert status == 0x0000 and final.NumberOfCompletedSuboperations == 3
    assert set(stored) == set(originals)
    for sop_uid in (by_syntax[ExplicitVRLittleEndian], by_syntax[JPEGBaseline8Bit]):  # as stored
        assert stored[sop_uid].file_meta.TransferSyntaxUID == originals[sop_uid].file_meta.TransferSyntaxUID
        assert stored[sop_uid].PixelData == originals[sop_uid].PixelData
    rle = stored[by_syntax[RLELossless]]  # RLE not offered: decoded (lossless), sent uncompressed
    assert rle.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (rle.pixel_array == originals[by_syntax[RLELossless]].pixel_array).all()


def test_get_fails_what_the_requester_cannot_take(
    archive: Archive, server: BridgeServer, tmp_path: Path
) -> None:
    # only RLE offered: the JPEG Baseline clip cannot go (a lossy syntax is never decoded)
    files = write_study(tmp_path / "in", [RLELossless, JPEGBaseline8Bit])
    ingest(archive, files)
    by_syntax = {str(dcmread(p).file_meta.TransferSyntaxUID): str(dcmread(p).SOPInstanceUID) for p in files}
    uid = str(dcmread(files[0]).StudyInstanceUID)
    responses, stored = _get(server.port, study_identifier(uid), syntaxes=[[RLELossless]])
    status, final, identifier = responses[-1]
    assert status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (1, 1)
    assert identifier is not None
    assert failed_uids(identifier) == [by_syntax[JPEGBaseline8Bit]]
    assert set(stored) == {by_syntax[RLELossless]}


def test_cancel_mid_get(archive: Archive, server: BridgeServer, tmp_path: Path) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian] * 4)
    ingest(archive, files)
    uid = str(dcmread(files[0]).StudyInstanceUID)
    cancelled: list[bool] = []

    def cancel_on_first(event: Any) -> None:
        if not cancelled:
            get_context = next(
                cx
                for cx in event.assoc.accepted_contexts
                if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelGet
            )
            # sent before this C-STORE's response, so the server sees it before its next sub-operation
            event.assoc.send_c_cancel(3, get_context.context_id)
            cancelled.append(True)

    responses, stored = _get(
        server.port, study_identifier(uid), syntaxes=[[ExplicitVRLittleEndian]], on_store=cancel_on_first
    )
    status, final, _ = responses[-1]
    assert status == 0xFE00
    assert final.NumberOfCompletedSuboperations == 1
    assert final.NumberOfRemainingSuboperations == 3
    assert len(stored) == 1


def test_calling_ae_without_get_permission_is_refused_the_get_context(
    archive: Archive, server: BridgeServer, tmp_path: Path
) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian])
    ingest(archive, files)
    ae = AE(ae_title="NOGET")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(US_MULTIFRAME, [ExplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1", server.port, ae_title="USARCHIVE", ext_neg=[build_role(US_MULTIFRAME, scp_role=True)]
    )
    assert assoc.is_established  # the allow-list lets it echo and store
    refused = [
        cx
        for cx in assoc.rejected_contexts
        if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelGet
    ]
    assert [cx.result in (0x01, 0x03) for cx in refused] == [True]  # refused at negotiation
    with pytest.raises(ValueError, match="presentation context"):
        next(iter(assoc.send_c_get(study_identifier("1.2.3"), StudyRootQueryRetrieveInformationModelGet)))
    assoc.release()


def test_get_permission_without_store_receives_but_cannot_store(
    archive: Archive, server: BridgeServer, tmp_path: Path
) -> None:
    (clip,) = write_study(tmp_path / "in", [ExplicitVRLittleEndian])
    ae = AE(ae_title=WS)  # get, not store
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(US_MULTIFRAME, [ExplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1",
        server.port,
        ae_title="USARCHIVE",
        ext_neg=[build_role(US_MULTIFRAME, scu_role=True, scp_role=True)],
    )
    assert assoc.is_established
    storage = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == US_MULTIFRAME)
    assert (storage.as_scu, storage.as_scp) == (False, True)  # it may receive, not send
    with pytest.raises(ValueError):
        assoc.send_c_store(dcmread(clip))
    assoc.release()
    ae = AE(ae_title=WS)
    ae.add_requested_context(US_MULTIFRAME, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")  # no role selection: no storage
    assert not assoc.is_established or not [
        cx for cx in assoc.accepted_contexts if cx.abstract_syntax == US_MULTIFRAME
    ]
    if assoc.is_established:
        assoc.release()
    assert archive.index.find(Query()) == []
