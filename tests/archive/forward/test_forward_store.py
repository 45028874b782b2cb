"""ForwardStore on SQLite and PostgreSQL: claims, lease takeover, backoff, failure, commitment, operations."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest
from sqlalchemy import insert

from archive.archive import Archive
from archive.errors import ArchiveError, ConfigError
from archive.forward import sql
from archive.forward.config import Destination, ForwardSettings, RetryPolicy, Route
from archive.forward.model import AttemptKind, AttemptResult, TaskStatus
from archive.ingest import IngestOutcome, Origin
from archive.settings import ArchiveSettings
from tests.archive.ingest_helpers import us_dataset, write_instance

POLICY = RetryPolicy(base_s=10.0, multiplier=2.0, max_delay_s=25.0, max_attempts=4)
LEASE_S = 60.0


def settings(*routes: Route, retry: RetryPolicy = POLICY, batch_size: int = 5) -> ForwardSettings:
    pacs = Destination("PACS", "ORTHANC", "127.0.0.1", 4242, retry=retry, batch_size=batch_size)
    backup = Destination("BACKUP", "BACKUP", "127.0.0.1", 4243)
    return ForwardSettings(
        lease_s=LEASE_S,
        destinations=MappingProxyType({"PACS": pacs, "BACKUP": backup}),
        routes=routes,
    )


def open_archive(tmp_path: Path, db_url: str, forward: ForwardSettings) -> Archive:
    return Archive.open(ArchiveSettings(tmp_path / "data", db_url, forward=forward))


def ingest_study(
    archive: Archive, tmp_path: Path, count: int, study: str = "1.2.826.0.1.3680043.8.498.1"
) -> list[str]:
    uids = []
    for seed in range(count):
        ds = us_dataset(frames=1, study_uid=study, seed=seed + int(study.rsplit(".", 1)[1]) * 100)
        result = archive.ingest(
            write_instance(tmp_path / "in", ds), origin=Origin("network", calling_ae="SCANNER1")
        )
        assert result.outcome is IngestOutcome.STORED, result.reason
        assert result.sop_instance_uid is not None
        uids.append(result.sop_instance_uid)
    return uids


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_study_is_claimed_as_one_batch_and_an_expired_lease_is_taken_over(
    tmp_path: Path, db_url: str
) -> None:
    with open_archive(tmp_path, db_url, settings(Route("PACS"))) as archive:
        uids = ingest_study(archive, tmp_path, 3)
        store = archive.forward
        assert [t.status for t in store.list()] == [TaskStatus.SCHEDULED] * 3
        batch = store.claim("worker-a")
        assert sorted(t.sop_instance_uid for t in batch) == sorted(uids)
        first = batch[0]
        assert first.path.is_file() and first.path.read_bytes()[128:132] == b"DICM"
        assert first.transfer_syntax == "1.2.840.10008.1.2.1"
        assert (first.status, first.attempts, first.lease_owner) == (TaskStatus.IN_PROGRESS, 1, "worker-a")
        assert store.claim("worker-b") == []  # leased
        taken = store.claim("worker-b", now=later(LEASE_S + 1))  # worker-a was killed
        assert sorted(t.id for t in taken) == sorted(t.id for t in batch)
        assert {(t.attempts, t.lease_owner) for t in taken} == {(2, "worker-b")}
        done = [AttemptResult(t.id, AttemptKind.COMPLETED, 0x0000, "") for t in batch]
        assert store.finish(done, "worker-a") == 0  # no longer worker-a's
        assert store.finish(done, "worker-b") == 3
        assert {t.status for t in store.list()} == {TaskStatus.COMPLETED}
        assert all(t.completed_at is not None and t.lease_owner is None for t in store.list())


def test_retries_follow_the_backoff_then_fail_after_max_attempts(tmp_path: Path, db_url: str) -> None:
    with open_archive(tmp_path, db_url, settings(Route("PACS", granularity="instance"))) as archive:
        ingest_study(archive, tmp_path, 1)
        store = archive.forward
        moment = later(0)
        delays = []
        for attempt in range(1, 5):
            (task,) = store.claim("w", now=moment)
            assert task.attempts == attempt
            store.finish(
                [AttemptResult(task.id, AttemptKind.RETRY, 0xA700, "out of resources")], "w", now=moment
            )
            (after,) = store.list()
            if after.status is TaskStatus.FAILED:
                break
            delay = (after.scheduled_at - moment).total_seconds()
            delays.append(delay)
            assert store.claim("w", now=moment + timedelta(seconds=delay - 1)) == []  # not due yet
            moment += timedelta(seconds=delay)
        assert delays == [10.0, 20.0, 25.0]  # base 10, ×2, capped at 25
        (failed,) = store.list(status="failed")
        assert (failed.attempts, failed.last_status) == (4, 0xA700)
        assert "gave up after 4 attempts" in failed.last_comment
        (line,) = [s for s in store.summary() if s.destination == "PACS"]
        assert (line.failed, line.pending, line.in_progress) == (1, 0, 0)
        assert line.last_error is not None and "0xA700" in line.last_error
        assert store.retry() == 1  # every failed task
        (again,) = store.list()
        assert (again.status, again.attempts) == (TaskStatus.SCHEDULED, 0)


def test_a_permanent_refusal_fails_at_once_unless_retry_permanent(tmp_path: Path, db_url: str) -> None:
    route = Route("PACS", granularity="instance")
    with open_archive(tmp_path, db_url, settings(route)) as archive:
        ingest_study(archive, tmp_path, 1)
        (task,) = archive.forward.claim("w")
        archive.forward.finish(
            [AttemptResult(task.id, AttemptKind.FAILED, 0x0122, "SOP class not supported")], "w"
        )
        assert [t.status for t in archive.forward.list()] == [TaskStatus.FAILED]
        archive.reload_forward(settings(route, retry=RetryPolicy(base_s=5.0, retry_permanent=True)))
        assert archive.forward.retry([task.id]) == 1
        (task,) = archive.forward.claim("w")
        archive.forward.finish([AttemptResult(task.id, AttemptKind.FAILED, 0xA900, "mismatch")], "w")
        (after,) = archive.forward.list()
        assert after.status is TaskStatus.SCHEDULED and after.last_status == 0xA900


def _insert_tasks(archive: Archive, count: int) -> list[int]:
    now = datetime.now(UTC)
    with archive.engine.begin() as connection:
        connection.execute(
            insert(sql.forward_task),
            [
                sql.new_task_values(
                    destination="PACS",
                    route=0,
                    sop_instance_uid=f"1.2.3.{n}",
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.3.1",
                    study_uid=f"9.{n % 7}",
                    batch_key=f"1.2.3.{n}" if n % 2 else f"9.{n % 7}",
                    scheduled_at=now,
                    now=now,
                )
                for n in range(count)
            ],
        )
    return [t.id for t in archive.forward.list(limit=None)]


def test_two_claimers_never_get_the_same_task(tmp_path: Path, db_url: str) -> None:
    with open_archive(tmp_path, db_url, settings(batch_size=4)) as archive:
        ids = _insert_tasks(archive, 80)
        claimed: dict[str, list[int]] = {"a": [], "b": []}
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def work(name: str) -> None:
            try:
                start.wait()
                store = archive.forward
                while batch := store.claim(name):
                    claimed[name] += [t.id for t in batch]
                    assert len({t.destination for t in batch}) == 1 and len(batch) <= 4
                    store.finish([AttemptResult(t.id, AttemptKind.COMPLETED, 0) for t in batch], name)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(name,)) for name in claimed]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors
        assert not set(claimed["a"]) & set(claimed["b"])
        assert sorted(claimed["a"] + claimed["b"]) == ids
        assert {t.status for t in archive.forward.list(limit=None)} == {TaskStatus.COMPLETED}


def test_storage_commitment_completes_only_on_the_report(tmp_path: Path, db_url: str) -> None:
    with open_archive(tmp_path, db_url, settings(Route("PACS"))) as archive:
        uids = ingest_study(archive, tmp_path, 2)
        store = archive.forward
        batch = store.claim("w")
        assert store.await_commitment([t.id for t in batch], "2.25.77", "w") == 2
        assert {t.status for t in store.list()} == {TaskStatus.AWAITING_COMMITMENT}
        assert store.commitment_report("2.25.77", [uids[0]], {uids[1]: "0x0110 processing failure"}) == 2
        by_uid = {t.sop_instance_uid: t for t in store.list()}
        assert by_uid[uids[0]].status is TaskStatus.COMPLETED
        assert by_uid[uids[1]].status is TaskStatus.SCHEDULED
        assert "storage commitment failed: 0x0110" in by_uid[uids[1]].last_comment
        # a report that never comes: the lease bounds the wait
        (retry,) = store.claim("w", now=later(20))
        store.await_commitment([retry.id], "2.25.78", "w", now=later(20))
        (again,) = store.claim("w", now=later(20 + LEASE_S + 1))
        assert (again.id, again.attempts, again.commitment_uid) == (retry.id, 3, None)


def test_cancel_resend_and_errors(tmp_path: Path, db_url: str) -> None:
    with open_archive(tmp_path, db_url, settings(Route("PACS"))) as archive:
        study = "1.2.826.0.1.3680043.8.498.7"
        ingest_study(archive, tmp_path, 2, study=study)
        store = archive.forward
        ids = [t.id for t in store.list()]
        assert store.cancel(ids) == 2
        assert store.claim("w") == []
        assert store.cancel(ids) == 0  # already cancelled
        with pytest.raises(ArchiveError, match="there is no task 999"):
            store.cancel([999])
        assert store.resend(study, "BACKUP") == 2
        assert store.resend(study, "BACKUP") == 0  # still pending: not twice
        assert {t.destination for t in store.list(status=TaskStatus.SCHEDULED)} == {"BACKUP"}
        assert len(store.list(destination="PACS")) == 2
        with pytest.raises(ConfigError, match="destination 'NOPE'"):
            store.resend(study, "NOPE")
        with pytest.raises(ArchiveError, match=r"no instance has Study Instance UID 1\.2\.3"):
            store.resend("1.2.3", "PACS")
        with pytest.raises(ArchiveError, match="expected a task status"):
            store.list(status="stuck")
        assert store.retry(ids) == 2  # cancelled tasks can be scheduled again
        summary = {s.destination: s for s in store.summary()}
        assert (summary["PACS"].pending, summary["BACKUP"].pending) == (2, 2)
        assert summary["PACS"].oldest_pending_age_s is not None


def test_a_file_outside_the_store_is_kept_in_the_outbox(tmp_path: Path, db_url: str) -> None:
    with open_archive(tmp_path, db_url, settings()) as archive:
        source = write_instance(tmp_path / "export", us_dataset(frames=1, seed=42))
        task_id = archive.forward.enqueue_file(source, "PACS")
        source.unlink()  # the export directory is cleaned up
        (task,) = archive.forward.claim("w")
        assert task.id == task_id and task.route is None
        assert task.path.is_file() and task.path.parent == tmp_path / "data" / "outbox"
        assert task.transfer_syntax == "1.2.840.10008.1.2.1"
        with pytest.raises(ConfigError):
            archive.forward.enqueue_file(task.path, "NOPE")


def test_unrouted_lists_instances_that_match_a_route_without_a_task(tmp_path: Path, db_url: str) -> None:
    with open_archive(tmp_path, db_url, settings()) as archive:  # no routes yet
        study = "1.2.826.0.1.3680043.8.498.9"
        uids = ingest_study(archive, tmp_path, 2, study=study)
        assert archive.forward.unrouted() == []
        archive.reload_forward(settings(Route("PACS", modality=frozenset({"US"}))))
        assert sorted(archive.forward.unrouted()) == sorted(uids)
        archive.reload_forward(settings(Route("PACS", modality=frozenset({"CT"}))))
        assert archive.forward.unrouted() == []
        archive.reload_forward(settings(Route("PACS", level=frozenset({"L4"}), side=frozenset({"right"}))))
        assert sorted(archive.forward.unrouted()) == sorted(uids)  # "L4/5 MBB right OT"
        archive.forward.resend(study, "PACS")
        assert archive.forward.unrouted() == []
