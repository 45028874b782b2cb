"""``usarchive tag UID --level L5 --side R --technique OT``: set (or clear) procedure attributes by hand."""

from __future__ import annotations

import getpass

import click

from archive.cli.common import cli_state, full_uid, open_archive, print_json
from archive.cli.filters import APPROACH_HELP, TECHNIQUE_HELP
from archive.cli.find import parse_levels, parse_member, parse_side
from archive.errors import ArchiveError
from archive.index.tags import CLEARABLE
from archive.model import Approach, ProcedureType, Technique


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


@click.command("tag")
@click.argument("uid")
@click.option(
    "--level", "levels", multiple=True, help="Spinal level(s); replaces the levels (repeat or L4,L5)."
)
@click.option("--clear-levels", is_flag=True, help="Set 'no levels'.")
@click.option("--side", help="left, right, bilateral (or L, R, B).")
@click.option("--technique", help=TECHNIQUE_HELP)
@click.option("--approach", help=APPROACH_HELP)
@click.option("--procedure", help="medial branch block, radiofrequency, epidural, facet injection, other.")
@click.option(
    "--clear",
    "clear",
    multiple=True,
    type=click.Choice(list(CLEARABLE)),
    help="Return this attribute to the value the rules derive from the stored header (repeat for more).",
)
@click.option(
    "--by",
    "--user",
    "user",
    help="Who is tagging (default: [review] reviewer or USARCHIVE_REVIEWER, else the login name; "
    "--user is the former name).",
)
@click.option("--note", help="Free text kept with the new values and in the tag history.")
@click.pass_context
def tag_command(
    ctx: click.Context,
    uid: str,
    levels: tuple[str, ...],
    clear_levels: bool,
    side: str | None,
    technique: str | None,
    approach: str | None,
    procedure: str | None,
    clear: tuple[str, ...],
    user: str | None,
    note: str | None,
) -> None:
    """Set level, side, technique, approach or procedure of a study, series or instance.

    A value set here always wins over the rules (re-ingest never overwrites
    it) until --clear returns it to the rule-derived value; every change, with
    its note, is kept in the history shown by 'usarchive show'.
    """
    parsed_levels = parse_levels(levels)
    user = cli_state(ctx).person(user) or _default_user()
    with open_archive(ctx) as archive:
        uid = full_uid(archive, uid)
        try:
            changes = archive.index.tag(
                uid,
                user=user,
                levels=() if clear_levels else (parsed_levels or None),
                side=parse_side(side),
                technique=parse_member(Technique, technique, "--technique"),  # type: ignore[arg-type]
                approach=parse_member(Approach, approach, "--approach"),  # type: ignore[arg-type]
                procedure_type=parse_member(ProcedureType, procedure, "--procedure"),  # type: ignore[arg-type]
                note=note,
                clear=frozenset(CLEARABLE[name] for name in clear),
            )
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json({"uid": uid, "changes": [change.to_json() for change in changes]}, ctx)
        return
    for change in changes:
        click.echo(
            f"{change.sop_instance_uid} {change.attribute}: "
            f"{change.old_value or '-'} -> {change.new_value or '-'}"
        )
    click.echo(f"{len(changes)} change(s) by {user}")
