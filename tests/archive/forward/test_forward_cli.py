"""``usarchive forward status/list/retry/cancel/resend`` (and a plugged-in subcommand), with --json."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from archive.archive import Archive
from archive.cli import forward as forward_cli
from archive.cli.main import main
from archive.config import ENV_CONFIG, ENV_DEID_SECRET, ENV_REVIEWER, load_configuration
from archive.forward.model import AttemptKind, AttemptResult
from archive.settings import ENV_DB, ENV_HOME
from tests.archive.ingest_helpers import us_dataset, write_instance

CONFIG = """\
[destinations.PACS]
ae_title = "ORTHANC"
host = "127.0.0.1"
port = 4242
max_attempts = 1

[destinations.BACKUP]
ae_title = "BACKUP"
host = "127.0.0.1"
port = 4243

[[forward.routes]]
destination = "PACS"
modality = ["US"]
"""

STUDY = "1.2.826.0.1.3680043.8.498.4242"


def cli(data: Path, *args: str) -> Result:
    env = {ENV_HOME: "", ENV_DB: "", ENV_CONFIG: "", ENV_REVIEWER: "", ENV_DEID_SECRET: ""}
    return CliRunner().invoke(main, ["--data-dir", str(data), *args], env=env)


def ok(data: Path, *args: str) -> Any:
    result = cli(data, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert cli(data, "init").exit_code == 0
    (data / "usarchive.toml").write_text(CONFIG, encoding="utf-8")
    paths = [write_instance(tmp_path / "in", us_dataset(frames=1, seed=n, study_uid=STUDY)) for n in range(3)]
    assert cli(data, "import", *map(str, paths)).exit_code == 0
    return data


def test_status_and_list_show_the_tasks_ingest_queued(data: Path) -> None:
    status = ok(data, "forward", "status")
    lines = {line["destination"]: line for line in status["destinations"]}
    assert (lines["PACS"]["pending"], lines["PACS"]["failed"]) == (3, 0)
    assert (lines["BACKUP"]["pending"], lines["BACKUP"]["configured"]) == (0, True)
    assert lines["PACS"]["oldest_pending_age_s"] >= 0
    listed = ok(data, "forward", "list", "--destination", "PACS")["tasks"]
    assert [t["status"] for t in listed] == ["scheduled"] * 3
    assert {t["study_uid"] for t in listed} == {STUDY}
    table = cli(data, "forward", "list", "--status", "scheduled")
    assert table.exit_code == 0
    header, *rows = table.output.splitlines()  # tab-separated when piped
    assert header.split("\t")[:3] == ["id", "destination", "status"] and len(rows) == 3
    assert ok(data, "forward", "list", "--status", "failed")["tasks"] == []


def test_retry_cancel_and_resend(data: Path) -> None:
    config = load_configuration(data_dir=data, environ={})
    with Archive.open(config.archive, create=False) as archive:
        batch = archive.forward.claim("w")
        archive.forward.finish([AttemptResult(t.id, AttemptKind.RETRY, 0xA700, "busy") for t in batch], "w")
    failed = ok(data, "forward", "list", "--status", "failed")["tasks"]  # max_attempts = 1
    assert len(failed) == 3 and failed[0]["last_status"] == 0xA700
    status = ok(data, "forward", "status")["destinations"]
    assert "0xA700: busy" in next(s for s in status if s["destination"] == "PACS")["last_error"]
    first = str(failed[0]["id"])
    assert ok(data, "forward", "retry", first)["scheduled"] == 1
    assert ok(data, "forward", "retry", "--failed", "--destination", "PACS")["scheduled"] == 2
    assert ok(data, "forward", "cancel", f"{first},{failed[1]['id']}")["cancelled"] == 2
    assert len(ok(data, "forward", "list", "--status", "cancelled")["tasks"]) == 2
    resent = ok(data, "forward", "resend", "--study", STUDY[:-2], "--to", "BACKUP")  # a unique prefix
    assert (resent["study"], resent["queued"]) == (STUDY, 3)
    plain = cli(data, "forward", "resend", "--study", STUDY, "--to", "BACKUP")
    assert "0 instance(s) queued for BACKUP" in plain.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("forward", "retry"), "give task ids or --failed"),
        (("forward", "retry", "1", "--failed"), "give task ids or --failed"),
        (("forward", "retry", "x1"), "expected task ids"),
        (("forward", "cancel", "999"), "there is no task 999"),
        (("forward", "resend", "--study", STUDY, "--to", "NOPE"), "destination 'NOPE'"),
        (("forward", "list", "--status", "stuck"), "'stuck' is not one of"),
    ],
)
def test_bad_input_is_one_clear_line(data: Path, args: tuple[str, ...], message: str) -> None:
    result = cli(data, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


@click.command("run")
@click.pass_context
def fake_run(ctx: click.Context) -> None:
    """A plugged-in forward subcommand (as pacs_bridge's forward run)."""
    click.echo(f"ran, json={forward_cli.cli_state(ctx).json_output}")


def test_other_packages_plug_subcommands_into_the_forward_group(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = EntryPoint(
        name="run", value="tests.archive.forward.test_forward_cli:fake_run", group=forward_cli.FORWARD_PLUGINS
    )

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [plugin] if group == forward_cli.FORWARD_PLUGINS else []

    monkeypatch.setattr(forward_cli, "entry_points", fake_entry_points)
    assert "run" in cli(data, "forward", "--help").output
    result = cli(data, "forward", "run", "--json")
    assert result.exit_code == 0, result.output
    assert "ran, json=True" in result.output
