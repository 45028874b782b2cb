"""Storage commitment against a pynetdicom scanner: same association, new association, failures."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from bridge_helpers import US_IMAGE, US_MULTIFRAME, make_dataset, wait_for
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from archive.archive import Archive
from archive.index.queries import Query
from archive.ingest import CommitCheck
from pacs_bridge.commitment import STORAGE_COMMITMENT_INSTANCE, build_event_report
from pacs_bridge.config import BridgeSettings, CommitmentPeer
from pacs_bridge.contexts import StorageCommitmentPushModel
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network


class Reports:
    """N-EVENT-REPORTs received by the test scanner."""

    def __init__(self) -> None:
        self.received: list[tuple[int, Dataset, bool]] = []
        self._lock = threading.Lock()

    def handle(self, event: Any) -> int:
        with self._lock:
            self.received.append((event.event_type, event.event_information, event.assoc.is_requestor))
        return 0x0000


def _action(references: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    ds.ReferencedSOPSequence = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        ds.ReferencedSOPSequence.append(item)
    return ds


def _scanner() -> AE:
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    ae.add_requested_context(US_MULTIFRAME)
    ae.add_requested_context(StorageCommitmentPushModel)
    return ae


def _store_and_request(
    port: int, reports: Reports, datasets: list[Dataset], action: Dataset, keep_open: bool
) -> int:
    assoc = _scanner().associate(
        "127.0.0.1", port, ae_title="USARCHIVE", evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle)]
    )
    assert assoc.is_established
    for ds in datasets:
        assert assoc.send_c_store(ds).Status == 0x0000
    status, _ = assoc.send_n_action(action, 1, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE)
    if keep_open:
        wait_for(lambda: reports.received, what="N-EVENT-REPORT on the same association")
    assoc.release()
    return int(status.Status)


def test_commitment_on_the_same_association(bridge: BridgeServer) -> None:
    reports = Reports()
    datasets = [make_dataset(seed=i, frames=2) for i in range(2)]
    action = _action([(US_MULTIFRAME, str(ds.SOPInstanceUID)) for ds in datasets])
    assert _store_and_request(bridge.port, reports, datasets, action, keep_open=True) == 0x0000
    [(event_type, info, on_requestor_side)] = reports.received
    assert on_requestor_side  # arrived on the scanner's own association
    assert event_type == 1
    assert info.TransactionUID == action.TransactionUID
    committed = {item.ReferencedSOPInstanceUID for item in info.ReferencedSOPSequence}
    assert committed == {str(ds.SOPInstanceUID) for ds in datasets}
    assert "FailedSOPSequence" not in info


def test_commitment_on_a_new_association_with_failures(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings, archive: Archive
) -> None:
    reports = Reports()
    scanner_scp = AE(ae_title="SCANNER")
    scanner_scp.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    listener = scanner_scp.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle)]
    )
    try:
        peer = CommitmentPeer("SCANNER", "127.0.0.1", listener.server_address[1])
        server = start_bridge(bridge_settings, commitment_peers=(peer,))
        stored = make_dataset(seed=3, frames=2)
        corrupted = make_dataset(seed=4, frames=2)
        missing = generate_uid()
        action = _action(
            [
                (US_MULTIFRAME, str(stored.SOPInstanceUID)),
                (US_IMAGE, str(stored.SOPInstanceUID)),  # wrong class for a stored instance
                (US_MULTIFRAME, missing),
                (US_MULTIFRAME, str(corrupted.SOPInstanceUID)),
            ]
        )
        scanner = _scanner()
        assoc = scanner.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
        assert assoc.send_c_store(stored).Status == 0x0000
        assert assoc.send_c_store(corrupted).Status == 0x0000
        row = archive.index.show(str(corrupted.SOPInstanceUID))
        assert row is not None
        # Damage the stored file behind the archive's back: its hash no longer matches.
        [found] = [
            r for r in archive.index.find(Query()) if r.sop_instance_uid == str(corrupted.SOPInstanceUID)
        ]
        path = archive.store.absolute(found.path)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        status, _ = assoc.send_n_action(action, 1, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE)
        assoc.release()  # the report must come on a new association
        assert status.Status == 0x0000
        # Longer than the bridge's DIMSE timeout: should the report still race the release
        # (the test process stalled past the bridge's grace), the bridge gives up on the old
        # association after that timeout and must then deliver on a new one.
        wait_for(
            lambda: reports.received,
            timeout_s=3 * bridge_settings.dimse_timeout_s,
            what="N-EVENT-REPORT on a new association",
        )
    finally:
        scanner_scp.shutdown()
    [(event_type, info, on_requestor_side)] = reports.received
    assert not on_requestor_side  # the bridge called the scanner's SCP
    assert event_type == 2
    assert [item.ReferencedSOPInstanceUID for item in info.ReferencedSOPSequence] == [
        str(stored.SOPInstanceUID)
    ]
    reasons = {
        (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID): item.FailureReason
        for item in info.FailedSOPSequence
    }
    assert reasons == {
        (US_IMAGE, str(stored.SOPInstanceUID)): 0x0119,
        (US_MULTIFRAME, missing): 0x0112,
        (US_MULTIFRAME, str(corrupted.SOPInstanceUID)): 0x0110,
    }


def test_n_action_with_wrong_action_type_or_empty_list_is_refused(bridge: BridgeServer) -> None:
    assoc = _scanner().associate("127.0.0.1", bridge.port, ae_title="USARCHIVE")
    wrong_type, _ = assoc.send_n_action(
        _action([(US_MULTIFRAME, generate_uid())]), 2, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE
    )
    empty, _ = assoc.send_n_action(_action([]), 1, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE)
    assoc.release()
    assert wrong_type.Status == 0x0123
    assert empty.Status == 0x0115


def test_build_event_report_types() -> None:
    event_type, info = build_event_report("1.2.3", [("1.2", "1.2.3.4", CommitCheck.COMMITTED)])
    assert event_type == 1 and "FailedSOPSequence" not in info
    event_type, info = build_event_report("1.2.3", [("1.2", "1.2.3.5", CommitCheck.NO_SUCH_INSTANCE)])
    assert event_type == 2 and "ReferencedSOPSequence" not in info
    assert info.FailedSOPSequence[0].FailureReason == 0x0112
