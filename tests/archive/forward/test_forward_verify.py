"""`usarchive verify` reports instances matching a forwarding route without a task; --repair queues them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from archive.archive import Archive
from archive.cli.main import main
from archive.config import ENV_CONFIG, ENV_DEID_SECRET, ENV_REVIEWER, load_configuration
from archive.forward.model import TaskStatus
from archive.ingest import IngestOutcome, Origin
from archive.settings import ENV_DB, ENV_HOME
from archive.verify import verify
from tests.archive.ingest_helpers import us_dataset, write_instance

ROUTES = """\
[destinations.PACS]
ae_title = "ORTHANC"
host = "127.0.0.1"
port = 4242

[[forward.routes]]
destination = "PACS"
level = ["L4"]
granularity = "instance"
delay_s = 600
"""


def cli(*args: str) -> tuple[int, str]:
    env = {ENV_HOME: "", ENV_DB: "", ENV_CONFIG: "", ENV_REVIEWER: "", ENV_DEID_SECRET: ""}
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_verify_finds_unrouted_instances_and_repair_queues_their_tasks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli("--data-dir", str(data), "init")[0] == 0
    with Archive.open(load_configuration(data_dir=data, environ={}).archive, create=False) as archive:
        for seed, description in ((1, "L4/5 MBB right OT"), (2, "C5 left TT")):
            ds = us_dataset(frames=1, seed=seed, description=description)
            assert (
                archive.ingest(write_instance(tmp_path, ds), origin=Origin("file")).outcome
                is IngestOutcome.STORED
            )
    (data / "usarchive.toml").write_text(ROUTES, encoding="utf-8")  # the route comes after them
    code, output = cli("--data-dir", str(data), "--json", "verify")
    report = json.loads(output)
    assert code == 1 and report["ok"] is False
    (uid,) = report["unrouted"]  # the L4 clip, not the C5 one
    code, output = cli("--data-dir", str(data), "verify")
    assert code == 1 and f"unrouted (matches a forwarding route, has no task): {uid}" in output
    code, output = cli("--data-dir", str(data), "verify", "--repair")
    assert code == 0 and "queued 1 missing forwarding task(s) for 1 instance(s)" in output
    config = load_configuration(data_dir=data, environ={})
    with Archive.open(config.archive, create=False) as archive:
        (task,) = archive.forward.list()
        assert (task.sop_instance_uid, task.status) == (uid, TaskStatus.SCHEDULED)
        assert task.scheduled_at <= task.created_at  # type: ignore[operator]  # due now, not after delay_s
        after = verify(archive)
        assert after.ok and after.unrouted == []
