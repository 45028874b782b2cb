"""The forwarder in process: contexts per batch, lossy files never transcoded, leases renewed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bridge_helpers import US_IMAGE, US_MULTIFRAME, wait_for, write_clip
from forward_helpers import sop_uid
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE, evt
from support.orthanc import OrthancServer

from archive.archive import Archive
from archive.forward.config import Destination, ForwardSettings, Route
from archive.forward.model import ForwardTask, TaskStatus
from archive.ingest import Origin
from archive.settings import ArchiveSettings
from pacs_bridge.contexts import StorageCommitmentPushModel
from pacs_bridge.forward import Forwarder
from pacs_bridge.forward.association import (
    MAX_CONTEXTS,
    contexts_needed,
    requested_contexts,
    split_for_contexts,
)


def _task(i: int, sop_class: str, syntax: str) -> ForwardTask:
    now = datetime.now(UTC)
    return ForwardTask(
        id=i,
        destination="PACS",
        sop_instance_uid=f"1.2.3.{i}",
        sop_class_uid=sop_class,
        study_uid="1.2.3",
        batch_key="1.2.3",
        status=TaskStatus.IN_PROGRESS,
        scheduled_at=now,
        attempts=1,
        last_status=None,
        last_comment="",
        lease_owner="w",
        lease_expires=now,
        path=Path(f"/nonexistent/{i}.dcm"),
        transfer_syntax=syntax,
    )


def test_contexts_come_from_the_files_with_one_uncompressed_fallback_per_class() -> None:
    tasks = [
        _task(1, US_MULTIFRAME, JPEGBaseline8Bit),
        _task(2, US_MULTIFRAME, JPEGBaseline8Bit),
        _task(3, US_MULTIFRAME, ExplicitVRLittleEndian),
        _task(4, US_IMAGE, ExplicitVRLittleEndian),
    ]
    contexts = requested_contexts(tasks, commitment=True)
    pairs = [(str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax]) for cx in contexts]
    assert pairs == [
        (US_MULTIFRAME, [JPEGBaseline8Bit]),
        (US_MULTIFRAME, [ExplicitVRLittleEndian]),
        (US_IMAGE, [ExplicitVRLittleEndian]),
        (US_MULTIFRAME, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
        (US_IMAGE, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
        (StorageCommitmentPushModel, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
    ]
    assert contexts_needed(tasks, commitment=True) == len(contexts)


def test_a_batch_needing_more_contexts_than_fit_is_split() -> None:
    tasks = [_task(i, f"1.2.840.10008.5.1.4.1.1.{i}", ExplicitVRLittleEndian) for i in range(100)]
    groups = split_for_contexts(tasks, commitment=False)
    assert [t.id for g in groups for t in g] == list(range(100))  # nothing lost, order kept
    assert len(groups) == 2
    assert all(contexts_needed(g, commitment=False) <= MAX_CONTEXTS for g in groups)
    with pytest.raises(ValueError, match="split the batch"):
        requested_contexts(tasks, commitment=False)


def _settings(tmp_path: Path, destination: Destination, lease_s: float = 30.0) -> ArchiveSettings:
    forward = ForwardSettings(
        lease_s=lease_s,
        poll_s=0.05,
        destinations={destination.name: destination},
        routes=(Route(destination=destination.name, granularity="instance"),),
    )
    return ArchiveSettings(data_dir=tmp_path / "data", forward=forward)


def test_a_lossy_file_is_never_transcoded_even_with_transcode_true(
    orthanc_factory: Callable[..., OrthancServer], tmp_path: Path
) -> None:
    pacs = orthanc_factory(
        "uncompressed", config={"AcceptedTransferSyntaxes": ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]}
    )
    jpeg = write_clip(tmp_path / "jpeg.dcm", transfer_syntax=JPEGBaseline8Bit, frames=2)
    plain = write_clip(tmp_path / "plain.dcm", transfer_syntax=ExplicitVRLittleEndian, frames=2, seed=3)
    destination = Destination(
        name="PACS", ae_title=pacs.aet, host=pacs.host, port=pacs.dicom_port, transcode=True
    )
    settings = _settings(tmp_path, destination)
    with Archive.open(settings) as archive:
        for path in (jpeg, plain):
            archive.ingest(path, origin=Origin("file", path=str(path)))
        forwarder = Forwarder(archive, settings.forward, "worker")
        forwarder.run_once()  # both in one batch, one association
        tasks = {t.sop_instance_uid: t for t in archive.forward.list(limit=None)}
    lossy, kept = tasks[sop_uid(jpeg)], tasks[sop_uid(plain)]
    assert lossy.status is TaskStatus.FAILED
    assert "transcoding it is not lossless" in lossy.last_comment
    assert kept.status is TaskStatus.COMPLETED  # its own syntax was accepted: sent as stored
    assert pacs.client.find_instance(sop_uid(jpeg)) is None
    assert pacs.client.find_instance(sop_uid(plain)) is not None


def test_a_long_batch_renews_its_lease_so_no_other_worker_sends_it_again(tmp_path: Path) -> None:
    received: Counter[str] = Counter()
    lock = threading.Lock()

    def slow_store(event: evt.Event) -> int:
        time.sleep(0.6)  # a slow PACS: ten instances (6 s) take twice the lease
        with lock:
            received[str(event.request.AffectedSOPInstanceUID)] += 1
        return 0x0000

    scp = AE(ae_title="SLOW")
    scp.add_supported_context(US_MULTIFRAME, [ExplicitVRLittleEndian])
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, slow_store)])
    assert server is not None
    try:
        destination = Destination(
            name="PACS", ae_title="SLOW", host="127.0.0.1", port=int(server.server_address[1]), batch_size=10
        )
        settings = _settings(tmp_path, destination, lease_s=3.0)  # renewed every 1 s
        clips = [write_clip(tmp_path / f"c{i}.dcm", frames=1, rows=8, cols=8, seed=i) for i in range(10)]
        with Archive.open(settings) as first_archive, Archive.open(settings) as second_archive:
            for path in clips:
                first_archive.ingest(path, origin=Origin("file", path=str(path)))
            first = Forwarder(first_archive, settings.forward, "first")
            first.start()
            wait_for(lambda: received, what="the first C-STORE")  # the first worker holds the batch
            second = Forwarder(second_archive, settings.forward, "second")
            second.start()
            try:
                wait_for(
                    lambda: all(
                        t.status is TaskStatus.COMPLETED for t in first_archive.forward.list(limit=None)
                    ),
                    timeout_s=30,
                    what="all completed",
                )
            finally:
                first.stop()
                second.stop()
            tasks = first_archive.forward.list(limit=None)
    finally:
        server.shutdown()
    assert len(received) == 10 and set(received.values()) == {1}, received
    assert all(t.attempts == 1 for t in tasks), [t.attempts for t in tasks]
