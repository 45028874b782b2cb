"""Durability and concurrency of ``usarchive serve``: SIGKILL mid-store, two servers on one index."""

from __future__ import annotations

import concurrent.futures
import random
import threading
from pathlib import Path

import pydicom
import pytest
from bridge_helpers import (
    US_MULTIFRAME,
    dataset_bytes,
    make_dataset,
    start_serve_process,
    storescu,
    write_clip,
)
from pydicom.dataset import Dataset
from pynetdicom import AE

from archive.archive import Archive
from archive.index.queries import Query
from archive.ingest import CommitCheck
from archive.settings import ArchiveSettings

pytestmark = [pytest.mark.network, pytest.mark.slow]


def _send_until_broken(port: int, sent: list[Dataset], acknowledged: list[str], limit: int = 2000) -> None:
    """Store new small clips (appended to ``sent``) until the association breaks (the server is killed)."""
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    ae.add_requested_context(US_MULTIFRAME)
    assoc = ae.associate("127.0.0.1", port, ae_title="USARCHIVE")
    while assoc.is_established and len(sent) < limit:
        ds = make_dataset(seed=len(sent), frames=12, rows=120, cols=160)
        sent.append(ds)
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


def test_sigkill_at_random_moments_loses_no_acknowledged_instance(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random(4242)
    sent: list[Dataset] = []
    acknowledged: list[str] = []
    for cycle in range(4):
        process, port = start_serve_process(
            data_dir, ["--allow", "SCANNER"], log_path=tmp_path / f"s{cycle}.log"
        )
        killer = threading.Timer(rng.uniform(0.3, 2.0), process.kill)
        killer.start()
        try:
            _send_until_broken(port, sent, acknowledged)
        finally:
            killer.join()  # the sender only stops when the server is gone
            process.wait()
        assert process.returncode == -9, "the server must have been killed while storing"
    assert acknowledged, "some stores must have been acknowledged between the kills"
    # After a restart every acknowledged instance is there, intact (hash as recorded), byte-identical.
    process, _ = start_serve_process(data_dir, ["--allow", "SCANNER"], log_path=tmp_path / "final.log")
    try:
        with Archive.open(ArchiveSettings(data_dir=data_dir)) as archive:
            by_uid = {str(ds.SOPInstanceUID): ds for ds in sent}
            for uid in acknowledged:
                assert archive.check_commitment(US_MULTIFRAME, uid) is CommitCheck.COMMITTED, uid
            rows = {row.sop_instance_uid: row for row in archive.index.find(Query(limit=5000))}
            for uid in acknowledged:
                stored = pydicom.dcmread(archive.store.absolute(rows[uid].path))
                assert stored.PixelData == by_uid[uid].PixelData
            # Spool directories of killed servers were swept at restart; only the live one remains.
            spool_dirs = list((archive.staging_dir / "pacs_bridge").iterdir())
            assert len(spool_dirs) == 1
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.postgres
def test_two_servers_one_postgresql_index_and_store(pg_database: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    clips_dir = tmp_path / "clips"
    clips_dir.mkdir()
    clips = [write_clip(clips_dir / f"c{i}.dcm", seed=i, frames=3) for i in range(12)]
    first, port_a = start_serve_process(
        data_dir, ["--allow", "SCANNER"], db_url=pg_database, log_path=tmp_path / "a.log"
    )
    second, port_b = start_serve_process(
        data_dir, ["--allow", "SCANNER"], db_url=pg_database, log_path=tmp_path / "b.log"
    )
    try:
        # Both servers receive every clip at the same time, over two associations each.
        halves = [clips[::2], clips[1::2]]
        jobs = [(port, half) for port in (port_a, port_b) for half in halves]
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda job: storescu(job[0], job[1]), jobs))
        assert all(r.returncode == 0 for r in results), [r.stdout + r.stderr for r in results]
    finally:
        for process in (first, second):
            process.terminate()
        for process in (first, second):
            assert process.wait(timeout=60) == 0
    with Archive.open(ArchiveSettings(data_dir=data_dir, db_url=pg_database)) as archive:
        rows = archive.index.find(Query(limit=1000))
        uids = [row.sop_instance_uid for row in rows]
        assert sorted(uids) == sorted(str(pydicom.dcmread(c).SOPInstanceUID) for c in clips)  # each once
        for row in rows:
            assert archive.check_commitment(row.sop_class_uid, row.sop_instance_uid) is CommitCheck.COMMITTED
        originals = {str(pydicom.dcmread(c).SOPInstanceUID): c for c in clips}
        for row in rows:
            assert dataset_bytes(archive.store.absolute(row.path)) == dataset_bytes(
                originals[row.sop_instance_uid]
            )
