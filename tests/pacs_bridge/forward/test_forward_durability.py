"""Forwarding survives SIGKILL of ``serve``; two forwarders on one PostgreSQL index send each task once."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bridge_helpers import US_MULTIFRAME, make_dataset, wait_for, write_clip
from forward_helpers import init_archive, kill_quietly, start_serve, stop_serve, write_config
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from support.orthanc import OrthancServer

from archive.archive import Archive
from archive.config import load_configuration
from archive.forward.config import Destination, ForwardSettings, Route
from archive.forward.model import TaskStatus
from archive.ingest import Origin
from archive.settings import ArchiveSettings
from pacs_bridge.forward import Forwarder

pytestmark = [pytest.mark.network]

KILLS = 50


def _send_until_broken(port: int, counter: list[int], acknowledged: list[str]) -> None:
    """Store new small clips until the association breaks (the server is killed)."""
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(US_MULTIFRAME)
    assoc = ae.associate("127.0.0.1", port, ae_title="USARCHIVE")
    while assoc.is_established:
        counter[0] += 1
        ds: Dataset = make_dataset(seed=counter[0], frames=2, rows=16, cols=16)
        try:
            status = assoc.send_c_store(ds)
        except (RuntimeError, OSError):
            break
        if status.get("Status") == 0x0000:
            acknowledged.append(str(ds.SOPInstanceUID))
        elif "Status" in status:
            raise AssertionError(f"unexpected status 0x{status.Status:04X}")
        else:
            break  # no answer: the server died with this one in flight
    if assoc.is_established:
        assoc.release()


@pytest.mark.slow
def test_sigkill_of_serve_while_receiving_and_forwarding_loses_nothing(
    orthanc: OrthancServer, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "usarchive.toml",
        orthanc,
        destination={"retry_base_s": 0.2, "retry_max_delay_s": 1.0, "max_attempts": 1000, "batch_size": 5},
        forward={"lease_s": 1.5, "poll_s": 0.05},
        route={"granularity": "instance"},
    )
    data_dir = tmp_path / "data"
    init_archive(config, data_dir)
    rng = random.Random(1616)
    counter = [0]
    acknowledged: list[str] = []
    log = tmp_path / "serve.log"
    started = time.monotonic()
    for _ in range(KILLS):
        process, port = start_serve(config, data_dir, log)
        killer = threading.Timer(rng.uniform(0.05, 0.6), process.kill)
        killer.start()
        try:
            _send_until_broken(port, counter, acknowledged)
        finally:
            killer.join()
            kill_quietly(process)
        assert process.returncode == -9, "serve must have been killed, not have stopped"
    assert acknowledged, "stores must have been acknowledged between the kills"
    assert "forwarded batch" in log.read_text(), "the forwarder must have been sending between the kills"
    # A forwarder runs again: every acknowledged instance reaches Orthanc, no lease is left behind.
    process, _ = start_serve(config, data_dir, log)
    try:
        configuration = load_configuration(config_path=config, data_dir=data_dir)
        with Archive.open(configuration.archive, create=False) as archive:

            def drained() -> bool:
                tasks = archive.forward.list(limit=None)
                return len(tasks) >= len(acknowledged) and all(
                    t.status is TaskStatus.COMPLETED for t in tasks
                )

            wait_for(drained, timeout_s=90, what="every task completed after the kills")
            tasks = archive.forward.list(limit=None)
            now = datetime.now(UTC)
            assert not [t for t in tasks if t.status is TaskStatus.IN_PROGRESS and t.lease_expires < now]
            task_uids = Counter(t.sop_instance_uid for t in tasks)
            assert all(task_uids[uid] == 1 for uid in acknowledged), "one task per acknowledged instance"
    finally:
        stop_serve(process)
    in_orthanc = set(orthanc.client.sop_instance_uids())
    missing = [uid for uid in acknowledged if uid not in in_orthanc]
    assert not missing, f"{len(missing)} acknowledged instances never reached Orthanc"
    assert time.monotonic() - started < 240, "the crash loop must stay bounded"


class _CountingPacs:
    """A pynetdicom Storage SCP that counts every C-STORE per SOP Instance UID."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self._lock = threading.Lock()
        ae = AE(ae_title="COUNTER")
        ae.add_supported_context(US_MULTIFRAME, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        ae.maximum_associations = 20
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        assert server is not None
        self.server = server
        self.port = int(server.server_address[1])

    def _store(self, event: evt.Event) -> int:
        with self._lock:
            self.received[str(event.request.AffectedSOPInstanceUID)] += 1
        return 0x0000


@pytest.mark.postgres
def test_two_forwarders_on_one_postgresql_index_deliver_every_task_once(
    pg_database: str, tmp_path: Path
) -> None:
    pacs = _CountingPacs()
    try:
        destination = Destination(
            name="PACS", ae_title="COUNTER", host="127.0.0.1", port=pacs.port, batch_size=4
        )
        forward = ForwardSettings(
            lease_s=30.0,
            poll_s=0.05,
            destinations={"PACS": destination},
            routes=(Route(destination="PACS", granularity="instance"),),
        )
        settings = ArchiveSettings(data_dir=tmp_path / "data", db_url=pg_database, forward=forward)
        clips = tmp_path / "clips"
        clips.mkdir()
        files = [write_clip(clips / f"c{i}.dcm", frames=2, rows=16, cols=16, seed=i) for i in range(60)]
        with Archive.open(settings) as one, Archive.open(settings) as other:
            for path in files:
                one.ingest(path, origin=Origin("file", path=str(path)))
            assert len(one.forward.list(limit=None)) == 60
            first = Forwarder(one, forward, "worker-a")
            second = Forwarder(other, forward, "worker-b")
            first.start()
            second.start()
            try:
                wait_for(
                    lambda: all(t.status is TaskStatus.COMPLETED for t in one.forward.list(limit=None)),
                    timeout_s=60,
                    what="every task completed",
                )
            finally:
                first.stop()
                second.stop()
            tasks = one.forward.list(limit=None)
        assert len(pacs.received) == 60 and set(pacs.received.values()) == {1}, pacs.received
        assert all(t.attempts == 1 for t in tasks), "no task claimed twice"
        owners = Counter(t.lease_owner for t in tasks)
        assert first.batches > 0 and second.batches > 0, f"both forwarders must have worked: {owners}"
    finally:
        pacs.server.shutdown()
