"""``usarchive forward``: see and act on the forwarding outbox (status, list, retry, cancel, resend).

The commands only parse, call :attr:`archive.archive.Archive.forward` and print.
Subcommands of packages that depend on ``archive`` plug into this group through
the ``usarchive.forward.commands`` entry-point group (``pacs_bridge``'s
``forward run``, the worker), declared in ``pyproject.toml`` like ``serve``::

    [project.entry-points."usarchive.forward.commands"]
    run = "pacs_bridge.forward.cli:run"

They are loaded when used and get ``--json`` like every other command.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any

import click

from archive.cli.common import cli_state, full_uid, open_archive, print_json, print_table
from archive.errors import ArchiveError
from archive.forward.model import ForwardTask, TaskStatus

#: Entry-point group of ``usarchive forward`` subcommands provided by other packages.
FORWARD_PLUGINS = "usarchive.forward.commands"


class _ForwardGroup(click.Group):
    """The ``forward`` group: its own commands, and those of :data:`FORWARD_PLUGINS`, loaded when used."""

    def _plugins(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=FORWARD_PLUGINS)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = self._plugins().get(cmd_name)
        if plugin is None:
            return None
        from archive.cli.main import _load  # the root's loader: --json after the subcommand too

        return _load(plugin.value)


@click.group("forward", cls=_ForwardGroup)
def forward() -> None:
    """Forwarding to other DICOM nodes: the outbox's tasks per destination, retries and resends."""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _ids(values: tuple[str, ...]) -> list[int]:
    ids: list[int] = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            try:
                ids.append(int(part))
            except ValueError:
                raise click.BadParameter(
                    f"expected task ids (whole numbers, as forward list shows them), but got {part!r}"
                ) from None
    return ids


def _call(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc


@forward.command("status")
@click.pass_context
def status_command(ctx: click.Context) -> None:
    """Per destination: tasks pending, in progress, failed, the oldest pending age and the last error."""
    with open_archive(ctx) as archive:
        lines = archive.forward.summary()
    if cli_state(ctx).json_output:
        print_json({"destinations": [vars(line) for line in lines]}, ctx)
        return
    if not lines:
        click.echo("no destinations configured and no forwarding tasks")
        return
    header = [
        "destination",
        "pending",
        "in progress",
        "failed",
        "completed",
        "warning",
        "oldest",
        "last error",
    ]
    rows = [
        [
            line.destination + ("" if line.configured else " (not configured)"),
            line.pending,
            line.in_progress,
            line.failed,
            line.completed,
            line.warning,
            _age(line.oldest_pending_age_s),
            line.last_error or "",
        ]
        for line in lines
    ]
    print_table(ctx, header, rows)


def _print_tasks(ctx: click.Context, tasks: list[ForwardTask]) -> None:
    if cli_state(ctx).json_output:
        print_json({"tasks": [task.to_json() for task in tasks]}, ctx)
        return
    now = datetime.now(UTC)
    header = ["id", "destination", "status", "attempts", "due", "last status", "sop instance uid", "comment"]
    rows = [
        [
            task.id,
            task.destination,
            task.status.value,
            task.attempts,
            _due(task, now),
            "" if task.last_status is None else f"0x{task.last_status:04X}",
            task.sop_instance_uid,
            task.last_comment,
        ]
        for task in tasks
    ]
    print_table(ctx, header, rows)


def _due(task: ForwardTask, now: datetime) -> str:
    if task.status is not TaskStatus.SCHEDULED:
        return ""
    wait = (task.scheduled_at - now).total_seconds()
    return "now" if wait <= 0 else f"in {_age(wait)}"


@forward.command("list")
@click.option(
    "--status",
    "status",
    type=click.Choice([s.value for s in TaskStatus]),
    help="Only tasks in this state.",
)
@click.option("--destination", help="Only tasks toward this destination.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=1000, show_default=True, help="At most this many."
)
@click.pass_context
def list_command(ctx: click.Context, status: str | None, destination: str | None, limit: int) -> None:
    """List forwarding tasks, oldest first."""
    with open_archive(ctx) as archive:
        tasks = _call(archive.forward.list, status, destination, limit=limit)
    _print_tasks(ctx, tasks)


def _report(ctx: click.Context, what: str, count: int, asked: list[int] | None) -> None:
    if cli_state(ctx).json_output:
        print_json({what: count, "ids": asked}, ctx)
        return
    click.echo(f"{count} task(s) {what}" + (f" of {len(asked)} given" if asked is not None else ""))


@forward.command("retry")
@click.argument("task_ids", nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed task (of --destination if given).")
@click.option("--destination", help="With --failed: only tasks toward this destination.")
@click.pass_context
def retry_command(
    ctx: click.Context, task_ids: tuple[str, ...], all_failed: bool, destination: str | None
) -> None:
    """Schedule failed or cancelled tasks TASK_IDS (or --failed) again, now, with their attempts reset."""
    ids = _ids(task_ids)
    if bool(ids) == all_failed:
        raise click.UsageError("forward retry: give task ids or --failed (one of them)")
    with open_archive(ctx) as archive:
        count = _call(archive.forward.retry, None if all_failed else ids, destination)
    _report(ctx, "scheduled", count, None if all_failed else ids)


@forward.command("cancel")
@click.argument("task_ids", nargs=-1, required=True)
@click.pass_context
def cancel_command(ctx: click.Context, task_ids: tuple[str, ...]) -> None:
    """Cancel tasks TASK_IDS (pending, in progress or failed); forward retry brings them back."""
    ids = _ids(task_ids)
    with open_archive(ctx) as archive:
        count = _call(archive.forward.cancel, ids)
    _report(ctx, "cancelled", count, ids)


@forward.command("resend")
@click.option("--study", "study", required=True, help="Study Instance UID (or a unique prefix).")
@click.option("--to", "destination", required=True, help="Destination name (a [destinations.NAME]).")
@click.pass_context
def resend_command(ctx: click.Context, study: str, destination: str) -> None:
    """Send every instance of a study to a destination again, through the outbox."""
    with open_archive(ctx) as archive:
        uid = full_uid(archive, study)
        count = _call(archive.forward.resend, uid, destination)
    if cli_state(ctx).json_output:
        print_json({"study": uid, "destination": destination, "queued": count}, ctx)
        return
    click.echo(f"study {uid}: {count} instance(s) queued for {destination}")
