"""``usarchive web``: serve DICOMweb; ``usarchive web token create|list|revoke``: its bearer tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from archive.cli.common import cli_state, open_archive, print_json, print_table
from archive.errors import ArchiveError


def _expiry(text: str | None) -> datetime | None:
    """``--expires``: an ISO date or date-time (UTC unless it says otherwise), or ``30d`` / ``12h``."""
    if text is None:
        return None
    value = text.strip()
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if value[:-1].isdigit() and value[-1:] in units:
        return datetime.now(UTC) + timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO date or time (2027-01-31, 2027-01-31T18:00+01:00) or a duration (30d, 12h), "
            f"but got {text!r}",
            param_hint="--expires",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@click.group("web", invoke_without_command=True)
@click.option("--host", default=None, help="Address to listen on (default [web] host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default [web] port; 0: a free one, printed).")
@click.option(
    "--ohif",
    is_flag=True,
    help="Also serve the OHIF viewer (/ohif/) and a landing page (/); set up once with "
    "`bash scripts/ohif-setup.sh` (docs/ohif.md).",
)
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None, ohif: bool) -> None:
    """Serve the archive as DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with bearer tokens.

    Every request needs a token (`usarchive web token create`). The address,
    TLS, CORS and limits come from [web] of usarchive.toml; see docs/dicomweb.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    from archive.web.server import WebServer
    from archive.web.settings import WebSettings

    state = cli_state(ctx)
    try:
        settings = WebSettings.from_configuration(state.configuration).with_address(host, port)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    wrap = None
    if ohif:
        from archive.web.ohif import viewer_for

        try:
            wrap = viewer_for(state.configuration, settings)
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    with open_archive(ctx) as archive:
        try:
            server = WebServer(archive, settings, wrap=wrap)
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}; "
                "choose another --port or [web] port"
            ) from exc
        click.echo(f"usarchive web: serving DICOMweb at {server.url}", err=True)
        if ohif:
            origin = server.url.removesuffix(settings.root)
            click.echo(f"usarchive web: OHIF viewer at {origin}/ohif/, studies at {origin}/", err=True)
        click.echo(f"usarchive web: access log {settings.access_log}", err=True)
        server.serve()


@web.group("token")
def token() -> None:
    """Bearer tokens: create (the secret is shown once), list, revoke."""


@token.command("create")
@click.option("--name", required=True, help="Who or what uses it (shown in the access log); unique.")
@click.option(
    "--role",
    type=click.Choice(["reader", "reviewer", "admin"]),
    default="reader",
    show_default=True,
    help="reader: query and retrieve; reviewer: also review status; admin: also STOW-RS.",
)
@click.option("--expires", default=None, help="ISO date/time or duration (30d, 12h); default never.")
@click.pass_context
def create_command(ctx: click.Context, name: str, role: str, expires: str | None) -> None:
    """Create a token and print its secret (once: only its SHA-256 is kept)."""
    with open_archive(ctx) as archive:
        try:
            info, secret = archive.tokens.create(name, role, expires_at=_expiry(expires))
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json(
            {
                "name": info.name,
                "role": info.role.value,
                "expires_at": info.expires_at.isoformat() if info.expires_at else None,
                "token": secret,
            },
            ctx,
        )
        return
    click.echo(secret)
    click.echo(
        f"token {info.name!r} ({info.role.value}) created; keep it secret, it is not shown again", err=True
    )


@token.command("list")
@click.pass_context
def list_command(ctx: click.Context) -> None:
    """Every token (name, role, state, created, expires, revoked); never the secrets."""
    with open_archive(ctx) as archive:
        tokens = archive.tokens.list()
    if cli_state(ctx).json_output:
        print_json(
            {
                "tokens": [
                    {
                        "name": t.name,
                        "role": t.role.value,
                        "state": t.state(),
                        "created_at": t.created_at.isoformat(),
                        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                    }
                    for t in tokens
                ]
            },
            ctx,
        )
        return
    print_table(
        ctx,
        ["name", "role", "state", "created", "expires", "revoked"],
        [
            [
                t.name,
                t.role.value,
                t.state(),
                t.created_at.isoformat(timespec="seconds"),
                t.expires_at.isoformat(timespec="seconds") if t.expires_at else "",
                t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "",
            ]
            for t in tokens
        ],
    )


@token.command("revoke")
@click.argument("name")
@click.pass_context
def revoke_command(ctx: click.Context, name: str) -> None:
    """Revoke the token NAME at once (its next request gets 401)."""
    with open_archive(ctx) as archive:
        try:
            info = archive.tokens.revoke(name)
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json({"name": info.name, "state": info.state()}, ctx)
        return
    click.echo(f"token {info.name!r} revoked")
