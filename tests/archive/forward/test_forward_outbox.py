"""The outbox: tasks go in the ingest transaction; never an instance without them, nor them without it."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from archive import archive as archive_module
from archive.archive import Archive
from archive.forward import sql
from archive.forward.config import Destination, ForwardSettings, Route
from archive.forward.model import TaskStatus
from archive.index import schema
from archive.ingest import DuplicatePolicy, IngestOutcome, Origin, RejectCode
from archive.settings import ArchiveSettings
from tests.archive.forward.forward_ingest_child import FORWARD
from tests.archive.ingest_helpers import us_dataset, write_instance

CHILD = Path(__file__).with_name("forward_ingest_child.py")
KILLS = 16
SCANNER = Origin("network", calling_ae="SCANNER1", address="127.0.0.1:5000")


def forward_settings(*routes: Route) -> ForwardSettings:
    names = {route.destination for route in routes} | {"PACS"}
    return ForwardSettings(
        destinations=MappingProxyType({n: Destination(n, n, "127.0.0.1", 104) for n in names}),
        routes=routes,
    )


def test_tasks_follow_the_routes_an_instance_matches(tmp_path: Path, db_url: str) -> None:
    routes = (
        Route("PACS", calling_ae=frozenset({"SCANNER1"})),
        Route("PACS", modality=frozenset({"US"})),  # a second route to PACS: still one task
        Route("LUMBAR", level=frozenset({"L4"}), technique=frozenset({"OT"}), granularity="instance"),
        Route("LEFT", side=frozenset({"left"})),
        Route("MBB", procedure_type=frozenset({"medial branch block"}), sop_class=frozenset({"1.2.3"})),
    )
    settings = ArchiveSettings(tmp_path / "data", db_url, forward=forward_settings(*routes))
    with Archive.open(settings) as archive:
        ds = us_dataset(frames=1, seed=1)  # "L4/5 MBB right OT"
        result = archive.ingest(write_instance(tmp_path, ds), origin=SCANNER)
        assert result.outcome is IngestOutcome.STORED
        tasks = {t.destination: t for t in archive.forward.list()}
        assert set(tasks) == {"PACS", "LUMBAR"}
        assert (tasks["PACS"].route, tasks["PACS"].batch_key) == (0, ds.StudyInstanceUID)
        assert (tasks["LUMBAR"].route, tasks["LUMBAR"].batch_key) == (2, ds.SOPInstanceUID)
        assert tasks["PACS"].path == result.path
        imported = archive.ingest(
            write_instance(tmp_path, us_dataset(frames=1, seed=2)), origin=Origin("file")
        )
        assert {t.destination for t in archive.forward.list() if t.sop_instance_uid != ds.SOPInstanceUID} == {
            "PACS",  # by modality: a file import has no calling AE
            "LUMBAR",
        }
        assert imported.outcome is IngestOutcome.STORED


def test_a_duplicate_inserts_nothing_and_a_replacement_reschedules(tmp_path: Path, db_url: str) -> None:
    settings = ArchiveSettings(
        tmp_path / "data",
        db_url,
        forward=forward_settings(Route("PACS", granularity="instance")),
        duplicate_policy=DuplicatePolicy.REPLACE,
    )
    with Archive.open(settings) as archive:
        ds = us_dataset(frames=1, seed=3)
        path = write_instance(tmp_path, ds)
        assert archive.ingest(path, origin=SCANNER).outcome is IngestOutcome.STORED
        assert archive.ingest(path, origin=SCANNER).outcome is IngestOutcome.DUPLICATE
        many = archive.ingest_many([path, path], origins=[SCANNER, SCANNER])
        assert {r.outcome for r in many} == {IngestOutcome.DUPLICATE}
        assert len(archive.forward.list()) == 1
        (claimed,) = archive.forward.claim("w")
        ds.StudyDescription = "L4/5 MBB right OT, corrected"
        replaced = archive.ingest(write_instance(tmp_path, ds, name="corrected.dcm"), origin=SCANNER)
        assert replaced.outcome is IngestOutcome.REPLACED
        old, new = archive.forward.list()
        assert (old.id, old.status) == (claimed.id, TaskStatus.IN_PROGRESS)
        assert (new.status, new.path) == (TaskStatus.SCHEDULED, replaced.path)
        ds.StudyDescription = "L4/5 MBB right OT, corrected twice"
        archive.ingest(write_instance(tmp_path, ds, name="twice.dcm"), origin=SCANNER)
        assert len(archive.forward.list()) == 2  # the new task still scheduled sends the newest file


def test_a_study_is_due_delay_s_after_its_last_instance(tmp_path: Path, db_url: str) -> None:
    settings = ArchiveSettings(
        tmp_path / "data", db_url, forward=forward_settings(Route("PACS", delay_s=300.0))
    )
    study = "1.2.826.0.1.3680043.8.498.55"
    with Archive.open(settings) as archive:
        for seed in (10, 11, 12):
            archive.ingest(
                write_instance(tmp_path, us_dataset(frames=1, seed=seed, study_uid=study)), origin=SCANNER
            )
        with archive.engine.connect() as connection:
            last = connection.execute(select(func.max(schema.instance.c.received_at))).scalar_one()
        tasks = archive.forward.list()
        assert len({t.scheduled_at for t in tasks}) == 1  # pushed together on each new instance
        due = tasks[0].scheduled_at
        assert due == sql.utc(last) + timedelta(seconds=300)  # type: ignore[operator]
        assert archive.forward.claim("w", now=due - timedelta(seconds=1)) == []
        assert len(archive.forward.claim("w", now=due)) == 3


def test_a_failing_outbox_insert_stores_nothing(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ArchiveSettings(tmp_path / "data", db_url, forward=forward_settings(Route("PACS")))
    with Archive.open(settings) as archive:

        def broken(*args: object, **kwargs: object) -> int:
            raise OperationalError("INSERT INTO forward_task", {}, Exception("disk I/O error"))

        monkeypatch.setattr(archive_module, "insert_routed_tasks", broken)
        result = archive.ingest(write_instance(tmp_path, us_dataset(frames=1, seed=5)), origin=SCANNER)
        assert (result.outcome, result.code) == (IngestOutcome.REJECTED, RejectCode.STORAGE_ERROR)
        assert list(archive.iter_index()) == []
        assert not any(p.is_file() for p in archive.store.root.rglob("*.dcm"))


def _inputs(directory: Path, count: int, first_seed: int) -> list[Path]:
    paths = []
    for i in range(first_seed, first_seed + count):
        big = i % 4 == 0
        ds = us_dataset(
            frames=30 if big else 1,
            rows=120 if big else 16,
            columns=160 if big else 16,
            seed=i,
            study_uid=f"1.2.826.0.1.3680043.8.498.{100 + i // 3}",
            description="L4/5 MBB right OT" if i % 2 else "C5 left TT",
        )
        paths.append(write_instance(directory, ds))
    return paths


@pytest.mark.slow
def test_killed_ingests_never_leave_a_routed_instance_without_its_task(tmp_path: Path, db_url: str) -> None:
    rng = random.Random(16)
    data_dir = tmp_path / "data"
    inputs: list[Path] = []
    kills = 0
    for round_number in range(KILLS):
        fresh = _inputs(tmp_path / "in" / str(round_number), 6, first_seed=round_number * 6)
        batch = fresh + rng.sample(inputs, min(2, len(inputs)))  # some again: duplicates
        inputs.extend(fresh)
        rng.shuffle(batch)
        group = 1 if round_number % 2 else 3
        process = subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), db_url, str(group), *map(str, batch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            for _ in range(rng.randrange(len(batch))):  # the kill point by progress, not by the clock
                if not process.stdout.readline():
                    break
            time.sleep(rng.uniform(0.0, 0.01))
            process.send_signal(signal.SIGKILL)
            kills += process.wait(timeout=60) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert kills >= KILLS // 2, f"most children must have been killed ({kills}/{KILLS})"
    with Archive.open(ArchiveSettings(data_dir, db_url, forward=FORWARD)) as archive:
        indexed = [stored.sop_instance_uid for stored in archive.iter_index()]
        assert indexed, "some instances were indexed before the kills"
        assert archive.forward.unrouted() == []
        per_task = Counter((t.sop_instance_uid, t.destination) for t in archive.forward.list(limit=None))
        assert set(per_task.values()) == {1}, "a duplicate or a retried group inserted a second task"
        assert {uid for uid, _ in per_task} == set(indexed)  # and no task without its instance
